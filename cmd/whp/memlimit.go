package main

import (
	"io"
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memoryLimitRatio is the share of the container's memory limit the
// garbage collector is told to stay under: the rest is for what its soft
// limit does not count (goroutine stacks beyond the heap, the embedded
// store's mapped pages, cgo).
const memoryLimitRatio = 0.9

// setMemoryLimit tells the garbage collector the memory limit of the
// container whp runs in (cgroup v1 or v2, from provider), as GOMEMLIMIT
// would: without it, the collector paces itself by GOGC alone and lets
// the heap double under a burst — a fan-out burst's backlog, say — until
// the kernel kills the pod. With it, it collects harder as the heap nears
// the limit. GOMEMLIMIT set in the environment wins; AUTOMEMLIMIT sets
// another ratio, or "off". Outside a container there is no limit and
// nothing changes. It returns the limit in force.
func setMemoryLimit(provider memlimit.Provider, log io.Writer) int64 {
	limit, _ := memlimit.Set(memlimit.WithProvider(provider), memlimit.WithRatio(memoryLimitRatio),
		memlimit.WithLogger(slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	return limit
}
