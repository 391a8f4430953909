package bench

import (
	"context"
	"slices"
	"time"
)

// The limited-partners phase (Config.PartnerLimit) measures what a buyer
// asks of partners whose endpoints take only so many requests at once —
// a worker pool, a proxy's connection limit, an API gateway's concurrency
// quota — and answer 429 to the rest: how many of their answers are
// 429s (each one a delivery that must be tried again, and a request the
// partner had to refuse), and what the deliveries' latency becomes. A
// platform that sends such a partner as many at once as its own bound
// allows has most of its attempts refused; one that paces each partner
// by its answers (the dispatcher's learnt bound, runtime/dispatch's
// pace.go) keeps under the partner's limit.
//
// The partners record each delivery they take and answer it after
// PartnerLatency (limitedHold without one); a request that arrives while
// PartnerLimit of its partner's are in flight is answered 429 at once,
// with Retry-After: 1.

// limitedHold is how long a limited partner takes to answer what it takes
// when the run sets no PartnerLatency: with a limit of 10, 500 a second.
const limitedHold = 20 * time.Millisecond

// LimitedResult is what the limited-partners phase measured: events
// arrived at the run's rate for LatencyDuration while every partner took
// Limit deliveries at once, answering each after AnswerMS, and 429 to the
// rest.
type LimitedResult struct {
	Seconds  float64 `json:"seconds"`
	Rate     int     `json:"rate_per_sec"`
	Limit    int     `json:"limit"`
	AnswerMS float64 `json:"answer_ms"`
	// Events is how many were accepted; each is owed to every
	// subscription.
	Events int64 `json:"events"`
	// DeliveredPerSec is the deliveries that arrived while the events
	// were being sent, over the time they were sent: Rate × fan-out if
	// the platform kept up; CatchUpSeconds from the last event sent to
	// the last delivery arriving.
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	CatchUpSeconds  float64 `json:"catch_up_seconds"`
	// Latency from ingest accepting an event to a partner taking it, over
	// the phase and its catch-up: a delivery refused first arrives on a
	// retry.
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	// Refused is how many requests the partners answered 429, and
	// RefusedShare what share of all the requests they got that is.
	Refused      int64   `json:"refused"`
	RefusedShare float64 `json:"refused_share"`
	// PeakOffered is the most requests one partner had at once, refused
	// ones included: what the platform sent it, whatever it took.
	PeakOffered int64 `json:"peak_offered"`
	NotArrived  int64 `json:"not_arrived"`
	Duplicates  int64 `json:"duplicates"`
}

// limitedPartners runs the limited-partners phase against target.
func limitedPartners(ctx context.Context, target string, cfg Config, recv *receiver) (*LimitedResult, error) {
	hold := cfg.PartnerLatency
	if hold <= 0 {
		hold = limitedHold
	}
	dups0, requests0 := recv.duplicates(), recv.conns.requests()
	recv.restart() // counts reset; in flight counted, arrivals timed
	recv.throttled.Store(0)
	recv.limit.Store(int64(cfg.PartnerLimit))
	recv.hold.Store(int64(hold))
	defer func() {
		recv.limit.Store(0)
		recv.hold.Store(0)
		recv.catchUp.Store(false)
	}()
	started := time.Now()
	sent, _, _, err := openLoop(ctx, at(target+"/v1/events"), cfg, cfg.LatencyDuration, "l", "limited partners", nil)
	if err != nil {
		return nil, err
	}
	sending := time.Since(started).Seconds()
	want := sent * int64(cfg.Fanout)
	recv.await(ctx, want, 15*time.Second, func(done float64) { cfg.Progress("limited catch-up", done) })
	res := &LimitedResult{Seconds: cfg.LatencyDuration.Seconds(), Rate: cfg.Rate, Limit: cfg.PartnerLimit, AnswerMS: float64(hold) / float64(time.Millisecond), Events: sent}
	arrivals := recv.arrivals()
	in := 0
	for _, s := range arrivals {
		if s <= sending {
			in++
		}
	}
	if sending > 0 {
		res.DeliveredPerSec = float64(in) / sending
	}
	if len(arrivals) > 0 {
		res.CatchUpSeconds = max(slices.Max(arrivals)-sending, 0)
	}
	lat := recv.latencies()
	res.LatencyP50MS, res.LatencyP95MS, res.LatencyP99MS = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	res.Refused, res.PeakOffered = recv.throttled.Load(), recv.peak.Load()
	if n := recv.conns.requests() - requests0; n > 0 {
		res.RefusedShare = float64(res.Refused) / float64(n)
	}
	res.NotArrived, res.Duplicates = max(want-recv.count(), 0), recv.duplicates()-dups0
	return res, ctx.Err()
}
