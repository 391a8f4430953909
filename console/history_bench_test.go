package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

// BenchmarkHistorySearch is the events page's search (Server.history) over
// a partner's history of a million deliveries on the embedded store, one
// in ten thousand dead-lettered: the newest page, the dead-lettered ones,
// the page before a time half-way back, and both. found/op is what a page
// shows, pages/op the store pages it read (docs/benchmarks.md, "History
// at volume").
//
//	go test -run '^$' -bench HistorySearch -benchtime 20x ./console
func BenchmarkHistorySearch(b *testing.B) {
	st := openStore(b)
	const n, deadEvery, batch = 1_000_000, 10_000, 10_000
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i += batch {
		ds := make([]store.Delivery, 0, batch)
		for j := i; j < i+batch; j++ {
			at := base.Add(time.Duration(j) * 100 * time.Millisecond)
			status := store.DeliveryDelivered
			if j%deadEvery == deadEvery/2 {
				status = store.DeliveryDeadLettered
			}
			ds = append(ds, store.Delivery{EventID: fmt.Sprintf("e%08d", j), ID: "d", PartnerID: "acme", SchemaID: "orders#order.created#1",
				Status: status, CreatedAt: at, UpdatedAt: at})
		}
		if err := st.CreateDeliveries(context.Background(), ds); err != nil {
			b.Fatal(err)
		}
	}
	cs := &countingStore{Store: st}
	s := &Server{cfg: Config{Store: cs}}
	r := httptest.NewRequest("GET", "/console/events", nil)
	mid := base.Add(n / 2 * 100 * time.Millisecond)
	for _, c := range []struct {
		name string
		p    store.Page
	}{
		{"newest", store.Page{}},
		{"dead_lettered", store.Page{Status: store.DeliveryDeadLettered}},
		{"before-midway", store.Page{Before: mid}},
		{"dead_lettered-before-midway", store.Page{Status: store.DeliveryDeadLettered, Before: mid}},
	} {
		b.Run(c.name, func(b *testing.B) {
			cs.pages = 0
			found := 0
			for b.Loop() {
				got, _, err := s.history(r, "acme", "", c.p, time.Time{})
				if err != nil {
					b.Fatal(err)
				}
				if len(got) == 0 {
					b.Fatal("found nothing")
				}
				found += len(got)
			}
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
			b.ReportMetric(float64(cs.pages)/float64(b.N), "pages/op")
		})
	}
}
