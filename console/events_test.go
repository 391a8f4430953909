package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
