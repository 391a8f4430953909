package breaker

import (
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }

func newTest(cfg Config) (*Breaker, *clock, *[]string) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	b := New(cfg)
	b.now = c.now
	var mu sync.Mutex
	var events []string
	b.OnChange = func(p string, from, to State) {
		mu.Lock()
		events = append(events, p+":"+string(from)+"→"+string(to))
		mu.Unlock()
	}
	return b, c, &events
}

func TestBreakerCycle(t *testing.T) {
	b, c, events := newTest(Config{Window: 10 * time.Second, MinRequests: 4, FailureRatio: 0.5, CoolDown: 5 * time.Second})
	// Three failures are below the minimum of requests: still closed.
	for range 3 {
		if ok, _ := b.Allow("acme"); !ok {
			t.Fatal("closed breaker refused")
		}
		b.Record("acme", false)
	}
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("opened before MinRequests")
	}
	b.Record("acme", false) // 4 of 4 failed
	ok, retryAt := b.Allow("acme")
	if ok || !retryAt.Equal(c.t.Add(5*time.Second)) {
		t.Fatalf("open breaker: ok %v retry at %v", ok, retryAt)
	}
	// Another partner is not affected.
	if ok, _ := b.Allow("beta"); !ok {
		t.Error("beta refused because acme failed")
	}
	// After the cool-down, one probe; a second caller waits.
	c.add(5 * time.Second)
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("no probe after the cool-down")
	}
	if ok, _ := b.Allow("acme"); ok {
		t.Error("a second probe went out while half-open")
	}
	b.Record("acme", false) // probe failed: open again
	if ok, _ := b.Allow("acme"); ok {
		t.Error("a failed probe did not re-open the breaker")
	}
	c.add(5 * time.Second)
	b.Allow("acme")
	b.Record("acme", true) // probe succeeded: closed
	if ok, _ := b.Allow("acme"); !ok {
		t.Error("a successful probe did not close the breaker")
	}
	want := []string{"acme:closed→open", "acme:open→half-open", "acme:half-open→open", "acme:open→half-open", "acme:half-open→closed"}
	if len(*events) != len(want) {
		t.Fatalf("transitions = %v, want %v", *events, want)
	}
	for i := range want {
		if (*events)[i] != want[i] {
			t.Errorf("transition %d = %s, want %s", i, (*events)[i], want[i])
		}
	}
}

func TestBreakerWindowForgets(t *testing.T) {
	b, c, _ := newTest(Config{Window: 10 * time.Second, MinRequests: 4, FailureRatio: 0.5})
	for range 3 {
		b.Record("acme", false)
	}
	c.add(11 * time.Second) // those failures leave the window
	b.Record("acme", false)
	b.Record("acme", true)
	b.Record("acme", true)
	b.Record("acme", true)
	if ok, _ := b.Allow("acme"); !ok {
		t.Error("old failures outside the window opened the breaker")
	}
	s := b.Snapshots()
	if len(s) != 1 || s[0].Failures != 1 || s[0].Successes != 3 || s[0].State != Closed {
		t.Errorf("snapshot = %+v", s)
	}
}

func TestBreakerLongFailure(t *testing.T) {
	b, c, _ := newTest(Config{Window: time.Minute, MinRequests: 1, CoolDown: time.Hour, DisableAfter: 5 * 24 * time.Hour})
	var reported []string
	b.OnLongFailure = func(p string, since time.Time) { reported = append(reported, p) }
	b.Allow("acme")
	b.Record("acme", false)
	for range 5 * 24 {
		c.add(time.Hour)
		if ok, _ := b.Allow("acme"); ok {
			b.Record("acme", false)
		}
	}
	c.add(time.Minute)
	b.Allow("acme")
	b.Allow("acme")
	if len(reported) != 1 || reported[0] != "acme" {
		t.Errorf("long failure reports = %v, want acme once", reported)
	}
}

// A busy partner that goes down opens its breaker after
// ConsecutiveFailures in a row, though the window's successes keep the
// ratio far below FailureRatio; a success between failures starts the
// count again.
func TestConsecutiveFailures(t *testing.T) {
	b, _, events := newTest(Config{Window: time.Minute, MinRequests: 10, FailureRatio: 0.5, ConsecutiveFailures: 5, CoolDown: 30 * time.Second})
	for range 1000 {
		b.Record("acme", true)
	}
	for range 4 {
		b.Record("acme", false)
	}
	b.Record("acme", true)
	for range 4 {
		b.Record("acme", false)
	}
	if ok, _ := b.Allow("acme"); !ok || len(*events) != 0 {
		t.Fatalf("opened on failures a success interrupted: %v", *events)
	}
	b.Record("acme", false) // the fifth in a row
	if ok, _ := b.Allow("acme"); ok {
		t.Fatal("still closed after five failures in a row")
	}
	if got := *events; len(got) != 1 || got[0] != "acme:closed→open" {
		t.Errorf("transitions %v", got)
	}
	// The default is ten in a row.
	d, _, _ := newTest(Config{})
	for i := range 100 {
		if ok, _ := d.Allow("beta"); !ok {
			t.Fatalf("open after %d failures", i)
		}
		d.Record("beta", true)
	}
	for range 9 {
		d.Record("beta", false)
	}
	if ok, _ := d.Allow("beta"); !ok {
		t.Fatal("open after nine failures in a row")
	}
	d.Record("beta", false)
	if ok, _ := d.Allow("beta"); ok {
		t.Error("closed after ten failures in a row")
	}
}

// While half-open, a retry leaves the probe to a first attempt for a
// quarter of the cool-down; then it may probe itself. Probing reports
// each step.
func TestRetriesProbeLast(t *testing.T) {
	b, c, _ := newTest(Config{MinRequests: 1, CoolDown: 8 * time.Second})
	b.Record("acme", false) // open
	c.add(8 * time.Second)
	ok, retryAt := b.AllowRetry("acme")
	if ok || !retryAt.Equal(c.t.Add(minAskAgain)) {
		t.Fatalf("a retry probed first: ok %v, retry at +%v", ok, retryAt.Sub(c.t))
	}
	// It asks again as often as the wait has lasted, until the grace ends.
	c.add(1500 * time.Millisecond)
	if ok, retryAt := b.AllowRetry("acme"); ok || !retryAt.Equal(c.t.Add(500*time.Millisecond)) {
		t.Fatalf("1.5 s into the grace: ok %v, retry at +%v, want the grace's end", ok, retryAt.Sub(c.t))
	}
	c.add(-1500 * time.Millisecond)
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("a first attempt did not probe")
	}
	b.Record("acme", false) // the probe failed: open again
	if open, _, next, _ := b.Probing("acme"); !open || !next.Equal(c.t.Add(8*time.Second)) {
		t.Errorf("open again: Probing = %v, next +%v", open, next.Sub(c.t))
	}
	c.add(8 * time.Second)
	if ok, _ := b.AllowRetry("acme"); ok {
		t.Fatal("a retry probed first after a failed probe")
	}
	if open, half, next, probing := b.Probing("acme"); !open || !half.Equal(c.t) || !next.IsZero() || probing {
		t.Errorf("half-open, no probe out: Probing = %v %v %v %v", open, half, next, probing)
	}
	c.add(2 * time.Second) // no first attempt came
	if ok, _ := b.AllowRetry("acme"); !ok {
		t.Fatal("a retry could not probe after the grace")
	}
	if ok, _ := b.Allow("acme"); ok {
		t.Error("a second probe went out")
	}
	if open, _, _, probing := b.Probing("acme"); !open || !probing {
		t.Errorf("a probe out: Probing = %v, probing %v", open, probing)
	}
	b.Record("acme", true) // closed: retries go out at once
	if open, _, _, _ := b.Probing("acme"); open {
		t.Error("closed, Probing says open")
	}
	if ok, _ := b.AllowRetry("acme"); !ok {
		t.Error("a closed breaker held a retry")
	}
}

// A delivery refused while a probe is out asks again as soon as the probe
// has lasted, from 100 ms up to a quarter of the cool-down: what was held
// behind a probe answered in milliseconds goes out a moment after the
// breaker closes.
func TestAskAgainWhileProbing(t *testing.T) {
	b, c, _ := newTest(Config{MinRequests: 1, CoolDown: 8 * time.Second})
	b.Record("acme", false)
	c.add(8 * time.Second)
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("no probe")
	}
	for _, step := range []struct{ after, want time.Duration }{
		{0, minAskAgain}, {time.Second, time.Second}, {5 * time.Second, 2 * time.Second},
	} {
		c.add(step.after)
		if ok, retryAt := b.Allow("acme"); ok || retryAt.Sub(c.t) != step.want {
			t.Errorf("probe out: ok %v, ask again in %v, want %v", ok, retryAt.Sub(c.t), step.want)
		}
	}
}
