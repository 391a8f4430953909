package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "wh.ingress.shop.order.created"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutSchema(ctx, store.Schema{ID: "shop#order.created#1", Domain: "shop", Event: "order.created", Version: "1",
		Status: "ACTIVE", JSONSchema: []byte(`{"type":"object"}`)}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := registry.New(st, log)
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	api := New(Config{ProduceTimeout: time.Second}, reg, cl, st, log)
	mux := http.NewServeMux()
	api.Register(mux)
	body := `{"domain":"shop","event":"order.created","version":"1","data":{"id":1}}`
	sum := sha256.Sum256([]byte(body))
	claim := func(age time.Duration) {
		v, _ := json.Marshal(idempotencyState{Fingerprint: hex.EncodeToString(sum[:])})
		at := time.Now().Add(-age)
		if err := st.PutIdempotency(ctx, store.Idempotency{Key: "ingest#k1", Value: v, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
		req.Header.Set("Idempotency-Key", "k1")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
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
