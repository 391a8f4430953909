package telemetry

import (
	"sync"
	"time"
)

// MaxWindow is the longest window SLOs are computed over.
const MaxWindow = 24 * time.Hour

// latencyBounds are the upper bounds, in milliseconds, of the end-to-end
// latency buckets the SLO tracker counts in (the last bucket is open).
var latencyBounds = [...]float64{1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
	1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000}

// minute is what happened in one minute.
type minute struct {
	at                int64 // unix minute; a slot of another minute is stale
	valid, invalid    int64
	delivered, failed int64
	latency           [len(latencyBounds) + 1]int64
	latencyCount      int64
}

// Objectives are the targets the indicators are held to.
type Objectives struct {
	ValidationSuccess float64       // percent of requests whose event passed validation
	DeliverySuccess   float64       // percent of finished deliveries that reached the partner
	P95EndToEnd       time.Duration // ingest accepted → partner 2xx
}

// DefaultObjectives: an event that fails validation is the producer's
// bug, so 99 % is a warning sign, not a platform failure; a delivery that
// ends dead-lettered after every retry is one a partner missed, so the
// bar is higher; p95 within a second with a healthy partner.
var DefaultObjectives = Objectives{ValidationSuccess: 99, DeliverySuccess: 99.5, P95EndToEnd: time.Second}

// SLO tracks the service level indicators minute by minute over the last
// MaxWindow, in fixed memory (one slot per minute), and reports them for
// any window up to that.
type SLO struct {
	Objectives Objectives

	mu    sync.Mutex
	slots [int(MaxWindow / time.Minute)]minute
	now   func() time.Time
}

// NewSLO returns a tracker holding the indicators to objectives.
func NewSLO(objectives Objectives) *SLO {
	return &SLO{Objectives: objectives, now: time.Now}
}

func (s *SLO) slot(t time.Time) *minute {
	m := t.Unix() / 60
	sl := &s.slots[m%int64(len(s.slots))]
	if sl.at != m {
		*sl = minute{at: m}
	}
	return sl
}

// Validated counts an event checked against its schema.
func (s *SLO) Validated(ok bool) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.slot(s.now())
	if ok {
		sl.valid++
	} else {
		sl.invalid++
	}
}

// Finished counts a delivery that ended: delivered (with its end-to-end
// latency) or dead-lettered.
func (s *SLO) Finished(delivered bool, endToEnd time.Duration) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.slot(s.now())
	if !delivered {
		sl.failed++
		return
	}
	sl.delivered++
	ms := float64(endToEnd) / float64(time.Millisecond)
	i := 0
	for i < len(latencyBounds) && ms > latencyBounds[i] {
		i++
	}
	sl.latency[i]++
	sl.latencyCount++
}

// Report is the indicators over a window, each against its objective. An
// indicator with nothing to measure in the window is absent (nil).
type Report struct {
	Window            string   `json:"window"`
	Validated         int64    `json:"validated"`
	ValidationSuccess *float64 `json:"validation_success_percent,omitempty"`
	ValidationTarget  float64  `json:"validation_success_target_percent"`
	Finished          int64    `json:"deliveries_finished"`
	DeliverySuccess   *float64 `json:"delivery_success_percent,omitempty"`
	DeliveryTarget    float64  `json:"delivery_success_target_percent"`
	P95EndToEndMS     *float64 `json:"p95_end_to_end_ms,omitempty"`
	P95TargetMS       float64  `json:"p95_end_to_end_target_ms"`
	// Breaches names the indicators outside their objective.
	Breaches []string `json:"breaches"`
}

// Report computes the indicators over the last window (at most MaxWindow).
func (s *SLO) Report(window time.Duration) Report {
	window = min(max(window, time.Minute), MaxWindow)
	s.mu.Lock()
	now := s.now().Unix() / 60
	first := now - int64(window/time.Minute) + 1
	var sum minute
	for i := range s.slots {
		sl := &s.slots[i]
		if sl.at < first || sl.at > now {
			continue
		}
		sum.valid += sl.valid
		sum.invalid += sl.invalid
		sum.delivered += sl.delivered
		sum.failed += sl.failed
		sum.latencyCount += sl.latencyCount
		for j, n := range sl.latency {
			sum.latency[j] += n
		}
	}
	s.mu.Unlock()
	o := s.Objectives
	r := Report{Window: window.String(), Validated: sum.valid + sum.invalid, Finished: sum.delivered + sum.failed,
		ValidationTarget: o.ValidationSuccess, DeliveryTarget: o.DeliverySuccess,
		P95TargetMS: float64(o.P95EndToEnd) / float64(time.Millisecond), Breaches: []string{}}
	if r.Validated > 0 {
		v := 100 * float64(sum.valid) / float64(r.Validated)
		r.ValidationSuccess = &v
		if v < o.ValidationSuccess {
			r.Breaches = append(r.Breaches, "validation_success")
		}
	}
	if r.Finished > 0 {
		v := 100 * float64(sum.delivered) / float64(r.Finished)
		r.DeliverySuccess = &v
		if v < o.DeliverySuccess {
			r.Breaches = append(r.Breaches, "delivery_success")
		}
	}
	if sum.latencyCount > 0 {
		p := quantile(sum.latency[:], sum.latencyCount, 0.95)
		r.P95EndToEndMS = &p
		if p > r.P95TargetMS {
			r.Breaches = append(r.Breaches, "p95_end_to_end")
		}
	}
	return r
}

// quantile interpolates the q-quantile within the bucket that holds it,
// as Prometheus's histogram_quantile does. In the open last bucket it is
// the last bound.
func quantile(buckets []int64, total int64, q float64) float64 {
	rank := q * float64(total)
	var cum int64
	for i, n := range buckets {
		if n == 0 || float64(cum+n) < rank {
			cum += n
			continue
		}
		if i == len(latencyBounds) {
			return latencyBounds[i-1]
		}
		lo := 0.0
		if i > 0 {
			lo = latencyBounds[i-1]
		}
		return lo + (latencyBounds[i]-lo)*(rank-float64(cum))/float64(n)
	}
	return latencyBounds[len(latencyBounds)-1]
}

// Point is one minute of the indicators, for charts.
type Point struct {
	At        time.Time
	Accepted  int64    // events that passed validation
	Delivered int64    // deliveries that reached the partner
	Failed    int64    // deliveries dead-lettered
	P95MS     *float64 // nil when nothing was delivered that minute
}

// Series returns one point per minute over the last window, oldest first,
// minutes with nothing in them included (as zeros).
func (s *SLO) Series(window time.Duration) []Point {
	window = min(max(window, time.Minute), MaxWindow)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().Unix() / 60
	n := int64(window / time.Minute)
	out := make([]Point, 0, n)
	for m := now - n + 1; m <= now; m++ {
		p := Point{At: time.Unix(m*60, 0).UTC()}
		sl := &s.slots[m%int64(len(s.slots))]
		if sl.at == m {
			p.Accepted, p.Delivered, p.Failed = sl.valid, sl.delivered, sl.failed
			if sl.latencyCount > 0 {
				v := quantile(sl.latency[:], sl.latencyCount, 0.95)
				p.P95MS = &v
			}
		}
		out = append(out, p)
	}
	return out
}
