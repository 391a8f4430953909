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

func BenchmarkHistorySearchOld(b *testing.B) {
	st, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const n, deadEvery = 1_000_000, 10_000
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	for i := 0; i < n; i += 10_000 {
		var ds []store.Delivery
		for j := i; j < i+10_000; j++ {
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
	b.Logf("filled in %v", time.Since(t0))
	cs := &countingStore{Store: st}
	s := &Server{cfg: Config{Store: cs}}
	r := httptest.NewRequest("GET", "/console/events", nil)
	mid := base.Add(n / 2 * 100 * time.Millisecond)
	for _, c := range []struct {
		name string
		keep func(store.Delivery) bool
	}{
		{"newest", func(store.Delivery) bool { return true }},
		{"dead_lettered", func(d store.Delivery) bool { return d.Status == store.DeliveryDeadLettered }},
		{"to-midway", func(d store.Delivery) bool { return d.CreatedAt.Before(mid) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			cs.pages = 0
			found := 0
			for b.Loop() {
				got, _, err := s.history(r, "acme", "", "", time.Time{}, c.keep)
				if err != nil {
					b.Fatal(err)
				}
				found += len(got)
			}
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
			b.ReportMetric(float64(cs.pages)/float64(b.N), "pages/op")
		})
	}
}
