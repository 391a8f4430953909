package dev

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/approval"
	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/store"
)

func deliveryOf(t *testing.T, p *Platform, eventID, partner string) (d struct {
	Status        string
	Reason        string
	Attempts      []store.Attempt
	NextAttemptAt *time.Time `json:"next_attempt_at"`
}) {
	t.Helper()
	v, code := getEvent(t, p, eventID)
	if code != http.StatusOK {
		return d
	}
	for _, x := range v.Deliveries {
		if x.PartnerID == partner {
			b, _ := json.Marshal(x)
			json.Unmarshal(b, &d)
		}
	}
	return d
}

// TestRetrySurvivesRestart: a retry scheduled before a stop is made after
// the start, from the retry topic on disk.
func TestRetrySurvivesRestart(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)
	slowRetry := func(c *Config) {
		c.AutoApprove = []string{"alpha"}
		c.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{1500 * time.Millisecond}, MaxAttempts: 3, MaxRetryAfter: time.Minute}
	}
	p := startPlatform(t, data, cat, slowRetry)
	alpha.answer(503)
	// The first retry's wait is jittered over [0, 1.5 s]; Retry-After
	// holds it for 2 s at least, so it cannot be made before the stop.
	alpha.mu.Lock()
	alpha.retryAfter = "2"
	alpha.mu.Unlock()
	id := accept(t, p, orderEvent(50))
	eventually(t, "the first attempt to fail and a retry to be scheduled", func() bool {
		d := deliveryOf(t, p, id, "alpha")
		return d.Status == store.DeliveryRetrying && d.NextAttemptAt != nil
	})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := alpha.counts(); n != 0 {
		t.Fatalf("delivered before the restart: %d", n)
	}
	p = startPlatform(t, data, cat, slowRetry)
	ds := mustDelivered(t, p, id, 1)
	if len(ds[0].Attempts) != 2 || ds[0].Attempts[0].StatusCode != 503 || ds[0].Attempts[1].StatusCode != 204 {
		t.Errorf("attempts = %+v, want 503 then 204", ds[0].Attempts)
	}
}

// TestRetryAfterAndNoBlocking: one partner asks to be left alone for an
// hour (Retry-After: 3600), honoured; another's short retry of the same
// event type, in the same retry topic, is not held behind it.
func TestRetryAfterAndNoBlocking(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) {
		c.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{300 * time.Millisecond}, MaxAttempts: 5, MaxRetryAfter: 2 * time.Hour}
	})
	alpha.answer(429)
	alpha.retryAfter = "3600"
	beta.answer(503)
	id := accept(t, p, orderEvent(51))
	eventually(t, "beta's retry to be delivered", func() bool { return deliveryOf(t, p, id, "beta").Status == store.DeliveryDelivered })
	a := deliveryOf(t, p, id, "alpha")
	if a.Status != store.DeliveryRetrying || a.NextAttemptAt == nil || len(a.Attempts) != 1 {
		t.Fatalf("alpha = %+v, want retrying after one attempt", a)
	}
	if wait := a.NextAttemptAt.Sub(a.Attempts[0].At); wait < 3599*time.Second || wait > 3601*time.Second {
		t.Errorf("alpha's next attempt in %s, want the hour it asked for", wait)
	}
}

// TestGoneDisablesSubscription: 410 is final, disables the subscription
// with the reason, and later events for it are dead-lettered, not sent.
func TestGoneDisablesSubscription(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) { c.AutoApprove = []string{"alpha"} })
	alpha.answer(410)
	id := accept(t, p, orderEvent(52))
	eventually(t, "the 410 to dead-letter the delivery", func() bool {
		return deliveryOf(t, p, id, "alpha").Status == store.DeliveryDeadLettered
	})
	b, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	code, body := adminRequest(t, p, strings.TrimSpace(string(b)), http.MethodGet, "/v1/subscriptions/alpha%23shop%23order.created%231", "")
	var v approval.View
	if err := json.Unmarshal(body, &v); code != 200 || err != nil || v.Status != store.SubscriptionDisabled || !strings.Contains(v.Reason, "410 Gone") {
		t.Fatalf("subscription after 410 = %d %s", code, body)
	}
	// Later events fan out to approved subscriptions only: none for alpha.
	next := accept(t, p, orderEvent(53))
	eventually(t, "the next event to be recorded", func() bool { _, code := getEvent(t, p, next); return code == http.StatusOK })
	if v, _ := getEvent(t, p, next); len(v.Deliveries) != 0 {
		t.Errorf("a disabled subscription got deliveries: %+v", v.Deliveries)
	}
	if n, _, _ := alpha.counts(); n != 0 {
		t.Errorf("alpha received %d webhooks after answering 410", n)
	}
}

// TestExhaustedDeadLetters: every attempt fails; after MaxAttempts the
// delivery is dead-lettered with all of them recorded.
func TestExhaustedDeadLetters(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) { c.AutoApprove = []string{"alpha"} })
	alpha.answer(500, 502, 503)
	id := accept(t, p, orderEvent(54))
	eventually(t, "the delivery to be dead-lettered", func() bool {
		return deliveryOf(t, p, id, "alpha").Status == store.DeliveryDeadLettered
	})
	d := deliveryOf(t, p, id, "alpha")
	var codes []int
	for _, a := range d.Attempts {
		codes = append(codes, a.StatusCode)
	}
	if len(codes) != 3 || codes[0] != 500 || codes[2] != 503 {
		t.Errorf("attempts = %v, want 500, 502, 503", codes)
	}
}

// TestSSRFRefused: partners at private and metadata addresses are refused
// before any packet is sent, a final failure that says why.
func TestSSRFRefused(t *testing.T) {
	data := t.TempDir()
	dir := t.TempDir()
	src := `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {order_id: string, amount: number}}
partners: private: {name: "P", url: "http://10.255.255.1/hook", signing_secret: "partners/private/signing", contact: "x"}
partners: metadata: {name: "M", url: "http://169.254.169.254/latest/meta-data", signing_secret: "partners/metadata/signing", contact: "x"}
subscriptions: "private.created": {partner: "private", domain: "shop", event: "order.created", version: "1"}
subscriptions: "metadata.created": {partner: "metadata", domain: "shop", event: "order.created", version: "1"}
`
	if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPlatform(t, data, dir, func(c *Config) { c.AutoApprove = []string{"private", "metadata"} })
	id := accept(t, p, orderEvent(55))
	for partner, why := range map[string]string{"private": "10.255.255.1 is a private address", "metadata": "169.254.169.254 is a link-local address"} {
		eventually(t, partner+" to be refused", func() bool { return deliveryOf(t, p, id, partner).Status == store.DeliveryDeadLettered })
		d := deliveryOf(t, p, id, partner)
		if len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, "refused by the SSRF guard: "+why) || d.Attempts[0].StatusCode != 0 {
			t.Errorf("%s attempts = %+v, want one refusal explaining %q", partner, d.Attempts, why)
		}
	}
}

// TestRateLimit: a partner limited to 5 per second (burst 1) never gets
// more than burst + rate webhooks in any second, and gets all of them.
func TestRateLimit(t *testing.T) {
	data := t.TempDir()
	alpha := newReceiver(t, data, "alpha")
	dir := t.TempDir()
	src := `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {order_id: string, amount: number}}
partners: alpha: {name: "A", url: "` + alpha.srv.URL + `", signing_secret: "partners/alpha/signing", contact: "x", rate_limit: {per_second: 5, burst: 1}}
subscriptions: "alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
`
	if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPlatform(t, data, dir, func(c *Config) { c.AutoApprove = []string{"alpha"} })
	const n = 12
	for i := range n {
		accept(t, p, orderEvent(70+i))
	}
	eventually(t, "every webhook to arrive", func() bool { got, _, _ := alpha.counts(); return got == n })
	alpha.mu.Lock()
	times := append([]time.Time(nil), alpha.times...)
	alpha.mu.Unlock()
	if most := mostInASecond(times); most > 6 {
		t.Fatalf("%d webhooks within one second; the limit allows 6", most)
	}
	if span := times[len(times)-1].Sub(times[0]); span < 1800*time.Millisecond {
		t.Errorf("%d webhooks arrived within %s; at 5/s they need at least 2 s", n, span)
	}
}

// TestCircuitBreaker: alpha fails; after the minimum of requests its
// breaker opens and its deliveries are held, not attempted, while beta
// gets every event at once. After the cool-down a probe succeeds, the
// breaker closes, and everything held is delivered.
func TestCircuitBreaker(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) {
		c.Dispatch.Breaker = breaker.Config{MinRequests: 3, FailureRatio: 0.5, CoolDown: 700 * time.Millisecond, Window: time.Minute}
		c.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{50 * time.Millisecond}, MaxAttempts: 20, MaxRetryAfter: time.Second}
		c.Dispatch.Concurrency = 1 // one at a time, so the breaker sees each outcome before the next attempt
	})
	alpha.answer(503, 503, 503)
	const n = 8
	var ids []string
	for i := range n {
		ids = append(ids, accept(t, p, orderEvent(90+i)))
	}
	eventually(t, "beta to get every event", func() bool { got, _, _ := beta.counts(); return got == n })
	b, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	token := strings.TrimSpace(string(b))
	var sawOpen, sawHeld bool
	eventually(t, "alpha's breaker to close and every event to reach alpha", func() bool {
		_, body := adminRequest(t, p, token, http.MethodGet, "/v1/breakers", "")
		sawOpen = sawOpen || strings.Contains(string(body), `"state":"open"`)
		for _, id := range ids {
			d := deliveryOf(t, p, id, "alpha")
			// Held by the breaker, or — a retry that came due before the
			// breaker opened, while alpha, pushing back with its 503s, had
			// its bound (1, the dispatcher's Concurrency) in flight — by
			// its pace (runtime/dispatch's pace.go); for nothing else.
			if d.Status == store.DeliveryHeld && d.Reason != "its partner's circuit breaker is open" &&
				d.Reason != "its partner has as many deliveries in flight as its answers allow" {
				t.Errorf("a delivery held by the breaker gives the reason %q", d.Reason)
			}
			sawHeld = sawHeld || d.Status == store.DeliveryHeld
		}
		got, _, _ := alpha.counts()
		return got == n
	})
	if !sawOpen || !sawHeld {
		t.Errorf("never saw the breaker open (%v) or a delivery held (%v)", sawOpen, sawHeld)
	}
	alpha.mu.Lock()
	failed := alpha.refused
	alpha.mu.Unlock()
	if failed != 3 {
		t.Errorf("alpha answered %d failing requests; with the breaker open none beyond the 3 should be made", failed)
	}
	attempts := 0
	for _, id := range ids {
		mustDelivered(t, p, id, 2)
		attempts += len(deliveryOf(t, p, id, "alpha").Attempts)
	}
	if attempts != n+3 {
		t.Errorf("%d attempts recorded for %d deliveries, want %d: held deliveries burn no attempts", attempts, n, n+3)
	}
	_, body := adminRequest(t, p, token, http.MethodGet, "/v1/breakers", "")
	if !strings.Contains(string(body), `"partner_id":"alpha","state":"closed"`) {
		t.Errorf("breakers after recovery: %s", body)
	}
}

// TestBreakerProbesWhenAsked: a partner down for a deploy answers 503
// with Retry-After: 1. Its breaker opens and is probed a second later, as
// the partner asked — here the cool-down is an hour, so nothing would
// reach it within the test without its Retry-After.
func TestBreakerProbesWhenAsked(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) {
		c.Dispatch.Breaker = breaker.Config{ConsecutiveFailures: 3, CoolDown: time.Hour}
		c.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{50 * time.Millisecond}, MaxAttempts: 20, MaxRetryAfter: time.Second}
		c.Dispatch.Concurrency = 1
	})
	alpha.retryAfter = "1"
	alpha.answer(503, 503, 503)
	const n = 6
	var ids []string
	for i := range n {
		ids = append(ids, accept(t, p, orderEvent(70+i)))
	}
	if !untilAllArrive(t, p, data, alpha, n, `"partner_asked":true`) {
		t.Error("the breaker never said its probe was when the partner asked")
	}
	for _, id := range ids {
		mustDelivered(t, p, id, 2)
	}
}

// untilAllArrive waits for n distinct deliveries to reach r, reading
// GET /v1/breakers meanwhile, and reports whether it ever held want.
func untilAllArrive(t *testing.T, p *Platform, data string, r *receiver, n int, want string) bool {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	token := strings.TrimSpace(string(b))
	var saw bool
	eventually(t, fmt.Sprintf("%d events to reach the partner", n), func() bool {
		_, body := adminRequest(t, p, token, http.MethodGet, "/v1/breakers", "")
		saw = saw || strings.Contains(string(body), want)
		got, _, _ := r.counts()
		return got == n
	})
	return saw
}

// TestQuotaSpent: a partner whose quota is spent answers 429 to every
// request, with Retry-After: 1, for 4 s. Once ten in a row have lasted a
// second its breaker opens, and until the quota is back only its probes
// reach it — a request a second, not one a delivery; the deliveries
// held meanwhile spend no attempts, and all arrive. Without the breaker
// each of the 20 deliveries would be refused every second (its
// Retry-After), 60 to 80 429s.
func TestQuotaSpent(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) {
		c.Dispatch.Breaker = breaker.Config{CoolDown: time.Hour}
		c.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{50 * time.Millisecond}, MaxAttempts: 20, MaxRetryAfter: time.Second}
	})
	alpha.mu.Lock()
	alpha.failUntil, alpha.failCode, alpha.retryAfter = time.Now().Add(4*time.Second), http.StatusTooManyRequests, "1"
	alpha.mu.Unlock()
	const n = 20
	var ids []string
	for i := range n {
		ids = append(ids, accept(t, p, orderEvent(100+i)))
	}
	if !untilAllArrive(t, p, data, alpha, n, `answers 429 in a row`) {
		t.Error("never saw the breaker open on the partner's 429s")
	}
	alpha.mu.Lock()
	refused := alpha.refused
	alpha.mu.Unlock()
	// The first attempts (20), the retries that opened it, a probe a
	// second for ≈ 3 s, and room for a slow machine's stragglers.
	if refused > 2*n {
		t.Errorf("the partner answered 429 to %d requests; with its breaker open, only probes should reach it", refused)
	}
	attempts := 0
	for _, id := range ids {
		mustDelivered(t, p, id, 2)
		attempts += len(deliveryOf(t, p, id, "alpha").Attempts)
	}
	if attempts != n+refused {
		t.Errorf("%d attempts recorded for %d deliveries and %d 429s: held deliveries burn no attempts", attempts, n, refused)
	}
	t.Logf("%d 429s for %d deliveries", refused, n)
}

// TestOrderedSubscription: for an ordered subscription, a failing
// delivery holds back later ones with the same key only: key A's first
// event fails until A2 is seen held behind it (the test releases it then,
// so how fast the machine is cannot decide the outcome), key B's events go
// through meanwhile, and A's arrive in the order they were accepted.
func TestOrderedSubscription(t *testing.T) {
	data := t.TempDir()
	alpha := newReceiver(t, data, "alpha")
	p := startPlatform(t, data, orderedCatalog(t, alpha), func(c *Config) {
		c.AutoApprove = []string{"alpha"}
		c.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{400 * time.Millisecond}, MaxAttempts: 1000, MaxRetryAfter: time.Second}
	})
	var release atomic.Bool
	alpha.failBody = func(body []byte) bool {
		return strings.Contains(string(body), `"order_id":"A1"`) && !release.Load()
	}
	post := func(key, order string) string {
		return accept(t, p, `{"domain":"shop","event":"order.created","version":"1","key":"`+key+`","data":{"order_id":"`+order+`","amount":1}}`)
	}
	var aIDs []string
	aIDs = append(aIDs, post("A", "A1"))
	eventually(t, "A1 to fail once", func() bool { return deliveryOf(t, p, aIDs[0], "alpha").Status == store.DeliveryRetrying })
	for _, order := range []string{"B1", "A2", "B2", "A3", "B3", "A4"} {
		if id := post(order[:1], order); order[0] == 'A' {
			aIDs = append(aIDs, id)
		}
	}
	eventually(t, "key B to be delivered while A1 is failing", func() bool {
		alpha.mu.Lock()
		defer alpha.mu.Unlock()
		b := 0
		for _, o := range alpha.arrivals {
			if o[0] == 'B' {
				b++
			}
		}
		return b == 3
	})
	// A2 reaches held once the dispatcher reads it, which may come after
	// key B's deliveries (another partition); it must never be attempted.
	eventually(t, "A2 to be held while A1 fails", func() bool {
		d := deliveryOf(t, p, aIDs[1], "alpha")
		if len(d.Attempts) != 0 {
			t.Fatalf("A2 was attempted while A1 fails: %s with %d attempts", d.Status, len(d.Attempts))
		}
		return d.Status == store.DeliveryHeld
	})
	release.Store(true)
	for _, id := range aIDs {
		mustDelivered(t, p, id, 1)
	}
	alpha.mu.Lock()
	var aOrder []string
	for _, o := range alpha.arrivals {
		if o[0] == 'A' {
			aOrder = append(aOrder, o)
		}
	}
	alpha.mu.Unlock()
	if strings.Join(aOrder, ",") != "A1,A2,A3,A4" {
		t.Errorf("key A arrived as %v, want A1,A2,A3,A4", aOrder)
	}
}
