package retry

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkRetryLateness measures how late the scheduler hands back due
// retries: 5,000 retries written at once, due at random over the next
// 16 s (tiers 0 to 5, so most move down a tier or more before they are
// due), and when each came back against its due time. The baseline, in
// the same run, is an in-memory timer per retry (time.AfterFunc): what a
// process that kept its retries in memory, and lost them in a crash,
// would manage. Custom metrics, in milliseconds: p50-late-ms,
// p99-late-ms and max-late-ms for the scheduler, timer-p99-late-ms for
// the baseline. A retry handed back before it is due fails the benchmark.
// In "slow-partner", one retry in a hundred takes 2 s to make (a partner
// that hangs until the delivery timeout), and the figures are the
// others'.
//
//	go test -run '^$' -bench RetryLateness -benchtime 1x ./runtime/retry
func BenchmarkRetryLateness(b *testing.B) {
	b.Run("fast", func(b *testing.B) { retryLateness(b, 0) })
	b.Run("slow-partner", func(b *testing.B) { retryLateness(b, 2*time.Second) })
}

// slowDeliverer makes every hundredth retry take delay.
type slowDeliverer struct {
	*recorder
	delay time.Duration
}

func (d slowDeliverer) DeliverRetry(ctx context.Context, value []byte, attempt int) error {
	if i, _ := strconv.Atoi(string(value)); i%100 == 0 {
		time.Sleep(d.delay)
	}
	return d.recorder.DeliverRetry(ctx, value, attempt)
}

func retryLateness(b *testing.B, slow time.Duration) {
	const (
		n      = 5000
		spread = 16 * time.Second
	)
	for b.Loop() {
		s, prod, rec := newScheduler(b)
		if slow > 0 {
			s.d = slowDeliverer{rec, slow}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		now := time.Now()
		due := make([]time.Time, n)
		var mu sync.Mutex
		var timerLate []time.Duration
		for i := range due {
			// Whole milliseconds, as the record's header holds it.
			due[i] = time.UnixMilli(now.Add(time.Duration(rand.Int64N(int64(spread)))).UnixMilli())
			v := []byte(strconv.Itoa(i))
			prod.Produce(ctx, NewRecord("wh.retry.order.created", v, v, due[i], 2, now), nil)
			at := due[i]
			time.AfterFunc(time.Until(at), func() {
				late := time.Since(at)
				mu.Lock()
				timerLate = append(timerLate, late)
				mu.Unlock()
			})
		}
		if err := prod.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		for deadline := now.Add(spread + time.Minute); ; time.Sleep(100 * time.Millisecond) {
			rec.mu.Lock()
			got := len(rec.got)
			rec.mu.Unlock()
			if got == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d retries handed back a minute after the last was due", got, n)
			}
		}
		cancel()
		<-done

		late := make([]time.Duration, 0, n)
		for i, d := range due {
			at, _ := rec.at(strconv.Itoa(i))
			if at.Before(d) {
				b.Errorf("retry %d handed back %v before it was due", i, d.Sub(at))
			}
			if slow > 0 && i%100 == 0 {
				continue // the slow one's own time is its partner's
			}
			late = append(late, at.Sub(d))
		}
		mu.Lock()
		tl := slices.Clone(timerLate)
		mu.Unlock()
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(ms(quantile(late, 0.5)), "p50-late-ms")
		b.ReportMetric(ms(quantile(late, 0.99)), "p99-late-ms")
		b.ReportMetric(ms(quantile(late, 1)), "max-late-ms")
		b.ReportMetric(ms(quantile(tl, 0.99)), "timer-p99-late-ms")
	}
}

// quantile is the q-quantile of ds (sorted in place), 0 if none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(int(q*float64(len(ds))), len(ds)-1)]
}
