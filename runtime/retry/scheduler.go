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

// concurrency bounds the retry attempts in flight.
const concurrency = 32

type tp struct {
	topic     string
	partition int32
}

// Scheduler consumes the retry topics of the egress cluster.
type Scheduler struct {
	// Tracing continues each delivery's trace through its retries (nil:
	// none); records moved between tiers keep it.
	Tracing *telemetry.Tracing

	cl   *kgo.Client          // consumer, in the retry group
	mark func(...*kgo.Record) // cl.MarkCommitRecords; a test's recorder
	prod *kgo.Client          // producer with manual partitioning (tiers)
	d    Deliverer
	log  *slog.Logger
	now  func() time.Time

	mu     sync.Mutex
	queues map[tp][]*kgo.Record
	paused map[tp]bool
	// settled holds records done with — attempted, moved down a tier or
	// skipped — whose offsets wait for the records ahead of them (step).
	settled map[*kgo.Record]bool
	// inflight holds the records being attempted, and inflightKeys their
	// keys (deliveries' IDs): a delivery is attempted once at a time.
	inflight     map[*kgo.Record]bool
	inflightKeys map[string]bool
	attempts     sync.WaitGroup
	idle         *sync.Cond // on mu: broadcast as each attempt ends
	slots        chan struct{}
	// When an attempt ends, Run's poll is cut short (cancelPoll, set while
	// it polls), or the next one is (woken): what the attempt settled is
	// marked, and what waited for its slot or its key is taken.
	cancelPoll context.CancelFunc
	woken      bool
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
	s := &Scheduler{prod: prod, d: d, log: log, now: time.Now, slots: make(chan struct{}, concurrency),
		queues: map[tp][]*kgo.Record{}, paused: map[tp]bool{}, settled: map[*kgo.Record]bool{},
		inflight: map[*kgo.Record]bool{}, inflightKeys: map[string]bool{}}
	s.idle = sync.NewCond(&s.mu)
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
// their new owner reads them again from the last commit. It first waits
// for their attempts in flight to end (each bounded by the delivery
// timeout), so that no delivery is attempted here and by the new owner
// at once.
func (s *Scheduler) drop(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	var resume []tp
	s.mu.Lock()
	for t, ps := range lost {
		for _, p := range ps {
			k := tp{t, p}
			for s.attempting(k) {
				s.idle.Wait()
			}
			if s.forget(k) {
				resume = append(resume, k)
			}
		}
	}
	s.mu.Unlock()
	s.setPaused(resume, false)
}

// attempting reports whether a record of k's queue is being attempted;
// the caller holds s.mu.
func (s *Scheduler) attempting(k tp) bool {
	for _, r := range s.queues[k] {
		if s.inflight[r] {
			return true
		}
	}
	return false
}

// Refresh looks for new retry topics now.
func (s *Scheduler) Refresh() { s.cl.ForceMetadataRefresh() }

// Run schedules until ctx ends, then waits for the attempts in flight and
// commits what it finished.
func (s *Scheduler) Run(ctx context.Context) error {
	defer func() {
		s.attempts.Wait()
		s.mu.Lock()
		done := s.settle()
		s.mu.Unlock()
		s.mark(done...)
		s.cl.CommitMarkedOffsets(context.WithoutCancel(ctx))
		s.cl.Close()
	}()
	next := time.Time{}
	for {
		wait := time.Second
		if !next.IsZero() {
			wait = time.Until(next)
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		s.mu.Lock()
		if s.woken {
			s.woken = false
			cancel()
		} else {
			s.cancelPoll = cancel
		}
		s.mu.Unlock()
		fetches := s.cl.PollRecords(pctx, 1000)
		s.mu.Lock()
		s.cancelPoll = nil
		s.mu.Unlock()
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
// Attempts run in the background, concurrency at a time, and step does
// not wait for them: a partner that hangs until the delivery timeout
// holds its own retries, not everyone's (BenchmarkRetryLateness
// "slow-partner": with one retry in a hundred taking 2 s, the others came
// back 2.9 s late at the median, 7.8 s at p99, when each step waited for
// its attempts). A due record waits for a free slot, and for an attempt
// of the same delivery (its key) to end; the end of any attempt wakes
// Run.
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
	var due, moves, moved, skipped []*kgo.Record
	waiting := map[tp]bool{} // tiers ≥ 1 whose head waits: paused
	s.mu.Lock()
	for k, q := range s.queues {
		for _, r := range q {
			if s.settled[r] || s.inflight[r] {
				continue
			}
			dueAt, attempt, err := Parse(r)
			if err != nil {
				s.log.Error("skipping malformed retry record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "error", err)
				skipped = append(skipped, r)
				continue
			}
			if leave := LeaveAt(dueAt, r.Partition); now.Before(leave) {
				if next.IsZero() || leave.Before(next) {
					next = leave
				}
				if k.partition == 0 {
					continue
				}
				waiting[k] = true
				break
			}
			if r.Partition == 0 || !dueAt.After(now) {
				due = append(due, r)
			} else {
				m := NewRecord(r.Topic, r.Key, r.Value, dueAt, attempt, now)
				m.Context = r.Context
				moves = append(moves, m)
				moved = append(moved, r)
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
		skipped = append(skipped, moved...)
	}
	due, superseded := latestOfEach(due)
	skipped = append(skipped, superseded...)

	s.mu.Lock()
	for _, r := range skipped {
		s.settled[r] = true
	}
	for _, r := range due {
		if len(r.Key) > 0 && s.inflightKeys[string(r.Key)] {
			continue // after the attempt of the same delivery ends
		}
		select {
		case s.slots <- struct{}{}:
		default:
			continue // after an attempt ends and frees its slot
		}
		s.inflight[r] = true
		if len(r.Key) > 0 {
			s.inflightKeys[string(r.Key)] = true
		}
		s.attempts.Go(func() { s.attempt(ctx, r) })
	}
	done := s.settle()
	// A tier is paused while its head waits, and only then: a partition
	// whose records are all taken (attempts in flight, from a backlog
	// overdue) goes on being read.
	var pause, resume []tp
	for k := range waiting {
		if _, ok := s.queues[k]; ok && !s.paused[k] {
			pause = append(pause, k)
			s.paused[k] = true
		}
	}
	for k := range s.paused {
		if !waiting[k] {
			resume = append(resume, k)
			delete(s.paused, k)
		}
	}
	s.mu.Unlock()
	s.setPaused(pause, true)
	s.setPaused(resume, false)
	s.mark(done...)
	return next
}

// settle takes the runs of settled records from the heads of the queues
// and returns them, to be marked; the caller holds s.mu.
func (s *Scheduler) settle() []*kgo.Record {
	var done []*kgo.Record
	for k, q := range s.queues {
		i := 0
		for i < len(q) && s.settled[q[i]] {
			delete(s.settled, q[i])
			i++
		}
		if i == 0 {
			continue
		}
		done = append(done, q[:i]...)
		// Settled records cleared, or the backing array keeps them — and
		// the fetched batches they are slices of — while the queue lives.
		clear(q[:i])
		if i == len(q) {
			delete(s.queues, k)
		} else {
			s.queues[k] = q[i:]
		}
	}
	return done
}

// attempt makes a due retry. One that cannot be made is written back, due
// TransientDelay later, with the same attempt number; if that write fails
// too, the record is left owed, and taken again a second later.
func (s *Scheduler) attempt(ctx context.Context, r *kgo.Record) {
	_, attempt, _ := Parse(r)
	rctx, span := s.Tracing.Process(ctx, r)
	settled := true
	if err := s.d.DeliverRetry(rctx, r.Value, attempt); err != nil {
		s.log.Warn("retry attempt could not be made; deferred", "error", err, "trace_id", telemetry.TraceID(rctx))
		d := NewRecord(r.Topic, r.Key, r.Value, s.now().Add(TransientDelay), attempt, s.now())
		d.Context = rctx
		if err := s.prod.ProduceSync(context.WithoutCancel(ctx), d).FirstErr(); err != nil {
			s.log.Error("deferring a retry failed; will try again", "error", err, "trace_id", telemetry.TraceID(rctx))
			settled = false
			consume.Pause(ctx, time.Second)
		}
	}
	span.End()
	s.mu.Lock()
	if settled {
		s.settled[r] = true // its queue is still here: drop waits for attempts
	}
	delete(s.inflight, r)
	if len(r.Key) > 0 {
		delete(s.inflightKeys, string(r.Key))
	}
	<-s.slots
	if s.cancelPoll != nil {
		s.cancelPoll()
	} else {
		s.woken = true
	}
	s.idle.Broadcast()
	s.mu.Unlock()
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
