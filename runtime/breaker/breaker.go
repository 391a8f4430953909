// Package breaker is the circuit breaker per partner. Closed, deliveries
// go out and their outcomes are counted over a sliding window; when the
// failure ratio reaches the threshold (with at least MinRequests in the
// window), or ConsecutiveFailures attempts in a row have failed, it
// opens: deliveries are held, not attempted, for CoolDown; then
// half-open: a few probes go out — first attempts rather than retries,
// where there are some (AllowRetry) — and their outcome closes or
// re-opens it. A partner that keeps failing for DisableAfter is reported,
// and the dispatcher disables its subscriptions.
//
// State is per process: each dispatcher replica judges the partner from
// what it sees, which is what matters for its own traffic.
package breaker

import (
	"sort"
	"sync"
	"time"
)

// Config tunes the breaker; zero fields take the defaults named.
type Config struct {
	// Window over which outcomes are counted. Default 60 s.
	Window time.Duration
	// MinRequests in the window before the breaker may open. Default 10.
	MinRequests int
	// FailureRatio at or above which it opens. Default 0.5.
	FailureRatio float64
	// ConsecutiveFailures in a row open it too, whatever the window
	// holds. Default 10. The ratio alone is slow to see a busy partner go
	// down: after a minute of successes at 100 a second it takes 6,000
	// failed attempts to reach half, each a POST to a dead endpoint and,
	// past the first, a retry pushed down the schedule (whp bench --outage
	// measured 6,785 failed attempts in a 10 s outage at 400 deliveries a
	// second, and the last of the backlog arriving 5 minutes after the
	// partner was back; docs/benchmarks.md). Ten failures with no success
	// between them is an outage for any partner: one failing one attempt
	// in five does that once in ten million.
	ConsecutiveFailures int
	// CoolDown: how long it stays open before probing. Default 30 s.
	CoolDown time.Duration
	// Probes allowed at once while half-open. Default 1.
	Probes int
	// DisableAfter: a partner failing (open or half-open) for this long
	// is reported through OnLongFailure. Default 5 days.
	DisableAfter time.Duration
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.MinRequests <= 0 {
		c.MinRequests = 10
	}
	if c.FailureRatio <= 0 {
		c.FailureRatio = 0.5
	}
	if c.ConsecutiveFailures <= 0 {
		c.ConsecutiveFailures = 10
	}
	if c.CoolDown <= 0 {
		c.CoolDown = DefaultCoolDown
	}
	if c.Probes <= 0 {
		c.Probes = 1
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = 5 * 24 * time.Hour
	}
}

// DefaultCoolDown is Config.CoolDown's default.
const DefaultCoolDown = 30 * time.Second

// State of a partner's breaker.
type State string

// States.
const (
	Closed   State = "closed"
	Open     State = "open"
	HalfOpen State = "half-open"
)

const buckets = 10

type partner struct {
	state        State
	succ, fail   [buckets]int
	streak       int       // failures since the last success
	bucketStart  time.Time // start of the newest bucket
	head         int
	openedAt     time.Time
	halfOpenedAt time.Time
	probeSentAt  time.Time // the last probe's
	failingSince time.Time
	inFlight     int // probes out while half-open
	reported     bool
}

// Breaker holds the breakers of all partners. Safe for concurrent use.
type Breaker struct {
	cfg Config
	now func() time.Time
	// OnChange, if set, is called (outside the lock) on every transition.
	OnChange func(partner string, from, to State)
	// OnLongFailure, if set, is called once when a partner has been
	// failing for DisableAfter.
	OnLongFailure func(partner string, since time.Time)

	mu       sync.Mutex
	partners map[string]*partner
}

// New returns a breaker set.
func New(cfg Config) *Breaker {
	cfg.defaults()
	return &Breaker{cfg: cfg, now: time.Now, partners: map[string]*partner{}}
}

func (b *Breaker) get(id string, now time.Time) *partner {
	p := b.partners[id]
	if p == nil {
		p = &partner{state: Closed, bucketStart: now}
		b.partners[id] = p
	}
	b.rotate(p, now)
	return p
}

// rotate advances the window to now, emptying buckets that fell out.
func (b *Breaker) rotate(p *partner, now time.Time) {
	width := b.cfg.Window / buckets
	for steps := 0; now.Sub(p.bucketStart) >= width && steps <= buckets; steps++ {
		p.head = (p.head + 1) % buckets
		p.succ[p.head], p.fail[p.head] = 0, 0
		p.bucketStart = p.bucketStart.Add(width)
	}
	if now.Sub(p.bucketStart) >= width { // idle for over a window
		p.bucketStart = now
	}
}

func (p *partner) counts() (succ, fail int) {
	for i := range buckets {
		succ += p.succ[i]
		fail += p.fail[i]
	}
	return succ, fail
}

// Allow says whether a delivery's first attempt to the partner may be
// made now; if not, retryAt is when to ask again. A true answer while
// half-open takes a probe slot, given back by Record.
func (b *Breaker) Allow(id string) (ok bool, retryAt time.Time) { return b.allow(id, false) }

// AllowRetry is Allow for a delivery that has failed before. While
// half-open it leaves the probes to first attempts for ProbeGrace (a
// quarter of CoolDown), and only then takes a probe slot itself. A probe
// is a real attempt: when it fails, its delivery waits out its retry
// schedule, and a delivery that failed before goes further down it — by
// default anywhere up to 5 minutes after a second failure, behind the
// backlog it belongs to once the partner is back. A first attempt that
// fails waits at most the schedule's first step (5 s), and is held again.
func (b *Breaker) AllowRetry(id string) (ok bool, retryAt time.Time) { return b.allow(id, true) }

func (b *Breaker) allow(id string, retry bool) (ok bool, retryAt time.Time) {
	now := b.now()
	b.mu.Lock()
	p := b.get(id, now)
	var changed *[2]State
	var long bool
	since := p.failingSince // read under the lock, used after it
	switch p.state {
	case Open:
		if now.Sub(p.openedAt) < b.cfg.CoolDown {
			retryAt = p.openedAt.Add(b.cfg.CoolDown)
			long = b.longFailure(p, now)
			b.mu.Unlock()
			b.notify(id, nil, long, since)
			return false, retryAt
		}
		changed = &[2]State{Open, HalfOpen}
		p.state, p.inFlight, p.halfOpenedAt = HalfOpen, 0, now
		fallthrough
	case HalfOpen:
		if grace := p.halfOpenedAt.Add(b.ProbeGrace()); retry && now.Before(grace) {
			long = b.longFailure(p, now)
			b.mu.Unlock()
			b.notify(id, changed, long, since)
			return false, now.Add(min(grace.Sub(now), b.askAgain(now, p.halfOpenedAt)))
		}
		if p.inFlight >= b.cfg.Probes {
			long = b.longFailure(p, now)
			b.mu.Unlock()
			b.notify(id, changed, long, since)
			return false, now.Add(b.askAgain(now, p.probeSentAt))
		}
		p.inFlight++
		p.probeSentAt = now
	}
	b.mu.Unlock()
	b.notify(id, changed, false, time.Time{})
	return true, time.Time{}
}

func (b *Breaker) longFailure(p *partner, now time.Time) bool {
	if p.reported || p.failingSince.IsZero() || now.Sub(p.failingSince) < b.cfg.DisableAfter {
		return false
	}
	p.reported = true
	return true
}

func (b *Breaker) notify(id string, changed *[2]State, long bool, since time.Time) {
	if changed != nil && b.OnChange != nil {
		b.OnChange(id, changed[0], changed[1])
	}
	if long && b.OnLongFailure != nil {
		b.OnLongFailure(id, since)
	}
}

// Record counts an attempt's outcome: ok is false for failures that speak
// of the partner's health (5xx, 408, 429, timeouts, refused connections).
func (b *Breaker) Record(id string, ok bool) {
	now := b.now()
	b.mu.Lock()
	p := b.get(id, now)
	var changed *[2]State
	if ok {
		p.succ[p.head]++
		p.streak = 0
	} else {
		p.fail[p.head]++
		p.streak++
	}
	switch p.state {
	case HalfOpen:
		p.inFlight = max(0, p.inFlight-1)
		if ok {
			changed = &[2]State{HalfOpen, Closed}
			p.state, p.failingSince, p.reported = Closed, time.Time{}, false
			p.succ, p.fail = [buckets]int{}, [buckets]int{}
		} else {
			changed = &[2]State{HalfOpen, Open}
			p.state, p.openedAt = Open, now
		}
	case Closed:
		succ, fail := p.counts()
		if total := succ + fail; total >= b.cfg.MinRequests && float64(fail) >= b.cfg.FailureRatio*float64(total) ||
			p.streak >= b.cfg.ConsecutiveFailures {
			changed = &[2]State{Closed, Open}
			p.state, p.openedAt = Open, now
			if p.failingSince.IsZero() {
				p.failingSince = now
			}
		}
	}
	b.mu.Unlock()
	b.notify(id, changed, false, time.Time{})
}

// askAgain is how long a delivery refused while half-open waits before it
// asks again: as long as the probe (or the half-open state) has lasted,
// from minAskAgain up to a quarter of CoolDown. Most probes are answered
// in milliseconds, and what was held behind one then goes out a moment
// after the breaker closes, not a quarter of the cool-down later (7.5 s
// by default: whp bench --outage's last deliveries); one that hangs until
// the attempt's timeout has each held delivery written again a few times
// more, not every moment.
func (b *Breaker) askAgain(now, since time.Time) time.Duration {
	return min(b.cfg.CoolDown/4, max(minAskAgain, now.Sub(since)))
}

// minAskAgain is askAgain's shortest wait.
const minAskAgain = 100 * time.Millisecond

// ProbeGrace is a quarter of CoolDown: how long, once half-open, retries
// leave the probe to a first attempt (AllowRetry). The dispatcher's
// paused topics wait half as long for a held first attempt to make it,
// and then resume to fetch one.
func (b *Breaker) ProbeGrace() time.Duration { return b.cfg.CoolDown / 4 }

// Probing reports a partner's breaker as its paused topics need it: open
// is false once it is closed; halfOpened is when it last began to let
// probes out (zero if never); next, while it is open, when it will again;
// probing, while half-open, whether a probe is out.
func (b *Breaker) Probing(id string) (open bool, halfOpened, next time.Time, probing bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.partners[id]
	if p == nil || p.state == Closed {
		return false, time.Time{}, time.Time{}, false
	}
	if p.state == Open {
		next = p.openedAt.Add(b.cfg.CoolDown)
	}
	return true, p.halfOpenedAt, next, p.state == HalfOpen && p.inFlight > 0
}

// Release gives back a half-open probe slot taken by Allow when no
// attempt was made after all (held by the rate limit, refused by policy).
func (b *Breaker) Release(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.partners[id]; p != nil && p.state == HalfOpen {
		p.inFlight = max(0, p.inFlight-1)
	}
}

// Snapshot is one partner's breaker, for the API and metrics.
type Snapshot struct {
	Partner      string    `json:"partner_id"`
	State        State     `json:"state"`
	Successes    int       `json:"successes_in_window"`
	Failures     int       `json:"failures_in_window"`
	OpenedAt     time.Time `json:"opened_at,omitzero"`
	FailingSince time.Time `json:"failing_since,omitzero"`
}

// Snapshots returns every partner's breaker, sorted by partner.
func (b *Breaker) Snapshots() []Snapshot {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Snapshot, 0, len(b.partners))
	for id := range b.partners {
		p := b.get(id, now)
		succ, fail := p.counts()
		s := Snapshot{Partner: id, State: p.state, Successes: succ, Failures: fail, FailingSince: p.failingSince}
		if p.state != Closed {
			s.OpenedAt = p.openedAt
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partner < out[j].Partner })
	return out
}
