package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
	"github.com/whp-dev/whp/store/storetest"
)

func open(t *testing.T, dir string) store.Store {
	t.Helper()
	s, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}

func TestSecondOpenerFails(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if s, err := embedded.Open(dir); err == nil {
		s.Close()
		t.Fatal("a second Open of a locked data dir succeeded")
	}
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	s, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for i, exp := range []time.Time{now.Add(-time.Minute), now.Add(-time.Second), now.Add(time.Hour)} {
		if err := s.PutIdempotency(ctx, store.Idempotency{Key: string(rune('a' + i)), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2 expired items deleted", n, err)
	}
	if _, err := s.GetIdempotency(ctx, "c"); err != nil {
		t.Errorf("live item gone after sweep: %v", err)
	}
}
