package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// rig is a consuming dispatcher on a kfake cluster and an embedded store,
// delivering to partners on 127.0.0.1; everything stops at the test's end.
type rig struct {
	t     *testing.T
	ctx   context.Context
	emb   *embedded.Store
	addrs []string
	prod  *kgo.Client
	logs  *logBuffer
	stop  func() // stops the dispatcher and waits for it (also at the test's end)
	d     *Dispatcher
}

// partner is a subscription "s-{id}" of partner id, delivering to url.
type partner struct{ id, url string }

// newRig creates the cluster with an egress topic per partner, the store
// with their subscriptions, and starts a dispatcher with cfg (loopback
// allowed) on the store wrap makes of the embedded one (nil: itself).
func newRig(t *testing.T, cfg Config, wrap func(*embedded.Store) Store, partners ...partner) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	topics := []string{topic.DLQ("thing.happened")}
	retryTopic := kfake.SeedTopics(retry.Tiers, topic.Retry("thing.happened")) // for tests that run a retry.Scheduler
	for _, p := range partners {
		topics = append(topics, topic.Egress(p.id, "thing.happened"))
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...), retryTopic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	emb, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	for _, p := range partners {
		if _, err := emb.PutSubscription(ctx, store.Subscription{ID: "s-" + p.id, PartnerID: p.id, SchemaID: "bench/thing.happened/1", URL: p.url,
			Status: store.SubscriptionApproved, SigningSecretRef: "whsec/" + p.id}); err != nil {
			t.Fatal(err)
		}
	}
	r := &rig{t: t, ctx: ctx, emb: emb, addrs: cluster.ListenAddrs(), logs: &logBuffer{}}
	retryProd, err := retry.NewProducer(r.addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(retryProd.Close)
	if r.prod, err = kgo.NewClient(kgo.SeedBrokers(r.addrs...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.prod.Close)
	var st Store = emb
	if wrap != nil {
		st = wrap(emb)
	}
	cfg.Guard = &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}
	d, err := New(cfg, r.addrs, st, staticSecrets{}, retryProd, slog.New(slog.NewTextHandler(r.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(r.stop)
	return r
}

// delivery is the egress record of delivery id to partner's subscription,
// of event "e-{id}", with key (none if empty).
func delivery(partner, id, key string) *kgo.Record {
	msg := envelope.Delivery{ID: id, EventID: "e-" + id, SubscriptionID: "s-" + partner, PartnerID: partner, SchemaID: "bench/thing.happened/1",
		Event: "thing.happened", Key: key, AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: json.RawMessage(`{}`)}
	value, _ := json.Marshal(msg)
	r := &kgo.Record{Topic: topic.Egress(partner, "thing.happened"), Value: value}
	if key != "" {
		r.Key = []byte(key)
	}
	return r
}

// produce writes recs to the cluster, in one produce.
func (r *rig) produce(recs ...*kgo.Record) {
	r.t.Helper()
	if err := r.prod.ProduceSync(r.ctx, recs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

// status is a delivery's stored status ("" if none).
func (r *rig) status(id string) string {
	dl, err := r.emb.GetDelivery(r.ctx, "e-"+id, id)
	if err != nil {
		return ""
	}
	return dl.Status
}

// consumedUpTo is the dispatcher group's committed offset on partition 0
// of partner's egress topic (0 when none is committed).
func (r *rig) consumedUpTo(partner string) int64 {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.addrs...))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "whp-dispatcher")
	if err != nil {
		r.t.Fatal(err)
	}
	if o, ok := offsets.Lookup(topic.Egress(partner, "thing.happened"), 0); ok && o.At > 0 {
		return o.At
	}
	return 0
}

// server is a partner on 127.0.0.1 that counts requests, records when each
// arrived and answers 204; with hold, each answer waits until release is
// called (the test's end calls it, so a failing test does not wait for the
// attempt timeout).
type server struct {
	URL            string
	got, in, maxIn atomic.Int32
	release        func()
	released       chan struct{}
	once           sync.Once
	srv            *httptest.Server

	mu sync.Mutex
	at []time.Time
}

func newServer(t *testing.T, hold bool) *server {
	s := &server{released: make(chan struct{})}
	s.release = func() { s.once.Do(func() { close(s.released) }) }
	if !hold {
		s.release()
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.at = append(s.at, time.Now())
		s.mu.Unlock()
		s.got.Add(1)
		n := s.in.Add(1)
		for m := s.maxIn.Load(); n > m && !s.maxIn.CompareAndSwap(m, n); m = s.maxIn.Load() {
		}
		<-s.released
		s.in.Add(-1)
		w.WriteHeader(http.StatusNoContent)
	}))
	s.URL = s.srv.URL
	// Cleanups run last first: the server closes after the dispatcher
	// (started later) stopped, and is released before either.
	t.Cleanup(s.srv.Close)
	return s
}

// arrivals is when each request arrived, in order.
func (s *server) arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.at)
}

// writeGate holds the writes that pass it until release is closed.
type writeGate struct {
	release chan struct{}
	calls   atomic.Int32
}

func newWriteGate() writeGate { return writeGate{release: make(chan struct{})} }

func (g *writeGate) pass(ctx context.Context) error {
	g.calls.Add(1)
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// heldLedger is the embedded store with its ledger writes held.
type heldLedger struct {
	*embedded.Store
	writeGate
}

func (h *heldLedger) PutLedger(ctx context.Context, recs []store.Idempotency) error {
	if err := h.pass(ctx); err != nil {
		return err
	}
	return h.Store.PutLedger(ctx, recs)
}

// heldStatuses is the embedded store with its status writes held.
type heldStatuses struct {
	*embedded.Store
	writeGate
}

func (h *heldStatuses) PutDeliveries(ctx context.Context, ds []store.Delivery) error {
	if err := h.pass(ctx); err != nil {
		return err
	}
	return h.Store.PutDeliveries(ctx, ds)
}

type staticSecrets struct{}

func (staticSecrets) Secrets(context.Context, string) ([]string, error) {
	return []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, nil
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

// TestDuplicateWhileLedgerUnwritten: a consumed batch's ledger entries are
// written in the background; a second record of a delivery that arrives
// before its entry is written is still dropped (the dispatcher remembers
// it), and the batch's offsets are committed only once the entry is
// written.
func TestDuplicateWhileLedgerUnwritten(t *testing.T) {
	p1 := newServer(t, false)
	var held *heldLedger
	r := newRig(t, Config{}, func(emb *embedded.Store) Store {
		held = &heldLedger{Store: emb, writeGate: newWriteGate()}
		return held
	}, partner{"p1", p1.URL})

	r.produce(delivery("p1", "d1", ""))
	waitUntil(t, "the first delivery and its held ledger write", func() bool { return p1.got.Load() == 1 && held.calls.Load() >= 1 })
	r.produce(delivery("p1", "d1", "")) // the same delivery again, while its ledger entry is unwritten
	waitUntil(t, "the second record to be dropped", func() bool { return strings.Contains(r.logs.String(), "duplicate delivery dropped") })
	if n := p1.got.Load(); n != 1 {
		t.Fatalf("partner got %d requests before the ledger was written, want 1", n)
	}
	if _, err := r.emb.GetIdempotency(r.ctx, ledgerKey("e-d1", "d1")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ledger entry present before its write was released: %v", err)
	}
	if off := r.consumedUpTo("p1"); off != 0 {
		t.Fatalf("committed offset %d before the ledger entry was written", off)
	}
	close(held.release)
	waitUntil(t, "the batches to be written and committed", func() bool { return r.consumedUpTo("p1") == 2 })
	if _, err := r.emb.GetIdempotency(r.ctx, ledgerKey("e-d1", "d1")); err != nil {
		t.Errorf("ledger entry after the write: %v", err)
	}
	if st := r.status("d1"); st != store.DeliveryDelivered {
		t.Errorf("delivery status = %q; want delivered", st)
	}
	r.stop()
	if n := p1.got.Load(); n != 1 {
		t.Errorf("partner got %d requests, want 1", n)
	}
}

// TestSlowPartnerHoldsOnlyItself: deliveries are not handled in batches
// that wait for their slowest member — while partner A's delivery hangs,
// partner B's deliveries polled with it and after it arrive at once, and
// A's is recorded when it answers.
func TestSlowPartnerHoldsOnlyItself(t *testing.T) {
	a, b := newServer(t, true), newServer(t, false)
	r := newRig(t, Config{Timeout: time.Minute}, nil, partner{"a", a.URL}, partner{"b", b.URL})
	defer a.release()

	// In one produce, so likely in one poll: A's then B's.
	r.produce(delivery("a", "a1", ""), delivery("b", "b1", ""))
	waitUntil(t, "A's delivery to hang and B's first to arrive", func() bool { return a.got.Load() == 1 && b.got.Load() == 1 })
	for i := 2; i <= 5; i++ {
		r.produce(delivery("b", fmt.Sprint("b", i), ""))
	}
	waitUntil(t, "B's later deliveries to arrive while A's hangs", func() bool { return b.got.Load() == 5 })
	waitUntil(t, "B's statuses to be written while A's hangs", func() bool { return r.status("b5") == store.DeliveryDelivered })
	a.release()
	waitUntil(t, "A's delivery to be recorded once it answers", func() bool { return r.status("a1") == store.DeliveryDelivered })
	if n := a.got.Load(); n != 1 {
		t.Errorf("partner A got %d requests, want 1", n)
	}
}

// TestPartnerConcurrency: a hanging partner holds at most
// PartnerConcurrency slots; the others keep delivering, and the partner's
// waiting deliveries go out in turn once it answers.
func TestPartnerConcurrency(t *testing.T) {
	testHangingPartner(t, 10, false)
}

// TestMaxInFlight: a partner's max_in_flight (carried on its
// subscriptions) replaces PartnerConcurrency for it, above it or below it,
// from its first delivery on: with PartnerConcurrency 2, hanging partner
// A (max_in_flight 5) gets five deliveries at once and B (1) one. Raised
// in the catalog while A hangs, A's bound takes effect as its deliveries
// read the changed subscription: its waiting deliveries start, up to the
// new bound.
func TestMaxInFlight(t *testing.T) {
	a, b := newServer(t, true), newServer(t, true)
	r := newRig(t, Config{Timeout: time.Minute, Concurrency: 16, PartnerConcurrency: 2}, nil, partner{"a", a.URL}, partner{"b", b.URL})
	defer a.release()
	defer b.release()
	bound := func(id string, n int) {
		sub, err := r.emb.GetSubscription(r.ctx, "s-"+id)
		if err != nil {
			t.Fatal(err)
		}
		sub.MaxInFlight = n
		if _, err := r.emb.PutSubscription(r.ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	bound("a", 5)
	bound("b", 1)
	var recs []*kgo.Record
	for i := range 12 {
		recs = append(recs, delivery("a", fmt.Sprint("a", i), ""), delivery("b", fmt.Sprint("b", i), ""))
	}
	r.produce(recs...)
	waitUntil(t, "A's five deliveries in flight and B's one", func() bool { return a.in.Load() == 5 && b.in.Load() == 1 })
	time.Sleep(300 * time.Millisecond) // time for any beyond the bounds to arrive
	if na, nb := a.maxIn.Load(), b.maxIn.Load(); na != 5 || nb != 1 {
		t.Fatalf("in flight at once: A %d, B %d; want 5 and 1 (their max_in_flight)", na, nb)
	}
	// What whp.deliveries.in_flight and …_limit report.
	got := map[string]telemetry.PartnerInFlight{}
	for _, p := range r.d.InFlight() {
		got[p.Partner] = p
	}
	if got["a"] != (telemetry.PartnerInFlight{Partner: "a", InFlight: 5, Limit: 5, Ceiling: 5, Waiting: 7}) || got["b"] != (telemetry.PartnerInFlight{Partner: "b", InFlight: 1, Limit: 1, Ceiling: 1, Waiting: 11}) {
		t.Errorf("InFlight() = %+v", got)
	}

	// A's bound raised: its next delivery reads it (a record of a later
	// poll), and A's waiting deliveries start beside it, up to 8.
	bound("a", 8)
	r.produce(delivery("a", "a-late", ""))
	waitUntil(t, "A's deliveries up to its raised bound", func() bool { return a.in.Load() == 8 })
	time.Sleep(300 * time.Millisecond)
	if na := a.maxIn.Load(); na != 8 {
		t.Errorf("A had %d in flight at once after its bound was raised to 8", na)
	}

	a.release()
	b.release()
	waitUntil(t, "every delivery recorded", func() bool {
		for i := range 12 {
			if r.status(fmt.Sprint("a", i)) != store.DeliveryDelivered || r.status(fmt.Sprint("b", i)) != store.DeliveryDelivered {
				return false
			}
		}
		return r.status("a-late") == store.DeliveryDelivered
	})
	if na, nb := a.maxIn.Load(), b.maxIn.Load(); na > 8 || nb > 1 {
		t.Errorf("in flight at once over the run: A %d, B %d", na, nb)
	}
}

// pacedServer answers each request hold after it arrives; with limit > 0
// it takes limit at once and answers 429 at once to the rest, as a partner
// with a concurrency limit of its own does.
type pacedServer struct {
	URL                     string
	got, refused, in, maxIn atomic.Int32
}

func newPacedServer(t *testing.T, hold time.Duration, limit int32) *pacedServer {
	s := &pacedServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.got.Add(1)
		n := s.in.Add(1)
		defer s.in.Add(-1)
		if limit > 0 && n > limit {
			s.refused.Add(1)
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		for m := s.maxIn.Load(); n > m && !s.maxIn.CompareAndSwap(m, n); m = s.maxIn.Load() {
		}
		time.Sleep(hold)
		w.WriteHeader(http.StatusNoContent)
	}))
	s.URL = srv.URL
	t.Cleanup(srv.Close)
	return s
}

// TestPace: each partner's bound is learnt from its answers (pace.go). A
// partner far away (answering in 60 ms) is given more than the 16 it
// starts with, up to its ceiling of 64, as its backlog needs; one that
// takes 4 at once and answers 429 to the rest is given about that many,
// so few of its answers are 429s — where the fixed bound of 64
// (FixedPartnerConcurrency) has most of them answered so.
func TestPace(t *testing.T) {
	run := func(fixed bool) (far, limited *pacedServer, r *rig) {
		far, limited = newPacedServer(t, 60*time.Millisecond, 0), newPacedServer(t, 20*time.Millisecond, 4)
		r = newRig(t, Config{Timeout: 10 * time.Second, Concurrency: 128, PartnerConcurrency: 64, FixedPartnerConcurrency: fixed},
			nil, partner{"far", far.URL}, partner{"limited", limited.URL})
		var recs []*kgo.Record
		for i := range 300 {
			recs = append(recs, delivery("far", fmt.Sprint("f", i), ""), delivery("limited", fmt.Sprint("l", i), ""))
		}
		r.produce(recs...)
		// A 429'd first attempt goes to the retry tiers (no scheduler
		// runs here): each delivery is answered once.
		waitUntil(t, "every delivery answered once", func() bool { return far.got.Load() == 300 && limited.got.Load() == 300 })
		r.stop()
		return far, limited, r
	}
	far, limited, r := run(false)
	if n := far.maxIn.Load(); n < 32 || n > 64 {
		t.Errorf("the far partner had %d in flight at most; want its bound grown past the 16 it starts with, to at most its 64", n)
	}
	if n := limited.refused.Load(); n > 300/4 {
		t.Errorf("the partner that takes 4 at once answered 429 to %d of 300; want at most a quarter", n)
	}
	if b := r.d.partnerLimit("limited"); b > 8 {
		t.Errorf("the limited partner's bound is %d after the run; want about its 4 (at most 8)", b)
	}
	t.Logf("learnt: far %d in flight at most (bound %d), limited %d refused of 300 (bound %d)", far.maxIn.Load(), r.d.partnerLimit("far"), limited.refused.Load(), r.d.partnerLimit("limited"))

	far, limited, _ = run(true)
	if n := limited.refused.Load(); n < 300/2 {
		t.Errorf("with the fixed bound the partner that takes 4 at once answered 429 to %d of 300; the comparison expects most", n)
	}
	t.Logf("fixed: far %d in flight at most, limited %d refused of 300", far.maxIn.Load(), limited.refused.Load())
}

// TestPaceHoldsRetries: a retry to a partner that has pushed back lately
// and has its bound in flight is held — not attempted, its attempt not
// spent, its status saying why — and made once the partner has room;
// one to a partner that has not pushed back is made at once, bound or not
// (retries are a partner's oldest deliveries).
func TestPaceHoldsRetries(t *testing.T) {
	a := newServer(t, true)
	r := newRig(t, Config{Timeout: time.Minute, Concurrency: 16, PartnerConcurrency: 2}, nil, partner{"a", a.URL})
	defer a.release()
	r.produce(delivery("a", "a1", ""), delivery("a", "a2", ""))
	waitUntil(t, "the partner's bound, 2, in flight", func() bool { return a.in.Load() == 2 })

	// No push-back yet: a retry goes beside them.
	go r.d.DeliverRetry(r.ctx, delivery("a", "a3", "").Value, 2)
	waitUntil(t, "the retry made beside the bound", func() bool { return a.got.Load() == 3 })

	// The partner pushes back (a 429 to some attempt): its bound is cut
	// to 1, and it has 3 in flight.
	pc := r.d.pace("a")
	pc.end(time.Now(), time.Now(), pc.begin(), pushedBack, 2)
	retry := delivery("a", "a4", "")
	if err := r.d.DeliverRetry(r.ctx, retry.Value, 2); err != nil {
		t.Fatal(err)
	}
	dl, err := r.emb.GetDelivery(r.ctx, "e-a4", "a4")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Status != store.DeliveryHeld || dl.Reason != reasonPace || len(dl.Attempts) != 0 || a.got.Load() != 3 {
		t.Fatalf("retry to a partner at its bound after a push-back: status %q (%q), %d attempts, the partner got %d; want held, none made", dl.Status, dl.Reason, len(dl.Attempts), a.got.Load())
	}

	a.release()
	waitUntil(t, "the first three delivered", func() bool {
		return r.status("a1") == store.DeliveryDelivered && r.status("a2") == store.DeliveryDelivered && r.status("a3") == store.DeliveryDelivered
	})
	if err := r.d.DeliverRetry(r.ctx, retry.Value, 2); err != nil {
		t.Fatal(err)
	}
	if got := r.status("a4"); got != store.DeliveryDelivered || a.got.Load() != 4 {
		t.Errorf("the held retry once the partner had room: %q, the partner got %d; want delivered, 4", got, a.got.Load())
	}
}

// TestSlowPartnerBacklog: a slow partner's backlog beyond the
// dispatcher's lookahead (here 1,100 records, more than maxTracked) does
// not stop polling for the others: its topics are paused while its backlog
// is high, and the records stay in Kafka until it catches up.
func TestSlowPartnerBacklog(t *testing.T) {
	testHangingPartner(t, maxTracked+100, true)
}

// testHangingPartner sends slowN deliveries to partner A, which hangs, and
// ten to partner B (after A's first two hang, if bThen), with
// Concurrency 8 and PartnerConcurrency 2: B gets all of its own while A
// holds two slots, and A gets all of its own, two at a time at most, once
// it answers.
func testHangingPartner(t *testing.T, slowN int, bThen bool) {
	a, b := newServer(t, true), newServer(t, false)
	r := newRig(t, Config{Timeout: time.Minute, Concurrency: 8, PartnerConcurrency: 2}, nil, partner{"a", a.URL}, partner{"b", b.URL})
	defer a.release()

	var recs []*kgo.Record
	for i := range slowN {
		recs = append(recs, delivery("a", fmt.Sprint("a", i), ""))
	}
	if bThen {
		r.produce(recs...)
		waitUntil(t, "A's deliveries to hang", func() bool { return a.got.Load() == 2 })
		recs = nil
	}
	for i := range 10 {
		recs = append(recs, delivery("b", fmt.Sprint("b", i), ""))
	}
	r.produce(recs...)
	waitUntil(t, "B's deliveries while A hangs", func() bool { return b.got.Load() == 10 })
	// A's second request may still be on its way when B's last arrives
	// (they were produced together): A reaches its two, and no more.
	waitUntil(t, "A's two slots taken", func() bool { return a.got.Load() >= 2 })
	if n := a.got.Load(); n != 2 {
		t.Errorf("hanging partner A got %d requests at once, want 2 (its PartnerConcurrency)", n)
	}
	a.release()
	waitUntil(t, "A's deliveries once it answers", func() bool { return a.got.Load() == int32(slowN) })
	waitUntil(t, "A's statuses", func() bool {
		for i := range slowN {
			if r.status(fmt.Sprint("a", i)) != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	if m := a.maxIn.Load(); m > 2 {
		t.Errorf("partner A had %d deliveries in flight at once, want at most 2", m)
	}
}

// TestChainReadsEachPollsSubscription: a key's chain that outlives the
// poll it started in reads the subscription afresh for records of later
// polls — a subscription disabled meanwhile is not delivered to.
func TestChainReadsEachPollsSubscription(t *testing.T) {
	a := newServer(t, true)
	r := newRig(t, Config{Timeout: time.Minute}, nil, partner{"a", a.URL})
	defer a.release()

	r.produce(delivery("a", "d1", "k"))
	waitUntil(t, "the first delivery to hang", func() bool { return a.got.Load() == 1 })
	sub, err := r.emb.GetSubscription(r.ctx, "s-a")
	if err != nil {
		t.Fatal(err)
	}
	sub.Status, sub.Reason = store.SubscriptionDisabled, "test"
	if _, err := r.emb.PutSubscription(r.ctx, sub); err != nil {
		t.Fatal(err)
	}
	r.produce(delivery("a", "d2", "k")) // same key: queued behind d1 in its chain, from a later poll
	time.Sleep(100 * time.Millisecond)
	a.release()
	waitUntil(t, "d2 to be dead-lettered (its subscription is disabled)", func() bool { return r.status("d2") == store.DeliveryDeadLettered })
	if d, err := r.emb.GetDelivery(r.ctx, "e-d2", "d2"); err != nil || d.Reason != "subscription disabled: test" {
		t.Errorf("d2's status gives the reason %q (%v)", d.Reason, err)
	}
	if n := a.got.Load(); n != 1 {
		t.Errorf("partner got %d requests, want 1 (none after its subscription was disabled)", n)
	}
}

// TestDeliveredStatusDropsDuplicate: a delivery whose status says
// delivered is not attempted again, even with no ledger entry under its
// key — as for one delivered before the ledger key took its current form.
func TestDeliveredStatusDropsDuplicate(t *testing.T) {
	p1 := newServer(t, false)
	r := newRig(t, Config{}, nil, partner{"p1", p1.URL})
	now := time.Now()
	if err := r.emb.PutDeliveries(r.ctx, []store.Delivery{{EventID: "e-d1", ID: "d1", SubscriptionID: "s-p1", PartnerID: "p1",
		SchemaID: "bench/thing.happened/1", Status: store.DeliveryDelivered, CreatedAt: now, UpdatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	r.produce(delivery("p1", "d1", ""), delivery("p1", "d2", ""))
	waitUntil(t, "the other delivery", func() bool { return p1.got.Load() >= 1 && r.consumedUpTo("p1") == 2 })
	if n := p1.got.Load(); n != 1 || !strings.Contains(r.logs.String(), "duplicate delivery dropped") {
		t.Fatalf("partner got %d requests, want 1 (d2 only); logs:\n%s", n, r.logs.String())
	}
}

// TestFinishedEntriesReleased: what a chain or a partition's track has
// finished with is cleared from the slice's backing array, which outlives
// it while records keep coming (each kept record pins its fetched batch).
func TestFinishedEntriesReleased(t *testing.T) {
	es := make([]*entry, 4)
	for i := range es {
		es[i] = &entry{rec: &kgo.Record{Topic: "t", Offset: int64(i)}}
	}
	c := &chain{pending: slices.Clone(es)}
	backing := c.pending
	if e := c.next(); e != es[0] {
		t.Fatalf("next = %v, want the first entry", e)
	}
	if backing[0] != nil {
		t.Error("the chain's backing array still holds its taken entry")
	}
	if len(c.pending) != 3 || c.pending[0] != es[1] {
		t.Errorf("pending after next = %d entries, want the last 3", len(c.pending))
	}

	s := newStream(&Dispatcher{cfg: Config{Concurrency: 1}})
	part := partition{"t", 0}
	pt := &partTrack{entries: slices.Clone(es)}
	backing = pt.entries
	es[0].done, es[1].done = true, true
	s.advance(part, pt)
	if backing[0] != nil || backing[1] != nil {
		t.Error("the partition's backing array still holds its finished entries")
	}
	if s.ready[part] != es[1].rec || s.nReady != 2 || len(pt.entries) != 2 {
		t.Errorf("after advance: commit point %v, %d ready, %d tracked; want offset 1, 2, 2", s.ready[part], s.nReady, len(pt.entries))
	}
}

// A partner's egress topics, paused when its breaker opens, stay paused
// while the breaker lets a probe out — a held delivery makes it — and
// resume when it closes (and the partner's pace starts again); if no
// probe comes from the held deliveries, they resume to fetch one. (Resuming them at every probe moved a fetch into
// the retry tiers each time, to be written again at every later probe.)
func TestPausedThroughProbes(t *testing.T) {
	// Cool-down 800 ms: the watch looks 100 ms (half of a quarter) after
	// each probe is due.
	r := newRig(t, Config{Breaker: breaker.Config{CoolDown: 800 * time.Millisecond}}, nil, partner{"a", "http://127.0.0.1:1/"})
	d, egress := r.d, topic.Egress("a", "thing.happened")
	paused := func() bool {
		d.pauseMu.Lock()
		defer d.pauseMu.Unlock()
		return d.paused["a"][egress] && d.holds[egress] > 0
	}
	open := func() time.Time {
		for range 10 {
			d.breaker.Record("a", breaker.Failure, 0)
		}
		_, retryAt := d.breaker.Allow("a")
		return retryAt
	}

	// A held first attempt makes the probe: the topic stays paused while
	// it is out, and resumes when it succeeds.
	retryAt := open()
	d.pause("a", egress, retryAt)
	time.Sleep(time.Until(retryAt) + 20*time.Millisecond) // the probe is due
	if ok, _ := d.breaker.Allow("a"); !ok {
		t.Fatal("no probe after the cool-down")
	}
	time.Sleep(300 * time.Millisecond) // past the watch
	if !paused() {
		t.Fatal("the topic resumed while the probe was out")
	}
	d.breaker.Record("a", breaker.Failure, 0) // the probe failed: open again
	_, retryAt = d.breaker.Allow("a")
	time.Sleep(300 * time.Millisecond)
	if !paused() {
		t.Fatal("the topic resumed when the probe failed")
	}
	time.Sleep(time.Until(retryAt) + 20*time.Millisecond) // the next probe is due
	if ok, _ := d.breaker.Allow("a"); !ok {
		t.Fatal("no second probe")
	}
	// The outage's failures cut the partner's pace; closing the breaker
	// starts it again as a new partner's.
	pc := d.pace("a")
	pc.end(time.Now(), time.Now(), pc.begin(), pushedBack, 64)
	if b := d.partnerLimit("a"); b != 11 {
		t.Fatalf("bound %d after a push-back; want 11", b)
	}
	d.breaker.Record("a", breaker.Success, 0) // closed
	if paused() {
		t.Error("the topic stayed paused after the breaker closed")
	}
	if b := d.partnerLimit("a"); b != paceInitial {
		t.Errorf("bound %d after the breaker closed; want a new partner's, %d", b, paceInitial)
	}

	// No held delivery comes to probe: the topic resumes for a fetched
	// record to.
	d.pause("a", egress, open())
	if !paused() {
		t.Fatal("not paused")
	}
	waitUntil(t, "the topic to resume with no probe coming", func() bool { return !paused() })
}

// failures fails the first fail writes that go through it.
type failures struct {
	fail  atomic.Int32
	calls atomic.Int32
	skip  atomic.Int32 // calls let through before fail applies
}

func (f *failures) next() error {
	if f.calls.Add(1) <= f.skip.Load() {
		return nil
	}
	if f.fail.Add(-1) >= 0 {
		return errors.New("disk full")
	}
	return nil
}

// failingStatuses is the embedded store with its first status writes
// failing.
type failingStatuses struct {
	*embedded.Store
	failures
}

func (f *failingStatuses) PutDeliveries(ctx context.Context, ds []store.Delivery) error {
	if err := f.next(); err != nil {
		return err
	}
	return f.Store.PutDeliveries(ctx, ds)
}

// failingLedger is the embedded store with its first ledger writes
// failing.
type failingLedger struct {
	*embedded.Store
	failures
}

func (f *failingLedger) PutLedger(ctx context.Context, recs []store.Idempotency) error {
	if err := f.next(); err != nil {
		return err
	}
	return f.Store.PutLedger(ctx, recs)
}

// produceDeliveries produces deliveries d0…d{n-1} to partner, in one
// produce.
func (r *rig) produceDeliveries(partner string, n int) {
	r.t.Helper()
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, delivery(partner, fmt.Sprintf("d%d", i), ""))
	}
	r.produce(recs...)
}

// TestCountersOnceWhenWrittenAgain: a background write whose statuses fail
// is written again, ledger entries and statuses in full; the counters,
// sent beside them in the first write, are not added a second time.
func TestCountersOnceWhenWrittenAgain(t *testing.T) {
	p1 := newServer(t, false)
	var st *failingStatuses
	r := newRig(t, Config{}, func(emb *embedded.Store) Store {
		st = &failingStatuses{Store: emb}
		st.fail.Store(2)
		return st
	}, partner{"p1", p1.URL})

	const n = 5
	r.produceDeliveries("p1", n)
	waitUntil(t, "the batches to be written and committed", func() bool { return r.consumedUpTo("p1") == n })
	if c := st.calls.Load(); c < 3 {
		t.Fatalf("%d status writes; want the two failures and a success", c)
	}
	for i := range n {
		if s := r.status(fmt.Sprintf("d%d", i)); s != store.DeliveryDelivered {
			t.Errorf("d%d: status %q; want delivered", i, s)
		}
	}
	k, err := r.emb.GetSubscriptionKafka(r.ctx, "s-p1")
	if err != nil {
		t.Fatal(err)
	}
	if k.Delivered != n || p1.got.Load() != n {
		t.Errorf("counted %d delivered, partner got %d; want %d each", k.Delivered, p1.got.Load(), n)
	}
	if !strings.Contains(r.logs.String(), "store write failed; retrying") {
		t.Errorf("no retry logged:\n%s", r.logs)
	}
}

// TestLedgerAheadOfStatuses: a delivery's ledger entry is written while
// the statuses of the deliveries before it are still being written — it
// does not wait its turn behind them (the delivery window) — and no
// offset is committed before the statuses are written too.
func TestLedgerAheadOfStatuses(t *testing.T) {
	p1 := newServer(t, false)
	var held *heldStatuses
	r := newRig(t, Config{}, func(emb *embedded.Store) Store {
		held = &heldStatuses{Store: emb, writeGate: newWriteGate()}
		return held
	}, partner{"p1", p1.URL})
	defer func() {
		select {
		case <-held.release:
		default:
			close(held.release)
		}
	}()

	r.produce(delivery("p1", "d1", ""))
	waitUntil(t, "d1's status write to be under way", func() bool { return held.calls.Load() >= 1 })
	r.produce(delivery("p1", "d2", ""))
	waitUntil(t, "d2's ledger entry, written while d1's status is held", func() bool {
		_, err := r.emb.GetIdempotency(r.ctx, ledgerKey("e-d2", "d2"))
		return err == nil
	})
	if _, err := r.emb.GetIdempotency(r.ctx, ledgerKey("e-d1", "d1")); err != nil {
		t.Errorf("d1's ledger entry: %v", err)
	}
	if off := r.consumedUpTo("p1"); off != 0 {
		t.Fatalf("committed offset %d while the statuses are unwritten", off)
	}
	if st := r.status("d2"); st == store.DeliveryDelivered {
		t.Fatalf("d2's status written while its write was held")
	}
	close(held.release)
	waitUntil(t, "the statuses to be written and the offsets committed", func() bool { return r.consumedUpTo("p1") == 2 })
	for _, id := range []string{"d1", "d2"} {
		if st := r.status(id); st != store.DeliveryDelivered {
			t.Errorf("%s: status %q; want delivered", id, st)
		}
	}
}

// TestLedgerWritesFailing: while the ledger's writes fail, deliveries go
// on, nothing is committed past an unwritten entry, and once the writes
// succeed every entry, status and offset is written — each delivery made
// once.
func TestLedgerWritesFailing(t *testing.T) {
	p1 := newServer(t, false)
	var st *failingLedger
	r := newRig(t, Config{}, func(emb *embedded.Store) Store {
		st = &failingLedger{Store: emb}
		st.fail.Store(3)
		return st
	}, partner{"p1", p1.URL})

	const n = 5
	r.produceDeliveries("p1", n)
	waitUntil(t, "a ledger write to fail", func() bool { return strings.Contains(r.logs.String(), "ledger write failed; retrying") })
	// Read in this order, an offset committed before the entries were
	// written is caught however long the retries take.
	off := r.consumedUpTo("p1")
	if _, err := r.emb.GetIdempotency(r.ctx, ledgerKey("e-d0", "d0")); errors.Is(err, store.ErrNotFound) && off != 0 {
		t.Fatalf("offset %d committed while the ledger entries are unwritten", off)
	}
	waitUntil(t, "every offset committed", func() bool { return r.consumedUpTo("p1") == n })
	for i := range n {
		id := fmt.Sprintf("d%d", i)
		if _, err := r.emb.GetIdempotency(r.ctx, ledgerKey("e-"+id, id)); err != nil {
			t.Errorf("%s: ledger entry: %v", id, err)
		}
		if s := r.status(id); s != store.DeliveryDelivered {
			t.Errorf("%s: status %q; want delivered", id, s)
		}
	}
	if got := p1.got.Load(); got != n {
		t.Errorf("partner got %d requests; want %d", got, n)
	}
}
