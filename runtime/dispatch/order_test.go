package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// failingDrain is the embedded store with, once armed, the first of one
// kind of write or read that an ordered key's drain makes failing: the
// read of a queued delivery, the write of queued deliveries' statuses,
// or a write of the key's gate.
type failingDrain struct {
	*embedded.Store
	failures
	what string // "queue read", "status write", "ledger write" or "gate write"
}

func (f *failingDrain) GetIdempotency(ctx context.Context, key string) (store.Idempotency, error) {
	if f.what == "queue read" && strings.HasPrefix(key, "order-wait#") {
		if err := f.next(); err != nil {
			return store.Idempotency{}, err
		}
	}
	return f.Store.GetIdempotency(ctx, key)
}

func (f *failingDrain) PutDeliveries(ctx context.Context, ds []store.Delivery) error {
	// Statuses of the queue's deliveries (d0, the blocker, writes its own).
	if f.what == "status write" && slices.ContainsFunc(ds, func(d store.Delivery) bool { return d.ID != "d0" }) {
		if err := f.next(); err != nil {
			return err
		}
	}
	return f.Store.PutDeliveries(ctx, ds)
}

func (f *failingDrain) PutLedger(ctx context.Context, recs []store.Idempotency) error {
	if f.what == "ledger write" {
		if err := f.next(); err != nil {
			return err
		}
	}
	return f.Store.PutLedger(ctx, recs)
}

func (f *failingDrain) PutIdempotencyIf(ctx context.Context, rec store.Idempotency, with ...store.Idempotency) (store.Idempotency, error) {
	if f.what == "gate write" && strings.HasPrefix(rec.Key, "order#") {
		if err := f.next(); err != nil {
			return store.Idempotency{}, err
		}
	}
	return f.Store.PutIdempotencyIf(ctx, rec, with...)
}

// TestDrainStoreErrors: a drain that the store fails — it cannot read the
// front of its key's queue, write the statuses of what it made, or write
// the key's gate (taking its lease, or at a checkpoint) — hands over to a
// resume record, which the retry scheduler brings back; the queue is
// made, in order, once each, and every delivery ends recorded delivered
// (none left "held" because the write that said otherwise was lost).
func TestDrainStoreErrors(t *testing.T) {
	for _, c := range []struct {
		what  string
		fails int32 // the first n of that kind, once armed
		skip  int32 // after letting this many through
	}{
		{what: "queue read", fails: 1},
		{what: "status write", fails: 1},
		{what: "gate write", fails: 1},          // the lease
		{what: "gate write", fails: 1, skip: 1}, // the checkpoint
		{what: "status write", fails: 3},        // and its writes again
	} {
		t.Run(fmt.Sprintf("%s %d after %d", c.what, c.fails, c.skip), func(t *testing.T) {
			drainThrough(t, c.what, c.fails, c.skip, false)
		})
	}
	// A dispatcher fed batches (NewBatch, the Lambda handler's) writes its
	// ledger entries with its statuses: those of a settle that failed are
	// written by the next, not dropped.
	t.Run("ledger write 1 after 0, in batches", func(t *testing.T) { drainThrough(t, "ledger write", 1, 0, true) })
	t.Run("status write 1 after 0, in batches", func(t *testing.T) { drainThrough(t, "status write", 1, 0, true) })
}

// drainThrough queues d1…d9 behind d0, which fails until the store is
// armed to fail what (fails times, after skip), then delivers; batch
// feeds a NewBatch dispatcher with Deliver instead of the rig's consumer.
func drainThrough(t *testing.T, what string, fails, skip int32, batch bool) {
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
	var st *failingDrain
	// A short attempt time-out keeps the drain's lease short: a drain that
	// cannot write at all keeps it until it runs out.
	cfg := Config{Timeout: time.Second, Retry: retry.Policy{Schedule: []time.Duration{100 * time.Millisecond}, MaxAttempts: 100, MaxRetryAfter: time.Second}}
	r := newRig(t, cfg, func(e *embedded.Store) Store {
		st = &failingDrain{Store: e, what: what}
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
	var d *Dispatcher = r.d
	if batch {
		cfg.Guard = &ssrf.Guard{AllowLoopback: true, AllowHTTP: true} // as the rig's
		if d, err = NewBatch(cfg, r.addrs, st, staticSecrets{}, prod, slog.New(slog.NewTextHandler(r.logs, nil))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
	}
	sched, err := retry.NewScheduler(r.addrs, prod, d, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
		if !batch {
			r.produce(rec)
		} else if failed := d.Deliver(r.ctx, []*kgo.Record{rec}); len(failed) != 0 {
			t.Fatalf("d%d not handled", i)
		}
	}
	waitUntil(t, "d1…d9 to wait behind d0", func() bool { return r.status(fmt.Sprintf("d%d", n-1)) == store.DeliveryHeld })
	// Armed: skip calls of the kind pass, then fails fail. (Nothing
	// writes the gate or queued statuses, or reads the queue, while d0
	// keeps failing.)
	st.calls.Store(0)
	st.skip.Store(skip)
	st.fail.Store(fails)
	refuse.Store(false)
	waitUntil(t, "the queue to be made", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrivals) >= n
	})
	waitUntil(t, "every delivery recorded delivered", func() bool {
		for i := range n {
			if r.status(fmt.Sprintf("d%d", i)) != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	mu.Lock()
	got := strings.Join(arrivals, ",")
	mu.Unlock()
	if got != "d0,d1,d2,d3,d4,d5,d6,d7,d8,d9" {
		t.Errorf("arrived %s, want d0…d9 once each, in order", got)
	}
	if st.calls.Load() <= skip || !strings.Contains(r.logs.String(), "drained later") {
		t.Errorf("the drain's %s did not fail and recover (%d calls): %s", what, st.calls.Load(), r.logs.String())
	}
	// What keeps a record read again from being delivered again (the
	// ledger lane, a consuming dispatcher's, writes it beside the
	// statuses, not before them).
	waitUntil(t, "every delivery's ledger entry", func() bool {
		for i := range n {
			id := fmt.Sprintf("d%d", i)
			if _, err := r.emb.GetIdempotency(r.ctx, ledgerKey("e-"+id, id)); err != nil {
				return false
			}
		}
		return true
	})
}

// TestDrainAfterACrashedDrain: a drain SIGKILLed after making some of its
// key's queue, before its checkpoint, leaves them made — their ledger
// entries written — with their statuses "held". The drain that takes the
// queue up again records them delivered without making them again, and
// counts them as duplicates dropped, not as delivered a second time.
func TestDrainAfterACrashedDrain(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Options{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
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
	cfg := Config{Metrics: tel.Metrics, Retry: retry.Policy{Schedule: []time.Duration{100 * time.Millisecond}, MaxAttempts: 100, MaxRetryAfter: time.Second}}
	r := newRig(t, cfg, nil, partner{"p", srv.URL})
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
	sctx, cancel := context.WithCancel(r.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sched.Run(sctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range 4 {
		rec := delivery("p", fmt.Sprintf("d%d", i), "k")
		var msg envelope.Delivery
		json.Unmarshal(rec.Value, &msg)
		msg.Body = json.RawMessage(fmt.Sprintf(`{"n":"d%d"}`, i))
		rec.Value = msg.JSON()
		r.produce(rec)
	}
	waitUntil(t, "d1…d3 to wait behind d0", func() bool { return r.status("d3") == store.DeliveryHeld })
	// What the crashed drain left: d1 and d2 made, their statuses not.
	now := time.Now()
	if err := r.emb.PutLedger(ctx, []store.Idempotency{{Key: ledgerKey("e-d1", "d1"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{Key: ledgerKey("e-d2", "d2"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	refuse.Store(false)
	waitUntil(t, "every delivery recorded delivered", func() bool {
		for i := range 4 {
			if r.status(fmt.Sprintf("d%d", i)) != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	mu.Lock()
	got := strings.Join(arrivals, ",")
	mu.Unlock()
	if got != "d0,d3" {
		t.Errorf("arrived %s, want d0 and d3 (d1 and d2 made before the crash)", got)
	}
	w := httptest.NewRecorder()
	tel.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	counted := map[string]string{}
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "whp_deliveries_total{") && strings.Contains(line, `partner="p"`) {
			for _, o := range []string{"delivered", "duplicate_dropped"} {
				if strings.Contains(line, `outcome="`+o+`"`) {
					counted[o] = line[strings.LastIndexByte(line, ' ')+1:]
				}
			}
		}
	}
	if counted["delivered"] != "2" || counted["duplicate_dropped"] != "2" {
		t.Errorf("whp_deliveries_total: %v, want 2 delivered (d0, d3) and 2 duplicates dropped (d1, d2)", counted)
	}
}
