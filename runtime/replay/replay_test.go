package replay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/internal/teststores"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/store"
)

// replayFixture is n events accepted into a three-partition ingress
// topic, alpha's Approved subscription to them in st, and a Replayer
// over both clusters; since is just before the first was accepted.
type replayFixture struct {
	r     *Replayer
	eg    *kgo.Client
	since time.Time
}

func newReplayFixture(tb testing.TB, st store.Store, n int) replayFixture {
	tb.Helper()
	ctx := context.Background()
	const ingress, egress = "wh.ingress.shop.order.created", "wh.egress.alpha.order.created"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, ingress, egress))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	since := time.Now().Add(-time.Second).UTC()
	for i := range n {
		ev := envelope.Event{ID: fmt.Sprintf("0190f1e2-aaaa-7bbb-8ccc-%012d", i), Domain: "shop", Event: "order.created", Version: "1",
			AcceptedAt: time.Now().UTC(), Data: []byte(`{"id":1,"note":"an order of the replay's fixture"}`)}
		cl.Produce(ctx, &kgo.Record{Topic: ingress, Key: []byte(ev.ID), Value: ev.JSON()}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := st.PutSchema(ctx, store.Schema{ID: "shop#order.created#1", Domain: "shop", Event: "order.created", Version: "1",
		Status: "ACTIVE", JSONSchema: []byte(`{"type":"object"}`)}); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.PutSubscription(ctx, store.Subscription{ID: alphaSub, PartnerID: "alpha", SchemaID: "shop#order.created#1",
		URL: "https://alpha.example/hooks", Status: store.SubscriptionApproved}); err != nil {
		tb.Fatal(err)
	}
	return replayFixture{r: New(cl, cl, st), eg: cl, since: since}
}

// BenchmarkReplay replays 2,000 events as fast as the replay may go (its
// rate set far past it), on each store, and reports replays a second.
//
//	go test -run '^$' -bench Replay -benchtime 3x ./runtime/replay
func BenchmarkReplay(b *testing.B) {
	const n = 2000
	for _, s := range teststores.All {
		b.Run(s.Name, func(b *testing.B) {
			f := newReplayFixture(b, s.Open(b), n)
			i := 0
			for b.Loop() {
				i++
				start := time.Now()
				p, err := f.r.Run(context.Background(), fmt.Sprintf("bench-%d", i), Request{SubscriptionID: alphaSub, From: f.since, RatePerSecond: 1e9}, func(Progress) {})
				if err != nil || p.Replayed != n {
					b.Fatalf("replayed %d of %d: %v", p.Replayed, n, err)
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "replays/s")
			}
		})
	}
}

// A replay makes each event of its range once — in steps of at most
// replayStep, one store write and one produce each — with its pending
// status stored, on both stores; and keeps to its rate: 300 events at
// 100 a second take at least the 2.9 s the limiter allows (its burst is
// a tenth of a second's worth).
func TestReplay(t *testing.T) {
	for _, s := range teststores.All {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			st := s.Open(t)
			const n = 1200
			f := newReplayFixture(t, st, n)
			var steps int
			p, err := f.r.Run(ctx, "fast", Request{SubscriptionID: alphaSub, From: f.since, RatePerSecond: 1e9}, func(Progress) { steps++ })
			if err != nil || p.Replayed != n || p.Scanned != n {
				t.Fatalf("replayed %+v: %v", p, err)
			}
			if steps < n/replayStep {
				t.Errorf("%d progress reports for %d events in steps of %d", steps, n, replayStep)
			}
			// Each once in the egress topic, under the replay's delivery IDs,
			// each with its pending status.
			seen := map[string]int{}
			consumer, err := kgo.NewClient(kgo.SeedBrokers(f.eg.OptValue(kgo.SeedBrokers).([]string)...), kgo.ConsumeTopics("wh.egress.alpha.order.created"))
			if err != nil {
				t.Fatal(err)
			}
			defer consumer.Close()
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			for total := 0; total < n; {
				fs := consumer.PollFetches(fctx)
				if fctx.Err() != nil {
					t.Fatalf("%d of %d deliveries in the egress topic", total, n)
				}
				fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)]++; total++ })
			}
			var keys []store.DeliveryKey
			for i := range n {
				id := fmt.Sprintf("0190f1e2-aaaa-7bbb-8ccc-%012d", i)
				if seen[id] != 1 {
					t.Errorf("event %s produced %d times", id, seen[id])
				}
				keys = append(keys, store.DeliveryKey{EventID: id, ID: ID(id, alphaSub, "fast")})
			}
			ds, err := st.GetDeliveries(ctx, keys)
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range ds {
				if d.Status != store.DeliveryPending || d.Replay != "fast" {
					t.Fatalf("delivery of event %d: %+v", i, d)
				}
			}
			if s.Name != "embedded" {
				return // the rate is the replay's, not the store's
			}
			const paced = 300
			f = newReplayFixture(t, s.Open(t), paced)
			start := time.Now()
			p, err = f.r.Run(ctx, "paced", Request{SubscriptionID: alphaSub, From: f.since, RatePerSecond: 100}, func(Progress) {})
			if err != nil || p.Replayed != paced {
				t.Fatalf("paced: %+v, %v", p, err)
			}
			if took, least := time.Since(start), time.Duration(paced-10)*10*time.Millisecond; took < least {
				t.Errorf("%d events at 100 a second took %s, less than the %s the rate allows", paced, took, least)
			}
		})
	}
}
