package bench

import (
	"context"
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
	Arrivals
	Limit    int     `json:"limit"`
	AnswerMS float64 `json:"answer_ms"`
	// Refused is how many requests the partners answered 429, and
	// RefusedShare what share of all the requests they got that is. (A
	// delivery refused arrives on a retry: its latency is the retry's.)
	Refused      int64   `json:"refused"`
	RefusedShare float64 `json:"refused_share"`
	// PeakOffered is the most requests one partner had at once, refused
	// ones included: what the platform sent it, whatever it took.
	PeakOffered int64 `json:"peak_offered"`
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
	a, err := sendAndAwait(ctx, target, cfg, recv, "l", "limited partners", "limited catch-up", dups0)
	if err != nil {
		return nil, err
	}
	res := &LimitedResult{Arrivals: a, Limit: cfg.PartnerLimit, AnswerMS: float64(hold) / float64(time.Millisecond),
		Refused: recv.throttled.Load(), PeakOffered: recv.peak.Load()}
	if n := recv.conns.requests() - requests0; n > 0 {
		res.RefusedShare = float64(res.Refused) / float64(n)
	}
	return res, ctx.Err()
}
