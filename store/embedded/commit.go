package embedded

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// groupCommit commits writes to one of the store's files in groups, as
// databases commit their logs: a write that finds no commit of its own
// kind running is committed at once, alone; the writes that arrive while
// one runs wait for it and are committed together in the next — which,
// when the one before was a group of several (writers are busy), starts
// no sooner than groupInterval after it, so that under load each commit,
// with its fsync, carries what arrived in that time. A write alone waits
// for nothing but its own commit.
//
// It commits the producers' Idempotency-Key claims and outcomes
// (Store.claims): a claim is what a producer's 202 waits for, and bbolt's
// Batch held each up to its MaxBatchDelay (1 ms here) for company — a
// claim's commit took 1.6 ms where 0.35 does
// (BenchmarkHotPath/CreateIdempotency). The store's other writes keep
// Batch: each of their writers (the processor, the dispatcher's statuses
// and ledger) already gathers its own, and Batch's wait joins theirs into
// shared commits — all of them through a groupCommit, the default bench
// run spent 8 % more CPU an event, committing them apart
// (docs/benchmarks.md, "Idempotency keys").
//
// Its contract is Batch's: a write's function may run more than once (when
// another in its group fails, the group runs again without it), and one
// that fails in a group runs again alone, so that its error — or its
// panic — is its own.
type groupCommit struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []*groupWrite // for the next commit
	running bool          // a goroutine is committing the queue
}

// maxGroup bounds the writes of one transaction (Batch's MaxBatchSize).
const maxGroup = 1000

// groupInterval is the least time from one commit's start to the next's
// while writes keep coming (what MaxBatchDelay was to Batch).
const groupInterval = time.Millisecond

type groupWrite struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// errAlone tells a write that its function failed in a group: it runs
// again in a transaction of its own.
var errAlone = errors.New("embedded: run the write alone")

// update commits fn, in a group with whatever writes share its commit.
func (g *groupCommit) update(fn func(*bolt.Tx) error) error {
	w := &groupWrite{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	if err := <-w.done; err != errAlone {
		return err
	}
	return g.db.Update(fn)
}

// run commits the queue, group after group, until it is empty: the first
// group at once, and a group after a group of several groupInterval after
// that one began.
func (g *groupCommit) run() {
	var last time.Time
	var lastN int
	for {
		if lastN > 1 {
			if wait := groupInterval - time.Since(last); wait > 0 {
				time.Sleep(wait)
			}
		}
		g.mu.Lock()
		n := min(len(g.queue), maxGroup)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		ws := slices.Clone(g.queue[:n])
		g.queue = slices.Delete(g.queue, 0, n)
		g.mu.Unlock()
		last, lastN = time.Now(), n
		g.commit(ws)
	}
}

// commit runs ws in one transaction. A function that fails (or panics) is
// taken out and told to run alone; the others run again without it.
func (g *groupCommit) commit(ws []*groupWrite) {
	for len(ws) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, w := range ws {
				if err := callSafely(w.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			ws[failed].done <- errAlone
			ws = slices.Delete(ws, failed, failed+1)
			continue
		}
		// Success, or bbolt's own failure to commit: the group's outcome.
		for _, w := range ws {
			w.done <- err
		}
		return
	}
}

// callSafely calls fn, turning a panic into an error: the write then runs
// alone, where the panic is its caller's.
func callSafely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("embedded: write panicked: %v", p)
		}
	}()
	return fn(tx)
}
