package dispatch

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"syscall"
	"testing"
	"time"
)

// round is one round trip of a simulated partner: the dispatcher sends
// n deliveries at once, at t0 + the round trips before it, and the partner
// answers each (its index i of n) after some time.
type partnerModel func(i, n int) (answer, time.Duration)

// simulate runs rounds round trips of a partner against p, the dispatcher
// having demand deliveries to send each round (0: as many as the bound
// allows). It returns how many were sent and pushed back, and the bound at
// each round.
func simulate(p *pace, ceiling, rounds, demand int, t time.Time, partner partnerModel) (sent, pushed int, bounds []int) {
	for range rounds {
		n := p.bound(ceiling)
		if demand > 0 {
			n = min(n, demand)
		}
		bounds = append(bounds, p.bound(ceiling))
		for range n {
			p.begin()
		}
		longest := time.Millisecond
		for i := range n {
			a, rtt := partner(i, n)
			p.end(t, t.Add(rtt), n, a, ceiling)
			sent++
			if a == pushedBack {
				pushed++
			}
			longest = max(longest, rtt)
		}
		t = t.Add(longest)
	}
	return sent, pushed, bounds
}

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// TestPaceFarPartner: a partner whose answers take 100 ms (give or take
// 30) however many are in flight gets what its deliveries need in a few
// round trips — up to its ceiling — and is never cut.
func TestPaceFarPartner(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	_, pushed, bounds := simulate(newPace(), 256, 50, 0, t0, func(int, int) (answer, time.Duration) {
		return answered, 100*time.Millisecond + time.Duration(rng.Int64N(int64(30*time.Millisecond)))
	})
	if pushed != 0 {
		t.Fatalf("pushed back %d", pushed)
	}
	for i, b := range bounds[1:] {
		if b < bounds[i] {
			t.Fatalf("the bound fell from %d to %d (round %d) for a partner that answers as fast at any load: %v", bounds[i], b, i+1, bounds)
		}
	}
	if bounds[4] != 256 {
		t.Errorf("bounds %v: want the ceiling, 256, at the fifth round trip (doubling from 16)", bounds)
	}
}

// TestPaceOwnLimit: a partner that takes 10 at once and answers 429 to
// the rest is held just under its limit, and few of its answers are 429s
// — where a static bound of 64 would have 54 of every 64 answered so.
func TestPaceOwnLimit(t *testing.T) {
	p := newPace()
	partner := func(i, n int) (answer, time.Duration) {
		if i >= 10 {
			return pushedBack, time.Millisecond
		}
		return answered, 20 * time.Millisecond
	}
	simulate(p, 64, 10, 0, t0, partner) // the first overshoot, from 16
	sent, pushed, bounds := simulate(p, 64, 300, 0, t0.Add(time.Second), partner)
	if share := float64(pushed) / float64(sent); share > 0.025 {
		t.Errorf("%d of %d answered 429 (%.1f %%); want at most 2.5 %%: %v", pushed, sent, 100*share, bounds)
	}
	used := 0
	for _, b := range bounds {
		if b < 7 || b > 11 {
			t.Fatalf("bound %d: want it held between 7 and 11 (the partner's 10, cut to 0.7 when passed): %v", b, bounds)
		}
		used += min(b, 10)
	}
	if mean := float64(used) / float64(len(bounds)); mean < 9 {
		t.Errorf("%.1f of the partner's 10 used on average; want at least 9: %v", mean, bounds)
	}
}

// TestPacePlateau: after a cut the bound climbs back to just under the
// one the partner refused and stays there pacePlateau round trips before
// trying it again; a partner that has grown meanwhile takes it, and the
// bound grows past as before, one a round trip.
func TestPacePlateau(t *testing.T) {
	capacity := 10
	partner := func(i, n int) (answer, time.Duration) {
		if i >= capacity {
			return pushedBack, time.Millisecond
		}
		return answered, 20 * time.Millisecond
	}
	p := newPace()
	_, _, bounds := simulate(p, 64, 40, 0, t0, partner)
	// From the first time 11 is refused: back up to 10, then 10 for
	// eight round trips, then 11 tried again.
	last := slices.Index(bounds, 11)
	for i := last + 1; i < len(bounds) && bounds[i] < 10; i++ {
		last = i
	}
	run := 0
	for i := last + 1; i < len(bounds) && bounds[i] == 10; i++ {
		run++
	}
	if run < 8 || run > 10 { // pacePlateau's 8, and a round trip or two to reach it
		t.Errorf("the bound stayed at 10, under the 11 refused, for %d round trips; want 8: %v", run, bounds)
	}
	// The partner grows to 20: once 11 is taken the bound grows one a
	// round trip, with no plateau until the next refusal.
	capacity = 20
	_, _, bounds = simulate(p, 64, 30, 0, t0.Add(2*time.Second), partner)
	if i, j := slices.Index(bounds, 20), slices.Index(bounds, 12); i < 0 || j < 0 || i-j > 10 {
		t.Errorf("from 12 to 20 in %d round trips; want one a round trip: %v", i-j, bounds)
	}
}

// TestPaceSlowerPartner: a partner whose answers slow down as more are in
// flight (8 workers of 10 ms each, queueing the rest) or for good (from
// 10 ms to 100) but never push back is not cut: it says nothing it means
// (pace.go's "Decided").
func TestPaceSlowerPartner(t *testing.T) {
	p := newPace()
	_, _, bounds := simulate(p, 64, 20, 0, t0, func(_, n int) (answer, time.Duration) {
		return answered, time.Duration(max(1, float64(n)/8) * float64(10*time.Millisecond))
	})
	if !slices.IsSorted(bounds) || bounds[len(bounds)-1] != 64 {
		t.Errorf("bounds %v for a queueing partner: want them growing to the ceiling", bounds)
	}
	_, _, bounds = simulate(p, 64, 5, 0, t0.Add(time.Minute), func(int, int) (answer, time.Duration) { return answered, 100 * time.Millisecond })
	if slices.Min(bounds) != 64 {
		t.Errorf("bounds %v for a partner ten times slower: want the ceiling kept", bounds)
	}
}

// TestPacePushBack: a 429 (or a 503, or a timeout) cuts the bound to 0.7
// of it once for every answer to what was sent before the cut; what is
// sent after it cuts it again.
func TestPacePushBack(t *testing.T) {
	p := newPace()
	simulate(p, 64, 1, 0, t0, func(int, int) (answer, time.Duration) { return pushedBack, 5 * time.Millisecond })
	if b := p.bound(64); b != 11 {
		t.Fatalf("bound %d after 16 pushed back at once; want 11 (16 × 0.7)", b)
	}
	simulate(p, 64, 1, 0, t0.Add(time.Second), func(int, int) (answer, time.Duration) { return pushedBack, 5 * time.Millisecond })
	if b := p.bound(64); b != 7 {
		t.Fatalf("bound %d after a second round pushed back; want 7 (11.2 × 0.7)", b)
	}
	simulate(p, 64, 10, 0, t0.Add(2*time.Second), func(int, int) (answer, time.Duration) { return pushedBack, 5 * time.Millisecond })
	if b := p.bound(64); b != 1 {
		t.Fatalf("bound %d after every answer pushed back; want 1, never 0", b)
	}
	// Unanswered (a refused connection: the breaker's business) says
	// nothing of the bound.
	p = newPace()
	simulate(p, 64, 5, 0, t0, func(int, int) (answer, time.Duration) { return unanswered, 0 })
	if b := p.bound(64); b != paceInitial {
		t.Errorf("bound %d after refused connections; want %d", b, paceInitial)
	}
	// Thirty seconds after its last cut, a partner grows as a new one
	// does, doubling each round trip (from 11.2).
	p = newPace()
	simulate(p, 64, 1, 0, t0, func(int, int) (answer, time.Duration) { return pushedBack, 5 * time.Millisecond })
	_, _, bounds := simulate(p, 64, 3, 0, t0.Add(paceForget+time.Second), func(int, int) (answer, time.Duration) { return answered, 5 * time.Millisecond })
	if !slices.Equal(bounds, []int{11, 22, 44}) {
		t.Errorf("bounds %v after %v without a cut; want 11, 22, 44", bounds, paceForget)
	}
}

// TestPaceDemand: a partner with 4 deliveries at a time to receive keeps
// the bound it started with, however fast it answers; a lower ceiling
// (its max_in_flight lowered) holds at once.
func TestPaceDemand(t *testing.T) {
	p := newPace()
	_, _, bounds := simulate(p, 64, 100, 4, t0, func(int, int) (answer, time.Duration) { return answered, time.Millisecond })
	if slices.Max(bounds) != paceInitial || slices.Min(bounds) != paceInitial {
		t.Errorf("bounds %v with 4 to send at a time; want %d throughout", bounds, paceInitial)
	}
	_, _, bounds = simulate(p, 64, 10, 0, t0.Add(time.Minute), func(int, int) (answer, time.Duration) { return answered, time.Millisecond })
	if bounds[len(bounds)-1] != 64 {
		t.Fatalf("bounds %v with as many to send as allowed; want 64", bounds)
	}
	if b := p.bound(10); b != 10 {
		t.Errorf("bound %d under a ceiling of 10", b)
	}
	simulate(p, 10, 1, 0, t0.Add(2*time.Minute), func(int, int) (answer, time.Duration) { return pushedBack, time.Millisecond })
	if b := p.bound(64); b != 7 {
		t.Errorf("bound %d after a cut under a ceiling of 10; want 7 (0.7 of the ceiling, not of 64)", b)
	}
}

// TestAnswerOf: what counts as a partner pushing back — 429, 503, a
// timeout — and what says nothing of its pace (a refused connection: the
// breaker's business).
func TestAnswerOf(t *testing.T) {
	timeout := &url.Error{Op: "Post", URL: "https://partner.example", Err: context.DeadlineExceeded}
	refused := &url.Error{Op: "Post", URL: "https://partner.example", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}
	for _, c := range []struct {
		code int
		err  error
		want answer
	}{
		{204, nil, answered}, {500, nil, answered}, {404, nil, answered}, {408, nil, answered},
		{429, nil, pushedBack}, {503, nil, pushedBack},
		{0, timeout, pushedBack}, {0, refused, unanswered},
	} {
		var resp *http.Response
		if c.err == nil {
			resp = &http.Response{StatusCode: c.code}
		}
		if got := answerOf(resp, c.err); got != c.want {
			t.Errorf("answerOf(%d, %v) = %d, want %d", c.code, c.err, got, c.want)
		}
	}
}
