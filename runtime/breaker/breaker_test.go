package breaker

import (
	"strings"
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
		b.Record("acme", Failure, 0)
	}
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("opened before MinRequests")
	}
	b.Record("acme", Failure, 0) // 4 of 4 failed
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
	b.Record("acme", Failure, 0) // probe failed: open again
	if ok, _ := b.Allow("acme"); ok {
		t.Error("a failed probe did not re-open the breaker")
	}
	c.add(5 * time.Second)
	b.Allow("acme")
	b.Record("acme", Success, 0) // probe succeeded: closed
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
		b.Record("acme", Failure, 0)
	}
	c.add(11 * time.Second) // those failures leave the window
	b.Record("acme", Failure, 0)
	b.Record("acme", Success, 0)
	b.Record("acme", Success, 0)
	b.Record("acme", Success, 0)
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
	b.Record("acme", Failure, 0)
	for range 5 * 24 {
		c.add(time.Hour)
		if ok, _ := b.Allow("acme"); ok {
			b.Record("acme", Failure, 0)
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
		b.Record("acme", Success, 0)
	}
	for range 4 {
		b.Record("acme", Failure, 0)
	}
	b.Record("acme", Success, 0)
	for range 4 {
		b.Record("acme", Failure, 0)
	}
	if ok, _ := b.Allow("acme"); !ok || len(*events) != 0 {
		t.Fatalf("opened on failures a success interrupted: %v", *events)
	}
	b.Record("acme", Failure, 0) // the fifth in a row
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
		d.Record("beta", Success, 0)
	}
	for range 9 {
		d.Record("beta", Failure, 0)
	}
	if ok, _ := d.Allow("beta"); !ok {
		t.Fatal("open after nine failures in a row")
	}
	d.Record("beta", Failure, 0)
	if ok, _ := d.Allow("beta"); ok {
		t.Error("closed after ten failures in a row")
	}
}

// While half-open, a retry leaves the probe to a first attempt for a
// quarter of the cool-down; then it may probe itself. Probing reports
// each step.
func TestRetriesProbeLast(t *testing.T) {
	b, c, _ := newTest(Config{MinRequests: 1, CoolDown: 8 * time.Second})
	b.Record("acme", Failure, 0) // open
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
	b.Record("acme", Failure, 0) // the probe failed: open again
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
	b.Record("acme", Success, 0) // closed: retries go out at once
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
	b.Record("acme", Failure, 0)
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

// The answer that opens the breaker sets when it probes, if it carries a
// Retry-After: sooner than the cool-down or later, from MinCoolDown up to
// MaxCoolDown; without one, the cool-down. The snapshot says which, and
// why it opened.
func TestRetryAfterSetsCoolDown(t *testing.T) {
	for _, c := range []struct {
		name       string
		retryAfter time.Duration
		want       time.Duration
		asked      bool
	}{
		{"none", 0, 30 * time.Second, false},
		{"sooner", 3 * time.Second, 3 * time.Second, true},
		{"later", 10 * time.Minute, 10 * time.Minute, true},
		{"under the floor", 200 * time.Millisecond, MinCoolDown, true},
		{"over the bound", 3 * time.Hour, time.Hour, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, clk, _ := newTest(Config{})
			for range 9 {
				b.Record("acme", Failure, 0)
			}
			b.Record("acme", Failure, c.retryAfter) // the tenth opens it
			ok, retryAt := b.Allow("acme")
			if ok || retryAt.Sub(clk.t) != c.want {
				t.Fatalf("open: ok %v, probe in %v, want %v", ok, retryAt.Sub(clk.t), c.want)
			}
			if _, _, next, _ := b.Probing("acme"); !next.Equal(retryAt) {
				t.Errorf("Probing's next %v, Allow's %v", next, retryAt)
			}
			s := b.Snapshots()[0]
			if !s.ProbeAt.Equal(retryAt) || s.PartnerAsked != c.asked || s.Reason != "10 failures in a row" {
				t.Errorf("snapshot %+v", s)
			}
			// The grace is a quarter of the shorter of the two waits.
			if g := b.ProbeGrace("acme"); g != min(c.want, 30*time.Second)/4 {
				t.Errorf("grace %v", g)
			}
			clk.add(c.want - time.Millisecond)
			if ok, _ := b.Allow("acme"); ok {
				t.Fatal("probed before the wait was over")
			}
			clk.add(time.Millisecond)
			if ok, _ := b.Allow("acme"); !ok {
				t.Fatal("no probe when the wait was over")
			}
			// The probe fails without a Retry-After: the cool-down.
			b.Record("acme", Failure, 0)
			if _, retryAt := b.Allow("acme"); retryAt.Sub(clk.t) != 30*time.Second {
				t.Errorf("after a failed probe with no Retry-After: probe in %v", retryAt.Sub(clk.t))
			}
			if s := b.Snapshots()[0]; s.PartnerAsked || s.Reason != "a probe was answered with a failure" || !strings.HasSuffix(s.Describe(), "(the cool-down)") {
				t.Errorf("snapshot after the failed probe %+v: %s", s, s.Describe())
			}
		})
	}
}

// A Retry-After shorter than the cool-down is taken at its word once;
// each probe that fails anyway doubles it, up to the cool-down. A longer
// one is honoured every time. Closing starts the count again.
func TestRetryAfterDoubles(t *testing.T) {
	b, clk, _ := newTest(Config{ConsecutiveFailures: 1})
	b.Record("acme", Failure, 3*time.Second)
	for _, want := range []time.Duration{3, 6, 12, 24, 30, 30} {
		ok, retryAt := b.Allow("acme")
		if ok || retryAt.Sub(clk.t) != want*time.Second {
			t.Fatalf("ok %v, probe in %v, want %vs", ok, retryAt.Sub(clk.t), want)
		}
		clk.add(want * time.Second)
		if ok, _ := b.Allow("acme"); !ok {
			t.Fatal("no probe")
		}
		b.Record("acme", Failure, 3*time.Second) // "3 s", again
	}
	// A Retry-After past the cool-down: as asked, each time.
	for range 2 {
		if _, retryAt := b.Allow("acme"); retryAt.Sub(clk.t) != 30*time.Second {
			t.Fatalf("probe in %v", retryAt.Sub(clk.t))
		}
		clk.add(30 * time.Second)
		b.Allow("acme")
		b.Record("acme", Failure, 2*time.Minute)
		if _, retryAt := b.Allow("acme"); retryAt.Sub(clk.t) != 2*time.Minute {
			t.Fatalf("a longer Retry-After after failed probes: probe in %v, want 2m", retryAt.Sub(clk.t))
		}
		clk.add(2 * time.Minute)
		b.Allow("acme")
		b.Record("acme", Failure, 3*time.Second)
	}
	// Closed, then open again: 3 s at its word again.
	clk.add(time.Minute)
	b.Allow("acme")
	b.Record("acme", Success, 0)
	b.Record("acme", Failure, 3*time.Second)
	if _, retryAt := b.Allow("acme"); retryAt.Sub(clk.t) != 3*time.Second {
		t.Errorf("after closing: probe in %v, want 3s", retryAt.Sub(clk.t))
	}
}

// 429s open the breaker only when they are all a partner answers, for
// PushBackSpan: a burst of them within a round trip (a partner with a
// limit of its own, sent more than it takes) does not, and a success
// starts the count again. A probe answered 429 re-opens it, for its
// Retry-After.
func TestPushBacks(t *testing.T) {
	b, clk, events := newTest(Config{})
	for range 50 { // a burst over the partner's limit, within 50 ms
		b.Record("acme", PushBack, time.Second)
		clk.add(time.Millisecond)
	}
	if ok, _ := b.Allow("acme"); !ok || len(*events) != 0 {
		t.Fatalf("a burst of 429s opened the breaker: %v", *events)
	}
	b.Record("acme", Success, 0)
	for range 9 { // nine over two seconds
		b.Record("acme", PushBack, 0)
		clk.add(250 * time.Millisecond)
	}
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("nine 429s opened it")
	}
	b.Record("acme", PushBack, 5*time.Minute) // the tenth, 2.25 s after the first
	ok, retryAt := b.Allow("acme")
	if ok || retryAt.Sub(clk.t) != 5*time.Minute {
		t.Fatalf("ten 429s over 2.25 s: ok %v, probe in %v, want 5m", ok, retryAt.Sub(clk.t))
	}
	if s := b.Snapshots()[0]; s.Reason != "10 answers 429 in a row over 2.3s" || !s.PartnerAsked || s.FailingSince.IsZero() {
		t.Errorf("snapshot %+v", s)
	}
	describe := "opened at " + clk.t.UTC().Format("15:04:05Z07:00") + ": 10 answers 429 in a row over 2.3s; next probe at " +
		clk.t.Add(5*time.Minute).UTC().Format("15:04:05Z07:00") + " (as the partner's Retry-After asked)"
	if got := b.Snapshots()[0].Describe(); got != describe {
		t.Errorf("Describe() = %q, want %q", got, describe)
	}
	// 429s and failures are counted apart: the failure streak is empty.
	if s := b.Snapshots()[0]; s.Failures != 0 {
		t.Errorf("429s counted as failures: %+v", s)
	}
	clk.add(5 * time.Minute)
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("no probe")
	}
	b.Record("acme", PushBack, 2*time.Second) // the quota is still spent: 2 s, doubled for the failed probe
	if ok, retryAt := b.Allow("acme"); ok || retryAt.Sub(clk.t) != 4*time.Second {
		t.Fatalf("a probe answered 429: ok %v, probe in %v, want 4s", ok, retryAt.Sub(clk.t))
	}
	clk.add(4 * time.Second)
	if ok, _ := b.Allow("acme"); !ok {
		t.Fatal("no second probe")
	}
	b.Record("acme", Success, 0)
	want := []string{"acme:closed→open", "acme:open→half-open", "acme:half-open→open", "acme:open→half-open", "acme:half-open→closed"}
	if got := *events; len(got) != len(want) {
		t.Fatalf("transitions %v, want %v", got, want)
	} else {
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("transition %d: %s, want %s", i, got[i], want[i])
			}
		}
	}
	if s := b.Snapshots()[0]; s.State != Closed || s.Reason != "" || !s.ProbeAt.IsZero() || s.Describe() != "" {
		t.Errorf("closed: snapshot %+v", s)
	}
	// A partner never seen is closed, and not added by asking.
	if s := b.Snapshot("nobody"); s.State != Closed || len(b.Snapshots()) != 1 {
		t.Errorf("Snapshot of a partner never seen: %+v; %d partners", s, len(b.Snapshots()))
	}
}
