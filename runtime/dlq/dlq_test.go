package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/internal/teststores"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// deadLetters is a DLQ of n entries over two subscriptions, each
// delivery dead-lettered in st, in a kfake cluster of its own.
func deadLetters(tb testing.TB, n int, st Store) *Queue {
	tb.Helper()
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic.DLQ("thing.happened"), topic.Egress("p0", "thing.happened"), topic.Egress("p1", "thing.happened"),
		topic.DLQ("other.happened")))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	now := time.Now().UTC()
	var ds []store.Delivery
	for i := range n {
		sub := fmt.Sprintf("p%d#bench#thing.happened#1", i%2)
		d := envelope.Delivery{ID: fmt.Sprintf("d%06d", i), EventID: fmt.Sprintf("e%06d", i), SubscriptionID: sub, PartnerID: fmt.Sprintf("p%d", i%2),
			SchemaID: "bench#thing.happened#1", Event: "thing.happened", AcceptedAt: now, CreatedAt: now, Body: json.RawMessage(`{"n":1}`)}
		v, _ := json.Marshal(envelope.DeadLetter{Delivery: d, Reason: "attempts exhausted", Attempts: 8, FailedAt: now.Add(time.Duration(i) * time.Millisecond)})
		cl.Produce(ctx, &kgo.Record{Topic: topic.DLQ("thing.happened"), Key: []byte(d.EventID), Value: v}, nil)
		ds = append(ds, store.Delivery{EventID: d.EventID, ID: d.ID, SubscriptionID: sub, PartnerID: d.PartnerID, SchemaID: d.SchemaID,
			Status: store.DeliveryDeadLettered, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)})
	}
	if err := cl.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(ds); i += 1000 {
		if err := st.PutDeliveries(ctx, ds[i:min(i+1000, len(ds))]); err != nil {
			tb.Fatal(err)
		}
	}
	return New(cl, st)
}

// BenchmarkList lists a DLQ of 1,000 and 10,000 entries, as the console's
// overview and DLQ pages do on each load.
//
//	go test -run '^$' -bench List -benchmem ./runtime/dlq
func BenchmarkList(b *testing.B) {
	for _, st := range teststores.All {
		for _, n := range []int{1_000, 10_000} {
			b.Run(fmt.Sprintf("%s/%d", st.Name, n), func(b *testing.B) {
				q := deadLetters(b, n, st.Open(b))
				for b.Loop() {
					es, err := q.List(context.Background(), Filter{})
					if err != nil || len(es) != n {
						b.Fatalf("%d entries, %v", len(es), err)
					}
				}
			})
		}
	}
}

// A list of one subscription's dead letters reads its event's topic
// alone; an unfiltered one reads them all.
func TestListReadsTheSubscriptionsTopic(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	q := deadLetters(t, 50, st) // thing.happened's
	now := time.Now().UTC()
	for i := range 30 {
		d := envelope.Delivery{ID: fmt.Sprintf("o%06d", i), EventID: fmt.Sprintf("eo%06d", i), SubscriptionID: "p0#bench#other.happened#1", PartnerID: "p0",
			SchemaID: "bench#other.happened#1", Event: "other.happened", AcceptedAt: now, CreatedAt: now, Body: json.RawMessage(`{"n":1}`)}
		v, _ := json.Marshal(envelope.DeadLetter{Delivery: d, Reason: "attempts exhausted", Attempts: 8, FailedAt: now})
		if err := q.cl.ProduceSync(ctx, &kgo.Record{Topic: topic.DLQ("other.happened"), Key: []byte(d.EventID), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		f           Filter
		read, found int
	}{
		{Filter{SubscriptionID: "p0#bench#thing.happened#1"}, 50, 25},
		{Filter{SubscriptionID: "p0#bench#other.happened#1", All: true}, 30, 30},
		{Filter{}, 80, 80}, // other.happened's have no status: still in the queue
	} {
		before := q.read.Load()
		es, err := q.List(ctx, c.f)
		if read := q.read.Load() - before; err != nil || read != int64(c.read) || len(es) != c.found {
			t.Errorf("List(%+v): read %d records, found %d (%v); want %d and %d", c.f, read, len(es), err, c.read, c.found)
		}
	}
}

// List reads each entry's status in the store — more entries than one
// BatchGetItem takes — and leaves out those redriven (unless asked for
// all); a filter by delivery IDs takes those alone; Redrive of one
// subscription's writes them back to their egress topic as pending, and
// a second redrive finds none left. On both stores.
func TestListAndRedrive(t *testing.T) {
	for _, s := range teststores.All {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			st := s.Open(t)
			q := deadLetters(t, 250, st)
			// Two already redriven (pending again).
			for _, id := range []string{"d000003", "d000004"} {
				d, err := st.GetDelivery(ctx, "e"+id[1:], id)
				if err != nil {
					t.Fatal(err)
				}
				d.Status = store.DeliveryPending
				if err := st.PutDeliveries(ctx, []store.Delivery{d}); err != nil {
					t.Fatal(err)
				}
			}
			es, err := q.List(ctx, Filter{})
			if err != nil || len(es) != 248 {
				t.Fatalf("List: %d entries, %v; want 248", len(es), err)
			}
			if es[0].DeliveryID != "d000249" || es[0].Status != store.DeliveryDeadLettered || es[0].Attempts != 8 {
				t.Errorf("most recent first: %+v", es[0])
			}
			if all, _ := q.List(ctx, Filter{All: true}); len(all) != 250 {
				t.Errorf("List(all): %d entries", len(all))
			}
			picked, _ := q.List(ctx, Filter{DeliveryIDs: []string{"d000007", "d000003", "d000100"}, All: true})
			if len(picked) != 3 || picked[2].DeliveryID != "d000003" || picked[2].Status != store.DeliveryPending {
				t.Errorf("List(ids): %+v", picked)
			}
			if _, err := st.PutSubscription(ctx, store.Subscription{ID: "p0#bench#thing.happened#1", PartnerID: "p0", SchemaID: "bench#thing.happened#1", Status: store.SubscriptionApproved}); err != nil {
				t.Fatal(err)
			}
			p, err := q.Redrive(ctx, Filter{SubscriptionID: "p0#bench#thing.happened#1"}, nil)
			if err != nil || p.Total != 124 || p.Redriven != 124 || p.Skipped != 0 {
				t.Fatalf("Redrive: %+v, %v; want 124 redriven (p0's 125 but d000004)", p, err)
			}
			if left, _ := q.List(ctx, Filter{SubscriptionID: "p0#bench#thing.happened#1"}); len(left) != 0 {
				t.Errorf("%d of p0's left after the redrive", len(left))
			}
			if left, _ := q.List(ctx, Filter{}); len(left) != 124 {
				t.Errorf("%d left in the queue, want p1's 124", len(left))
			}
		})
	}
}
