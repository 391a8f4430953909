// Package breaker is the circuit breaker per partner. Closed, deliveries
// go out and their outcomes are counted over a sliding window; when the
// failure ratio reaches the threshold (with at least MinRequests in the
// window), or ConsecutiveFailures attempts in a row have failed, it
// opens: deliveries are held, not attempted, for CoolDown — or for as
// long as the partner's Retry-After asks, when the answer that opened it
// carried one —; then half-open: a few probes go out — first attempts
// rather than retries, where there are some (AllowRetry) — and their
// outcome closes or re-opens it. A partner that answers 429 to everything
// (its quota spent, say) is held the same way once PushBacks answers in a
// row have said so for PushBackSpan. A partner that keeps failing for
// DisableAfter is reported, and the dispatcher disables its
// subscriptions.
//
// State is per process: each dispatcher replica judges the partner from
// what it sees, which is what matters for its own traffic.
package breaker

import (
	"cmp"
	"fmt"
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
	// CoolDown: how long it stays open before probing, unless the answer
	// that opened it carried a Retry-After. Default 30 s.
	CoolDown time.Duration
	// MaxCoolDown bounds the wait a partner's Retry-After may set (from
	// MinCoolDown up to this). Default 1 h, the retry policy's own bound
	// on Retry-After (retry.Default's MaxRetryAfter).
	MaxCoolDown time.Duration
	// PushBacks: answers 429 in a row, with no success between them, that
	// open the breaker once they have lasted PushBackSpan. Default
	// ConsecutiveFailures.
	PushBacks int
	// PushBackSpan: how long the push-backs in a row must have lasted.
	// Default 1 s. A partner with a limit of its own answers 429 to what
	// it has no room for and 2xx to the rest: a burst over its limit
	// gives dozens of 429s in a row within a round trip (the pace's slow
	// start overshooting), then its successes break the run. One whose
	// quota is spent, or which sheds all load, answers 429 to everything,
	// second after second.
	PushBackSpan time.Duration
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
	if c.MaxCoolDown <= 0 {
		c.MaxCoolDown = time.Hour
	}
	if c.PushBacks <= 0 {
		c.PushBacks = c.ConsecutiveFailures
	}
	if c.PushBackSpan <= 0 {
		c.PushBackSpan = time.Second
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

// MinCoolDown is the shortest wait a partner's Retry-After sets: one
// under a second still has the breaker wait a second — each cycle has
// the deliveries held behind it written again as they come due. (A
// Retry-After of 0 reads as none, and the breaker waits CoolDown.)
const MinCoolDown = time.Second

// Outcome is what an attempt's answer says of the partner's health.
type Outcome int

// Outcomes.
const (
	// Success: a 2xx.
	Success Outcome = iota
	// Failure: a 5xx, a 408, a timeout, a refused connection.
	Failure
	// PushBack: a 429 — the partner is up and asks for less. One alone
	// neither opens nor closes the breaker (the pace answers it:
	// runtime/dispatch's pace.go); PushBacks of them in a row over
	// PushBackSpan open it, and one re-opens it while half-open.
	PushBack
)

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
	pushed       int       // push-backs since the last success
	pushedSince  time.Time // the first of them
	coolDown     time.Duration
	probesFailed int       // since it opened from closed
	asked        bool      // coolDown is the partner's Retry-After's
	reason       string    // why it opened, for operators
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
		if now.Sub(p.openedAt) < p.coolDown {
			retryAt = p.openedAt.Add(p.coolDown)
			long = b.longFailure(p, now)
			b.mu.Unlock()
			b.notify(id, nil, long, since)
			return false, retryAt
		}
		changed = &[2]State{Open, HalfOpen}
		p.state, p.inFlight, p.halfOpenedAt = HalfOpen, 0, now
		fallthrough
	case HalfOpen:
		// retryAt is worked out under the lock: it reads p.
		if grace := p.halfOpenedAt.Add(b.grace(p)); retry && now.Before(grace) {
			long = b.longFailure(p, now)
			retryAt = now.Add(min(grace.Sub(now), b.askAgain(p, now, p.halfOpenedAt)))
			b.mu.Unlock()
			b.notify(id, changed, long, since)
			return false, retryAt
		}
		if p.inFlight >= b.cfg.Probes {
			long = b.longFailure(p, now)
			retryAt = now.Add(b.askAgain(p, now, p.probeSentAt))
			b.mu.Unlock()
			b.notify(id, changed, long, since)
			return false, retryAt
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

// Record counts an attempt's outcome. retryAfter is the partner's
// Retry-After on a failure or a push-back (0 if none): when the answer
// opens the breaker, or re-opens it as a failed probe, the breaker waits
// that long before probing (from MinCoolDown up to MaxCoolDown) instead
// of CoolDown. A partner that says when it will be back — a deploy, its
// maintenance, its quota's reset — is probed then: sooner than the
// cool-down if it says so, and not before it said.
func (b *Breaker) Record(id string, o Outcome, retryAfter time.Duration) {
	now := b.now()
	b.mu.Lock()
	p := b.get(id, now)
	var changed *[2]State
	switch o {
	case Success:
		p.succ[p.head]++
		p.streak, p.pushed = 0, 0
	case Failure:
		p.fail[p.head]++
		p.streak++
	case PushBack:
		if p.pushed == 0 {
			p.pushedSince = now
		}
		p.pushed++
	}
	switch p.state {
	case HalfOpen:
		p.inFlight = max(0, p.inFlight-1)
		switch o {
		case Success:
			changed = &[2]State{HalfOpen, Closed}
			p.state, p.failingSince, p.reported = Closed, time.Time{}, false
			p.succ, p.fail = [buckets]int{}, [buckets]int{}
		default:
			changed = &[2]State{HalfOpen, Open}
			reason := "a probe was answered with a failure"
			if o == PushBack {
				reason = "a probe was answered 429"
			}
			b.open(p, now, retryAfter, reason, true)
		}
	case Closed:
		succ, fail := p.counts()
		var reason string
		switch {
		case o == Failure && p.streak >= b.cfg.ConsecutiveFailures:
			reason = fmt.Sprintf("%d failures in a row", p.streak)
		case o == Failure && succ+fail >= b.cfg.MinRequests && float64(fail) >= b.cfg.FailureRatio*float64(succ+fail):
			reason = fmt.Sprintf("%d of the last %d attempts failed", fail, succ+fail)
		case o == PushBack && p.pushed >= b.cfg.PushBacks && now.Sub(p.pushedSince) >= b.cfg.PushBackSpan:
			reason = fmt.Sprintf("%d answers 429 in a row over %s", p.pushed, now.Sub(p.pushedSince).Round(100*time.Millisecond))
		}
		if reason != "" {
			changed = &[2]State{Closed, Open}
			b.open(p, now, retryAfter, reason, false)
			if p.failingSince.IsZero() {
				p.failingSince = now
			}
		}
	}
	b.mu.Unlock()
	b.notify(id, changed, false, time.Time{})
}

// open opens p's breaker at now — from closed, or again after a failed
// probe (probeFailed) — for the partner's Retry-After if it gave one,
// else for CoolDown.
//
// A Retry-After shorter than CoolDown is taken at its word the first
// time; each probe that fails anyway doubles it, up to CoolDown. Taken
// at its word every time, a partner whose 503s always say "Retry-After:
// 2" through a long outage had its breaker cycle every 2 s, and each
// cycle costs more than its probe: the deliveries held behind the breaker
// come due and are written again (a status and a retry record each), and
// once the few held when it opened have been spent on probes, its topics
// resume to fetch one and every delivery fetched is held with them —
// whp bench --outage 10s --outage-retry-after 2s: 2,836 held passes
// against 34–42 with the cool-down; doubled, the cycles of an outage of any
// length are a few more than the cool-down's. A longer Retry-After is
// honoured every time.
func (b *Breaker) open(p *partner, now time.Time, retryAfter time.Duration, reason string, probeFailed bool) {
	p.state, p.openedAt, p.reason = Open, now, reason
	if probeFailed {
		p.probesFailed++
	} else {
		p.probesFailed = 0
	}
	p.coolDown, p.asked = b.cfg.CoolDown, retryAfter > 0
	if !p.asked {
		return
	}
	p.coolDown = min(max(retryAfter, MinCoolDown), b.cfg.MaxCoolDown)
	if p.coolDown < b.cfg.CoolDown {
		p.coolDown = min(p.coolDown<<min(p.probesFailed, 16), b.cfg.CoolDown)
	}
}

// askAgain is how long a delivery refused while half-open waits before it
// asks again: as long as the probe (or the half-open state) has lasted,
// from minAskAgain up to the probe grace. Most probes are answered
// in milliseconds, and what was held behind one then goes out a moment
// after the breaker closes, not a quarter of the cool-down later (7.5 s
// by default: whp bench --outage's last deliveries); one that hangs until
// the attempt's timeout has each held delivery written again a few times
// more, not every moment.
func (b *Breaker) askAgain(p *partner, now, since time.Time) time.Duration {
	return min(b.grace(p), max(minAskAgain, now.Sub(since)))
}

// minAskAgain is askAgain's shortest wait.
const minAskAgain = 100 * time.Millisecond

// ProbeGrace is a quarter of the partner's cool-down (CoolDown, or its
// Retry-After's when that was shorter): how long, once half-open, retries
// leave the probe to a first attempt (AllowRetry). The dispatcher's
// paused topics wait half as long for a held first attempt to make it,
// and then resume to fetch one.
func (b *Breaker) ProbeGrace(id string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.partners[id]
	if p == nil {
		return b.cfg.CoolDown / 4
	}
	return b.grace(p)
}

// grace is ProbeGrace, b.mu held. A Retry-After longer than CoolDown
// does not lengthen it: the first attempts held behind the breaker come
// due when it half-opens, whatever the wait was, and a retry that has
// nothing to wait for should not wait a quarter of an hour.
func (b *Breaker) grace(p *partner) time.Duration {
	return min(b.cfg.CoolDown, cmp.Or(p.coolDown, b.cfg.CoolDown)) / 4
}

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
		next = p.openedAt.Add(p.coolDown)
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
	// Reason it last opened ("10 failures in a row", "12 answers 429 in
	// a row over 1.1s", "a probe was answered with a failure"), while it
	// is not closed.
	Reason string `json:"reason,omitempty"`
	// ProbeAt, while open: when it lets the next probe out.
	ProbeAt time.Time `json:"probe_at,omitzero"`
	// PartnerAsked: ProbeAt is when the partner's Retry-After asked to
	// be tried again, not the cool-down's end.
	PartnerAsked bool `json:"partner_asked,omitempty"`
}

// Describe says, for an operator, why the breaker is not closed and when
// it probes next ("" when closed): "opened at 02:40:01Z: 10 failures in a
// row; next probe at 02:40:31Z (the cool-down)".
func (s Snapshot) Describe() string {
	if s.State == Closed || s.State == "" {
		return ""
	}
	const at = "15:04:05Z07:00"
	d := "opened at " + s.OpenedAt.UTC().Format(at)
	if s.Reason != "" {
		d += ": " + s.Reason
	}
	switch {
	case s.State == HalfOpen:
		d += "; probing"
	case s.PartnerAsked:
		d += "; next probe at " + s.ProbeAt.UTC().Format(at) + " (as the partner's Retry-After asked)"
	default:
		d += "; next probe at " + s.ProbeAt.UTC().Format(at) + " (the cool-down)"
	}
	return d
}

// Snapshots returns every partner's breaker, sorted by partner.
func (b *Breaker) Snapshots() []Snapshot {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Snapshot, 0, len(b.partners))
	for id := range b.partners {
		out = append(out, b.snapshot(id, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partner < out[j].Partner })
	return out
}

// Snapshot returns one partner's breaker (closed if it has seen nothing).
func (b *Breaker) Snapshot(id string) Snapshot {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.partners[id] == nil {
		return Snapshot{Partner: id, State: Closed}
	}
	return b.snapshot(id, now)
}

func (b *Breaker) snapshot(id string, now time.Time) Snapshot {
	p := b.get(id, now)
	succ, fail := p.counts()
	s := Snapshot{Partner: id, State: p.state, Successes: succ, Failures: fail, FailingSince: p.failingSince}
	if p.state != Closed {
		s.OpenedAt, s.Reason, s.PartnerAsked = p.openedAt, p.reason, p.asked
	}
	if p.state == Open {
		s.ProbeAt = p.openedAt.Add(p.coolDown)
	}
	return s
}
