package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// check is one dependency /readyz reaches.
type check struct {
	name string
	ping func(context.Context) error
}

// readinessTTL is how long a readiness answer is reused: probes from the
// kubelet and a load balancer together do not multiply the pings.
const readinessTTL = 2 * time.Second

// readiness answers /readyz: 200 when every dependency answered within 2 s,
// else 503 naming those that did not. A role that cannot reach its store or
// Kafka is taken out of rotation (ingest stops receiving events it could not
// accept) without being restarted: liveness (/healthz) does not depend on
// it, since a restart would not bring back an unreachable cluster.
func readiness(checks []check, ttl time.Duration) http.Handler {
	var mu sync.Mutex
	var at time.Time
	var failing []string
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) > ttl {
			failing = failing[:0]
			var wg sync.WaitGroup
			var fmu sync.Mutex
			for _, c := range checks {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
					defer cancel()
					if err := c.ping(ctx); err != nil {
						fmu.Lock()
						failing = append(failing, fmt.Sprintf("%s: %v", c.name, err))
						fmu.Unlock()
					}
				})
			}
			wg.Wait()
			slices.Sort(failing)
			at = time.Now()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(failing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready\n%s\n", strings.Join(failing, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
}
