// Package rusage reads what the kernel counts of this process's use: its
// CPU time, for the benchmarks (whp bench's CPU an event, and the
// micro-benchmarks' cpu metrics). On a shared machine the CPU a piece of
// work took is a steadier measure than the wall clock it took.
package rusage

import (
	"syscall"
	"time"
)

// CPU is the process's CPU time so far, user and system; 0 where the
// kernel will not say.
func CPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
