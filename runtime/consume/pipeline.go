package consume

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Pipeline writes what finished batches leave behind (history, statuses,
// counters; the dispatcher's write also waits for its ledger entries,
// which go ahead in a lane of their own) and commits their offsets in the
// background, in order, so a role's poll loop fetches the next batch
// while the store commits the last one. Without it every batch waited
// for a store commit (an fsync on the embedded store, a round trip on
// DynamoDB) and the events that arrived meanwhile waited with it: at 200
// events/s that wait was most of the end-to-end latency.
//
// The guarantees the roles build on:
//   - writes are retried until they succeed or the pipeline is closed;
//   - a batch's offsets are committed only after its writes and those of
//     every batch before it, so a crash or a stop at any point leaves what
//     was not written uncommitted, and consumed again after the restart;
//   - Drain waits until everything handed over is written, for the
//     partition-revoked hook: records that move to another consumer are
//     written first (their commit may then fail, which only means they are
//     handled again — harmless, the roles are idempotent per record).
//
// Batches queued while a write runs are written together, and a write
// waits up to Linger for more batches to join it, so the store sees one
// write per several batches: on the embedded store a commit rewrites the
// pages it touches and syncs, whatever it holds, and five milliseconds
// cut its page writes per event by a sixth and the platform's CPU per
// event by about 13 % (whp bench, bbolt's TxStats). What waits is off the
// delivery path: history, statuses and counters, and offset commits.
//
// Submit blocks while maxQueued batches wait: a store that is down stops
// the poll loop instead of piling batches up in memory.
type Pipeline[T any] struct {
	write  func(context.Context, []T) error
	commit func(context.Context, []*kgo.Record) error
	log    *slog.Logger

	ctx    context.Context // ends when Close gives up
	cancel context.CancelFunc
	done   chan struct{} // closed when the worker returns

	linger time.Duration

	mu        sync.Mutex
	cond      *sync.Cond
	queue     []job[T]
	submitted uint64 // batches handed over
	written   uint64 // batches written (in order)
	closing   bool
}

type job[T any] struct {
	item T
	recs []*kgo.Record
}

const (
	// maxQueued bounds the batches waiting to be written.
	maxQueued = 8
	// writeBackoff is the first pause after a failed write; it doubles
	// up to maxWriteBackoff.
	writeBackoff    = 100 * time.Millisecond
	maxWriteBackoff = 5 * time.Second
	// Linger is how long a write waits for more batches to join it.
	Linger = 5 * time.Millisecond
)

// NewPipeline starts a pipeline: write stores the items of one or more
// batches, commit commits the offsets of their records.
func NewPipeline[T any](write func(context.Context, []T) error, commit func(context.Context, []*kgo.Record) error, log *slog.Logger) *Pipeline[T] {
	return newPipeline(write, commit, log, Linger)
}

func newPipeline[T any](write func(context.Context, []T) error, commit func(context.Context, []*kgo.Record) error, log *slog.Logger, linger time.Duration) *Pipeline[T] {
	p := &Pipeline[T]{write: write, commit: commit, log: log, linger: linger, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p
}

// Submit hands over a batch: item to write, then recs to commit. It blocks
// while the queue is full.
func (p *Pipeline[T]) Submit(item T, recs []*kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) >= maxQueued && !p.closing {
		p.cond.Wait()
	}
	if p.closing {
		// After Close: not written, not committed — consumed again.
		return
	}
	p.queue = append(p.queue, job[T]{item, recs})
	p.submitted++
	p.cond.Broadcast()
}

// Drain waits until every batch submitted so far is written, or ctx ends.
func (p *Pipeline[T]) Drain(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := p.submitted
	return Await(ctx, p.ctx, p.cond, func() bool { return p.written >= want })
}

// Await waits on cond, whose lock the caller holds, until done reports
// true (nil), or ctx ends (its error), or own — the context of what is
// waited on — ends first (own's error).
func Await(ctx, own context.Context, cond *sync.Cond, done func() bool) error {
	stop := context.AfterFunc(ctx, func() {
		cond.L.Lock()
		cond.Broadcast()
		cond.L.Unlock()
	})
	defer stop()
	for !done() && ctx.Err() == nil && own.Err() == nil {
		cond.Wait()
	}
	switch {
	case done():
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return own.Err()
	}
}

// Close writes and commits what was submitted, giving up when ctx ends
// (what is left then is consumed again after the restart), and stops.
func (p *Pipeline[T]) Close(ctx context.Context) {
	p.mu.Lock()
	p.closing = true
	p.cond.Broadcast()
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-ctx.Done():
		p.cancel()
		<-p.done
	}
	p.cancel()
}

func (p *Pipeline[T]) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && !p.closing {
			p.cond.Wait()
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		p.lingerLocked()
		jobs := p.queue
		p.queue = nil
		p.cond.Broadcast() // Submit may go on
		p.mu.Unlock()

		items := make([]T, len(jobs))
		var recs []*kgo.Record
		for i, j := range jobs {
			items[i] = j.item
			recs = append(recs, j.recs...)
		}
		if !p.writeAll(items) {
			return // closed while the store was failing: nothing more is committed
		}
		p.mu.Lock()
		p.written += uint64(len(jobs))
		p.cond.Broadcast()
		p.mu.Unlock()
		if len(recs) > 0 {
			if err := p.commit(p.ctx, recs); err != nil && p.ctx.Err() == nil {
				p.log.Warn("commit offsets failed; records may be handled again", "records", len(recs), "error", err)
			}
		}
	}
}

// lingerLocked waits, with p.mu held, up to p.linger for more batches to
// queue — not past a Close, nor while a full queue blocks Submit.
func (p *Pipeline[T]) lingerLocked() {
	if p.linger <= 0 || p.closing {
		return
	}
	deadline := time.Now().Add(p.linger)
	wake := time.AfterFunc(p.linger, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer wake.Stop()
	for !p.closing && len(p.queue) < maxQueued && time.Now().Before(deadline) {
		p.cond.Wait()
	}
}

// writeAll writes items, retrying with backoff until it succeeds (true) or
// the pipeline gives up (false).
func (p *Pipeline[T]) writeAll(items []T) bool {
	return Retry(p.ctx, p.log, "store write", func(ctx context.Context) error { return p.write(ctx, items) }, "batches", len(items))
}

// Retry calls write until it succeeds (true) or ctx ends (false): after a
// failure it waits writeBackoff, doubling up to maxWriteBackoff. Each
// failure is logged as "{what} failed; retrying", and a success after
// failures as "{what}s resumed", with attrs.
func Retry(ctx context.Context, log *slog.Logger, what string, write func(context.Context) error, attrs ...any) bool {
	wait := writeBackoff
	for attempt := 1; ; attempt++ {
		err := write(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info(what+"s resumed", append(slices.Clip(attrs), "attempts", attempt)...)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn(what+" failed; retrying", append(slices.Clip(attrs), "attempt", attempt, "retry_in", wait.String(), "error", err)...)
		if !Pause(ctx, wait) {
			return false
		}
		wait = min(wait*2, maxWriteBackoff)
	}
}
