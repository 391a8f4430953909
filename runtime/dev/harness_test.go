package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/ingest"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/secret"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/runtime/telemetry"
)

// receiver is a partner endpoint on 127.0.0.1 that verifies every
// webhook's signature with the secret whp dev created for it, as a real
// partner would, and records what it accepted.
type receiver struct {
	t       testing.TB
	srv     *httptest.Server
	secrets *secret.File
	ref     string

	mu         sync.Mutex
	delay      time.Duration // before answering
	statuses   []int         // answers to give, in order; then 204
	retryAfter string        // sent with those answers, if set
	refused    int           // requests answered from statuses or failUntil
	// failUntil, if set, has every request until then answered failCode
	// (with retryAfter, if set).
	failUntil time.Time
	failCode  int
	// failBody, if set, answers 503 to a request whose body it picks.
	failBody func(body []byte) bool
	arrivals []string // order_id of each accepted webhook, in order
	got      map[string]int
	times    []time.Time // when each accepted webhook arrived
	bodies   map[string][]byte
	headers  map[string]http.Header
	bad      int
}

func newReceiver(t testing.TB, dataDir, partner string) *receiver {
	t.Helper()
	r := &receiver{t: t, secrets: secret.OpenFile(filepath.Join(dataDir, "secrets.json")), ref: "partners/" + partner + "/signing",
		got: map[string]int{}, bodies: map[string][]byte{}, headers: map[string]http.Header{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	delay := r.delay
	r.mu.Unlock()
	time.Sleep(delay)
	secrets, err := r.secrets.Secrets(req.Context(), r.ref)
	if err == nil {
		err = signature.Verify(req.Header, body, time.Now(), signature.DefaultTolerance, secrets...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.failBody != nil && r.failBody(body) {
		r.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if code := r.failCode; len(r.statuses) > 0 || time.Now().Before(r.failUntil) {
		if len(r.statuses) > 0 {
			code = r.statuses[0]
			r.statuses = r.statuses[1:]
		}
		r.refused++
		if r.retryAfter != "" {
			w.Header().Set("Retry-After", r.retryAfter)
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "answer %d", code)
		return
	}
	id := req.Header.Get(signature.HeaderID)
	r.got[id]++
	r.times = append(r.times, time.Now())
	var payload struct {
		Data struct {
			OrderID string `json:"order_id"`
		} `json:"data"`
	}
	json.Unmarshal(body, &payload)
	r.arrivals = append(r.arrivals, payload.Data.OrderID)
	r.bodies[id] = body
	r.headers[id] = req.Header.Clone()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) answer(codes ...int) {
	r.mu.Lock()
	r.statuses = append(r.statuses, codes...)
	r.mu.Unlock()
}

// counts returns distinct deliveries, duplicates and rejected signatures.
func (r *receiver) counts() (distinct, dups, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.got {
		dups += n - 1
	}
	return len(r.got), dups, r.bad
}

func (r *receiver) body(id string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[id]
}

// testCatalog writes a catalog whose partners alpha, beta and gamma receive
// at the given URLs; orders/order.archived is INACTIVE.
func testCatalog(t *testing.T, alpha, beta, gamma string) string {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(`package whp

schemas: shop: "order.created": "1": owner: "team-shop"
schemas: shop: "order.created": "1": payload: {
	order_id: =~"^ord_"
	amount:   number & >0
	note?:    string
}
schemas: shop: "order.archived": "1": {
	owner: "team-shop"
	status: "INACTIVE"
	payload: order_id: string
}
partners: alpha: {name: "Alpha", url: %q, signing_secret: "partners/alpha/signing", contact: "ops@alpha.example"}
partners: beta: {name: "Beta", url: %q, signing_secret: "partners/beta/signing", contact: "ops@beta.example"}
partners: gamma: {name: "Gamma", url: %q, signing_secret: "partners/gamma/signing", contact: "ops@gamma.example"}
subscriptions: {
	"alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
	"beta.created": {partner: "beta", domain: "shop", event: "order.created", version: "1"}
	"gamma.created": {partner: "gamma", domain: "shop", event: "order.created", version: "1"}
}
`, alpha, beta, gamma)
	if err := os.WriteFile(filepath.Join(dir, "catalog.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// editCatalog writes a catalog file the way an editor's atomic save does
// (a file beside, renamed into place), so the running reconciler never
// reads it half-written: os.WriteFile truncates first, and a reconcile
// between the truncate and the write saw an empty file, a revision of its
// own ("package is \"\"") that failed TestCatalogChangesWhileRunning.
func editCatalog(t *testing.T, cat, name, src string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(cat, name)); err != nil {
		t.Fatal(err)
	}
}

// testLog writes the platform's log to the test log, so a failure shows it.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startPlatform starts whp dev's platform on a free port; alpha and beta
// are approved, gamma is left Pending.
func startPlatform(t testing.TB, dataDir, catalogDir string, mutate ...func(*Config)) *Platform {
	t.Helper()
	cfg := Config{DataDir: dataDir, CatalogDir: catalogDir, Addr: "127.0.0.1:0", AutoApprove: []string{"alpha", "beta"}, Log: testLog(t)}
	// Short waits between attempts; three attempts in all.
	cfg.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, MaxAttempts: 3, MaxRetryAfter: 5 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

type answer struct {
	status int
	body   []byte
	header http.Header
}

func post(t testing.TB, p *Platform, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.URL+"/v1/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, b, resp.Header}
}

// accept posts an event that must be accepted and returns its id.
func accept(t testing.TB, p *Platform, body string, header ...string) string {
	t.Helper()
	a := post(t, p, body, header...)
	if a.status != http.StatusAccepted {
		t.Fatalf("POST %s = %d %s, want 202", body, a.status, a.body)
	}
	var r struct{ ID string }
	if err := json.Unmarshal(a.body, &r); err != nil || r.ID == "" {
		t.Fatalf("202 body %s has no id", a.body)
	}
	return r.ID
}

// traceOf is the spans of event id's trace that the platform holds (GET
// /v1/events/{id}/trace), none if it has no trace for it yet.
func traceOf(t *testing.T, p *Platform, id string) []telemetry.Span {
	t.Helper()
	resp, err := http.Get(p.URL + "/v1/events/" + id + "/trace")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		Spans []telemetry.Span `json:"spans"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	return tr.Spans
}

func getEvent(t *testing.T, p *Platform, id string) (ingest.EventView, int) {
	t.Helper()
	resp, err := http.Get(p.URL + "/v1/events/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v ingest.EventView
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
			t.Fatalf("GET event: %v in %s", err, b)
		}
	}
	return v, resp.StatusCode
}

// eventually polls cond until it holds or the deadline passes. The
// deadline is generous: it bounds a hang, it does not measure speed.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func orderEvent(n int) string {
	return fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","key":"ord_%d","data":{"order_id":"ord_%d","amount":%d.5}}`, n, n, n+1)
}
