package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

type noSchemas struct{}

func (noSchemas) Lookup(string) (*registry.Entry, bool) { return nil, false }

// TestProcessInChunks: a batch whose deliveries exceed MaxDeliveries is
// published and recorded in several steps, never splitting an event, and
// nothing is lost on the way.
func TestProcessInChunks(t *testing.T) {
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic.Egress("p0", "thing.happened"), topic.Egress("p1", "thing.happened")))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const schemaID = "bench#thing.happened#1"
	for i := range 2 {
		if _, err := st.PutSubscription(ctx, store.Subscription{ID: fmt.Sprint("s", i), PartnerID: fmt.Sprint("p", i), SchemaID: schemaID,
			Status: store.SubscriptionApproved}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewBatch(Config{MaxDeliveries: 3}, cluster.ListenAddrs(), st, noSchemas{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var recs []*kgo.Record
	for i := range 5 {
		ev := envelope.Event{ID: fmt.Sprint("e", i), Domain: "bench", Event: "thing.happened", Version: "1", AcceptedAt: time.Now(), Data: json.RawMessage(`{}`)}
		v, _ := json.Marshal(ev)
		recs = append(recs, &kgo.Record{Topic: topic.Ingress("bench", "thing.happened"), Value: v, Offset: int64(i)})
	}
	// Two deliveries per event, at most three per publish: each publish
	// takes two events (four deliveries: the second event is not split),
	// then the last one.
	if err := p.Process(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := st.GetEvent(ctx, fmt.Sprint("e", i)); err != nil {
			t.Errorf("event e%d not recorded: %v", i, err)
		}
		ds, err := st.Deliveries(ctx, fmt.Sprint("e", i))
		if err != nil || len(ds) != 2 {
			t.Errorf("event e%d: %d deliveries recorded (%v), want 2", i, len(ds), err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(topic.Egress("p0", "thing.happened"), topic.Egress("p1", "thing.happened")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(seen) < 10 && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { seen[string(r.Headers[0].Value)] = true })
	}
	if len(seen) != 10 {
		t.Errorf("published %d distinct deliveries, want 10", len(seen))
	}
	// The chunking itself: publish takes whole events up to the bound.
	_, taken, err := p.publish(ctx, recs)
	if err != nil || taken != 2 {
		t.Errorf("publish took %d records (%v), want 2 (four deliveries: the bound is reached inside the second event, which is not split)", taken, err)
	}
}

// failingEvents is the embedded store with its first event write failing.
type failingEvents struct {
	*embedded.Store
	failed bool
}

func (f *failingEvents) CreateEvents(ctx context.Context, es []store.Event) error {
	if !f.failed {
		f.failed = true
		return errors.New("disk full")
	}
	return f.Store.CreateEvents(ctx, es)
}

// TestFilteredCountedOnceWhenWrittenAgain: a history write whose events
// fail is written again in full; the filtered counts, sent beside them in
// the first write, are not added a second time.
func TestFilteredCountedOnceWhenWrittenAgain(t *testing.T) {
	ctx := context.Background()
	emb, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	st := &failingEvents{Store: emb}
	p := &Processor{st: st, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	hs := []history{
		{events: []store.Event{{ID: "e1", ExpiresAt: time.Now().Add(time.Hour)}}, filtered: map[string]int64{"s1": 2}},
		{events: []store.Event{{ID: "e2", ExpiresAt: time.Now().Add(time.Hour)}}, filtered: map[string]int64{"s1": 1, "s2": 1}},
	}
	if err := p.record(ctx, hs); err == nil {
		t.Fatal("the first write succeeded; want the event write's failure")
	}
	if err := p.record(ctx, hs); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int64{"s1": 3, "s2": 1} {
		if k, err := emb.GetSubscriptionKafka(ctx, id); err != nil || k.Filtered != want {
			t.Errorf("%s: filtered %d (%v); want %d", id, k.Filtered, err, want)
		}
	}
	for _, id := range []string{"e1", "e2"} {
		if _, err := emb.GetEvent(ctx, id); err != nil {
			t.Errorf("event %s: %v", id, err)
		}
	}
}
