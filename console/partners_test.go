package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

// TestPartnerList: with a partner per customer the list is searched and
// paged — a hundred at a time, the search kept across pages — with each
// partner's counters read in one scan; a bad page number is a 400.
func TestPartnerList(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for i := range 250 {
		id := fmt.Sprintf("p%03d", i)
		if _, err := st.PutSubscription(ctx, store.Subscription{ID: id + "#bench#thing.happened#1", PartnerID: id, SchemaID: "bench#thing.happened#1", Status: store.SubscriptionApproved}); err != nil {
			t.Fatal(err)
		}
		if err := st.AddCounts(ctx, id+"#bench#thing.happened#1", store.Counts{Delivered: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Config{Store: st, Dev: true})
	get := func(target string) (int, string) {
		w := httptest.NewRecorder()
		s.partners(w, httptest.NewRequest("GET", target, nil), session{User: "ann", Role: RoleAdmin})
		return w.Code, w.Body.String()
	}
	code, body := get("/console/partners")
	if code != 200 || !strings.Contains(body, "Partners 1–100 of 250") || !strings.Contains(body, ">p099<") || strings.Contains(body, ">p100<") ||
		!strings.Contains(body, `href="/console/partners?page=2"`) {
		t.Errorf("first page: %d\n%s", code, body)
	}
	code, body = get("/console/partners?page=3")
	if code != 200 || !strings.Contains(body, "Partners 201–250 of 250") || !strings.Contains(body, ">p249<") || strings.Contains(body, "Next →") {
		t.Errorf("last page: %d", code)
	}
	// 133 partners have a 1 in their ID; the second page keeps the
	// search, and its links too.
	code, body = get("/console/partners?q=1&page=2")
	if code != 200 || !strings.Contains(body, "Partners 101–133 of 133") || !strings.Contains(body, `href="/console/partners?q=1"`) ||
		!strings.Contains(body, ">p241<") || strings.Contains(body, ">p180<") || strings.Contains(body, ">p200<") {
		t.Errorf("search, second page: %d\n%s", code, body)
	}
	if !strings.Contains(body, "<td>199</td>") { // p199's counter, read in the scan
		t.Errorf("p199's delivered counter missing")
	}
	// Any case.
	if _, body = get("/console/partners?q=P24"); !strings.Contains(body, "Partners 1–10 of 10") {
		t.Errorf("search in another case")
	}
	if code, body = get("/console/partners?q=nobody"); code != 200 || !strings.Contains(body, "No partner matches.") {
		t.Errorf("no match: %d", code)
	}
	if code, body = get("/console/partners?page=9"); code != 200 || !strings.Contains(body, "Page 9 is past the last (3).") {
		t.Errorf("past the last page: %d", code)
	}
	// The events search asks for the partner's id instead of listing 250.
	w := httptest.NewRecorder()
	s.events(w, httptest.NewRequest("GET", "/console/events?partner=p007", nil), session{User: "ann", Role: RoleAdmin})
	if b := w.Body.String(); w.Code != 200 || !strings.Contains(b, `<input name="partner" value="p007"`) || strings.Contains(b, `<select name="partner"`) {
		t.Errorf("events search with 250 partners: %d", w.Code)
	}
	for _, bad := range []string{"0", "-1", "two"} {
		if code, body = get("/console/partners?page=" + bad); code != 400 || !strings.Contains(body, "page: a page number") {
			t.Errorf("page=%s: %d", bad, code)
		}
	}
}

// A partner's page lists its newest failures — retrying and dead-lettered,
// newest created first — however many deliveries came after them, and
// links to the search of all of each.
func TestPartnerFailures(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, err := st.PutSubscription(ctx, store.Subscription{ID: "acme#orders#order.created#1", PartnerID: "acme", SchemaID: "orders#order.created#1", Status: store.SubscriptionApproved,
		MaxInFlight: 8, RateLimitPerSecond: 50, RateLimitBurst: 100}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	var ds []store.Delivery
	for i := range 1000 {
		d := store.Delivery{EventID: fmt.Sprintf("e%04d", i), ID: "d", SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme",
			SchemaID: "orders#order.created#1", Status: store.DeliveryDelivered, CreatedAt: base.Add(time.Duration(i) * time.Second)}
		switch i {
		case 10, 300:
			d.Status = store.DeliveryDeadLettered
		case 200:
			d.Status = store.DeliveryRetrying
		}
		ds = append(ds, d)
	}
	if err := st.CreateDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	opened := base.Add(time.Hour)
	s := New(Config{Store: st, Dev: true, InFlight: func() []telemetry.PartnerInFlight {
		return []telemetry.PartnerInFlight{{Partner: "beta", InFlight: 1, Limit: 64}, {Partner: "acme", InFlight: 3, Limit: 5, Ceiling: 8, Waiting: 120, WaitsFor: telemetry.WaitsForRateLimit}}
	}, Breakers: func() []breaker.Snapshot {
		return []breaker.Snapshot{{Partner: "acme", State: breaker.Open, OpenedAt: opened, Reason: "10 answers 429 in a row over 1.2s", ProbeAt: opened.Add(90 * time.Second), PartnerAsked: true}}
	}})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/console/partners/acme", nil)
	r.SetPathValue("id", "acme")
	s.partner(w, r, session{User: "ann", Role: RoleAdmin})
	body := w.Body.String()
	failures, _, _ := strings.Cut(body, "Recent deliveries")
	i300, i200, i10 := strings.Index(failures, "e0300"), strings.Index(failures, "e0200"), strings.Index(failures, "e0010")
	if w.Code != 200 || i300 < 0 || i200 < i300 || i10 < i200 || strings.Contains(failures, "e0999") {
		t.Errorf("failures: %d, e0300 at %d, e0200 at %d, e0010 at %d; want all three, newest first, and no delivered one", w.Code, i300, i200, i10)
	}
	for _, status := range []string{"retrying", "dead_lettered"} {
		if !strings.Contains(body, `href="/console/events?partner=acme&amp;status=`+status+`"`) {
			t.Errorf("no link to acme's %s deliveries", status)
		}
	}
	if want := `<span class="breaker open">open</span> — opened at 11:00:00Z: 10 answers 429 in a row over 1.2s; next probe at 11:01:30Z (as the partner&#39;s Retry-After asked)</dd>`; !strings.Contains(body, want) {
		t.Errorf("the partner's page does not say why its breaker opened and when it probes: want %s", want)
	}
	if !strings.Contains(body, "<dt>Now</dt><dd>1 retrying, 0 held, 2 dead-lettered</dd>") {
		t.Error("the partner's page does not count what needs attention now")
	}
	if want := "<dt>Delivery</dt><dd>at most 8 in flight from each dispatcher (its max_in_flight); rate limit 50 a second, bursts of 100; now 3 in flight of 5, the bound its answers have set (429s, 503s and timeouts cut it); 120 read and waiting their turn, for its rate limit&#39;s next token</dd>"; !strings.Contains(body, want) {
		t.Errorf("the partner's page does not say how its deliveries are paced: want %s", want)
	}
}
