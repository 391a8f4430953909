package dev

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/whp-dev/whp/runtime/secret"
)

// TestHeaderAuthRedacted: a partner with static-header auth gets its
// credential on every delivery, and the credential is never stored in the
// delivery history that GET /v1/events/{id} shows.
func TestHeaderAuthRedacted(t *testing.T) {
	data := t.TempDir()
	var mu sync.Mutex
	var gotKey string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotKey = r.Header.Get("X-Partner-Key")
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	dir := t.TempDir()
	src := `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {order_id: string, amount: number}}
partners: alpha: {
	name: "Alpha", url: "` + srv.URL + `", signing_secret: "partners/alpha/signing", contact: "ops@alpha.example"
	auth: {kind: "header", header: "X-Partner-Key", secret: "partners/alpha/key"}
}
subscriptions: "alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
`
	if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPlatform(t, data, dir)
	id := accept(t, p, orderEvent(3))
	ds := mustDelivered(t, p, id, 1)

	vals, err := secret.OpenFile(filepath.Join(data, "secrets.json")).Secrets(t.Context(), "partners/alpha/key")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotKey == "" || gotKey != vals[0] {
		t.Fatalf("partner got X-Partner-Key %q, want the secret's value", gotKey)
	}
	if h := ds[0].Attempts[0].RequestHeaders["x-partner-key"]; h != "[redacted]" {
		t.Errorf("stored header = %q, want [redacted]", h)
	}
	resp, err := http.Get(p.URL + "/v1/events/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	json.NewDecoder(resp.Body).Decode(&raw)
	if strings.Contains(string(raw), gotKey) {
		t.Errorf("GET /v1/events/%s shows the partner's credential", id)
	}
}
