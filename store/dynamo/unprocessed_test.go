package dynamo

import (
	"context"
	"errors"
	"testing"
)

// untilProcessed sends again while something is left, stops at the first
// error, and gives up when its context ends between attempts.
func TestUntilProcessed(t *testing.T) {
	ctx := context.Background()
	left := []int{3, 1, 0}
	calls := 0
	if err := untilProcessed(ctx, "x", func() (int, error) { calls++; return left[calls-1], nil }); err != nil || calls != 3 {
		t.Errorf("3, 1, 0 left: %d calls, %v", calls, err)
	}
	calls = 0
	boom := errors.New("boom")
	if err := untilProcessed(ctx, "x", func() (int, error) { calls++; return 5, boom }); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("an error: %d calls, %v", calls, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err := untilProcessed(cctx, "x", func() (int, error) { calls++; cancel(); return 1, nil })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("canceled: %d calls, %v", calls, err)
	}
}
