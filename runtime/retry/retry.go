// Package retry is the durable retry schedule: failed deliveries wait in
// wh.retry.{event} — not in memory, not in a sleeping process — until they
// are due, and a retry due in 5 s never waits behind one due in 5 h.
//
// # Tiers
//
// The partitions of a retry topic are delay tiers. Tier 0 holds records
// due within a second; tier k ≥ 1 holds records whose remaining wait, when
// written, lies in [2^(k-1) s, 2^k s); the last tier holds anything
// longer. A record leaves its tier when its remaining wait falls below the
// tier's floor, and is written again to the tier that fits what remains —
// a hierarchical timing wheel in Kafka. It is attempted from tier 0 when due.
//
// Why no record waits behind another: in tier k ≥ 1 a consumer takes
// records in order and holds the head until its leave time, due − 2^(k-1) s.
// Take a later record b behind head a. Both were written with remaining
// wait in [f, 2f) (f the floor), and b after a, so due(a) − due(b) < 2f − f
// = f, that is due(a) − f < due(b): the head leaves before b is due, and b
// leaves at once after it, still ahead of its due time. (With tiers wider
// than a doubling this fails; that is why there are 19 partitions.)
//
// Tier 0, whose floor is 0, is the exception: its records are all due
// within a second, but one moved down from tier 1 can be due before one
// written ahead of it. Its queue is read whole, each record taken at its
// own time (Scheduler.step); `go test -run '^$' -bench RetryLateness
// ./runtime/retry` measures how late retries come back.
//
// Memory is bounded by one fetch per partition (and tier 0's second of
// retries); goroutines do not grow with the number of pending retries —
// at most 32 attempts run at once, in the background, so that a partner
// that hangs holds only its own retries.
package retry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Tiers is the number of tiers, and so of partitions of a retry topic:
// tier 0, then doublings from 1 s to 2^17 s (36 h), the last open-ended.
const Tiers = 19

// TierFor returns the tier for a remaining wait.
func TierFor(remaining time.Duration) int32 {
	if remaining < time.Second {
		return 0
	}
	for k := int32(1); k < Tiers-1; k++ {
		if remaining < time.Duration(1)<<k*time.Second {
			return k
		}
	}
	return Tiers - 1
}

// floor is the smallest remaining wait a tier holds.
func floor(tier int32) time.Duration {
	if tier <= 0 {
		return 0
	}
	return time.Duration(1) << (tier - 1) * time.Second
}

// LeaveAt is when a record due at due, in tier, is taken from it: attempted
// (tier 0) or moved down.
func LeaveAt(due time.Time, tier int32) time.Time { return due.Add(-floor(tier)) }

// Record headers of a retry record.
const (
	HeaderDue     = "whp-due"     // unix milliseconds
	HeaderAttempt = "whp-attempt" // the number of the attempt to make
)

// NewRecord makes the retry record of a delivery: value is the egress
// record's value, attempt the number of the next attempt.
func NewRecord(topic string, key, value []byte, due time.Time, attempt int, now time.Time) *kgo.Record {
	return &kgo.Record{
		Topic:     topic,
		Partition: TierFor(due.Sub(now)),
		Key:       key,
		Value:     value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderDue, Value: []byte(strconv.FormatInt(due.UnixMilli(), 10))},
			{Key: HeaderAttempt, Value: []byte(strconv.Itoa(attempt))},
		},
	}
}

// Parse reads the due time and attempt of a retry record.
func Parse(r *kgo.Record) (due time.Time, attempt int, err error) {
	var dueOK, attemptOK bool
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderDue:
			ms, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil {
				return time.Time{}, 0, fmt.Errorf("retry record: bad %s header", HeaderDue)
			}
			due, dueOK = time.UnixMilli(ms), true
		case HeaderAttempt:
			n, err := strconv.Atoi(string(h.Value))
			if err != nil || n < 1 {
				return time.Time{}, 0, fmt.Errorf("retry record: bad %s header", HeaderAttempt)
			}
			attempt, attemptOK = n, true
		}
	}
	if !dueOK || !attemptOK {
		return time.Time{}, 0, fmt.Errorf("retry record: missing %s or %s header", HeaderDue, HeaderAttempt)
	}
	return due, attempt, nil
}

// Policy says when a failed delivery is tried again.
type Policy struct {
	// Schedule[i] is the wait before attempt i+2 (attempt 1 is at once).
	// The last step repeats if MaxAttempts asks for more.
	Schedule []time.Duration
	// MaxAttempts bounds the attempts, the first included.
	MaxAttempts int
	// MaxAge: no attempt is made later than this after the event was
	// accepted. 0 means no bound beyond the schedule.
	MaxAge time.Duration
	// MaxRetryAfter bounds how long a partner's Retry-After may defer the
	// next attempt.
	MaxRetryAfter time.Duration
}

// Default is close to the Standard Webhooks schedule: at once, then after
// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h — ten attempts
// over about three days.
func Default() Policy {
	return Policy{
		Schedule: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
			10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour},
		MaxAttempts:   10,
		MaxAge:        4 * 24 * time.Hour,
		MaxRetryAfter: time.Hour,
	}
}

// Override is a subscription's retry policy in the catalog (as stored).
type Override struct {
	MaxAttempts int      `json:"max_attempts,omitempty"`
	MaxAge      string   `json:"max_age,omitempty"`
	Schedule    []string `json:"schedule,omitempty"`
}

// With applies a subscription's override (JSON, possibly empty) to p.
func (p Policy) With(raw []byte) (Policy, error) {
	if len(raw) == 0 {
		return p, nil
	}
	var o Override
	if err := json.Unmarshal(raw, &o); err != nil {
		return p, fmt.Errorf("retry policy: %w", err)
	}
	if o.MaxAttempts > 0 {
		p.MaxAttempts = o.MaxAttempts
	}
	if o.MaxAge != "" {
		d, err := time.ParseDuration(o.MaxAge)
		if err != nil {
			return p, fmt.Errorf("retry policy max_age: %w", err)
		}
		p.MaxAge = d
	}
	if len(o.Schedule) > 0 {
		p.Schedule = make([]time.Duration, len(o.Schedule))
		for i, s := range o.Schedule {
			d, err := time.ParseDuration(s)
			if err != nil {
				return p, fmt.Errorf("retry policy schedule: %w", err)
			}
			p.Schedule[i] = d
		}
	}
	return p, nil
}

// Next decides the wait before attempt number next (≥ 2), given when the
// event was accepted and a partner's Retry-After (0 if none). ok is false
// when the policy is exhausted: too many attempts, or past MaxAge. It is
// safe for concurrent use.
//
// The wait is drawn uniformly between the previous step and this one
// (full jitter within the step): retries of many deliveries that failed
// together spread out, and no retry comes sooner than the step before.
// The first step's floor is half of it rather than zero: a retry a few
// milliseconds after its failure meets the same failing endpoint before
// its breaker has counted enough failures to open, and fails again, to
// wait out the next step (whp bench --outage 10s --fanout 16: one such
// delivery arrived 72 s after the partner was back, the rest within 28).
// Retry-After, bounded by MaxRetryAfter, is honoured when it asks for more.
func (p Policy) Next(next int, acceptedAt, now time.Time, retryAfter time.Duration) (time.Duration, bool) {
	if next > p.MaxAttempts || len(p.Schedule) == 0 {
		return 0, false
	}
	i := min(next-2, len(p.Schedule)-1)
	hi := p.Schedule[i]
	lo := hi / 2
	if i > 0 {
		lo = min(p.Schedule[i-1], hi)
	}
	wait := hi
	if hi > lo {
		wait = lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
	}
	if retryAfter > wait {
		wait = min(retryAfter, max(p.MaxRetryAfter, wait))
	}
	if p.MaxAge > 0 && now.Add(wait).Sub(acceptedAt) > p.MaxAge {
		return 0, false
	}
	return wait, true
}

// ParseRetryAfter reads a Retry-After header: seconds, or an HTTP date
// in any of the three formats RFC 9110 has a recipient accept
// (http.ParseTime: IMF-fixdate, RFC 850, asctime) or RFC 1123 with
// another zone. Seconds past
// maxRetryAfterSeconds read as that many — a wait far beyond what any
// bound here allows (an hour), where the product with a second would
// overflow a Duration at ≈ 292 years.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 64); err == nil {
		return time.Duration(min(s, maxRetryAfterSeconds)) * time.Second
	} else if errors.Is(err, strconv.ErrRange) {
		return maxRetryAfterSeconds * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		// RFC 1123 with a zone other than GMT ("… 12:02:00 UTC"): not an
		// HTTP-date, but meant as one.
		t, err = time.Parse(time.RFC1123, v)
	}
	if err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// maxRetryAfterSeconds bounds the seconds ParseRetryAfter reads: 30 days.
const maxRetryAfterSeconds = 30 * 24 * 60 * 60
