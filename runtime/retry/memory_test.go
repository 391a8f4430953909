package retry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkPendingRetries holds 10,000 and 100,000 pending retries (1 KiB each, due
// between 1 and 24 hours out, spread over the tiers) and reports what the
// scheduler costs while it waits on them: heap growth and goroutines, as
// custom metrics (heap-MiB, goroutines). The records live in Kafka (here
// kfake, in this process: its memory is measured before the scheduler
// starts and left out).
//
//	go test -run '^$' -bench PendingRetries -benchtime 1x ./runtime/retry
func BenchmarkPendingRetries(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { pendingRetries(b, n) })
	}
}

// pendingRetries measures the scheduler holding pending retries; the
// goroutine count must not grow with their number.
func pendingRetries(b *testing.B, pending int) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(Tiers, "wh.retry.bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	prod, err := NewProducer(c.ListenAddrs(), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	ctx := context.Background()
	now := time.Now()
	value := make([]byte, 1024)
	for i := range pending {
		due := now.Add(time.Hour + time.Duration(i%(23*3600))*time.Second)
		prod.Produce(ctx, NewRecord("wh.retry.bench", []byte(fmt.Sprint(i)), value, due, 2, now), nil)
	}
	if err := prod.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		rec := &recorder{got: map[string]time.Time{}}
		s, err := NewScheduler(c.ListenAddrs(), prod, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		// Long enough to join the group and fetch every tier's head.
		time.Sleep(5 * time.Second)
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		cancel()
		<-done
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-MiB")
		b.ReportMetric(float64(g1-g0), "goroutines")
		if n := len(rec.got); n != 0 {
			b.Errorf("%d retries handed back hours early", n)
		}
	}
}
