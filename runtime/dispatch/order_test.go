package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// failingQueueReads is the embedded store with its first reads of an
// ordered key's queued deliveries failing.
type failingQueueReads struct {
	*embedded.Store
	failures
}

func (f *failingQueueReads) GetIdempotency(ctx context.Context, key string) (store.Idempotency, error) {
	if strings.HasPrefix(key, "order-wait#") {
		if err := f.next(); err != nil {
			return store.Idempotency{}, err
		}
	}
	return f.Store.GetIdempotency(ctx, key)
}

// TestDrainResumesAfterStoreError: a drain that cannot read the front of
// its key's queue (the store unavailable) gives up its lease and leaves a
// resume record; the retry scheduler hands it back, and the queue is
// made, in order, once each.
func TestDrainResumesAfterStoreError(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	var mu sync.Mutex
	var arrivals []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct{ N string }
		json.NewDecoder(r.Body).Decode(&p)
		if p.N == "d0" && refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		arrivals = append(arrivals, p.N)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	var st *failingQueueReads
	cfg := Config{Retry: retry.Policy{Schedule: []time.Duration{100 * time.Millisecond}, MaxAttempts: 100, MaxRetryAfter: time.Second}}
	r := newRig(t, cfg, func(e *embedded.Store) Store {
		st = &failingQueueReads{Store: e}
		return st
	}, partner{"p", srv.URL})
	sub, err := r.emb.GetSubscription(r.ctx, "s-p")
	if err != nil {
		t.Fatal(err)
	}
	sub.Mode = "ordered"
	if _, err := r.emb.PutSubscription(r.ctx, sub); err != nil {
		t.Fatal(err)
	}
	prod, err := retry.NewProducer(r.addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	sched, err := retry.NewScheduler(r.addrs, prod, r.d, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sched.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	const n = 10
	for i := range n {
		rec := delivery("p", fmt.Sprintf("d%d", i), "k")
		var msg envelope.Delivery
		json.Unmarshal(rec.Value, &msg)
		msg.Body = json.RawMessage(fmt.Sprintf(`{"n":"d%d"}`, i))
		rec.Value = msg.JSON()
		r.produce(rec)
	}
	waitUntil(t, "d1…d9 to wait behind d0", func() bool { return r.status(fmt.Sprintf("d%d", n-1)) == store.DeliveryHeld })
	st.fail.Store(1)
	refuse.Store(false)
	waitUntil(t, "the queue to be made", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrivals) >= n
	})
	mu.Lock()
	got := strings.Join(arrivals, ",")
	mu.Unlock()
	if got != "d0,d1,d2,d3,d4,d5,d6,d7,d8,d9" {
		t.Errorf("arrived %s, want d0…d9 once each, in order", got)
	}
	if st.calls.Load() < 2 || !strings.Contains(r.logs.String(), "draining an ordered key's queue failed") {
		t.Errorf("the queue's read did not fail and recover (%d reads): %s", st.calls.Load(), r.logs.String())
	}
	waitUntil(t, "d9 delivered", func() bool { return r.status("d9") == store.DeliveryDelivered })
}
