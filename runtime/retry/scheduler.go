package retry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/consume"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
)

// Deliverer makes a due retry attempt. It returns an error only when the
// attempt could not be made at all (the store was unavailable, say): the
// scheduler then defers the record by TransientDelay.
type Deliverer interface {
	DeliverRetry(ctx context.Context, value []byte, attempt int) error
}

// TransientDelay defers a record whose attempt could not be made.
const TransientDelay = 5 * time.Second

type tp struct {
	topic     string
	partition int32
}

// Scheduler consumes the retry topics of the egress cluster.
type Scheduler struct {
	// Tracing continues each delivery's trace through its retries (nil:
	// none); records moved between tiers keep it.
	Tracing *telemetry.Tracing

	cl          *kgo.Client          // consumer, in the retry group
	mark        func(...*kgo.Record) // cl.MarkCommitRecords; a test's recorder
	prod        *kgo.Client          // producer with manual partitioning (tiers)
	d           Deliverer
	log         *slog.Logger
	now         func() time.Time
	concurrency int

	mu     sync.Mutex
	queues map[tp][]*kgo.Record
	paused map[tp]bool
	// settled holds the records of tier 0 that were taken, but whose
	// offsets wait for the records ahead of them (step).
	settled map[*kgo.Record]bool
}

// NewProducer returns a producer for retry records: records carry their
// tier as their partition.
func NewProducer(brokers []string, opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}, opts...)...)
}

// NewScheduler creates the retry consumer (group "whp-retry") on the
// egress cluster. prod must come from NewProducer.
func NewScheduler(brokers []string, prod *kgo.Client, d Deliverer, log *slog.Logger, opts ...kgo.Opt) (*Scheduler, error) {
	s := &Scheduler{prod: prod, d: d, log: log, now: time.Now, concurrency: 32,
		queues: map[tp][]*kgo.Record{}, paused: map[tp]bool{}, settled: map[*kgo.Record]bool{}}
	base := append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, consume.GroupOptions("whp-retry", topic.RetryPrefix)...)
	base = append(base,
		kgo.AutoCommitMarks(),
		kgo.OnPartitionsRevoked(s.drop),
		kgo.OnPartitionsLost(s.drop),
	)
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("retry scheduler client: %w", err)
	}
	s.cl, s.mark = cl, cl.MarkCommitRecords
	return s, nil
}

// drop forgets queued records of partitions this member no longer owns:
// their new owner reads them again from the last commit.
func (s *Scheduler) drop(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	var resume []tp
	s.mu.Lock()
	for t, ps := range lost {
		for _, p := range ps {
			if s.forget(tp{t, p}) {
				resume = append(resume, tp{t, p})
			}
		}
	}
	s.mu.Unlock()
	s.setPaused(resume, false)
}

// Refresh looks for new retry topics now.
func (s *Scheduler) Refresh() { s.cl.ForceMetadataRefresh() }

// Run schedules until ctx ends, then commits what it finished.
func (s *Scheduler) Run(ctx context.Context) error {
	defer func() {
		s.cl.CommitMarkedOffsets(context.WithoutCancel(ctx))
		s.cl.Close()
	}()
	next := time.Time{}
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if !next.IsZero() {
			pctx, cancel = context.WithDeadline(ctx, next)
		} else {
			pctx, cancel = context.WithTimeout(ctx, time.Second)
		}
		fetches := s.cl.PollRecords(pctx, 1000)
		cancel()
		if ctx.Err() != nil {
			s.cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				s.log.Warn("retry fetch error", "topic", t, "partition", p, "error", err)
			}
		})
		s.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			k := tp{r.Topic, r.Partition}
			s.queues[k] = append(s.queues[k], r)
		})
		s.mu.Unlock()
		next = s.step(ctx)
		s.cl.AllowRebalance()
	}
}

// step takes every record whose time has come, and returns the earliest
// leave time of the records still waiting (zero if none). A record is
// settled once it was attempted, moved durably to a lower tier, or
// skipped; a partition's offset is marked only past a run of settled
// records from its queue's head, so it is never marked past a record
// still owed.
//
// A tier k ≥ 1 is read in order: its head holds the records behind it
// (the package's proof says none of them is due before the head leaves),
// and its partition is paused while the head waits. Tier 0 is not:
// every record in it is due within a second of being written, but not
// in the order written — a record moved down from tier 1 can be due
// before one written to tier 0 just before it — so the head would hold a
// record behind it up to a second past its time (BenchmarkRetryLateness
// measured a median of 0.47 s late, the largest 1.2 s). Tier 0's queue is
// read whole at every step, each record taken when its own time comes,
// and the partition is never paused: what it holds is at most a second's
// retries.
func (s *Scheduler) step(ctx context.Context) time.Time {
	now := s.now()
	var next time.Time
	var due, moves, skipped []*kgo.Record
	touched := map[tp]bool{}
	s.mu.Lock()
	for k, q := range s.queues {
		for _, r := range q {
			if s.settled[r] {
				continue // tier 0: taken in an earlier step, marked once the head gets here
			}
			dueAt, attempt, err := Parse(r)
			if err != nil {
				s.log.Error("skipping malformed retry record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "error", err)
				skipped = append(skipped, r)
				touched[k] = true
				continue
			}
			if leave := LeaveAt(dueAt, r.Partition); now.Before(leave) {
				if next.IsZero() || leave.Before(next) {
					next = leave
				}
				if k.partition == 0 {
					continue
				}
				break
			}
			touched[k] = true
			if r.Partition == 0 || !dueAt.After(now) {
				due = append(due, r)
			} else {
				m := NewRecord(r.Topic, r.Key, r.Value, dueAt, attempt, now)
				m.Context = r.Context
				moves = append(moves, m)
				skipped = append(skipped, r)
			}
		}
	}
	s.mu.Unlock()

	if len(moves) > 0 {
		if err := s.prod.ProduceSync(context.WithoutCancel(ctx), moves...).FirstErr(); err != nil {
			// Nothing is settled: the same records are tried again.
			s.log.Error("moving retries to a lower tier failed; will try again", "records", len(moves), "error", err)
			return now.Add(time.Second)
		}
	}
	due, superseded := latestOfEach(due)
	skipped = append(skipped, superseded...)
	if !s.deliver(ctx, due) {
		// A record owed an attempt is neither attempted nor deferred:
		// read the partitions this step touched again from their first
		// unmarked record (the ledger drops what was delivered).
		var heads []*kgo.Record
		var resume []tp
		s.mu.Lock()
		for k := range touched {
			if q := s.queues[k]; len(q) > 0 {
				heads = append(heads, q[0])
			}
			if s.forget(k) {
				resume = append(resume, k)
			}
		}
		s.mu.Unlock()
		s.setPaused(resume, false)
		consume.Rewind(s.cl, heads)
		return now.Add(time.Second)
	}

	var done []*kgo.Record
	var pause, resume []tp
	s.mu.Lock()
	for _, r := range append(due, skipped...) {
		s.settled[r] = true
	}
	for k := range touched {
		q := s.queues[k]
		if q == nil {
			continue // revoked meanwhile
		}
		i := 0
		for i < len(q) && s.settled[q[i]] {
			delete(s.settled, q[i])
			i++
		}
		done = append(done, q[:i]...)
		if i == len(q) {
			delete(s.queues, k)
			if s.paused[k] {
				resume = append(resume, k)
				delete(s.paused, k)
			}
			continue
		}
		// Settled records cleared, or the backing array keeps them — and
		// the fetched batches they are slices of — while the queue lives.
		clear(q[:i])
		s.queues[k] = q[i:]
	}
	for k := range s.queues {
		if k.partition != 0 && !s.paused[k] {
			pause = append(pause, k)
			s.paused[k] = true
		}
	}
	s.mu.Unlock()
	s.setPaused(pause, true)
	s.setPaused(resume, false)
	s.mark(done...)
	return next
}

// forget drops a partition's queue and what is known of its records, and
// reports whether the partition was paused: the caller resumes it, once
// it no longer holds s.mu — kgo keeps a partition paused until it is
// resumed, across rebalances too, so a paused partition forgotten would
// not be fetched again (its queue gone, nothing would resume it).
func (s *Scheduler) forget(k tp) (paused bool) {
	for _, r := range s.queues[k] {
		delete(s.settled, r)
	}
	paused = s.paused[k]
	delete(s.queues, k)
	delete(s.paused, k)
	return paused
}

// latestOfEach keeps, of due records with the same key (a delivery's
// ID), the one of the highest attempt, and returns the others apart. Each
// retry record of a delivery replaces the one before it — the attempt it
// made failed, or was held by a circuit breaker — so at most one is owed;
// but a crash before their offsets were committed reads a whole chain of
// them again, due at once, and made concurrently they all pass the ledger
// check before any of them writes it: a delivery made as many times as
// it had been retried (TestChaosKillOrdered found it: a partner failing
// behind an open breaker for a second, then whp dev SIGKILLed).
func latestOfEach(due []*kgo.Record) (latest, superseded []*kgo.Record) {
	at := map[string]int{} // key → index in latest
	for _, r := range due {
		if len(r.Key) == 0 {
			latest = append(latest, r)
			continue
		}
		i, seen := at[string(r.Key)]
		if !seen {
			at[string(r.Key)] = len(latest)
			latest = append(latest, r)
			continue
		}
		_, a, _ := Parse(r)
		_, b, _ := Parse(latest[i])
		if a >= b {
			latest[i], r = r, latest[i]
		}
		superseded = append(superseded, r)
	}
	return latest, superseded
}

// deliver attempts due records concurrently; one that cannot be attempted
// is written back, due a little later, with the same attempt number. It
// reports false if that write failed.
func (s *Scheduler) deliver(ctx context.Context, due []*kgo.Record) bool {
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.concurrency)
	var mu sync.Mutex
	var deferred []*kgo.Record
	for _, r := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, attempt, _ := Parse(r)
			rctx, span := s.Tracing.Process(ctx, r)
			defer span.End()
			if err := s.d.DeliverRetry(rctx, r.Value, attempt); err != nil {
				s.log.Warn("retry attempt could not be made; deferred", "error", err, "trace_id", telemetry.TraceID(rctx))
				d := NewRecord(r.Topic, r.Key, r.Value, s.now().Add(TransientDelay), attempt, s.now())
				d.Context = rctx
				mu.Lock()
				deferred = append(deferred, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(deferred) > 0 {
		if err := s.prod.ProduceSync(context.WithoutCancel(ctx), deferred...).FirstErr(); err != nil {
			s.log.Error("deferring retries failed", "records", len(deferred), "error", err)
			return false
		}
	}
	return true
}

func (s *Scheduler) setPaused(ks []tp, pause bool) {
	if len(ks) == 0 {
		return
	}
	m := map[string][]int32{}
	for _, k := range ks {
		m[k.topic] = append(m[k.topic], k.partition)
	}
	if pause {
		s.cl.PauseFetchPartitions(m)
	} else {
		s.cl.ResumeFetchPartitions(m)
	}
}
