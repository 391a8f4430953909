package topology

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/signature"
)

// BenchmarkProductionTopology sends 2,000 events through the three role
// processes as production runs them — ingest, processor and dispatcher
// on two Kafka clusters and the DynamoDB store (dynalite, a process of
// its own) — from 16 producers, and reports the events a second from the
// first POST to the last delivery, the same to the end of the work they
// led to (the processor's history of them written too), and each role's
// CPU per event: what a pod of each role costs an event on the
// production code paths (the DynamoDB store's included, dynalite's own
// CPU not).
//
//	go test -run '^$' -bench ProductionTopology -benchtime 1x ./test/topology
func BenchmarkProductionTopology(b *testing.B) {
	secret := signature.NewSecret()
	pt := newPartner(b, secret, nil)
	tp := startTopology(b, secret, pt.srv.URL, "{order_id: string, note: string}", "")
	note := strings.Repeat("x", 900) // ≈ 1 KiB events
	const n, producers = 2000, 16
	round := 0
	for b.Loop() {
		round++
		prefix := fmt.Sprintf("r%d-", round)
		cpu0 := map[string]float64{}
		for name, p := range tp.roles {
			cpu0[name] = cpuSeconds(b, p.cmd.Process.Pid)
		}
		start := time.Now()
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: producers}}
		var wg sync.WaitGroup
		for w := range producers {
			wg.Go(func() {
				for i := w; i < n; i += producers {
					tp.post(b, client, fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"%s%d","note":"%s"}}`, prefix, i, note), "")
				}
			})
		}
		wg.Wait()
		deadline := time.Now().Add(5 * time.Minute)
		for len(pt.arrived(prefix)) < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d delivered in 5 minutes", len(pt.arrived(prefix)), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start).Seconds()
		b.ReportMetric(n/took, "events/s")
		// The processor writes the events' history after their
		// deliveries went out, and may still be at it: the roles' CPU is
		// read once every one of them has been idle for half a second
		// (two quarter-second samples; a processor whose history writes
		// fall behind would look cheaper otherwise), and how long after
		// the last delivery that was is reported.
		last, idleFor := map[string]float64{}, 0
		for done := time.Now(); idleFor < 2 && time.Since(done) < time.Minute; {
			time.Sleep(250 * time.Millisecond)
			idle := true
			for name, p := range tp.roles {
				c := cpuSeconds(b, p.cmd.Process.Pid)
				idle = idle && c-last[name] < 0.02
				last[name] = c
			}
			if idleFor++; !idle {
				idleFor = 0
			}
		}
		all := time.Since(start).Seconds() - 0.5 // less the idle half second
		b.ReportMetric(n/all, "events/s-with-history")
		for name, p := range tp.roles {
			b.ReportMetric((cpuSeconds(b, p.cmd.Process.Pid)-cpu0[name])/n*1000, name+"-cpu-ms/event")
		}
	}
}

// cpuSeconds is a process's user and system CPU time so far (Linux,
// whose /proc counts it in ticks of 1/100 s: USER_HZ).
func cpuSeconds(tb testing.TB, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 a second).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}
