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

// orderedKey is a rig whose partner p's subscription is ordered and
// refuses d0 until released, with a retry scheduler running beside the
// dispatcher d: the rig's, or with batch one fed by Deliver (NewBatch, the
// Lambda handler's) over the same store.
type orderedKey struct {
	*rig
	d        *Dispatcher
	batch    bool
	refuse   atomic.Bool
	mu       sync.Mutex
	arrivals []string
}

func newOrderedKey(t *testing.T, cfg Config, wrap func(*embedded.Store) Store, batch bool) *orderedKey {
	k := &orderedKey{batch: batch}
	k.refuse.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct{ N string }
		json.NewDecoder(r.Body).Decode(&p)
		if p.N == "d0" && k.refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		k.mu.Lock()
		k.arrivals = append(k.arrivals, p.N)
		k.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	var st Store
	k.rig = newRig(t, cfg, func(e *embedded.Store) Store {
		st = e
		if wrap != nil {
			st = wrap(e)
		}
		return st
	}, partner{"p", srv.URL})
	sub, err := k.emb.GetSubscription(k.ctx, "s-p")
	if err != nil {
		t.Fatal(err)
	}
	sub.Mode = "ordered"
	if _, err := k.emb.PutSubscription(k.ctx, sub); err != nil {
		t.Fatal(err)
	}
	prod, err := retry.NewProducer(k.addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	k.d = k.rig.d
	if batch {
		cfg.Guard = &ssrf.Guard{AllowLoopback: true, AllowHTTP: true} // as the rig's
		if k.d, err = NewBatch(cfg, k.addrs, st, staticSecrets{}, prod, slog.New(slog.NewTextHandler(k.logs, nil))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.d.Close)
	}
	sched, err := retry.NewScheduler(k.addrs, prod, k.d, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(k.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sched.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return k
}

// send hands d0…d{n-1} of key k to the dispatcher, in order, and waits
// until d1… wait behind d0.
func (k *orderedKey) send(n int) {
	k.t.Helper()
	for i := range n {
		rec := delivery("p", fmt.Sprintf("d%d", i), "k")
		var msg envelope.Delivery
		json.Unmarshal(rec.Value, &msg)
		msg.Body = json.RawMessage(fmt.Sprintf(`{"n":"d%d"}`, i))
		rec.Value = msg.JSON()
		if !k.batch {
			k.produce(rec)
		} else if failed := k.d.Deliver(k.ctx, []*kgo.Record{rec}); len(failed) != 0 {
			k.t.Fatalf("d%d not handled", i)
		}
	}
	waitUntil(k.t, "the key's deliveries to wait behind d0", func() bool { return k.status(fmt.Sprintf("d%d", n-1)) == store.DeliveryHeld })
	last := fmt.Sprintf("d%d", n-1)
	if d, err := k.emb.GetDelivery(k.ctx, "e-"+last, last); err != nil || d.Reason != reasonQueued {
		k.t.Errorf("%s held with the reason %q (%v), want %q", last, d.Reason, err, reasonQueued)
	}
}

// delivered waits until d0…d{n-1} are recorded delivered, and returns
// what arrived at p, in order.
func (k *orderedKey) delivered(n int) string {
	k.t.Helper()
	waitUntil(k.t, "every delivery recorded delivered", func() bool {
		for i := range n {
			if k.status(fmt.Sprintf("d%d", i)) != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.arrivals, ",")
}

// drainThrough queues d1…d9 behind d0, which fails until the store is
// armed to fail what (fails times, after skip), then delivers; batch
// feeds a NewBatch dispatcher with Deliver instead of the rig's consumer.
func drainThrough(t *testing.T, what string, fails, skip int32, batch bool) {
	var st *failingDrain
	// A short attempt time-out keeps the drain's lease short: a drain that
	// cannot write at all keeps it until it runs out.
	cfg := Config{Timeout: time.Second, Retry: retry.Policy{Schedule: []time.Duration{100 * time.Millisecond}, MaxAttempts: 100, MaxRetryAfter: time.Second}}
	k := newOrderedKey(t, cfg, func(e *embedded.Store) Store {
		st = &failingDrain{Store: e, what: what}
		return st
	}, batch)
	const n = 10
	k.send(n)
	// Armed: skip calls of the kind pass, then fails fail. (Nothing
	// writes the gate or queued statuses, or reads the queue, while d0
	// keeps failing.)
	st.calls.Store(0)
	st.skip.Store(skip)
	st.fail.Store(fails)
	k.refuse.Store(false)
	if got := k.delivered(n); got != "d0,d1,d2,d3,d4,d5,d6,d7,d8,d9" {
		t.Errorf("arrived %s, want d0…d9 once each, in order", got)
	}
	if st.calls.Load() <= skip || !strings.Contains(k.logs.String(), "drained later") {
		t.Errorf("the drain's %s did not fail and recover (%d calls): %s", what, st.calls.Load(), k.logs.String())
	}
	// What keeps a record read again from being delivered again (the
	// ledger lane, a consuming dispatcher's, writes it beside the
	// statuses, not before them).
	waitUntil(t, "every delivery's ledger entry", func() bool {
		for i := range n {
			id := fmt.Sprintf("d%d", i)
			if _, err := k.emb.GetIdempotency(k.ctx, ledgerKey("e-"+id, id)); err != nil {
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
	cfg := Config{Metrics: tel.Metrics, Retry: retry.Policy{Schedule: []time.Duration{100 * time.Millisecond}, MaxAttempts: 100, MaxRetryAfter: time.Second}}
	k := newOrderedKey(t, cfg, nil, false)
	k.send(4)
	// What the crashed drain left: d1 and d2 made, their statuses not.
	now := time.Now()
	if err := k.emb.PutLedger(ctx, []store.Idempotency{{Key: ledgerKey("e-d1", "d1"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{Key: ledgerKey("e-d2", "d2"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	k.refuse.Store(false)
	if got := k.delivered(4); got != "d0,d3" {
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
