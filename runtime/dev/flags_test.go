package dev

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

func setFlags(t testing.TB, data, doc string) {
	t.Helper()
	path := filepath.Join(data, "flags.json")
	if err := os.WriteFile(path+".tmp", []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestPausedPartner: while alpha is paused it receives nothing, and its
// deliveries wait for the resume in the dispatcher's stream, their records
// in Kafka — none held through the retry tiers, where each came back
// every 5 s for as long as the pause lasted; whp status says what waits
// and why, and the event's view why its delivery is pending. After the
// resume alpha receives every one of them; beta is not affected.
func TestPausedPartner(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	setFlags(t, data, `{"partners":{"alpha":{"paused":true}}}`)
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	var ids []string
	for i := range 5 {
		ids = append(ids, accept(t, p, orderEvent(400+i)))
	}
	eventually(t, "beta to get every event", func() bool { n, _, _ := beta.counts(); return n == 5 })
	b, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	token := strings.TrimSpace(string(b))
	eventually(t, "alpha's five deliveries shown waiting for the resume", func() bool {
		_, body := adminRequest(t, p, token, http.MethodGet, "/v1/status", "")
		var st Status
		json.Unmarshal(body, &st)
		for _, f := range st.InFlight {
			if f.Partner == "alpha" && f.Waiting == 5 && f.WaitsFor == telemetry.WaitsForResume {
				return true
			}
		}
		return false
	})
	// The processor records each delivery pending after it hands the
	// delivery's record on (its status writes are batched, off the 202's
	// path), so the dispatcher can be waiting on a record whose delivery
	// the event's view does not show yet.
	for _, id := range ids {
		eventually(t, "a delivery of paused alpha shown pending, because "+flags.PausedReason, func() bool {
			d := deliveryOf(t, p, id, "alpha")
			return d.Status == store.DeliveryPending && d.Reason == flags.PausedReason
		})
	}
	fams := scrape(t, p)
	if n := value(fams, "whp_deliveries_waiting", map[string]string{"partner": "alpha", "for": telemetry.WaitsForResume}); n != 5 {
		t.Errorf("whp_deliveries_waiting{partner=alpha,for=resume} = %v, want 5", n)
	}
	if held := value(fams, "whp_deliveries_total", map[string]string{"outcome": "held", "partner": "alpha"}); held > 0 {
		t.Errorf("%v passes held through the retry tiers while alpha was paused; its deliveries were to wait in Kafka", held)
	}
	if n, _, _ := alpha.counts(); n != 0 {
		t.Fatalf("paused alpha received %d webhooks", n)
	}
	setFlags(t, data, `{}`)
	for _, id := range ids {
		mustDelivered(t, p, id, 2)
	}
	if n, dups, _ := alpha.counts(); n != 5 || dups != 0 {
		t.Errorf("after resume alpha got %d (%d duplicates), want 5", n, dups)
	}
}

// TestPausedIngest: a paused schema answers 503 with the operator's
// message, other schemas are accepted, and it resumes without a restart.
func TestPausedIngest(t *testing.T) {
	data := t.TempDir()
	r := newReceiver(t, data, "alpha")
	p := startPlatform(t, data, testCatalog(t, r.srv.URL, r.srv.URL, r.srv.URL))
	setFlags(t, data, `{"schemas":{"shop#order.created#1":{"ingest_paused":true,"message":"maintenance until 14:00 UTC"}}}`)
	var a answer
	eventually(t, "ingest to pause", func() bool { a = post(t, p, orderEvent(500)); return a.status == http.StatusServiceUnavailable })
	var prob struct{ Code, Message string }
	json.Unmarshal(a.body, &prob)
	if prob.Code != "ingest_paused" || !strings.Contains(prob.Message, "maintenance until 14:00 UTC") || a.header.Get("Retry-After") == "" {
		t.Errorf("paused answer = %s (Retry-After %q)", a.body, a.header.Get("Retry-After"))
	}
	setFlags(t, data, `{}`)
	eventually(t, "ingest to resume", func() bool { return post(t, p, orderEvent(501)).status == http.StatusAccepted })
}

// TestTransformSwitch: a partner's transforms switched off by a flag send
// the data as declared (sensitive fields still dropped).
func TestTransformSwitch(t *testing.T) {
	data := t.TempDir()
	alpha := newReceiver(t, data, "alpha")
	dir := t.TempDir()
	src := `package whp
schemas: shop: "order.paid": "1": {owner: "t", payload: {order_id: string, customer_id: string, pin?: string @sensitive()}}
partners: alpha: {name: "A", url: "` + alpha.srv.URL + `", signing_secret: "partners/alpha/signing", contact: "x"}
subscriptions: "alpha.paid": {partner: "alpha", domain: "shop", event: "order.paid", version: "1", transform: rename: customer_id: "client_id"}
`
	os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644)
	fl := flags.File(filepath.Join(data, "flags.json"), 20*time.Millisecond, testLog(t))
	p := startPlatform(t, data, dir, func(c *Config) { c.AutoApprove = []string{"alpha"}; c.Flags = fl })
	setFlags(t, data, `{"partners":{"alpha":{"transform":false}}}`)
	eventually(t, "the flag to be in force", func() bool { return fl.Current().TransformOff("alpha") })
	id := accept(t, p, `{"domain":"shop","event":"order.paid","version":"1","data":{"order_id":"o1","customer_id":"c1","pin":"1234"}}`)
	mustDelivered(t, p, id, 1)
	alpha.mu.Lock()
	defer alpha.mu.Unlock()
	for _, b := range alpha.bodies {
		if !strings.Contains(string(b), `"data":{"customer_id":"c1","order_id":"o1"}`) {
			t.Errorf("with the transform off the body is %s", b)
		}
	}
}
