package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// heldLedger is the embedded store with its batch ledger writes held
// until release is closed.
type heldLedger struct {
	*embedded.Store
	release chan struct{}
	calls   atomic.Int32
}

func (h *heldLedger) PutLedger(ctx context.Context, recs []store.Idempotency) error {
	h.calls.Add(1)
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.Store.PutLedger(ctx, recs)
}

type staticSecrets struct{}

func (staticSecrets) Secrets(context.Context, string) ([]string, error) {
	return []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, nil
}

// TestDuplicateWhileLedgerUnwritten: a consumed batch's ledger entries are
// written in the background; a second record of a delivery that arrives
// before its entry is written is still dropped (the dispatcher remembers
// it), and the batch's offsets are committed only once the entry is
// written.
func TestDuplicateWhileLedgerUnwritten(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "wh.egress.p1.thing.happened"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	emb, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	st := &heldLedger{Store: emb, release: make(chan struct{})}

	var got atomic.Int32
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer partner.Close()
	if _, err := st.PutSubscription(ctx, store.Subscription{ID: "s1", PartnerID: "p1", SchemaID: "bench/thing.happened/1", URL: partner.URL,
		Status: store.SubscriptionApproved, SigningSecretRef: "whsec/p1"}); err != nil {
		t.Fatal(err)
	}

	addrs := cluster.ListenAddrs()
	retryProd, err := retry.NewProducer(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer retryProd.Close()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	d, err := New(Config{Guard: &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}}, addrs, st, staticSecrets{}, retryProd, log)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })

	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	msg := envelope.Delivery{ID: "d1", EventID: "e1", SubscriptionID: "s1", PartnerID: "p1", SchemaID: "bench/thing.happened/1",
		Event: "thing.happened", AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: json.RawMessage(`{"id":"e1"}`)}
	value, _ := json.Marshal(msg)
	send := func() {
		t.Helper()
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "wh.egress.p1.thing.happened", Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	send()
	waitUntil(t, "the first delivery and its held ledger write", func() bool { return got.Load() == 1 && st.calls.Load() >= 1 })
	send() // the same delivery again, while its ledger entry is unwritten
	waitUntil(t, "the second record to be dropped", func() bool { return strings.Contains(logs.String(), "duplicate delivery dropped") })
	if n := got.Load(); n != 1 {
		t.Fatalf("partner got %d requests before the ledger was written, want 1", n)
	}
	if _, err := st.GetIdempotency(ctx, ledgerKey("d1")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ledger entry present before its write was released: %v", err)
	}
	if off := consumedUpTo(t, addrs); off != 0 {
		t.Fatalf("committed offset %d before the ledger entry was written", off)
	}
	close(st.release)
	waitUntil(t, "the batches to be written and committed", func() bool { return consumedUpTo(t, addrs) == 2 })
	if _, err := st.GetIdempotency(ctx, ledgerKey("d1")); err != nil {
		t.Errorf("ledger entry after the write: %v", err)
	}
	if dl, err := st.GetDelivery(ctx, "e1", "d1"); err != nil || dl.Status != store.DeliveryDelivered {
		t.Errorf("delivery status = %q, %v; want delivered", dl.Status, err)
	}
	cancel()
	wg.Wait()
	if n := got.Load(); n != 1 {
		t.Errorf("partner got %d requests, want 1", n)
	}
}

// consumedUpTo is the dispatcher group's committed offset on partition 0
// (0 when none is committed).
func consumedUpTo(t *testing.T, addrs []string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "whp-dispatcher")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offsets.Lookup("wh.egress.p1.thing.happened", 0); ok && o.At > 0 {
		return o.At
	}
	return 0
}

// logBuffer is a log sink tests can read while the dispatcher writes.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowPartnerHoldsOnlyItself: deliveries are not handled in batches
// that wait for their slowest member — while partner A's delivery hangs,
// partner B's deliveries polled with it and after it arrive at once, and
// A's is recorded when it answers.
func TestSlowPartnerHoldsOnlyItself(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	topics := []string{"wh.egress.a.thing.happened", "wh.egress.b.thing.happened"}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	release := make(chan struct{})
	var gotA, gotB atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotA.Add(1)
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotB.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer fast.Close()
	for _, s := range []store.Subscription{
		{ID: "sa", PartnerID: "a", SchemaID: "bench/thing.happened/1", URL: slow.URL, Status: store.SubscriptionApproved, SigningSecretRef: "whsec/a"},
		{ID: "sb", PartnerID: "b", SchemaID: "bench/thing.happened/1", URL: fast.URL, Status: store.SubscriptionApproved, SigningSecretRef: "whsec/b"},
	} {
		if _, err := st.PutSubscription(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	addrs := cluster.ListenAddrs()
	retryProd, err := retry.NewProducer(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer retryProd.Close()
	d, err := New(Config{Guard: &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}, Timeout: time.Minute}, addrs, st, staticSecrets{}, retryProd,
		slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // first, so a failing test does not wait for the attempt timeout

	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(partner, sub, id string) {
		t.Helper()
		msg := envelope.Delivery{ID: id, EventID: "e-" + id, SubscriptionID: sub, PartnerID: partner, SchemaID: "bench/thing.happened/1",
			Event: "thing.happened", AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: json.RawMessage(`{}`)}
		value, _ := json.Marshal(msg)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "wh.egress." + partner + ".thing.happened", Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// In one produce, so likely in one poll: A's then B's.
	send("a", "sa", "a1")
	send("b", "sb", "b1")
	waitUntil(t, "A's delivery to hang and B's first to arrive", func() bool { return gotA.Load() == 1 && gotB.Load() == 1 })
	for i := 2; i <= 5; i++ {
		send("b", "sb", fmt.Sprint("b", i))
	}
	waitUntil(t, "B's later deliveries to arrive while A's hangs", func() bool { return gotB.Load() == 5 })
	if dl, err := st.GetDelivery(ctx, "e-b5", "b5"); err != nil || dl.Status != store.DeliveryDelivered {
		waitUntil(t, "B's statuses to be written while A's hangs", func() bool {
			dl, err := st.GetDelivery(ctx, "e-b5", "b5")
			return err == nil && dl.Status == store.DeliveryDelivered
		})
	}
	unblock()
	waitUntil(t, "A's delivery to be recorded once it answers", func() bool {
		dl, err := st.GetDelivery(ctx, "e-a1", "a1")
		return err == nil && dl.Status == store.DeliveryDelivered
	})
	if n := gotA.Load(); n != 1 {
		t.Errorf("partner A got %d requests, want 1", n)
	}
}

// TestPartnerConcurrency: a hanging partner holds at most
// PartnerConcurrency slots; the others keep delivering, and the partner's
// waiting deliveries go out in turn once it answers.
func TestPartnerConcurrency(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	topics := []string{"wh.egress.a.thing.happened", "wh.egress.b.thing.happened"}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	release := make(chan struct{})
	var inA, gotA, maxA, gotB atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotA.Add(1)
		n := inA.Add(1)
		for m := maxA.Load(); n > m && !maxA.CompareAndSwap(m, n); m = maxA.Load() {
		}
		<-release
		inA.Add(-1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotB.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer fast.Close()
	for _, s := range []store.Subscription{
		{ID: "sa", PartnerID: "a", SchemaID: "bench/thing.happened/1", URL: slow.URL, Status: store.SubscriptionApproved, SigningSecretRef: "whsec/a"},
		{ID: "sb", PartnerID: "b", SchemaID: "bench/thing.happened/1", URL: fast.URL, Status: store.SubscriptionApproved, SigningSecretRef: "whsec/b"},
	} {
		if _, err := st.PutSubscription(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	addrs := cluster.ListenAddrs()
	retryProd, err := retry.NewProducer(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer retryProd.Close()
	d, err := New(Config{Guard: &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}, Timeout: time.Minute, Concurrency: 8, PartnerConcurrency: 2},
		addrs, st, staticSecrets{}, retryProd, slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // first, so a failing test does not wait for the attempt timeout
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var recs []*kgo.Record
	add := func(partner, sub, id string) {
		msg := envelope.Delivery{ID: id, EventID: "e-" + id, SubscriptionID: sub, PartnerID: partner, SchemaID: "bench/thing.happened/1",
			Event: "thing.happened", AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: json.RawMessage(`{}`)}
		value, _ := json.Marshal(msg)
		recs = append(recs, &kgo.Record{Topic: "wh.egress." + partner + ".thing.happened", Value: value})
	}
	for i := range 10 {
		add("a", "sa", fmt.Sprint("a", i))
	}
	for i := range 10 {
		add("b", "sb", fmt.Sprint("b", i))
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "B's deliveries while A hangs", func() bool { return gotB.Load() == 10 })
	if n := gotA.Load(); n != 2 {
		t.Errorf("hanging partner A got %d requests at once, want 2 (its PartnerConcurrency)", n)
	}
	unblock()
	waitUntil(t, "A's deliveries once it answers", func() bool { return gotA.Load() == 10 })
	waitUntil(t, "A's last status", func() bool {
		for i := range 10 {
			dl, err := st.GetDelivery(ctx, fmt.Sprint("e-a", i), fmt.Sprint("a", i))
			if err != nil || dl.Status != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	if m := maxA.Load(); m > 2 {
		t.Errorf("partner A had %d deliveries in flight at once, want at most 2", m)
	}
}

// TestSlowPartnerBacklog: a slow partner's backlog beyond the
// dispatcher's lookahead (here 1,100 records, more than maxTracked) does
// not stop polling for the others: its topics are paused while its backlog
// is high, and the records stay in Kafka until it catches up.
func TestSlowPartnerBacklog(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	topics := []string{"wh.egress.a.thing.happened", "wh.egress.b.thing.happened"}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	release := make(chan struct{})
	var inA, gotA, maxA, gotB atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotA.Add(1)
		n := inA.Add(1)
		for m := maxA.Load(); n > m && !maxA.CompareAndSwap(m, n); m = maxA.Load() {
		}
		<-release
		inA.Add(-1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotB.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer fast.Close()
	for _, s := range []store.Subscription{
		{ID: "sa", PartnerID: "a", SchemaID: "bench/thing.happened/1", URL: slow.URL, Status: store.SubscriptionApproved, SigningSecretRef: "whsec/a"},
		{ID: "sb", PartnerID: "b", SchemaID: "bench/thing.happened/1", URL: fast.URL, Status: store.SubscriptionApproved, SigningSecretRef: "whsec/b"},
	} {
		if _, err := st.PutSubscription(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	addrs := cluster.ListenAddrs()
	retryProd, err := retry.NewProducer(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer retryProd.Close()
	d, err := New(Config{Guard: &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}, Timeout: time.Minute, Concurrency: 8, PartnerConcurrency: 2},
		addrs, st, staticSecrets{}, retryProd, slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // first, so a failing test does not wait for the attempt timeout
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var recs []*kgo.Record
	add := func(partner, sub, id string) {
		msg := envelope.Delivery{ID: id, EventID: "e-" + id, SubscriptionID: sub, PartnerID: partner, SchemaID: "bench/thing.happened/1",
			Event: "thing.happened", AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: json.RawMessage(`{}`)}
		value, _ := json.Marshal(msg)
		recs = append(recs, &kgo.Record{Topic: "wh.egress." + partner + ".thing.happened", Value: value})
	}
	const slowN = maxTracked + 100
	for i := range slowN {
		add("a", "sa", fmt.Sprint("a", i))
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "A's deliveries to hang", func() bool { return gotA.Load() == 2 })
	recs = nil
	for i := range 10 {
		add("b", "sb", fmt.Sprint("b", i))
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "B's deliveries while A hangs", func() bool { return gotB.Load() == 10 })
	if n := gotA.Load(); n != 2 {
		t.Errorf("hanging partner A got %d requests at once, want 2 (its PartnerConcurrency)", n)
	}
	unblock()
	waitUntil(t, "A's deliveries once it answers", func() bool { return gotA.Load() == slowN })
	waitUntil(t, "A's statuses", func() bool {
		for i := range slowN {
			dl, err := st.GetDelivery(ctx, fmt.Sprint("e-a", i), fmt.Sprint("a", i))
			if err != nil || dl.Status != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	if m := maxA.Load(); m > 2 {
		t.Errorf("partner A had %d deliveries in flight at once, want at most 2", m)
	}
}

// TestChainReadsEachPollsSubscription: a key's chain that outlives the
// poll it started in reads the subscription afresh for records of later
// polls — a subscription disabled meanwhile is not delivered to.
func TestChainReadsEachPollsSubscription(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "wh.egress.a.thing.happened", "wh.dlq.thing.happened"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	release := make(chan struct{})
	var got atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	defer slow.Close()
	sub, err := st.PutSubscription(ctx, store.Subscription{ID: "sa", PartnerID: "a", SchemaID: "bench/thing.happened/1", URL: slow.URL,
		Status: store.SubscriptionApproved, SigningSecretRef: "whsec/a"})
	if err != nil {
		t.Fatal(err)
	}
	addrs := cluster.ListenAddrs()
	retryProd, err := retry.NewProducer(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer retryProd.Close()
	d, err := New(Config{Guard: &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}, Timeout: time.Minute}, addrs, st, staticSecrets{}, retryProd,
		slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(id string) {
		t.Helper()
		msg := envelope.Delivery{ID: id, EventID: "e-" + id, SubscriptionID: "sa", PartnerID: "a", SchemaID: "bench/thing.happened/1",
			Event: "thing.happened", Key: "k", AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: json.RawMessage(`{}`)}
		value, _ := json.Marshal(msg)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "wh.egress.a.thing.happened", Key: []byte("k"), Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	send("d1")
	waitUntil(t, "the first delivery to hang", func() bool { return got.Load() == 1 })
	sub.Status, sub.Reason = store.SubscriptionDisabled, "test"
	if _, err := st.PutSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	send("d2") // same key: queued behind d1 in its chain, from a later poll
	time.Sleep(100 * time.Millisecond)
	unblock()
	waitUntil(t, "d2 to be dead-lettered (its subscription is disabled)", func() bool {
		dl, err := st.GetDelivery(ctx, "e-d2", "d2")
		return err == nil && dl.Status == store.DeliveryDeadLettered
	})
	if n := got.Load(); n != 1 {
		t.Errorf("partner got %d requests, want 1 (none after its subscription was disabled)", n)
	}
}
