package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

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
// behind From ends at the first delivery created before it, and To skips
// the newer ones; either way every delivery in the range is found once.
func TestHistoryTimeRange(t *testing.T) {
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
		got, next, err := s.history(r, "acme", "", "", from, func(d store.Delivery) bool { return to.IsZero() || d.CreatedAt.Before(to) })
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
	check("to 50 min", time.Time{}, base.Add(50*time.Minute), 49, 0, 3)
	check("from 20 to 30 min", base.Add(20*time.Minute), base.Add(30*time.Minute), 29, 20, 3)
}
