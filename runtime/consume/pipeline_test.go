package consume

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fakeStore records what a Pipeline writes and commits; its writes fail
// while failing is set and block while gate is held.
type fakeStore struct {
	mu        sync.Mutex
	written   [][]int // each write's items
	committed []int64 // offsets, in commit order
	failing   bool
	failures  int
	gate      sync.Mutex
	entered   atomic.Int32 // writes begun
}

func (f *fakeStore) write(_ context.Context, items []int) error {
	f.entered.Add(1)
	f.gate.Lock()
	defer f.gate.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		f.failures++
		return errors.New("store unavailable")
	}
	f.written = append(f.written, slices.Clone(items))
	return nil
}

func (f *fakeStore) commit(_ context.Context, recs []*kgo.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range recs {
		f.committed = append(f.committed, r.Offset)
	}
	return nil
}

func (f *fakeStore) snapshot() (written [][]int, committed []int64, failures int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.written), slices.Clone(f.committed), f.failures
}

func rec(offset int64) []*kgo.Record { return []*kgo.Record{{Topic: "t", Offset: offset}} }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestPipelineOrderAndMerge: batches queued behind a slow write are
// written together, in order, and committed only after they are written.
func TestPipelineOrderAndMerge(t *testing.T) {
	f := &fakeStore{}
	p := NewPipeline(f.write, f.commit, quiet)
	f.gate.Lock() // the first write blocks
	p.Submit(1, rec(1))
	waitFor(t, func() bool { return f.entered.Load() == 1 }) // the worker is in the write
	for i := 2; i <= 5; i++ {
		p.Submit(i, rec(int64(i)))
	}
	if _, committed, _ := f.snapshot(); len(committed) != 0 {
		t.Fatalf("committed %v before any write finished", committed)
	}
	f.gate.Unlock()
	if err := p.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Close(context.Background())
	written, committed, _ := f.snapshot()
	if want := [][]int{{1}, {2, 3, 4, 5}}; !slices.EqualFunc(written, want, slices.Equal) {
		t.Errorf("writes = %v, want %v (the four queued behind the first merged into one)", written, want)
	}
	if want := []int64{1, 2, 3, 4, 5}; !slices.Equal(committed, want) {
		t.Errorf("commits = %v, want %v", committed, want)
	}
}

// TestPipelineLinger: an idle pipeline's write waits for the batches
// submitted within its linger, and writes them together.
func TestPipelineLinger(t *testing.T) {
	f := &fakeStore{}
	p := newPipeline(f.write, f.commit, quiet, 300*time.Millisecond)
	p.Submit(1, rec(1))
	p.Submit(2, rec(2))
	if err := p.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Close(context.Background())
	written, committed, _ := f.snapshot()
	if want := [][]int{{1, 2}}; !slices.EqualFunc(written, want, slices.Equal) {
		t.Errorf("writes = %v, want %v (both batches in the lingering write)", written, want)
	}
	if want := []int64{1, 2}; !slices.Equal(committed, want) {
		t.Errorf("commits = %v, want %v", committed, want)
	}
}

// TestPipelineRetriesThenGivesUp: a failing write is retried until it
// succeeds; closed while the store still fails, nothing is committed.
func TestPipelineRetriesThenGivesUp(t *testing.T) {
	f := &fakeStore{failing: true}
	p := NewPipeline(f.write, f.commit, quiet)
	p.Submit(1, rec(1))
	waitFor(t, func() bool { _, _, n := f.snapshot(); return n >= 2 })
	f.mu.Lock()
	f.failing = false
	f.mu.Unlock()
	if err := p.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, c, _ := f.snapshot(); return len(c) == 1 })

	f.mu.Lock()
	f.failing = true
	f.mu.Unlock()
	p.Submit(2, rec(2))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Drain(ctx); err == nil {
		t.Error("Drain returned nil while the store was failing")
	}
	p.Close(ctx) // gives up when ctx ends
	written, committed, _ := f.snapshot()
	if len(written) != 1 || !slices.Equal(committed, []int64{1}) {
		t.Errorf("after giving up: writes %v, commits %v; want only batch 1 written and committed", written, committed)
	}
	p.Submit(3, rec(3)) // after Close: dropped, not blocking
}

// TestPipelineBackpressure: Submit blocks while maxQueued batches wait.
func TestPipelineBackpressure(t *testing.T) {
	f := &fakeStore{}
	p := NewPipeline(f.write, f.commit, quiet)
	defer p.Close(context.Background())
	f.gate.Lock()
	p.Submit(0, rec(0))
	waitFor(t, func() bool { return f.entered.Load() == 1 })
	for i := 1; i <= maxQueued; i++ {
		p.Submit(i, rec(int64(i)))
	}
	blocked := make(chan struct{})
	go func() {
		p.Submit(99, rec(99))
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("Submit did not block with the queue full")
	case <-time.After(100 * time.Millisecond):
	}
	f.gate.Unlock()
	<-blocked
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}
