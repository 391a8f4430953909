package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/dev"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

// runStatus is `whp status`: the SLOs, breakers and reconcile status of a
// running whp.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	client := apiFlags(fs)
	window := fs.String("window", "1h", "the window the SLOs are computed over, from 1m to 24h")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var st dev.Status
	if err := c.do(ctx, http.MethodGet, "/v1/status?window="+url.QueryEscape(*window), nil, &st); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	renderSLO(stdout, st.SLO)
	fmt.Fprintln(stdout)
	renderBreakers(stdout, st.Breakers, st.InFlight)
	fmt.Fprintln(stdout)
	renderAttention(stdout, st.Attention)
	fmt.Fprintln(stdout)
	st.Reconcile.Render(stdout)
	return nil
}

// renderBreakers prints each partner's circuit breaker and deliveries in
// flight, then, for each breaker not closed, why it opened and when it
// probes next.
func renderBreakers(w io.Writer, breakers []breaker.Snapshot, flights []telemetry.PartnerInFlight) {
	if len(breakers) == 0 {
		fmt.Fprintln(w, "Circuit breakers: none has seen a delivery yet")
		return
	}
	inFlight := map[string]string{}
	for _, f := range flights {
		inFlight[f.Partner] = fmt.Sprintf("%d of %d", f.InFlight, f.Limit)
		if f.Ceiling > f.Limit {
			// Its bound, learnt from its answers, is under the most
			// it may have (runtime/dispatch's pace.go).
			inFlight[f.Partner] += fmt.Sprintf(" (max %d)", f.Ceiling)
		}
		if f.Waiting > 0 {
			inFlight[f.Partner] += fmt.Sprintf(", %d waiting", f.Waiting)
		}
		switch f.WaitsFor {
		case telemetry.WaitsForRateLimit:
			inFlight[f.Partner] += " for its rate limit"
		case telemetry.WaitsForResume:
			inFlight[f.Partner] += ": paused"
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTNER\tBREAKER\tOK\tFAILED\tFAILING SINCE\tIN FLIGHT")
	for _, b := range breakers {
		since := "-"
		if !b.FailingSince.IsZero() {
			since = b.FailingSince.Format("2006-01-02T15:04:05Z07:00")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", b.Partner, b.State, b.Successes, b.Failures, since, cmp.Or(inFlight[b.Partner], "-"))
	}
	tw.Flush()
	for _, b := range breakers {
		if d := b.Describe(); d != "" {
			fmt.Fprintf(w, "%s's breaker %s\n", b.Partner, d)
		}
	}
}

// renderAttention prints each partner's deliveries retrying, held and
// dead-lettered now, those with the most first.
func renderAttention(w io.Writer, attention map[string]map[string]int) {
	total := map[string]int{}
	for _, counts := range attention {
		for p, n := range counts {
			total[p] += n
		}
	}
	if len(total) == 0 {
		fmt.Fprintln(w, "Deliveries needing attention: none retrying, held or dead-lettered")
		return
	}
	partners := slices.Sorted(maps.Keys(total))
	slices.SortStableFunc(partners, func(a, b string) int { return cmp.Compare(total[b], total[a]) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTNER\tRETRYING\tHELD\tDEAD-LETTERED")
	for _, p := range partners {
		fmt.Fprintf(tw, "%s", p)
		for _, status := range store.AttentionStatuses {
			fmt.Fprintf(tw, "\t%d", attention[status][p])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// renderSLO prints each indicator against its objective.
func renderSLO(w io.Writer, r telemetry.Report) {
	fmt.Fprintf(w, "SLOs over the last %s\n", r.Window)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDICATOR\tVALUE\tOBJECTIVE\tOVER")
	pct := func(v *float64) string {
		if v == nil {
			return "no data"
		}
		return fmt.Sprintf("%.2f%%", *v)
	}
	ms := "no data"
	if r.P95EndToEndMS != nil {
		ms = fmt.Sprintf("%.1f ms", *r.P95EndToEndMS)
	}
	fmt.Fprintf(tw, "validation success\t%s\t≥ %.2f%%\t%d events\n", pct(r.ValidationSuccess), r.ValidationTarget, r.Validated)
	fmt.Fprintf(tw, "delivery success\t%s\t≥ %.2f%%\t%d finished deliveries\n", pct(r.DeliverySuccess), r.DeliveryTarget, r.Finished)
	fmt.Fprintf(tw, "p95 end to end\t%s\t≤ %.0f ms\taccepted → partner 2xx\n", ms, r.P95TargetMS)
	tw.Flush()
	if len(r.Breaches) > 0 {
		fmt.Fprintf(w, "BREACHED: %s\n", strings.Join(r.Breaches, ", "))
	}
}
