package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/whp-dev/whp/runtime/replay"
)

// runReplay is `whp replay`: it starts a replay on a running whp and shows
// its progress until it ends.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	client := apiFlags(fs)
	sub := fs.String("subscription", "", "the subscription to replay to (partner#domain#event#version)")
	from := fs.String("from", "", "replay events accepted at or after this time (RFC 3339)")
	to := fs.String("to", "", "and before this time (RFC 3339; default: now)")
	rate := fs.Float64("rate", 100, "deliveries per second at most, so live traffic keeps flowing")
	if err := parse(fs, args); err != nil {
		return err
	}
	req := replay.Request{SubscriptionID: *sub, RatePerSecond: *rate}
	var err error
	if *sub == "" || *from == "" {
		return usageError{"whp replay: --subscription and --from are required"}
	}
	if req.From, err = time.Parse(time.RFC3339, *from); err != nil {
		return usageError{"whp replay: --from must be an RFC 3339 time, like 2026-11-28T12:00:00Z"}
	}
	if *to != "" {
		if req.To, err = time.Parse(time.RFC3339, *to); err != nil {
			return usageError{"whp replay: --to must be an RFC 3339 time"}
		}
	}
	c, err := client()
	if err != nil {
		return err
	}
	body, _ := json.Marshal(req)
	var job replay.Job
	if err := c.do(ctx, http.MethodPost, "/v1/replays", body, &job); err != nil {
		return err
	}
	return followJob(ctx, c, "/v1/replays/", &job, stdout, func(p replay.Progress) string {
		return fmt.Sprintf("%s scanned %d/%d, replayed %d, filtered %d", bar(int(p.Scanned), int(p.Total)), p.Scanned, p.Total, p.Replayed, p.Filtered)
	})
}
