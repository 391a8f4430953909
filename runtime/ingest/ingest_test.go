package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// TestIdempotencyLease: a key claimed by a request that never finished
// answers 409 while the claim is fresh, and is taken over after the lease.
func TestIdempotencyLease(t *testing.T) {
	ctx := context.Background()
	_, cl := ingress(t)
	post1, st := ingestAPI(t, cl, time.Second)
	post := func() *httptest.ResponseRecorder { return post1("k1", 1) }
	sum := sha256.Sum256([]byte(`{"domain":"shop","event":"order.created","version":"1","data":{"id":1}}`)) // what post sends
	claim := func(age time.Duration) {
		v, _ := json.Marshal(idempotencyState{Fingerprint: hex.EncodeToString(sum[:])})
		at := time.Now().Add(-age)
		if err := st.PutIdempotency(ctx, store.Idempotency{Key: "ingest#k1", Value: v, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	claim(100 * time.Millisecond)
	if _, err := AcceptedEventID(ctx, st, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a key still in flight names an event: %v", err)
	}
	if rec := post(); rec.Code != http.StatusConflict {
		t.Fatalf("fresh unfinished claim: %d %s, want 409", rec.Code, rec.Body)
	}
	claim(3 * time.Second) // older than twice the produce timeout
	rec := post()
	if rec.Code != http.StatusAccepted {
		t.Fatalf("stale claim: %d %s, want 202", rec.Code, rec.Body)
	}
	// And the key now answers as usual.
	if again := post(); again.Code != http.StatusAccepted || again.Header().Get("Idempotent-Replayed") != "true" || again.Body.String() != rec.Body.String() {
		t.Errorf("replay after takeover: %d %s", again.Code, again.Body)
	}
	// The console finds the event by the key.
	var accepted struct{ ID string }
	json.Unmarshal(rec.Body.Bytes(), &accepted)
	if id, err := AcceptedEventID(ctx, st, "k1"); err != nil || id != accepted.ID {
		t.Errorf("AcceptedEventID = %q, %v; want %q", id, err, accepted.ID)
	}
}

// With the ingress cluster gone, a POST answers 503 once the produce
// timeout has passed — not at once, not never — and its Idempotency-Key
// stays claimed (the event may yet be written), so a retry waits.
func TestIngressUnavailable(t *testing.T) {
	const timeout = time.Second
	c, cl := ingress(t)
	post, _ := ingestAPI(t, cl, timeout)
	if rec := post("k1", 1); rec.Code != http.StatusAccepted {
		t.Fatalf("with the cluster up: %d %s", rec.Code, rec.Body)
	}
	c.Close()
	start := time.Now()
	rec := post("k2", 2)
	took := time.Since(start)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "retry with the same Idempotency-Key") {
		t.Fatalf("with the cluster gone: %d %s", rec.Code, rec.Body)
	}
	if took < timeout || took > 10*timeout {
		t.Errorf("answered after %s, want the produce timeout of %s", took, timeout)
	}
	if rec := post("k2", 2); rec.Code != http.StatusConflict {
		t.Errorf("a retry while the first may yet be written: %d %s, want 409", rec.Code, rec.Body)
	}
}

// An ack that comes after the POST timed out settles its Idempotency-Key:
// the producer's retry gets the event's 202 and nothing is published
// twice. The double delays each ack of a real client past the timeout.
func TestLateAck(t *testing.T) {
	testLateAck(t, 3, false)
}

// TestLateAckBeyondLease: an ack later than the key's lease (twice the
// produce timeout) — kgo retrying through a long outage — still settles
// the key as one event: the producer's retries meanwhile get 409 "in
// progress", never a new event (each retry taking the key over would
// publish the event again under another id), and after the ack the
// replayed 202.
func TestLateAckBeyondLease(t *testing.T) {
	testLateAck(t, 8, true)
}

// testLateAck posts an event whose ack comes late timeouts after the
// produce started and expects the 503. Then it retries: at once and
// repeatedly if retryMeanwhile (each answer before the ack must be 409 in
// progress), else once the key is settled. The first other answer must be
// the settled event's 202, replayed, and one record be published.
func testLateAck(t *testing.T, late int, retryMeanwhile bool) {
	const timeout = 200 * time.Millisecond
	c, cl := ingress(t)
	post, st := ingestAPI(t, lateProducer{cl, time.Duration(late) * timeout}, timeout)
	if rec := post("k1", 1); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("a late ack: %d %s, want 503", rec.Code, rec.Body)
	}
	var rec *httptest.ResponseRecorder
	deadline := time.Now().Add(10 * time.Second)
	for tries := 1; ; tries++ {
		if time.Now().After(deadline) {
			t.Fatal("the key was never settled")
		}
		time.Sleep(timeout / 4)
		if !retryMeanwhile {
			if id, _ := AcceptedEventID(context.Background(), st, "k1"); id == "" {
				continue
			}
		}
		// The ack may settle the key between the check and the POST: a
		// retry's 202 then is the answer to check below.
		if rec = post("k1", 1); rec.Code != http.StatusConflict {
			break
		}
		if !retryMeanwhile || !strings.Contains(rec.Body.String(), "idempotency_in_progress") {
			t.Fatalf("try %d: %d %s, want 409 in progress", tries, rec.Code, rec.Body)
		}
	}
	id, _ := AcceptedEventID(context.Background(), st, "k1")
	var got struct{ ID string }
	json.Unmarshal(rec.Body.Bytes(), &got)
	if id == "" || rec.Code != http.StatusAccepted || rec.Header().Get("Idempotent-Replayed") != "true" || got.ID != id {
		t.Errorf("the retry after the ack: %d %s, want the 202 of the settled event %q replayed", rec.Code, rec.Body, id)
	}
	if n := countRecords(t, c.ListenAddrs(), "wh.ingress.shop.order.created"); n != 1 {
		t.Errorf("%d records published, want 1", n)
	}
}

// lateProducer delivers each outcome of a real producer after a delay.
type lateProducer struct {
	*kgo.Client
	delay time.Duration
}

func (p lateProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.Client.Produce(ctx, r, func(r *kgo.Record, err error) {
		time.AfterFunc(p.delay, func() { promise(r, err) })
	})
}

// ingress is an in-process ingress cluster holding the topic of
// shop/order.created, and an acks=all client of it; both close when the
// test ends (the cluster may be closed before).
func ingress(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "wh.ingress.shop.order.created"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// ingestAPI is the API on prod and an embedded store holding the schema
// shop/order.created v1, and a function that posts an event under an
// Idempotency-Key.
func ingestAPI(t *testing.T, prod Producer, produceTimeout time.Duration) (func(key string, n int) *httptest.ResponseRecorder, *embedded.Store) {
	post, _, st := ingestAPIWith(t, Config{ProduceTimeout: produceTimeout}, prod, nil)
	return post, st
}

// ingestAPIWith is ingestAPI with cfg, its store seen through wrap (if
// not nil), and the API itself.
func ingestAPIWith(t *testing.T, cfg Config, prod Producer, wrap func(*embedded.Store) Store) (func(key string, n int) *httptest.ResponseRecorder, *API, *embedded.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PutSchema(ctx, store.Schema{ID: "shop#order.created#1", Domain: "shop", Event: "order.created", Version: "1",
		Status: "ACTIVE", JSONSchema: []byte(`{"type":"object"}`)}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := registry.New(st, log)
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var apiStore Store = st
	if wrap != nil {
		apiStore = wrap(st)
	}
	mux := http.NewServeMux()
	api := New(cfg, reg, prod, apiStore, log)
	api.Register(mux)
	return func(key string, n int) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/events",
			strings.NewReader(fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","data":{"id":%d}}`, n)))
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}, api, st
}

// gatedStore holds each write of a key's outcome (its record marked done)
// until release is closed.
type gatedStore struct {
	*embedded.Store
	release chan struct{}
}

func (s gatedStore) PutIdempotency(ctx context.Context, rec store.Idempotency) error {
	if bytes.Contains(rec.Value, []byte(`"done":true`)) {
		<-s.release
	}
	return s.Store.PutIdempotency(ctx, rec)
}

// TestRecordAfterAnswer: with RecordAfterAnswer a keyed POST gets its 202
// while its key's outcome is still being written; a retry meanwhile gets
// the same 202 from the process's memory (a retry with another body 422,
// as ever); Wait returns only once the outcome is written, and a retry
// then gets the event's 202 again, from the ledger. Without it, the POST
// waits for the write (the Lambda's way).
func TestRecordAfterAnswer(t *testing.T) {
	for _, after := range []bool{true, false} {
		t.Run(fmt.Sprintf("after=%v", after), func(t *testing.T) {
			_, cl := ingress(t)
			release := make(chan struct{})
			post, api, _ := ingestAPIWith(t, Config{RecordAfterAnswer: after}, cl, func(st *embedded.Store) Store { return gatedStore{st, release} })
			var skew atomic.Int64 // the API's clock ahead of the test's
			api.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			answered := make(chan *httptest.ResponseRecorder, 1)
			go func() { answered <- post("k1", 1) }()
			if !after {
				select {
				case rec := <-answered:
					t.Fatalf("answered %d before the key's outcome was written", rec.Code)
				case <-time.After(100 * time.Millisecond):
				}
				close(release)
				if rec := <-answered; rec.Code != http.StatusAccepted {
					t.Fatalf("POST = %d %s", rec.Code, rec.Body)
				}
				return
			}
			var first *httptest.ResponseRecorder
			select {
			case first = <-answered:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer while the key's outcome was being written")
			}
			if first.Code != http.StatusAccepted || first.Header().Get("Location") == "" {
				t.Fatalf("POST = %d %v %s", first.Code, first.Header(), first.Body)
			}
			if rec := post("k1", 1); rec.Code != http.StatusAccepted || rec.Header().Get("Idempotent-Replayed") != "true" || rec.Header().Get("Location") != first.Header().Get("Location") {
				t.Errorf("retry while the outcome is written = %d %v %s, want the first answer (%s) replayed", rec.Code, rec.Header(), rec.Body, first.Header().Get("Location"))
			}
			if rec := post("k1", 2); rec.Code != http.StatusUnprocessableEntity {
				t.Errorf("the key with another body while the outcome is written = %d %s, want 422", rec.Code, rec.Body)
			}
			// Past the claim's lease, the write still held: the answer given,
			// not the key taken over and the event published again.
			skew.Store(int64(time.Minute))
			if rec := post("k1", 1); rec.Code != http.StatusAccepted || rec.Header().Get("Idempotent-Replayed") != "true" || rec.Header().Get("Location") != first.Header().Get("Location") {
				t.Errorf("retry past the lease while the outcome is written = %d %v, want the first answer (%s) replayed", rec.Code, rec.Header(), first.Header().Get("Location"))
			}
			waited := make(chan struct{})
			go func() { api.Wait(); close(waited) }()
			select {
			case <-waited:
				t.Fatal("Wait returned with an outcome unwritten")
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			<-waited
			again := post("k1", 1)
			if again.Code != http.StatusAccepted || again.Header().Get("Idempotent-Replayed") != "true" || again.Header().Get("Location") != first.Header().Get("Location") {
				t.Errorf("retry after the write = %d %v, want the first answer (%s) replayed", again.Code, again.Header(), first.Header().Get("Location"))
			}
		})
	}
}

// countRecords is how many records topic holds.
func countRecords(t *testing.T, addrs []string, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}
