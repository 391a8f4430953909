package dev

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/ingest"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/store"
)

// TestEventDeliveredSigned: an event in, a signed delivery out to each
// approved subscription — verified by the receivers themselves — with
// distinct, stable delivery ids; nothing to the Pending subscription; and
// GET /v1/events/{id} shows each delivery with its attempt.
func TestEventDeliveredSigned(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))

	id := accept(t, p, orderEvent(1))
	eventually(t, "both approved partners to receive the event", func() bool {
		a, _, _ := alpha.counts()
		b, _, _ := beta.counts()
		return a == 1 && b == 1
	})
	wantAlpha := envelope.DeliveryID(id, "alpha#shop#order.created#1")
	wantBeta := envelope.DeliveryID(id, "beta#shop#order.created#1")
	if wantAlpha == wantBeta {
		t.Fatal("two subscriptions got the same delivery id")
	}
	body := alpha.body(wantAlpha)
	if body == nil {
		t.Fatalf("alpha did not receive delivery id %s", wantAlpha)
	}
	if beta.body(wantBeta) == nil {
		t.Fatalf("beta did not receive delivery id %s", wantBeta)
	}
	var payload envelope.Payload
	if err := json.Unmarshal(body, &payload); err != nil {
		t.Fatal(err)
	}
	if payload.ID != id || payload.Type != "order.created" || string(payload.Data) != `{"order_id":"ord_1","amount":2.5}` {
		t.Errorf("delivered payload = %s", body)
	}
	if _, _, bad := alpha.counts(); bad != 0 {
		t.Errorf("alpha rejected %d signatures", bad)
	}
	if h := alpha.headers[wantAlpha]; !strings.HasPrefix(h.Get(signature.HeaderSignature), "v1,") || h.Get(signature.HeaderTimestamp) == "" {
		t.Errorf("delivery headers = %v, want Standard Webhooks headers", h)
	}

	var v = mustDelivered(t, p, id, 2)
	for _, d := range v {
		if d.PartnerID == "gamma" {
			t.Errorf("pending subscription got a delivery: %+v", d)
		}
		if len(d.Attempts) != 1 || d.Attempts[0].StatusCode != http.StatusNoContent {
			t.Errorf("delivery %s attempts = %+v, want one 204", d.ID, d.Attempts)
		}
		if want := map[string]string{"alpha": wantAlpha, "beta": wantBeta}[d.PartnerID]; d.ID != want {
			t.Errorf("%s delivery id = %s, want %s", d.PartnerID, d.ID, want)
		}
	}
	time.Sleep(200 * time.Millisecond) // a stray delivery would show up by now
	if n, _, _ := gamma.counts(); n != 0 {
		t.Errorf("gamma (Pending) received %d webhooks, want 0", n)
	}
}

// mustDelivered waits until GET shows n deliveries, all delivered.
func mustDelivered(t *testing.T, p *Platform, id string, n int) []ingest.DeliveryView {
	t.Helper()
	var ds []ingest.DeliveryView
	eventually(t, fmt.Sprintf("event %s to show %d delivered deliveries", id, n), func() bool {
		v, code := getEvent(t, p, id)
		if code != http.StatusOK || len(v.Deliveries) != n {
			return false
		}
		ds = v.Deliveries
		for _, d := range ds {
			if d.Status != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	return ds
}

// TestBadInput: every kind of bad request gets its status, a stable code
// and the pointer of the offending field; none is accepted.
func TestBadInput(t *testing.T) {
	data := t.TempDir()
	r := newReceiver(t, data, "alpha")
	p := startPlatform(t, data, testCatalog(t, r.srv.URL, r.srv.URL, r.srv.URL), func(c *Config) { c.Ingest.MaxBodyBytes = 1024 })
	for _, tc := range []struct {
		name        string
		body        string
		contentType string
		status      int
		code        string
		pointers    []string
	}{
		{name: "malformed JSON", body: `{"domain":`, status: 400, code: "invalid_request", pointers: []string{""}},
		{name: "syntax error", body: `{"domain" "shop"}`, status: 400, code: "invalid_request", pointers: []string{""}},
		{name: "not an object", body: `[1,2]`, status: 400, code: "invalid_request", pointers: []string{""}},
		{name: "trailing data", body: orderEvent(1) + `{}`, status: 400, code: "invalid_request", pointers: []string{""}},
		{name: "missing fields", body: `{"key":"k"}`, status: 400, code: "invalid_request", pointers: []string{"/domain", "/event", "/version", "/data"}},
		{name: "version as number", body: `{"domain":"shop","event":"order.created","version":1,"data":{}}`, status: 400, code: "invalid_request", pointers: []string{"/version"}},
		{name: "unknown envelope field", body: `{"domain":"shop","event":"order.created","version":"1","data":{},"colour":"red"}`, status: 400, code: "invalid_request", pointers: []string{"/colour"}},
		{name: "unknown schema", body: `{"domain":"nosuch","event":"nothing.here","version":"1","data":{}}`, status: 404, code: "unknown_schema"},
		{name: "unknown version", body: `{"domain":"shop","event":"order.created","version":"7","data":{}}`, status: 404, code: "unknown_schema"},
		{name: "inactive schema", body: `{"domain":"shop","event":"order.archived","version":"1","data":{"order_id":"ord_1"}}`, status: 404, code: "inactive_schema"},
		{name: "schema violations", body: `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"x","amount":-1,"extra":true}}`,
			status: 400, code: "schema_violation", pointers: []string{"/data/amount", "/data/extra", "/data/order_id"}},
		{name: "a number too large to compare", body: `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"ord_1","amount":1e999999}}`,
			status: 400, code: "schema_violation", pointers: []string{"/data/amount"}},
		{name: "missing required data field", body: `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"ord_1"}}`,
			status: 400, code: "schema_violation", pointers: []string{"/data/amount"}},
		{name: "too large", body: `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"ord_1","amount":1,"note":"` + strings.Repeat("x", 2000) + `"}}`,
			status: 413, code: "payload_too_large"},
		{name: "wrong content type", body: orderEvent(1), contentType: "text/plain", status: 415, code: "unsupported_media_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/events", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var prob struct {
				Code       string
				Message    string
				Violations []struct{ Pointer, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&prob); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || prob.Code != tc.code {
				t.Fatalf("got %d %q (%s), want %d %q", resp.StatusCode, prob.Code, prob.Message, tc.status, tc.code)
			}
			if prob.Message == "" {
				t.Error("error without a message")
			}
			var pointers []string
			for _, v := range prob.Violations {
				pointers = append(pointers, v.Pointer)
				if v.Message == "" {
					t.Errorf("violation at %q without a message", v.Pointer)
				}
			}
			if diff := cmp.Diff(tc.pointers, pointers); diff != "" {
				t.Errorf("violation pointers (-want +got):\n%s\n%+v", diff, prob.Violations)
			}
		})
	}
	t.Run("bad ids on GET", func(t *testing.T) {
		if _, code := getEvent(t, p, "not-a-uuid"); code != http.StatusBadRequest {
			t.Errorf("GET malformed id = %d, want 400", code)
		}
		if _, code := getEvent(t, p, "01900000-0000-7000-8000-000000000000"); code != http.StatusNotFound {
			t.Errorf("GET unknown id = %d, want 404", code)
		}
	})
	time.Sleep(200 * time.Millisecond)
	if n, _, _ := r.counts(); n != 0 {
		t.Errorf("rejected requests produced %d deliveries", n)
	}
}

// TestIdempotencyKey: a retried request with the same key gets the first
// answer and publishes nothing new; the same key with another body is
// refused.
func TestIdempotencyKey(t *testing.T) {
	data := t.TempDir()
	r := newReceiver(t, data, "alpha")
	other := newReceiver(t, data, "beta")
	p := startPlatform(t, data, testCatalog(t, r.srv.URL, other.srv.URL, other.srv.URL), func(c *Config) { c.AutoApprove = []string{"alpha"} })
	first := accept(t, p, orderEvent(5), "Idempotency-Key", "order-5-create")
	// At once: the key's outcome is written after the 202 (ingest's
	// RecordAfterAnswer), and a retry in that moment is answered the 202
	// given from the process's memory — it was told 409 "in progress"
	// until round 23.
	again := post(t, p, orderEvent(5), "Idempotency-Key", "order-5-create")
	var second struct{ ID string }
	json.Unmarshal(again.body, &second)
	if again.status != http.StatusAccepted || second.ID != first || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %d %s (replayed %q), want 202 with id %s", again.status, again.body, again.header.Get("Idempotent-Replayed"), first)
	}
	if c := post(t, p, orderEvent(6), "Idempotency-Key", "order-5-create"); c.status != http.StatusUnprocessableEntity {
		t.Errorf("same key, other body = %d %s, want 422", c.status, c.body)
	}
	if c := post(t, p, orderEvent(6), "Idempotency-Key", strings.Repeat("k", 300)); c.status != http.StatusBadRequest {
		t.Errorf("overlong key = %d, want 400", c.status)
	}
	marker := accept(t, p, orderEvent(7))
	mustDelivered(t, p, marker, 1)
	mustDelivered(t, p, first, 1)
	if n, dups, _ := r.counts(); n != 2 || dups != 0 {
		t.Errorf("receiver got %d distinct, %d duplicate webhooks; want 2 and 0", n, dups)
	}
}

// TestRetryThenDeliver: 503 twice, then success; every attempt recorded.
func TestRetryThenDeliver(t *testing.T) {
	data := t.TempDir()
	r := newReceiver(t, data, "alpha")
	other := newReceiver(t, data, "beta")
	p := startPlatform(t, data, testCatalog(t, r.srv.URL, other.srv.URL, other.srv.URL), func(c *Config) { c.AutoApprove = []string{"alpha"} })
	r.answer(503, 429)
	id := accept(t, p, orderEvent(8))
	ds := mustDelivered(t, p, id, 1)
	var codes []int
	for _, a := range ds[0].Attempts {
		codes = append(codes, a.StatusCode)
	}
	if diff := cmp.Diff([]int{503, 429, 204}, codes); diff != "" {
		t.Errorf("attempt status codes (-want +got):\n%s", diff)
	}
	if ex := ds[0].Attempts[0].ResponseExcerpt; ex != "answer 503" {
		t.Errorf("response excerpt = %q", ex)
	}
	if got := ds[0].Attempts[0].RequestHeaders["webhook-id"]; got != ds[0].ID {
		t.Errorf("recorded webhook-id header = %q, want %q", got, ds[0].ID)
	}
}

// TestFinalFailureDeadLetters: a 400 is final: one attempt, then dead_lettered.
func TestFinalFailureDeadLetters(t *testing.T) {
	data := t.TempDir()
	r := newReceiver(t, data, "alpha")
	other := newReceiver(t, data, "beta")
	p := startPlatform(t, data, testCatalog(t, r.srv.URL, other.srv.URL, other.srv.URL), func(c *Config) { c.AutoApprove = []string{"alpha"} })
	r.answer(400)
	id := accept(t, p, orderEvent(9))
	eventually(t, "the delivery to be dead-lettered", func() bool {
		v, code := getEvent(t, p, id)
		return code == 200 && len(v.Deliveries) == 1 && v.Deliveries[0].Status == store.DeliveryDeadLettered
	})
	v, _ := getEvent(t, p, id)
	if a := v.Deliveries[0].Attempts; len(a) != 1 || a[0].StatusCode != 400 {
		t.Errorf("attempts = %+v, want exactly one 400", a)
	}
}
