package retry

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// recorder is the attempt side of the test: it notes when each record
// was handed back.
type recorder struct {
	mu    sync.Mutex
	got   map[string]time.Time
	calls int
}

func (r *recorder) DeliverRetry(_ context.Context, value []byte, _ int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[string(value)] = time.Now()
	r.calls++
	return nil
}

func (r *recorder) at(v string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.got[v]
	return t, ok
}

// newScheduler is a scheduler of the retry topic of order.created on a
// kfake cluster, handing records back to a recorder, and a producer of
// retry records; the cluster and the producer close when the test ends.
func newScheduler(t testing.TB) (*Scheduler, *kgo.Client, *recorder) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(Tiers, "wh.retry.order.created"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prod, err := NewProducer(c.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	rec := &recorder{got: map[string]time.Time{}}
	s, err := NewScheduler(c.ListenAddrs(), prod, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, prod, rec
}

// fixedScheduler is newScheduler on the test's clock, *now, and with the
// offsets it marks recorded in *marked, in order.
func fixedScheduler(t *testing.T, now *time.Time) (s *Scheduler, rec *recorder, marked *[]int64) {
	t.Helper()
	s, _, rec = newScheduler(t)
	t.Cleanup(s.cl.Close)
	marked = new([]int64)
	s.now = func() time.Time { return *now }
	s.mark = func(rs ...*kgo.Record) {
		for _, r := range rs {
			*marked = append(*marked, r.Offset)
		}
	}
	return s, rec, marked
}

// TestScheduler runs the scheduler on kfake: records due soon are handed
// back on time even with long waits written before them in the topic, and
// a long wait is not handed back early.
func TestScheduler(t *testing.T) {
	s, prod, rec := newScheduler(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	now := time.Now()
	waits := map[string]time.Duration{
		"in-5h":    5 * time.Hour,
		"in-1h":    time.Hour,
		"in-2.5s":  2500 * time.Millisecond,
		"in-300ms": 300 * time.Millisecond,
		"in-1.2s":  1200 * time.Millisecond,
	}
	// Long waits first: a naive single queue would hold the short ones.
	for _, v := range []string{"in-5h", "in-1h", "in-2.5s", "in-1.2s", "in-300ms"} {
		r := NewRecord("wh.retry.order.created", []byte(v), []byte(v), now.Add(waits[v]), 2, now)
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, v := range []string{"in-300ms", "in-1.2s", "in-2.5s"} {
		for {
			if at, ok := rec.at(v); ok {
				if early := now.Add(waits[v]).Sub(at); early > 50*time.Millisecond {
					t.Errorf("%s handed back %s early", v, early)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s was not handed back", v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, v := range []string{"in-1h", "in-5h"} {
		if _, ok := rec.at(v); ok {
			t.Errorf("%s was handed back early", v)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestTakenRecordsReleased: a record the scheduler has handed back is
// cleared from its queue's backing array, which lives on while the rest of
// the queue waits (each kept record pins its fetched batch).
func TestTakenRecordsReleased(t *testing.T) {
	s, _, rec := newScheduler(t)
	defer s.cl.Close()
	now := time.Now()
	due := NewRecord("wh.retry.order.created", []byte("due"), []byte("due"), now.Add(-time.Second), 2, now)
	later := NewRecord("wh.retry.order.created", []byte("later"), []byte("later"), now.Add(time.Hour), 2, now)
	due.Partition, later.Partition = 0, 0 // one queue: the due record first
	k := tp{due.Topic, 0}
	queue := []*kgo.Record{due, later}
	s.queues[k] = queue
	s.step(context.Background())
	s.attempts.Wait()
	s.step(context.Background()) // marks what the attempts settled
	if _, ok := rec.at("due"); !ok {
		t.Fatal("the due record was not handed back")
	}
	if _, ok := rec.at("later"); ok {
		t.Fatal("the later record was handed back early")
	}
	if got := s.queues[k]; len(got) != 1 || got[0] != later {
		t.Fatalf("queue after the step = %v, want the later record alone", got)
	}
	if queue[0] != nil {
		t.Error("the queue's backing array still holds the record handed back")
	}
}

// TestSupersededRecordsSkipped: several records of one delivery due at
// once (a chain of retries read again after a crash) are handed back
// once — the one of the highest attempt — and marked done with it;
// records of other deliveries are not affected.
func TestSupersededRecordsSkipped(t *testing.T) {
	s, prod, rec := newScheduler(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	var recs []*kgo.Record
	for attempt, v := range []string{"d1-a2", "d1-a3", "d1-a5", "d1-a4"} {
		recs = append(recs, NewRecord("wh.retry.order.created", []byte("d1"), []byte(v), now.Add(-time.Second), []int{2, 3, 5, 4}[attempt], now))
	}
	recs = append(recs, NewRecord("wh.retry.order.created", []byte("d2"), []byte("d2-a2"), now.Add(-time.Second), 2, now))
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, d1 := rec.at("d1-a5")
		_, d2 := rec.at("d2-a2")
		if d1 && d2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("d1's latest and d2 were not handed back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a later step would hand back the rest
	rec.mu.Lock()
	calls := rec.calls
	rec.mu.Unlock()
	if calls != 2 {
		t.Errorf("%d records handed back, want 2 (d1's of attempt 5, d2's)", calls)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestTierZeroOutOfOrder: tier 0 holds records in the order they were
// written, not of their due times — a record moved down from tier 1 can
// be due before one written just ahead of it. The later-written record is
// handed back when its own time comes, not held behind the head; its
// offset is marked only once the head's is, and it is not handed back
// twice.
func TestTierZeroOutOfOrder(t *testing.T) {
	now := time.Now()
	s, rec, marked := fixedScheduler(t, &now)
	head := NewRecord("wh.retry.order.created", []byte("head"), []byte("head"), now.Add(900*time.Millisecond), 2, now)
	behind := NewRecord("wh.retry.order.created", []byte("behind"), []byte("behind"), now.Add(-time.Millisecond), 2, now)
	head.Partition, behind.Partition = 0, 0
	head.Offset, behind.Offset = 10, 11
	k := tp{head.Topic, 0}
	s.queues[k] = []*kgo.Record{head, behind}

	next := s.step(context.Background())
	s.attempts.Wait()
	if _, ok := rec.at("behind"); !ok {
		t.Fatal("the record due now was held behind the head, due in 900 ms")
	}
	if _, ok := rec.at("head"); ok {
		t.Fatal("the head was handed back early")
	}
	if want := time.UnixMilli(now.Add(900 * time.Millisecond).UnixMilli()); !next.Equal(want) {
		t.Errorf("next step at %v, want the head's due time %v", next, want)
	}
	if got := s.queues[k]; len(got) != 2 {
		t.Fatalf("queue after the first step holds %d records, want both (the second's offset waits for the head's)", len(got))
	}
	if s.paused[k] {
		t.Error("tier 0 paused: records moved down meanwhile would not be read")
	}
	if len(*marked) != 0 {
		t.Errorf("offsets %v marked while the head, at 10, is owed", *marked)
	}

	if next := s.step(context.Background()); !next.Equal(time.UnixMilli(now.Add(900 * time.Millisecond).UnixMilli())) {
		t.Errorf("a step after the attempt: next at %v, want the head's due time", next)
	}
	if len(*marked) != 0 {
		t.Errorf("offsets %v marked while the head, at 10, is owed", *marked)
	}

	now = now.Add(time.Second)
	s.step(context.Background())
	s.attempts.Wait()
	s.step(context.Background()) // marks what the attempt settled
	if _, ok := rec.at("head"); !ok {
		t.Fatal("the head was not handed back when due")
	}
	if rec.calls != 2 {
		t.Errorf("%d records handed back, want 2: the second was handed back again", rec.calls)
	}
	if q, ok := s.queues[k]; ok {
		t.Errorf("queue after the second step = %v, want none", q)
	}
	if len(s.settled) != 0 {
		t.Errorf("%d records still remembered as settled", len(s.settled))
	}
	if !slices.Equal(*marked, []int64{10, 11}) {
		t.Errorf("marked offsets %v, want [10 11] (both records, in order)", *marked)
	}
}

// TestDroppedPartitionResumed: a tier's partition paused while its head
// waits, then revoked, is resumed as its queue is dropped — kgo keeps a
// pause across rebalances, and were the partition assigned back, nothing
// would fetch it again.
func TestDroppedPartitionResumed(t *testing.T) {
	s, _, _ := newScheduler(t)
	defer s.cl.Close()
	now := time.Now()
	r := NewRecord("wh.retry.order.created", []byte("d"), []byte("d"), now.Add(10*time.Second), 2, now)
	k := tp{r.Topic, r.Partition}
	s.queues[k] = []*kgo.Record{r}
	s.step(context.Background())
	if !s.paused[k] || !slices.Contains(s.cl.PauseFetchPartitions(nil)[k.topic], k.partition) {
		t.Fatalf("partition %d not paused while its head waits", k.partition)
	}
	s.drop(context.Background(), s.cl, map[string][]int32{k.topic: {k.partition}})
	if paused := s.cl.PauseFetchPartitions(nil)[k.topic]; slices.Contains(paused, k.partition) {
		t.Errorf("partition %d still paused after it was revoked (paused: %v)", k.partition, paused)
	}
	if _, ok := s.queues[k]; ok {
		t.Error("the revoked partition's queue was kept")
	}
}

// blocking hands back retries at once, but those whose value is in hold
// only once release is closed.
type blocking struct {
	*recorder
	hold    map[string]bool
	release chan struct{}
}

func (b blocking) DeliverRetry(ctx context.Context, value []byte, attempt int) error {
	if b.hold[string(value)] {
		<-b.release
	}
	return b.recorder.DeliverRetry(ctx, value, attempt)
}

// TestSlowAttemptHoldsNoOther: while one retry's attempt hangs (a partner
// that answers only at the delivery timeout), the other due retries are
// made, and later steps go on taking what falls due; a second retry of
// the hanging delivery waits for its attempt to end; offsets are marked
// in order once the hanging attempt ends.
func TestSlowAttemptHoldsNoOther(t *testing.T) {
	now := time.Now()
	s, rec, marked := fixedScheduler(t, &now)
	release := make(chan struct{})
	s.d = blocking{rec, map[string]bool{"slow": true}, release}
	retry := func(key, value string, due time.Duration, offset int64) *kgo.Record {
		r := NewRecord("wh.retry.order.created", []byte(key), []byte(value), now.Add(due), 2, now)
		r.Partition, r.Offset = 0, offset
		return r
	}
	k := tp{"wh.retry.order.created", 0}
	s.queues[k] = []*kgo.Record{retry("d1", "slow", -time.Millisecond, 1), retry("d2", "other", -time.Millisecond, 2)}
	s.step(context.Background())
	eventually(t, "the other retry handed back beside the hanging one", func() bool { _, ok := rec.at("other"); return ok })

	// Later: a retry of another delivery falls due, and a second retry of
	// the hanging one (its attempt 3) is read.
	now = now.Add(500 * time.Millisecond)
	s.mu.Lock()
	s.queues[k] = append(s.queues[k], retry("d3", "later", -time.Millisecond, 3), retry("d1", "slow-again", -time.Millisecond, 4))
	s.mu.Unlock()
	s.step(context.Background())
	eventually(t, "a retry due after the hanging one began handed back", func() bool { _, ok := rec.at("later"); return ok })
	if _, ok := rec.at("slow-again"); ok {
		t.Error("a second retry of the hanging delivery was attempted beside it")
	}
	if len(*marked) != 0 {
		t.Errorf("offsets %v marked while the first record's attempt hangs", *marked)
	}

	close(release)
	s.attempts.Wait()
	s.step(context.Background()) // takes slow-again, now its delivery is free
	s.attempts.Wait()
	s.step(context.Background())
	if _, ok := rec.at("slow-again"); !ok {
		t.Error("the second retry of the delivery was not attempted once the first ended")
	}
	if !slices.Equal(*marked, []int64{1, 2, 3, 4}) {
		t.Errorf("marked offsets %v, want [1 2 3 4]", *marked)
	}
}

// eventually polls cond until it holds; the deadline bounds a hang, it
// does not measure speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTierReadWhileItsHeadIsAttempted: a tier ≥ 1 partition whose records
// are all overdue (a backlog after downtime) is not paused while their
// attempts run — only a head that waits pauses a tier — so what is
// written to it meanwhile is read.
func TestTierReadWhileItsHeadIsAttempted(t *testing.T) {
	now := time.Now()
	s, rec, _ := fixedScheduler(t, &now)
	release := make(chan struct{})
	s.d = blocking{rec, map[string]bool{"overdue": true}, release}
	// Written an hour ago to the tier of a 59-minute wait; due a minute ago.
	r := NewRecord("wh.retry.order.created", []byte("d"), []byte("overdue"), now.Add(-time.Minute), 2, now.Add(-time.Hour))
	k := tp{r.Topic, r.Partition}
	if k.partition == 0 {
		t.Fatal("the record is in tier 0; the test needs a higher tier")
	}
	s.queues[k] = []*kgo.Record{r}
	s.step(context.Background())
	if s.paused[k] || slices.Contains(s.cl.PauseFetchPartitions(nil)[k.topic], k.partition) {
		t.Errorf("tier %d paused while its only record is being attempted", k.partition)
	}
	close(release)
	s.attempts.Wait()
	if _, ok := rec.at("overdue"); !ok {
		t.Error("the overdue record was not attempted")
	}
}
