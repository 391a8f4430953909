package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

func ledgerEntry(i int) store.Idempotency {
	return store.Idempotency{Key: ledgerKey(fmt.Sprint("e", i), fmt.Sprint("d", i))}
}

// TestLedgerLaneWritesInOrder: entries are written in the order they were
// added, a write failing is tried again until it succeeds, and wait
// returns once every entry below the mark is written.
func TestLedgerLaneWritesInOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	fails := 2
	logs := &logBuffer{}
	l := newLedgerLane(func(_ context.Context, recs []store.Idempotency) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("throttled")
		}
		for _, r := range recs {
			got = append(got, r.Key)
		}
		return nil
	}, func([]store.Idempotency) {}, slog.New(slog.NewTextHandler(logs, nil)))
	defer l.close(context.Background())
	var want []string
	for i := range 50 {
		l.add(ledgerEntry(i))
		want = append(want, ledgerEntry(i).Key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.wait(ctx, l.mark()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("written %v; want %v", got, want)
	}
	if !strings.Contains(logs.String(), "ledger write failed; retrying") || !strings.Contains(logs.String(), "ledger writes resumed") {
		t.Errorf("the failures and the recovery are not logged:\n%s", logs)
	}
}

// TestLedgerLaneClose: closing writes what was added; a lane whose store
// does not answer gives up when close's context ends, and a wait for what
// it could not write returns an error rather than blocking.
func TestLedgerLaneClose(t *testing.T) {
	var n int
	written := map[string]bool{}
	l := newLedgerLane(func(_ context.Context, recs []store.Idempotency) error { n += len(recs); return nil },
		func(recs []store.Idempotency) {
			for _, r := range recs {
				written[r.Key] = true
			}
		}, slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	for i := range 10 {
		l.add(ledgerEntry(i))
	}
	l.close(context.Background())
	if n != 10 || len(written) != 10 {
		t.Errorf("close wrote %d entries (%d reported written); want 10", n, len(written))
	}

	stuck := newLedgerLane(func(ctx context.Context, _ []store.Idempotency) error { <-ctx.Done(); return ctx.Err() },
		func([]store.Idempotency) { t.Error("reported written") }, slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	stuck.add(ledgerEntry(1))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	stuck.close(ctx)
	if err := stuck.wait(context.Background(), stuck.mark()); err == nil {
		t.Error("wait for an entry the closed lane did not write returned nil")
	}
}
