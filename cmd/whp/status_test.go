package main

import (
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/telemetry"
)

// TestRenderBreakers: `whp status` says, under the table, why each
// breaker that is not closed opened and when it probes next — at the
// partner's Retry-After or at the cool-down's end.
func TestRenderBreakers(t *testing.T) {
	opened := time.Date(2026, 12, 1, 2, 40, 1, 0, time.UTC)
	var out strings.Builder
	renderBreakers(&out, []breaker.Snapshot{
		{Partner: "acme", State: breaker.Closed, Successes: 12},
		{Partner: "beta", State: breaker.Open, Failures: 10, OpenedAt: opened, FailingSince: opened, Reason: "10 failures in a row", ProbeAt: opened.Add(30 * time.Second)},
		{Partner: "gamma", State: breaker.Open, OpenedAt: opened, FailingSince: opened, Reason: "12 answers 429 in a row over 1.1s", ProbeAt: opened.Add(time.Hour), PartnerAsked: true},
		{Partner: "delta", State: breaker.HalfOpen, OpenedAt: opened, Reason: "a probe was answered with a failure"},
	}, []telemetry.PartnerInFlight{{Partner: "acme", InFlight: 3, Limit: 16, Ceiling: 64}, {Partner: "beta", Limit: 64, Ceiling: 64, Waiting: 480, WaitsFor: telemetry.WaitsForRateLimit},
		{Partner: "gamma", Limit: 64, Ceiling: 64, Waiting: 12, WaitsFor: telemetry.WaitsForResume}})
	got := out.String()
	for _, want := range []string{
		"acme     closed     12  0       -",
		"3 of 16 (max 64)",
		"0 of 64, 480 waiting for its rate limit",
		"0 of 64, 12 waiting: paused",
		"beta's breaker opened at 02:40:01Z: 10 failures in a row; next probe at 02:40:31Z (the cool-down)\n",
		"gamma's breaker opened at 02:40:01Z: 12 answers 429 in a row over 1.1s; next probe at 03:40:01Z (as the partner's Retry-After asked)\n",
		"delta's breaker opened at 02:40:01Z: a probe was answered with a failure; probing\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "acme's breaker") {
		t.Errorf("a closed breaker described:\n%s", got)
	}
}
