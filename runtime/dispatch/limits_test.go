package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

func TestLimiters(t *testing.T) {
	var ls limiters
	now := time.Unix(1_800_000_000, 0)
	sub := store.Subscription{PartnerID: "acme", RateLimitPerSecond: 2, RateLimitBurst: 3}
	for i := range 3 {
		if d := ls.reserve(sub, 1, now); d != 0 {
			t.Fatalf("token %d of the burst waited %s", i+1, d)
		}
	}
	near := func(d, want time.Duration) bool {
		return d > want-100*time.Millisecond && d < want+100*time.Millisecond
	}
	if d := ls.reserve(sub, 1, now); !near(d, 500*time.Millisecond) {
		t.Errorf("fourth token at once: wait %s, want 500ms", d)
	}
	// A reservation is kept, however long its wait: the delivery held
	// for it sends when it is due, and the next caller's token is later.
	if d := ls.reserve(sub, 1, now); !near(d, time.Second) {
		t.Errorf("fifth token at once: wait %s, want 1s (the fourth's reservation kept)", d)
	}
	// Run's take does not keep a token it would wait for in place longer
	// than maxInlineWait: its chain comes back when it is due.
	if d, limited := ls.take("acme", now); !limited || !near(d, 1500*time.Millisecond) {
		t.Errorf("take = %s, %v; want 1.5s, limited", d, limited)
	}
	if d, _ := ls.take("acme", now); !near(d, 1500*time.Millisecond) {
		t.Errorf("a token take did not wait for was kept: the next wait is %s", d)
	}
	if d, _ := ls.take("acme", now.Add(1500*time.Millisecond)); d != 0 {
		t.Errorf("take when the token is due: wait %s, want none", d)
	}
	other := store.Subscription{PartnerID: "beta", RateLimitPerSecond: 2, RateLimitBurst: 1}
	if d := ls.reserve(other, 1, now); d != 0 {
		t.Errorf("another partner waited %s for acme's bucket", d)
	}
	if d := ls.reserve(store.Subscription{PartnerID: "free"}, 1, now); d != 0 {
		t.Errorf("an unlimited partner waited %s", d)
	}
	if _, limited := ls.take("free", now); limited {
		t.Error("an unlimited partner is limited in Run")
	}
	// A changed limit starts a full bucket; a limit taken away ends it.
	sub.RateLimitPerSecond = 4
	if d := ls.reserve(sub, 1, now); d != 0 {
		t.Errorf("the new limit's first token waited %s", d)
	}
	sub.RateLimitPerSecond = 0
	ls.learn(sub, 1)
	if _, limited := ls.take("acme", now); limited {
		t.Error("a limit taken out of the catalog still limits Run")
	}
}

// limit sets partner's rate limit on its rig subscription.
func (r *rig) limit(partner string, perSecond float64, burst int) {
	r.t.Helper()
	sub, err := r.emb.GetSubscription(r.ctx, "s-"+partner)
	if err != nil {
		r.t.Fatal(err)
	}
	sub.RateLimitPerSecond, sub.RateLimitBurst = perSecond, burst
	if _, err := r.emb.PutSubscription(r.ctx, sub); err != nil {
		r.t.Fatal(err)
	}
}

// retryRecords is how many records the retry tiers of the rig's event
// hold: one for each pass held or retried through them.
func (r *rig) retryRecords() int64 {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.addrs...))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(r.ctx, topic.Retry("thing.happened"))
	if err != nil {
		r.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// TestRateLimitInRun: a backlog of 60 deliveries to a partner limited to
// 20 a second (burst 1) waits for its tokens in the stream, not in the
// retry tiers: no delivery is held, none goes through a retry record, each
// is made once, and no second has more than burst + rate of them. Waiting
// holds no delivery slot: with two in all, another partner's deliveries,
// sent after the backlog, arrive before most of it (at once; after 59 of
// the 60 when its chains waited in place).
func TestRateLimitInRun(t *testing.T) {
	a, b := newServer(t, false), newServer(t, false)
	r := newRig(t, Config{Timeout: time.Minute, Concurrency: 2, PartnerConcurrency: 2}, nil, partner{"a", a.URL}, partner{"b", b.URL})
	r.limit("a", 20, 1)
	const n = 60
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = delivery("a", fmt.Sprint("a", i), "")
	}
	sent := time.Now()
	r.produce(recs...)
	waitUntil(t, "the first of the backlog to arrive", func() bool { return len(a.arrivals()) > 0 })
	// What whp status and the console show of it.
	waitUntil(t, "the backlog shown waiting for the rate limit", func() bool {
		for _, f := range r.d.InFlight() {
			if f.Partner == "a" && f.Waiting >= 10 && f.WaitsFor == telemetry.WaitsForRateLimit {
				return true
			}
		}
		return false
	})
	for i := range 5 {
		r.produce(delivery("b", fmt.Sprint("b", i), ""))
	}
	waitUntil(t, "the other partner's deliveries", func() bool { return b.got.Load() == 5 })
	if got := len(a.arrivals()); got > n/2 {
		t.Fatalf("the other partner's deliveries waited for the limited partner's backlog (%d of %d made first)", got, n)
	}
	waitUntil(t, "the backlog delivered", func() bool {
		for i := range n {
			if r.status(fmt.Sprint("a", i)) != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	at := a.arrivals()
	if len(at) != n {
		t.Errorf("the partner got %d requests, want %d", len(at), n)
	}
	for i := range at {
		in := 0
		for _, u := range at[i:] {
			if u.Sub(at[i]) < time.Second {
				in++
			}
		}
		// The limit allows 21 (the burst and a second's 20); a request
		// that arrives late after its token draws the window in, so one
		// more is allowed for it.
		if in > 22 {
			t.Fatalf("%d requests within a second from the %dth; the limit allows 21", in, i)
		}
	}
	// No request arrives before its token: the last, the 60th, not before
	// 59 ÷ 20 s after the first could be sent.
	if span := at[len(at)-1].Sub(sent); span < 59*time.Second/20 {
		t.Errorf("%d requests within %s; at 20 a second they need %s", len(at), span, 59*time.Second/20)
	}
	for i := range n {
		dl, err := r.emb.GetDelivery(r.ctx, fmt.Sprint("e-a", i), fmt.Sprint("a", i))
		if err != nil || dl.Status != store.DeliveryDelivered || len(dl.Attempts) != 1 {
			t.Fatalf("a%d: %q, %d attempts, %v; want delivered in one", i, dl.Status, len(dl.Attempts), err)
		}
	}
	if n := r.retryRecords(); n != 0 {
		t.Errorf("%d records went through the retry tiers; the backlog was to wait in the stream", n)
	}
}

// TestRateLimitHeldKeepsItsToken: a pass that finds its partner's tokens
// spent further ahead than maxInlineWait is held until its own token is
// due — each held delivery a token later than the one before, not all of
// them until the next — and, back when it is due, sends without taking
// another.
func TestRateLimitHeldKeepsItsToken(t *testing.T) {
	a := newServer(t, false)
	r := newRig(t, Config{Timeout: time.Minute}, nil, partner{"a", a.URL})
	r.limit("a", 2, 1)
	var ids []string
	for i := range 3 {
		ids = append(ids, fmt.Sprint("a", i))
		if err := r.d.DeliverRetry(r.ctx, delivery("a", ids[i], "").Value, 2); err != nil {
			t.Fatal(err)
		}
	}
	var due []time.Time
	for i, id := range ids {
		dl, err := r.emb.GetDelivery(r.ctx, "e-"+id, id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 0 && dl.Status != store.DeliveryDelivered:
			t.Fatalf("the first, with the bucket's token: %q", dl.Status)
		case i > 0 && (dl.Status != store.DeliveryHeld || dl.Reason != reasonRateLimit):
			t.Fatalf("%s: %q (%q), want held for the rate limit", id, dl.Status, dl.Reason)
		}
		due = append(due, dl.NextAttemptAt)
	}
	if gap := due[2].Sub(due[1]); gap < 400*time.Millisecond || gap > 600*time.Millisecond {
		t.Errorf("the held deliveries are due %s apart, want a token's 500ms", gap)
	}
	time.Sleep(time.Until(due[1]))
	if err := r.d.DeliverRetry(r.ctx, delivery("a", ids[1], "").Value, 2); err != nil {
		t.Fatal(err)
	}
	if got := r.status(ids[1]); got != store.DeliveryDelivered || len(a.arrivals()) != 2 {
		t.Errorf("back when its token is due: %q, the partner got %d; want delivered, 2 (no second token taken)", got, len(a.arrivals()))
	}
}

// TestRateLimitSharedByDispatchers: a partner's rate limit is the
// partner's, not each dispatcher's. Two dispatchers in one group, each
// consuming one of the two partitions of a partner limited to 20 a second
// (bursts of 2), keep to 10 a second each: 60 deliveries, half on each
// partition, take as long as 20 a second allows, where each dispatcher
// keeping to the whole limit sent them in half the time.
func TestRateLimitSharedByDispatchers(t *testing.T) {
	a := newServer(t, false)
	egress := topic.Egress("a", "thing.happened")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, egress), kfake.SeedTopics(1, topic.DLQ("thing.happened")),
		kfake.SeedTopics(retry.Tiers, topic.Retry("thing.happened")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	addrs := cluster.ListenAddrs()
	emb, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := emb.PutSubscription(ctx, store.Subscription{ID: "s-a", PartnerID: "a", SchemaID: "bench/thing.happened/1", URL: a.URL,
		Status: store.SubscriptionApproved, SigningSecretRef: "whsec/a", RateLimitPerSecond: 20, RateLimitBurst: 2}); err != nil {
		t.Fatal(err)
	}
	retryProd, err := retry.NewProducer(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(retryProd.Close)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var ds []*Dispatcher
	for range 2 {
		d, err := New(Config{Timeout: time.Minute, Guard: &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}}, addrs, emb, staticSecrets{}, retryProd,
			slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
		wg.Go(func() { d.Run(ctx) })
	}
	waitUntil(t, "each dispatcher to consume one of the partner's two partitions", func() bool {
		return ds[0].shares.of("a") == 0.5 && ds[1].shares.of("a") == 0.5
	})
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	const n = 60
	var recs []*kgo.Record
	for i := range n {
		r := delivery("a", fmt.Sprint("a", i), fmt.Sprint("k", i))
		r.Partition = int32(i % 2)
		recs = append(recs, r)
	}
	sent := time.Now()
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "every delivery", func() bool { return len(a.arrivals()) >= n })
	// Each dispatcher: its 30 at 10 a second after a burst of 1 — 2.9 s;
	// at the whole limit each, 1.4 s. Some leeway below the 2.9 for the
	// two buckets' tokens that were not all spent at the start.
	if span := a.arrivals()[n-1].Sub(sent); span < 2500*time.Millisecond {
		t.Errorf("%d deliveries from two dispatchers within %s; at the partner's 20 a second they need 2.9 s", n, span)
	}
}

// TestShares: a partner's share of its rate limit in one dispatcher, from
// the partitions of its egress topics it consumes.
func TestShares(t *testing.T) {
	var s shares
	if got := s.of("a"); got != 1 {
		t.Errorf("nothing known: share %v, want 1 (the whole limit, as before shares)", got)
	}
	created, paid := topic.Egress("a", "order.created"), topic.Egress("a", "order.paid")
	s.owned = map[string]map[int32]bool{created: {0: true, 2: true}, paid: {1: true}}
	s.totals = map[string]int{created: 3, paid: 3, topic.Egress("b", "order.created"): 3}
	s.topics = map[string][]string{"a": {created, paid}, "b": {topic.Egress("b", "order.created")}}
	if got := s.of("a"); got != 0.5 {
		t.Errorf("3 of the partner's 6 partitions: share %v, want 0.5", got)
	}
	s.revoked(map[string][]int32{created: {0, 2}, paid: {1}})
	if got := s.of("a"); got != 1.0/3 {
		t.Errorf("none of its partitions (its retries come due here still): share %v, want one partition's, 1/3", got)
	}
	if got := s.of("c"); got != 1 {
		t.Errorf("a partner whose topics are not known here: share %v, want 1", got)
	}
}

// TestPausedRetryHoldsLonger: a retry of a paused partner is held for 5 s,
// then each time it finds the partner still paused for twice as long, up
// to a minute — not every 5 s for as long as the pause lasts.
func TestPausedRetryHoldsLonger(t *testing.T) {
	a := newServer(t, false)
	r := newRig(t, Config{Timeout: time.Minute, Flags: flags.Static{Partners: map[string]flags.Partner{"a": {Paused: true}}}}, nil, partner{"a", a.URL})
	rec := delivery("a", "a1", "")
	var holds []time.Duration
	for range 6 {
		if err := r.d.DeliverRetry(r.ctx, rec.Value, 2); err != nil {
			t.Fatal(err)
		}
		dl, err := r.emb.GetDelivery(r.ctx, "e-a1", "a1")
		if err != nil || dl.Status != store.DeliveryHeld || dl.Reason != flags.PausedReason {
			t.Fatalf("a retry of a paused partner: %q (%q), %v; want held, paused", dl.Status, dl.Reason, err)
		}
		holds = append(holds, dl.NextAttemptAt.Sub(dl.UpdatedAt).Round(time.Second))
	}
	if want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}; !slices.Equal(holds, want) {
		t.Errorf("holds %v, want %v", holds, want)
	}
	if n := len(a.arrivals()); n != 0 {
		t.Errorf("the paused partner got %d requests", n)
	}
}

// TestRateLimitWaitsOutFullSlots: a rate-limited partner whose chains are
// all set aside when another partner's hanging deliveries take every slot
// starts again once the slots are free — its wake, finding none, looks
// again; before, it was left waiting for good.
func TestRateLimitWaitsOutFullSlots(t *testing.T) {
	a, h := newServer(t, false), newServer(t, true)
	r := newRig(t, Config{Timeout: time.Minute, Concurrency: 2, PartnerConcurrency: 2}, nil, partner{"a", a.URL}, partner{"h", h.URL})
	defer h.release()
	r.limit("a", 10, 1)
	const n = 10
	for i := range n {
		r.produce(delivery("a", fmt.Sprint("a", i), ""))
	}
	waitUntil(t, "the first of the limited partner's deliveries", func() bool { return len(a.arrivals()) > 0 })
	r.produce(delivery("h", "h0", ""), delivery("h", "h1", ""))
	waitUntil(t, "the hanging partner to hold both slots", func() bool { return h.in.Load() == 2 })
	got := len(a.arrivals())
	time.Sleep(300 * time.Millisecond) // the limited partner's wakes come and find no slot
	if now := len(a.arrivals()); now > got+1 {
		t.Fatalf("the limited partner got %d more with both slots held", now-got)
	}
	h.release()
	waitUntil(t, "every delivery of the limited partner once the slots are free", func() bool { return len(a.arrivals()) == n })
}
