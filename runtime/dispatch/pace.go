package dispatch

import (
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// A partner's pace: the bound on its deliveries in flight that the
// dispatcher learns from its answers, under its ceiling (max_in_flight,
// else PartnerConcurrency).
//
// A partner gets at most its bound ÷ its answer's time deliveries a
// second (Little's law), so one across the internet needs many in flight;
// but one that cannot take that many at once says so — it answers 429 or
// 503, or not before the timeout — and sending it as many again only
// turns its answers into retries. The dispatcher slows down for it as a
// TCP sender does for a congested path (Reno's window: additive increase,
// multiplicative decrease, with CUBIC's 0.7 for the decrease), and speeds
// up again when it recovers:
//
//   - Growth: while at least half of the bound is in flight (a partner
//     with little to receive is never given a bound it has not been
//     tested at), each answer adds 1 below the threshold — the bound
//     doubles each round trip ("slow start": a partner far away gets what
//     its deliveries need in a few round trips) — and 1/bound above it,
//     one more each round trip; but just under the bound the partner last
//     refused it stays pacePlateau round trips before trying that one
//     again (CUBIC's plateau around the window it lost, in its simplest
//     form), and once past it grows as before.
//   - Push-back: a 429, a 503 or a timeout cuts the bound to 0.7 of it
//     (paceBackOff) and sets the threshold there, once per round trip: an
//     answer to a delivery sent before the last cut says nothing of the
//     bound after it.
//   - A partner without a cut for paceForget is treated as new again (the
//     threshold forgotten), so one that was overloaded an hour ago grows
//     as fast as a new one; so is one whose breaker closes after an
//     outage (the outage's failures cut its bound to its floor).
//   - The bound holds first attempts (Run's chains, batch's keys); a
//     retry waits instead only while the partner has pushed back in the
//     last paceForget and has its bound in flight (Dispatcher.atBound).
//
// A partner with a limit of its own (say, 10 requests at once, the rest
// answered 429) is held in a saw-tooth just under it: cut to 7 or 8 when
// it passes, then one more each round trip up to 10, where it stays eight
// round trips before trying 11 again, so few of its answers are 429s
// (TestPace measures how few against the fixed bound; whp bench's
// --partner-limit phase, what it does for the deliveries' latency).
// Without the plateau the tooth was three round trips long, and a partner
// taking 8 at once answered 429 to 3.7 % of its requests in
// TestPaceOwnLimit's model (4.3 % in whp bench --partner-limit 8); with
// it, 1.1 %, and a partner taking 4, 2.4 % where it was 9.7 %.
//
// Decided: no cut for answers that slow down without a push-back (the
// round-trip-time signal of Netflix's concurrency-limits or Vector's
// adaptive request concurrency). It was built and measured, and it read
// the noise of a busy machine — a collection, a scheduler's delay — as a
// partner's queue: in whp bench's default run it cut the bound of the
// partner next door through the burst, and the dispatcher fell behind
// ingest (4,200–4,400 events accepted a second, 3,300–3,500 delivered,
// where the fixed bound kept pace); when that partner then answered in
// 100 ms (the far-partners phase), it held it at 1 or 2 in flight, ten
// deliveries a second, for the half-minute its averages took to accept
// the new time. A webhook partner's answers vary for reasons of
// its own; what it says (429, 503) and what it fails to say in time are
// the signals it means.
type pace struct {
	mu       sync.Mutex
	limit    float64 // the bound, unclamped by the ceiling (which may change)
	thresh   float64 // growth slows from 1 an answer to 1 a round trip above it
	inFlight int
	cut      time.Time // the last cut: answers to what was sent before it do not cut again
	// refused is the bound that was pushed back at the last cut (0: none
	// to remember), and plateau the round trips spent just under it
	// since: the bound does not reach it again before pacePlateau.
	refused, plateau float64
}

const (
	// paceInitial is a partner's bound before its answers say otherwise:
	// the static default before round 19, which near partners never
	// needed more than ("Partners far away", docs/benchmarks.md).
	paceInitial = 16
	// paceBackOff is what a push-back multiplies the bound by: CUBIC's
	// 0.7 (RFC 8312) rather than Reno's ½, since a partner's limit is its
	// own and steady — a pool of workers, a quota — and a bound halved
	// from just over it spends round trips well under it, its
	// deliveries waiting in the dispatcher (whp bench --partner-limit
	// 10 at 400 events a second: p50 29 ms at ½).
	paceBackOff = 0.7
	// paceForget is how long after its last cut a partner is treated as
	// new again.
	paceForget = 30 * time.Second
	// pacePlateau is how many round trips the bound stays just under the
	// one a partner last refused before it tries that one again. In
	// TestPaceOwnLimit's model, the 429s of a partner taking 8 at once
	// went from 3.7 % of its requests to 1.7 % with 4, 1.1 % with 8, 0.6 %
	// with 16, and those of one taking 4 from 9.7 % to 3.9, 2.4 and 1.3 %.
	// Each round trip of it is a wait before a partner that has grown is
	// given more, once after each cut: 8 is 160 ms at 20 ms a round trip,
	// 8 s at a second.
	pacePlateau = 8
)

func newPace() *pace { return &pace{limit: paceInitial, thresh: math.Inf(1)} }

// bound is the partner's bound under ceiling (at least 1).
func (p *pace) bound(ceiling int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(1, min(ceiling, int(p.limit)))
}

// held reports whether a retry should wait: the partner has pushed back
// in the last paceForget and has bound (its bound now) in flight.
func (p *pace) held(bound int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.cut.IsZero() && time.Since(p.cut) <= paceForget && p.inFlight >= bound
}

// paceHold is how long a retry waits while its partner has its bound in
// flight: 1–2 s, jittered so that the retries held together do not come
// due together (the retry tiers' first tier past the one of what is due
// at once).
func paceHold() time.Duration {
	return time.Second + rand.N(time.Second)
}

// begin counts an attempt started and returns the number in flight with
// it, for end.
func (p *pace) begin() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight++
	return p.inFlight
}

// answer is what one attempt said of the partner's pace.
type answer int

const (
	// unanswered: no answer that speaks of the partner's load (the
	// connection failed, or the request was never sent). Not a sample.
	unanswered answer = iota
	// answered: a response other than a push-back.
	answered
	// pushedBack: 429, 503, or no answer before the timeout.
	pushedBack
)

// end records an attempt begun with inFlight in flight (begin's), sent at
// sent and answered (or failed) at at with a, and moves the bound under
// ceiling.
func (p *pace) end(sent, at time.Time, inFlight int, a answer, ceiling int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	limit := min(float64(ceiling), p.limit)
	if !p.cut.IsZero() && sent.Sub(p.cut) > paceForget {
		p.thresh, p.cut, p.refused = math.Inf(1), time.Time{}, 0
	}
	switch {
	case a == unanswered:
		return
	case a == pushedBack:
		if sent.After(p.cut) {
			// What was refused is the attempt's place among those in
			// flight (begin's count); the bound has grown by the answers
			// that came back before it, past what the partner took.
			p.refused, p.plateau = float64(inFlight), 0
			p.limit = max(1, limit*paceBackOff)
			p.thresh = p.limit
			p.cut = at
		}
		return
	case float64(inFlight)*2 < limit:
		p.limit = limit // not tested at its bound: no news of it
		return
	case limit < p.thresh:
		limit++
	case int(limit) < int(p.refused) && int(limit+1/limit) >= int(p.refused) && p.plateau < pacePlateau:
		// Just under the bound that was refused: stay a while.
		p.plateau += 1 / math.Floor(limit) // the bound's answers make a round trip
		p.limit = limit
		return
	default:
		limit += 1 / limit
		if int(limit) >= int(p.refused) {
			p.refused = 0 // past it: growth as before until the next cut
		}
	}
	p.limit = min(float64(ceiling), limit)
}

// answerOf is what an attempt's response or error says of its partner's
// pace.
func answerOf(resp *http.Response, err error) answer {
	var ne net.Error
	switch {
	case err != nil && errors.As(err, &ne) && ne.Timeout():
		return pushedBack
	case err != nil:
		return unanswered
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusServiceUnavailable:
		return pushedBack
	}
	return answered
}
