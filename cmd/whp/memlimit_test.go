package main

import (
	"io"
	"math"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// In a container of 1 GiB the collector's limit is 90 % of it; an
// explicit GOMEMLIMIT wins, AUTOMEMLIMIT=off leaves the limit alone, and
// without a container limit there is none.
func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const gib = 1 << 30
	if got := setMemoryLimit(memlimit.Limit(gib), io.Discard); got != gib*9/10 || debug.SetMemoryLimit(-1) != gib*9/10 {
		t.Errorf("limit %d (in force %d), want %d", got, debug.SetMemoryLimit(-1), gib*9/10)
	}
	if got := setMemoryLimit(func() (uint64, error) { return 0, memlimit.ErrNoLimit }, io.Discard); got != math.MaxInt64 {
		t.Errorf("no container limit: %d, want none", got)
	}
	t.Setenv("AUTOMEMLIMIT", "off")
	debug.SetMemoryLimit(123 << 20)
	if got := setMemoryLimit(memlimit.Limit(gib), io.Discard); got != 123<<20 {
		t.Errorf("AUTOMEMLIMIT=off: %d, want the limit left as it was", got)
	}
	t.Setenv("AUTOMEMLIMIT", "")
	t.Setenv("GOMEMLIMIT", "300MiB")
	if got := setMemoryLimit(memlimit.Limit(gib), io.Discard); got != 123<<20 {
		t.Errorf("GOMEMLIMIT set: %d, want the runtime's own", got)
	}
}
