package embedded

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// groupFile is a bbolt file with bucket "b", and its group commit.
func groupFile(t *testing.T) (*bolt.DB, *groupCommit) {
	t.Helper()
	db, err := openFile(filepath.Join(t.TempDir(), "g.db"), func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("b"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, &groupCommit{db: db}
}

// queued is how many writes wait for the next commit.
func (g *groupCommit) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// The writes that arrive while a commit runs are committed together, in
// the next transaction; a write alone is committed in one of its own.
func TestGroupCommit(t *testing.T) {
	db, g := groupFile(t)
	hold, held := make(chan struct{}), make(chan struct{})
	var first int
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := g.update(func(tx *bolt.Tx) error {
			first = tx.ID()
			close(held)
			<-hold
			return tx.Bucket([]byte("b")).Put([]byte("first"), []byte("1"))
		}); err != nil {
			t.Error(err)
		}
	})
	<-held
	const n = 10
	var mu sync.Mutex
	txs := map[int]int{}
	for i := range n {
		wg.Go(func() {
			if err := g.update(func(tx *bolt.Tx) error {
				mu.Lock()
				txs[tx.ID()]++
				mu.Unlock()
				return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%d", i), []byte("v"))
			}); err != nil {
				t.Error(err)
			}
		})
	}
	for g.queued() < n {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	if len(txs) != 1 || txs[first] != 0 {
		t.Errorf("the %d writes queued behind a commit ran in transactions %v (the first's: %d), want one other", n, txs, first)
	}
	var alone int
	if err := g.update(func(tx *bolt.Tx) error { alone = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, ok := txs[alone]; ok || alone == first {
		t.Errorf("a write alone ran in transaction %d, a group's", alone)
	}
	db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket([]byte("b")).Stats().KeyN; got != n+1 {
			t.Errorf("%d keys written, want %d", got, n+1)
		}
		return nil
	})
}

// A write that fails or panics in a group gets its own error (its panic,
// in its own goroutine) and nothing of it is written; the group's other
// writes are committed.
func TestGroupCommitFailureIsItsOwn(t *testing.T) {
	db, g := groupFile(t)
	hold, held := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		g.update(func(tx *bolt.Tx) error {
			close(held)
			<-hold
			return nil
		})
	})
	<-held
	errBad := errors.New("bad write")
	results := make([]error, 3)
	var panicked any
	writes := []func(tx *bolt.Tx) error{
		func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("good1"), []byte("v")) },
		func(tx *bolt.Tx) error {
			tx.Bucket([]byte("b")).Put([]byte("bad"), []byte("v"))
			return errBad
		},
		func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("good2"), []byte("v")) },
	}
	for i, fn := range writes {
		wg.Go(func() { results[i] = g.update(fn) })
	}
	wg.Go(func() {
		defer func() { panicked = recover() }()
		g.update(func(tx *bolt.Tx) error {
			tx.Bucket([]byte("b")).Put([]byte("panicked"), []byte("v"))
			panic("boom")
		})
	})
	for g.queued() < 4 {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	if results[0] != nil || !errors.Is(results[1], errBad) || results[2] != nil {
		t.Errorf("results %v, want nil, %v, nil", results, errBad)
	}
	if panicked != "boom" {
		t.Errorf("the panicking write's caller recovered %v, want its panic", panicked)
	}
	db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		for k, want := range map[string]bool{"good1": true, "good2": true, "bad": false, "panicked": false} {
			if got := b.Get([]byte(k)) != nil; got != want {
				t.Errorf("key %s written: %v, want %v", k, got, want)
			}
		}
		return nil
	})
}
