package dev

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/whp-dev/whp/internal/rusage"
)

// BenchmarkRateLimitedBacklog measures what a backlog costs the platform
// when its partner has a rate limit: 2,000 events sent at once (16
// producers) to a partner limited to 200 a second in bursts of 20 — ten
// seconds of backlog — against the same events to the same partner
// without a limit, in the same run: the baseline. Custom metrics:
// cpu-µs/event, the process's CPU (the platform, its receiver and its
// producers) from the first event sent to the last delivery; held/event,
// the passes held (whp_deliveries_total{outcome="held"}: each a status
// written and a record through the retry tiers); late-s, how long the
// last delivery came after the limit allowed it ((2,000 − 20) ÷ 200 s
// after the first was sent); most-in-1s, the most deliveries the partner
// got in any second (the limit allows 220).
//
//	go test -run '^$' -bench RateLimitedBacklog -benchtime 1x ./runtime/dev
func BenchmarkRateLimitedBacklog(b *testing.B) {
	b.Run("unlimited", func(b *testing.B) { heldBacklog(b, 0, 0) })
	b.Run("limited", func(b *testing.B) { heldBacklog(b, 200, 0) })
}

// BenchmarkPausedBacklog measures what a backlog costs the platform while
// an operator has its partner paused (flags.json): the same 2,000 events
// as BenchmarkRateLimitedBacklog's, sent while the partner is paused, and
// the partner resumed ten seconds after the first was sent; the baseline
// is the same events to the partner never paused, in the same run.
// Custom metrics: cpu-µs/event and held/event as there; resume-s, from
// the resume (the flag file is read every second) to the last delivery.
//
//	go test -run '^$' -bench PausedBacklog -benchtime 1x ./runtime/dev
func BenchmarkPausedBacklog(b *testing.B) {
	b.Run("never-paused", func(b *testing.B) { heldBacklog(b, 0, 0) })
	b.Run("paused", func(b *testing.B) { heldBacklog(b, 0, 10*time.Second) })
}

// heldBacklog sends the benchmarks' backlog to a partner limited to
// perSecond deliveries a second in bursts of a tenth of it (0: no
// limit), paused from before the first event until pause after it (0:
// never).
func heldBacklog(b *testing.B, perSecond int, pause time.Duration) {
	const n = 2000
	limit, burst := "", perSecond/10
	if perSecond > 0 {
		limit = fmt.Sprintf(", rate_limit: {per_second: %d, burst: %d}", perSecond, burst)
	}
	var cpu, late, resume time.Duration
	var held float64
	most := 0
	for b.Loop() {
		b.StopTimer()
		data := b.TempDir()
		alpha := newReceiver(b, data, "alpha")
		dir := b.TempDir()
		src := `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {order_id: string, amount: number}}
partners: alpha: {name: "A", url: "` + alpha.srv.URL + `", signing_secret: "partners/alpha/signing", contact: "x"` + limit + `}
subscriptions: "alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
`
		if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
		if pause > 0 {
			setFlags(b, data, `{"partners":{"alpha":{"paused":true}}}`)
		}
		p := startPlatform(b, data, dir, func(c *Config) {
			c.AutoApprove = []string{"alpha"}
			c.Log = nil // the log at info is the test's; here it would be the benchmark's output
		})
		b.StartTimer()
		cpu0, start := rusage.CPU(), time.Now()
		events := make(chan int)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for i := range events {
					accept(b, p, orderEvent(i))
				}
			})
		}
		for i := range n {
			events <- i
		}
		close(events)
		wg.Wait()
		resumed := start
		if pause > 0 {
			time.Sleep(time.Until(start.Add(pause)))
			if got, _, _ := alpha.counts(); got != 0 {
				b.Fatalf("the paused partner got %d deliveries", got)
			}
			setFlags(b, data, `{}`)
			resumed = time.Now()
		}
		eventually(b, "every delivery", func() bool { got, _, _ := alpha.counts(); return got == n })
		cpu += rusage.CPU() - cpu0
		b.StopTimer()
		alpha.mu.Lock()
		times := alpha.times
		alpha.mu.Unlock()
		last := times[len(times)-1]
		if perSecond > 0 {
			late += max(0, last.Sub(start)-time.Duration(n-burst)*time.Second/time.Duration(perSecond))
		}
		resume += last.Sub(resumed)
		most = max(most, mostInASecond(times))
		held += value(scrape(b, p), "whp_deliveries_total", map[string]string{"outcome": "held", "partner": "alpha"})
		p.Stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "cpu-µs/event")
	b.ReportMetric(max(0, held)/float64(b.N*n), "held/event")
	switch {
	case perSecond > 0:
		b.ReportMetric(late.Seconds()/float64(b.N), "late-s")
		b.ReportMetric(float64(most), "most-in-1s")
	case pause > 0:
		b.ReportMetric(resume.Seconds()/float64(b.N), "resume-s")
	}
}

// mostInASecond is the most of times (in order) within any second.
func mostInASecond(times []time.Time) int {
	most := 0
	for i, j := 0, 0; i < len(times); i++ {
		for j < len(times) && times[j].Sub(times[i]) < time.Second {
			j++
		}
		most = max(most, j-i)
	}
	return most
}
