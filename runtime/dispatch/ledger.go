package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/whp-dev/whp/runtime/consume"
	"github.com/whp-dev/whp/store"
)

// ledgerLane writes a consuming dispatcher's ledger entries as soon as
// their deliveries are made — one store write at a time, for all that were
// made meanwhile and within ledgerLinger — ahead of the statuses and
// counters that go through the pipeline (consume.Pipeline) with their
// offsets.
//
// The ledger is what keeps a replay from delivering again, and a delivery
// made again after a crash is one whose entry was not written yet: the
// delivery window (docs/reliability.md). In the pipeline an entry waited
// for the linger, the write queued before it, then its own write, whose
// statuses make it the larger: at fan-out 16 on this machine's embedded
// store (whp bench, 4,500–6,000 deliveries a second) 15–58 ms (p50) and
// 82–149 ms (p90) between a partner's answer and its entry's commit.
// Here it waits for the linger, the write in progress (on the embedded
// store, the commit the statuses may hold) and its own small one: 9–10 ms
// and 30–32 ms. At fan-out 1, 12–13 ms (p50) became ≈ 5.7. What it costs
// is a second store write for each of the pipeline's, or two: ≈ 5 % more
// CPU per event at fan-out 16, within the noise at fan-out 1
// (docs/benchmarks.md, "Round 8").
//
// The pipeline still commits no offset before the entries of its
// deliveries are written: a batch carries the lane's mark at its
// hand-over (every entry added before it), and its write waits for the
// lane to pass it.
type ledgerLane struct {
	put     func(context.Context, []store.Idempotency) error
	written func([]store.Idempotency) // after each write (the dispatcher forgets them)
	log     *slog.Logger

	ctx    context.Context // ends when close gives up
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	mu      sync.Mutex
	cond    *sync.Cond
	pending []store.Idempotency
	added   uint64 // entries handed over
	stored  uint64 // entries written, in order
	closing bool
}

func newLedgerLane(put func(context.Context, []store.Idempotency) error, written func([]store.Idempotency), log *slog.Logger) *ledgerLane {
	l := &ledgerLane{put: put, written: written, log: log, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l
}

// add hands over an entry to write. It never blocks: the entries waiting
// are bounded by the deliveries a dispatcher has polled, since the
// pipeline, which waits for the lane, holds further polls back.
func (l *ledgerLane) add(rec store.Idempotency) {
	l.mu.Lock()
	l.pending = append(l.pending, rec)
	l.added++
	l.cond.Broadcast()
	l.mu.Unlock()
}

// mark is the number of entries handed over so far: wait(mark) returns
// once every one of them is written.
func (l *ledgerLane) mark() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.added
}

// wait blocks until the first upTo entries are written, or ctx ends, or
// the lane was closed before it could write them.
func (l *ledgerLane) wait(ctx context.Context, upTo uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return consume.Await(ctx, l.ctx, l.cond, func() bool { return l.stored >= upTo })
}

// close writes what was handed over, giving up when ctx ends (those
// deliveries are then made again after the restart), and stops.
func (l *ledgerLane) close(ctx context.Context) {
	l.mu.Lock()
	l.closing = true
	l.cond.Broadcast()
	l.mu.Unlock()
	select {
	case <-l.done:
	case <-ctx.Done():
	}
	l.cancel()
	<-l.done
}

func (l *ledgerLane) run() {
	defer close(l.done)
	defer func() {
		l.mu.Lock()
		l.cond.Broadcast() // waiters see the lane closed
		l.mu.Unlock()
	}()
	for {
		l.mu.Lock()
		for len(l.pending) == 0 && !l.closing {
			l.cond.Wait()
		}
		if !l.closing {
			l.mu.Unlock()
			consume.Pause(l.ctx, ledgerLinger)
			l.mu.Lock()
		}
		recs := l.pending
		l.pending = nil
		l.mu.Unlock()
		if len(recs) == 0 {
			return // closing, and nothing left
		}
		// Written again with backoff while the store fails, until it
		// succeeds or the lane is closed.
		if !consume.Retry(l.ctx, l.log, "ledger write", func(ctx context.Context) error { return l.put(ctx, recs) }, "entries", len(recs)) {
			return
		}
		l.written(recs)
		l.mu.Lock()
		l.stored += uint64(len(recs))
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

// ledgerLinger is how long a write waits for more entries to join it once
// one is there: on the embedded store a write is a commit (an fsync), and
// at fan-out 16 writing at once made ≈ 2,700 commits in a run where
// waiting 2 ms made ≈ 1,400, for ≈ 8 % more CPU per event (whp bench;
// the window's p50 ≈ 4.5 ms against ≈ 9; 5 ms: ≈ 16).
const ledgerLinger = 2 * time.Millisecond
