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
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// Each attempt sends the headers made once for its subscription with the
// Standard Webhooks three of its own — signed over its own ID, timestamp
// and body — and records what it sent: every header the partner got, by
// its lower-case name, the credential as [redacted].
func TestRecordedHeaders(t *testing.T) {
	ctx := context.Background()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // staticSecrets'
	var mu sync.Mutex
	got := map[string]http.Header{}
	bodies := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.Header.Get("webhook-id")], bodies[r.Header.Get("webhook-id")] = r.Header.Clone(), b
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	d, emb := batchDispatcher(t, Config{UserAgent: "whp-test"}, store.Subscription{ID: "s-p", PartnerID: "p", SchemaID: "bench/thing.happened/1", URL: srv.URL,
		Status: store.SubscriptionApproved, SigningSecretRef: "whsec/p", AuthKind: "header", AuthHeader: "X-Partner-Key", AuthSecretRef: "key/p"})
	ids := []string{"d1", "d2", "d3"}
	var recs []*kgo.Record
	for i, id := range ids {
		rec := delivery("p", id, "")
		msg := envelope.Delivery{ID: id, EventID: "e-" + id, SubscriptionID: "s-p", PartnerID: "p", SchemaID: "bench/thing.happened/1",
			Event: "thing.happened", AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: json.RawMessage(`{"n":` + strings.Repeat("1", i+1) + `}`)}
		rec.Value = msg.JSON()
		recs = append(recs, rec)
	}
	// One batch, then one more: the second batch's subscription is read
	// and its headers made again.
	if failed := d.Deliver(ctx, recs[:2]); len(failed) != 0 {
		t.Fatalf("%d not handled", len(failed))
	}
	if failed := d.Deliver(ctx, recs[2:]); len(failed) != 0 {
		t.Fatalf("%d not handled", len(failed))
	}
	for _, id := range ids {
		st, err := emb.GetDelivery(ctx, "e-"+id, id)
		if err != nil || len(st.Attempts) != 1 {
			t.Fatalf("%s: %v, %+v", id, err, st)
		}
		rec, sent := st.Attempts[0].RequestHeaders, got[id]
		if sent == nil {
			t.Fatalf("%s never reached the partner", id)
		}
		for _, name := range []string{"content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature", "x-partner-key"} {
			if _, ok := rec[name]; !ok {
				t.Errorf("%s: %s not recorded: %v", id, name, rec)
			}
		}
		for name, v := range rec {
			want := sent.Get(name)
			if v == redacted {
				if want != secret {
					t.Errorf("%s: %s sent %q, want the credential", id, name, want)
				}
				continue
			}
			if v != want {
				t.Errorf("%s: %s recorded %q, sent %q", id, name, v, want)
			}
		}
		if rec["webhook-id"] != id || rec["x-partner-key"] != redacted || rec["user-agent"] != "whp-test" {
			t.Errorf("%s: recorded %v", id, rec)
		}
		if err := signature.Verify(sent, bodies[id], time.Now(), signature.DefaultTolerance, secret); err != nil {
			t.Errorf("%s: the partner cannot verify it: %v", id, err)
		}
	}
}

// TestMaxInFlightBatch: a dispatcher fed batches (NewBatch, the Lambda
// handler's) holds a partner to its max_in_flight too — 3, above the
// default 2 — and delivers the rest of the batch as the partner's
// deliveries end.
func TestMaxInFlightBatch(t *testing.T) {
	p := newServer(t, true)
	defer p.release()
	d, emb := batchDispatcher(t, Config{Timeout: time.Minute, Concurrency: 16, PartnerConcurrency: 2}, store.Subscription{ID: "s-p", PartnerID: "p",
		SchemaID: "bench/thing.happened/1", URL: p.URL, Status: store.SubscriptionApproved, SigningSecretRef: "whsec/p", MaxInFlight: 3})
	var recs []*kgo.Record
	for i := range 10 {
		r := delivery("p", fmt.Sprint("d", i), "")
		r.Offset = int64(i) // each its own, as consumed: no key, so not one another's
		recs = append(recs, r)
	}
	done := make(chan []*kgo.Record, 1)
	go func() { done <- d.Deliver(context.Background(), recs) }()
	waitUntil(t, "three deliveries in flight", func() bool { return p.in.Load() == 3 })
	time.Sleep(300 * time.Millisecond) // time for any beyond the bound to arrive
	if n := p.maxIn.Load(); n != 3 {
		t.Fatalf("%d deliveries in flight at once, want 3 (the partner's max_in_flight)", n)
	}
	p.release()
	if failed := <-done; len(failed) != 0 {
		t.Fatalf("%d not handled", len(failed))
	}
	for i := range 10 {
		if st, err := emb.GetDelivery(context.Background(), fmt.Sprint("e-d", i), fmt.Sprint("d", i)); err != nil || st.Status != store.DeliveryDelivered {
			t.Errorf("d%d: %v, %q", i, err, st.Status)
		}
	}
	if n := p.maxIn.Load(); n != 3 || p.got.Load() != 10 {
		t.Errorf("%d requests, at most %d at once; want 10, 3", p.got.Load(), n)
	}
}

// batchDispatcher is a dispatcher for Deliver (NewBatch, cfg with
// loopback allowed, staticSecrets) on a kfake cluster for its dead
// letters and an embedded store holding sub; both close at the end.
func batchDispatcher(tb testing.TB, cfg Config, sub store.Subscription) (*Dispatcher, *embedded.Store) {
	tb.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic.DLQ("thing.happened")))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cluster.Close)
	emb, err := embedded.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { emb.Close() })
	if _, err := emb.PutSubscription(context.Background(), sub); err != nil {
		tb.Fatal(err)
	}
	cfg.Guard = &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}
	d, err := NewBatch(cfg, cluster.ListenAddrs(), emb, staticSecrets{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	return d, emb
}
