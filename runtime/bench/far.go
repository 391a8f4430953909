package bench

import (
	"context"
	"slices"
	"time"
)

// The far-partners phase (Config.PartnerLatency) measures what a buyer
// asks of partners that are not on the same machine, or the same
// continent: every partner takes PartnerLatency to answer each delivery —
// the round trips and the partner's own work — as endpoints across the
// internet do (tens to hundreds of milliseconds), where the rest of the
// bench's partners answer in microseconds. A platform then delivers to a
// partner at most as many deliveries a second as it keeps in flight to
// it, divided by the answer's time (Little's law), however few cores it
// uses: this phase shows whether it keeps enough in flight to keep up
// with the events.
//
// The partners read each delivery and record its arrival at once (its
// latency is ingest's acceptance → the partner got it, as elsewhere),
// then answer after PartnerLatency.

// Arrivals is what a phase whose events arrived at the run's rate for
// LatencyDuration saw at its partners (the far and the limited partners'
// phases).
type Arrivals struct {
	Seconds float64 `json:"seconds"`
	Rate    int     `json:"rate_per_sec"`
	// Events is how many were accepted; each is owed to every
	// subscription.
	Events int64 `json:"events"`
	// DeliveredPerSec is the deliveries that arrived while the events
	// were being sent, over the time they were sent: Rate × fan-out if
	// the platform kept up.
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	// CatchUpSeconds is from the last event sent to the last delivery
	// arriving: the backlog left when the platform did not keep up.
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	// Latency from ingest accepting an event to a partner getting it,
	// over the phase and its catch-up.
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	// NotArrived counts the deliveries that had not arrived when nothing
	// more had for 15 s; Duplicates, those that arrived twice.
	NotArrived int64 `json:"not_arrived"`
	Duplicates int64 `json:"duplicates"`
}

// FarResult is what the far-partners phase measured: events arrived at
// the run's rate for LatencyDuration while every partner took
// AnswerMS to answer each delivery.
type FarResult struct {
	Arrivals
	AnswerMS float64 `json:"answer_ms"`
	// PeakInFlight is the most deliveries one partner had in flight at
	// once; Connections how many connections the platform opened to the
	// partners during the phase.
	PeakInFlight int64 `json:"peak_in_flight"`
	Connections  int64 `json:"connections"`
}

// farPartners runs the far-partners phase against target.
func farPartners(ctx context.Context, target string, cfg Config, recv *receiver) (*FarResult, error) {
	dups0, conns0 := recv.duplicates(), recv.conns.conns.Load()
	recv.restart() // counts reset; in flight counted, arrivals timed
	recv.hold.Store(int64(cfg.PartnerLatency))
	defer func() {
		recv.hold.Store(0)
		recv.catchUp.Store(false)
	}()
	a, err := sendAndAwait(ctx, target, cfg, recv, "f", "far partners", "far catch-up", dups0)
	if err != nil {
		return nil, err
	}
	return &FarResult{Arrivals: a, AnswerMS: float64(cfg.PartnerLatency) / float64(time.Millisecond),
		PeakInFlight: recv.peak.Load(), Connections: recv.conns.conns.Load() - conns0}, ctx.Err()
}

// sendAndAwait runs a phase's events, after the receiver's reset
// (receiver.restart): it sends them at the run's rate for LatencyDuration
// (their ids prefixed prefix, its progress shown as name), waits for
// their deliveries until none has arrived for 15 s (shown as catchUp), and
// returns what arrived (dups0: the duplicates counted before the phase).
func sendAndAwait(ctx context.Context, target string, cfg Config, recv *receiver, prefix, name, catchUp string, dups0 int64) (Arrivals, error) {
	started := time.Now()
	sent, _, _, err := openLoop(ctx, at(target+"/v1/events"), cfg, cfg.LatencyDuration, prefix, name, nil)
	if err != nil {
		return Arrivals{}, err
	}
	sending := time.Since(started).Seconds()
	want := sent * int64(cfg.Fanout)
	recv.await(ctx, want, 15*time.Second, func(done float64) { cfg.Progress(catchUp, done) })
	a := Arrivals{Seconds: cfg.LatencyDuration.Seconds(), Rate: cfg.Rate, Events: sent}
	arrivals := recv.arrivals()
	in := 0
	for _, s := range arrivals {
		if s <= sending {
			in++
		}
	}
	if sending > 0 {
		a.DeliveredPerSec = float64(in) / sending
	}
	if len(arrivals) > 0 {
		a.CatchUpSeconds = max(slices.Max(arrivals)-sending, 0)
	}
	lat := recv.latencies()
	a.LatencyP50MS, a.LatencyP95MS, a.LatencyP99MS = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	a.NotArrived, a.Duplicates = max(want-recv.count(), 0), recv.duplicates()-dups0
	return a, nil
}
