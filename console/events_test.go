package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// openStore opens an embedded store in a temporary directory, closed
// when the test ends.
func openStore(tb testing.TB) *embedded.Store {
	tb.Helper()
	st, err := embedded.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// countingStore is the embedded store, counting the history pages read.
type countingStore struct {
	*embedded.Store
	pages int
}

func (c *countingStore) DeliveriesByPartner(ctx context.Context, partnerID string, p store.Page) (store.DeliveryPage, error) {
	c.pages++
	return c.Store.DeliveriesByPartner(ctx, partnerID, p)
}

// A search's time range: history is newest created first, so the scan
// behind From ends at the first delivery created before it, and To starts
// it at the last created before it; either way every delivery in the
// range is found once, and no page of what is outside it is read.
func TestHistoryTimeRange(t *testing.T) {
	st := openStore(t)
	base := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	var ds []store.Delivery
	for i := range 130 { // three pages of history
		at := base.Add(time.Duration(i) * time.Minute)
		ds = append(ds, store.Delivery{EventID: fmt.Sprintf("e%03d", i), ID: "d", PartnerID: "acme", SchemaID: "orders#order.created#1",
			Status: store.DeliveryDelivered, CreatedAt: at, UpdatedAt: at.Add(time.Hour)})
	}
	if err := st.CreateDeliveries(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	s := &Server{cfg: Config{Store: cs}}
	r := httptest.NewRequest("GET", "/console/events", nil)
	check := func(what string, from, to time.Time, first, last, pages int) {
		t.Helper()
		cs.pages = 0
		got, next, err := s.history(r, "acme", "", store.Page{Before: to}, from)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := first; i >= last; i-- {
			want = append(want, fmt.Sprintf("e%03d", i))
		}
		var ids []string
		for _, d := range got {
			ids = append(ids, d.EventID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(want) || next != "" || cs.pages != pages {
			t.Errorf("%s: %v (next %q) in %d pages; want %v in %d", what, ids, next, cs.pages, want, pages)
		}
	}
	check("from 100 min", base.Add(100*time.Minute), time.Time{}, 129, 100, 1)
	check("to 50 min", time.Time{}, base.Add(50*time.Minute), 49, 0, 1)
	check("from 20 to 30 min", base.Add(20*time.Minute), base.Add(30*time.Minute), 29, 20, 1)
}

// The deliveries of one status, on the events page and a partner's
// portal: the dead-lettered ones of a long history — one in a thousand,
// the first past the pages an unindexed search reads — are found on the
// first page, a partner's alone in the portal, the next page's link keeps
// the status; a status that is none is a 400 naming the field.
func TestHistorySearchByStatus(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	base := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	var ds []store.Delivery
	for i := range 3000 {
		at := base.Add(time.Duration(i) * time.Second)
		d := store.Delivery{EventID: fmt.Sprintf("e%04d", i), ID: "d", PartnerID: "acme", SchemaID: "orders#order.created#1",
			Status: store.DeliveryDelivered, CreatedAt: at, UpdatedAt: at}
		if i%1000 == 0 {
			d.Status = store.DeliveryDeadLettered
		}
		if i%1000 == 1 {
			d.PartnerID, d.Status = "beta", store.DeliveryDeadLettered
		}
		ds = append(ds, d)
	}
	if err := st.CreateDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	s := New(Config{Store: cs, Dev: true})
	get := func(handler func(http.ResponseWriter, *http.Request, session), target string, ss session) (int, string) {
		w := httptest.NewRecorder()
		handler(w, httptest.NewRequest("GET", target, nil), ss)
		return w.Code, w.Body.String()
	}
	ann, pat := session{User: "ann", Role: RoleAdmin}, session{User: "pat", Role: PartnerRole("acme")}
	code, body := get(s.events, "/console/events?partner=acme&status=dead_lettered", ann)
	for _, id := range []string{"e2000", "e1000", "e0000"} {
		if !strings.Contains(body, id) {
			t.Errorf("events page, dead-lettered: %s missing (%d)", id, code)
		}
	}
	if cs.pages != 1 || strings.Contains(body, "e2001") || strings.Contains(body, "e2999") {
		t.Errorf("events page, dead-lettered: %d store pages read, or other deliveries shown", cs.pages)
	}
	code, body = get(s.portal, "/console/portal?status=dead_lettered", pat)
	if code != http.StatusOK || !strings.Contains(body, "e1000") || strings.Contains(body, "e1001") || strings.Contains(body, "e2999") {
		t.Errorf("portal, dead-lettered: %d\n%s", code, body)
	}
	// Past a page, the link to the next keeps the status.
	for i := range 60 {
		at := base.Add(time.Hour + time.Duration(i)*time.Second)
		d := store.Delivery{EventID: fmt.Sprintf("f%04d", i), ID: "d", PartnerID: "acme", SchemaID: "orders#order.created#1",
			Status: store.DeliveryRetrying, CreatedAt: at, UpdatedAt: at}
		if err := st.CreateDeliveries(ctx, []store.Delivery{d}); err != nil {
			t.Fatal(err)
		}
	}
	if _, body = get(s.portal, "/console/portal?status=retrying", pat); !strings.Contains(body, "status=retrying") || !strings.Contains(body, "f0059") || strings.Contains(body, "f0009") {
		t.Errorf("portal, retrying: no link to the next page with the status, or the wrong page")
	}
	if code, body = get(s.events, "/console/events?partner=acme&status=lost", ann); code != http.StatusBadRequest || !strings.Contains(body, "Status: not a delivery status") {
		t.Errorf("events page, unknown status: %d", code)
	}
	if code, _ = get(s.portal, "/console/portal?status=lost", pat); code != http.StatusBadRequest {
		t.Errorf("portal, unknown status: %d", code)
	}
	// A cursor no page gave is the user's bad input, not the store's
	// failure: a 400 naming it.
	if code, body = get(s.events, "/console/events?partner=acme&cursor=bm90LWEtY3Vyc29y", ann); code != http.StatusBadRequest || !strings.Contains(body, "cursor: not one this search gave") {
		t.Errorf("events page, a bad cursor: %d", code)
	}
	if code, body = get(s.portal, "/console/portal?status=dead_lettered&cursor=%21%21", pat); code != http.StatusBadRequest || !strings.Contains(body, "cursor") {
		t.Errorf("portal, a bad cursor: %d", code)
	}
}

// The event page says why a delivery to a partner an operator paused is
// pending — it waits in Kafka for the resume, and its row cannot say so —
// as the API's view of the event does; and the partner's portal says so
// to the partner. A delivery of the partner that is not pending, and a
// pending one of a partner not paused, say nothing.
func TestEventPausedReason(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now()
	if err := st.CreateEvents(ctx, []store.Event{{ID: "ev1", SchemaID: "orders#order.created#1", AcceptedAt: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	ds := []store.Delivery{
		{EventID: "ev1", ID: "d-acme", PartnerID: "acme", SchemaID: "orders#order.created#1", Status: store.DeliveryPending, CreatedAt: now, UpdatedAt: now},
		{EventID: "ev1", ID: "d-beta", PartnerID: "beta", SchemaID: "orders#order.created#1", Status: store.DeliveryPending, CreatedAt: now, UpdatedAt: now},
	}
	if err := st.CreateDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	paused := flags.Static{Partners: map[string]flags.Partner{"acme": {Paused: true}}}
	s := New(Config{Store: st, Dev: true, Flags: paused})
	get := func(handler func(http.ResponseWriter, *http.Request, session), target string, ss session) string {
		t.Helper()
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", target, nil)
		r.SetPathValue("id", "ev1")
		handler(w, r, ss)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, w.Code, w.Body)
		}
		return w.Body.String()
	}
	// The reason is in acme's delivery's section: after its id, and
	// before beta's if beta's comes after.
	body := get(s.event, "/console/events/ev1", session{User: "ann", Role: RoleAdmin})
	acme, beta := strings.Index(body, "d-acme"), strings.Index(body, "d-beta")
	reason := strings.Index(body, flags.PausedReason)
	inAcme := reason > acme && (beta < acme || reason < beta)
	if acme < 0 || beta < 0 || strings.Count(body, flags.PausedReason) != 1 || !inAcme {
		t.Errorf("event page: the paused reason once, with acme's delivery (acme at %d, beta at %d, reason at %d)\n%s", acme, beta, reason, body)
	}
	if body := get(s.portalEvent, "/console/portal/events/ev1", session{User: "pat", Role: PartnerRole("acme")}); !strings.Contains(body, flags.PausedReason) {
		t.Errorf("acme's portal: its paused delivery's reason missing\n%s", body)
	}
	if body := get(s.portalEvent, "/console/portal/events/ev1", session{User: "bob", Role: PartnerRole("beta")}); strings.Contains(body, flags.PausedReason) {
		t.Errorf("beta's portal says its delivery is paused")
	}
	ds[0].Status = store.DeliveryDelivered
	if err := st.PutDeliveries(ctx, ds[:1]); err != nil {
		t.Fatal(err)
	}
	if body := get(s.event, "/console/events/ev1", session{User: "ann", Role: RoleAdmin}); strings.Contains(body, flags.PausedReason) {
		t.Errorf("a delivered delivery of paused acme shown as waiting for the resume")
	}
}
