package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/whp-dev/whp/runtime/dev"
	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/runtime/jobs"
)

// runDLQ is `whp dlq list|redrive|reindex`, a client of a running whp's
// DLQ API.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "redrive" && args[0] != "reindex") {
		return usageError{"whp dlq: expected list, redrive or reindex"}
	}
	sub := args[0]
	fs := newFlags("dlq "+sub, stderr)
	client := apiFlags(fs)
	if sub == "reindex" {
		// An upgrade's step on DynamoDB (infra/modules/dynamodb/README.md):
		// dead letters written before the status index existed join it.
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		c, err := client()
		if err != nil {
			return err
		}
		return runDLQJob(ctx, c, "reindex", nil, stdout, "", func(p dlq.Progress) string {
			return fmt.Sprintf("%s %s: %d selected (indexed %d)", bar(p.Scanned, p.Records), queueRead(p), p.Total, p.Indexed)
		})
	}
	subscription := fs.String("subscription", "", "only this subscription (partner#domain#event#version)")
	partner := fs.String("partner", "", "only this partner")
	ids := fs.String("delivery-id", "", "only these deliveries, comma-separated: EVENT_ID/DELIVERY_ID (as list prints them) reads each one's dead letter where its status says it is; a bare DELIVERY_ID is looked for in the queue's topics")
	from := fs.String("from", "", "failed at or after this time (RFC 3339)")
	to := fs.String("to", "", "failed before this time (RFC 3339)")
	all := fs.Bool("all", false, "list: include entries already redriven")
	asJSON := fs.Bool("json", false, "list: print JSON")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"subscription": *subscription, "partner": *partner, "delivery_id": *ids, "from": *from, "to": *to} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if sub == "list" {
		// The dead letters waiting, by partner or subscription, come
		// from the store's index, the newest 1,000; with --all, ids or
		// times, the queue's records are read, up to 10,000 (the API's
		// bounds, runtime/dlq.API).
		limit := "1000"
		if *all || *ids != "" || *from != "" || *to != "" {
			limit = "10000"
		}
		if *all {
			q.Set("all", "true")
		}
		q.Set("limit", limit)
		var resp struct {
			Entries   []dlq.Entry `json:"entries"`
			Total     int         `json:"total"`
			Exact     bool        `json:"exact"`
			Partial   bool        `json:"partial"`
			ByPartner []struct {
				PartnerID string `json:"partner_id"`
				Count     int    `json:"count"`
			} `json:"by_partner"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/dlq?"+q.Encode(), nil, &resp); err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(resp.Entries)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FAILED AT\tEVENT/DELIVERY\tSUBSCRIPTION\tATTEMPTS\tLAST\tSTATUS\tREASON")
		for _, e := range resp.Entries {
			last := e.LastError
			if e.LastStatusCode != 0 {
				last = fmt.Sprintf("HTTP %d", e.LastStatusCode)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.FailedAt.Format(time.RFC3339), e.Ref(), e.SubscriptionID, e.Attempts, last, e.Status, e.Reason)
		}
		tw.Flush()
		switch {
		case !resp.Exact:
			fmt.Fprintf(stdout, "at least %d dead-lettered deliveries\n", resp.Total)
		default:
			fmt.Fprintf(stdout, "%d dead-lettered deliveries\n", resp.Total)
		}
		if len(resp.Entries) < resp.Total {
			fmt.Fprintf(stdout, "the newest %d shown; --partner or --subscription narrows the list\n", len(resp.Entries))
		}
		if resp.Partial {
			fmt.Fprintln(stdout, "newer ones of other partners may be left out: list by --partner")
		}
		if *partner == "" && *subscription == "" && len(resp.ByPartner) > 0 {
			fmt.Fprintln(stdout, "by partner:")
			for _, pc := range resp.ByPartner {
				fmt.Fprintf(stdout, "  %s\t%d\n", pc.PartnerID, pc.Count)
			}
		}
		return nil
	}
	f, err := dlq.FilterFromQuery(q)
	if err != nil {
		return usageError{"whp dlq redrive: " + err.Error()}
	}
	body, _ := json.Marshal(f)
	return runDLQJob(ctx, c, "redrive", body, stdout, "skipped: ", func(p dlq.Progress) string {
		return fmt.Sprintf("%s %s: %d selected (redriven %d, skipped %d)", bar(p.Scanned, p.Records), queueRead(p), p.Total, p.Redriven, p.Skipped)
	})
}

// queueRead says how much of the queue a job has read: its records, the
// entries of the dead-letter topics its filter can select from.
func queueRead(p dlq.Progress) string {
	return fmt.Sprintf("%d/%d of the queue read", p.Scanned, p.Records)
}

// runDLQJob starts a job of the DLQ API (POST /v1/dlq/{kind}), follows it
// to its end with line, then prints its notes, each after notePrefix.
func runDLQJob(ctx context.Context, c apiClient, kind string, body []byte, stdout io.Writer, notePrefix string, line func(dlq.Progress) string) error {
	var job dlq.Job
	if err := c.do(ctx, http.MethodPost, "/v1/dlq/"+kind, body, &job); err != nil {
		return err
	}
	if err := followJob(ctx, c, "/v1/dlq/"+kind+"/", &job, stdout, line); err != nil {
		return err
	}
	for _, n := range job.Progress.Notes {
		fmt.Fprintln(stdout, notePrefix+n)
	}
	return nil
}

// followJob polls a job until it ends, redrawing one progress line, and
// returns an error if it failed.
func followJob[P any](ctx context.Context, c apiClient, path string, job *jobs.Job[P], stdout io.Writer, line func(P) string) error {
	for {
		fmt.Fprintf(stdout, "\r%s %s: %s", job.Kind, job.ID, line(job.Progress))
		if job.State != "running" {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout)
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if err := c.do(ctx, http.MethodGet, path+job.ID, nil, job); err != nil {
			fmt.Fprintln(stdout)
			return err
		}
	}
	fmt.Fprintln(stdout)
	if job.State == "failed" {
		return fmt.Errorf("%s failed: %s", job.Kind, job.Error)
	}
	return nil
}

// bar draws a 20-cell progress bar.
func bar(done, total int) string {
	n := 20
	if total > 0 {
		n = done * 20 / total
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 20-n) + "]"
}

type apiClient struct {
	base, token string
}

// apiFlags registers the flags that reach a running whp's admin API
// (--url, --token-file) and returns what builds the client once they are
// parsed.
func apiFlags(fs *flag.FlagSet) func() (apiClient, error) {
	base := fs.String("url", "http://127.0.0.1:8080", "base URL of the running whp")
	tokenFile := fs.String("token-file", filepath.Join(".whp", dev.AdminTokenFile), "file holding the admin token")
	return func() (apiClient, error) {
		tok, err := os.ReadFile(*tokenFile)
		if err != nil {
			return apiClient{}, fmt.Errorf("admin token: %w", err)
		}
		return apiClient{base: strings.TrimRight(*base, "/"), token: strings.TrimSpace(string(tok))}, nil
	}
}

func (c apiClient) do(ctx context.Context, method, path string, body []byte, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var p struct{ Message string }
		json.Unmarshal(b, &p)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Message)
	}
	return json.Unmarshal(b, into)
}
