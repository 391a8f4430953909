package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

// The store's hot operations on the delivery path: the ledger and status
// read before each attempt (GetDeliveryState, one view; GetIdempotency
// alone for comparison), and the batched status and ledger writes after.
func BenchmarkHotPath(b *testing.B) {
	ctx := context.Background()
	st := openTemp(b)
	now := time.Now()
	st.PutIdempotency(ctx, store.Idempotency{Key: "delivered#d1", Value: []byte("e"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	pending := store.Delivery{EventID: "e1", ID: "d1", SubscriptionID: "s", PartnerID: "p", SchemaID: "x#y#1", Status: store.DeliveryPending,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateDeliveries(ctx, []store.Delivery{pending}); err != nil {
		b.Fatal(err)
	}
	b.Run("GetDeliveryState", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s, err := st.GetDeliveryState(ctx, "delivered#d1", "e1", "d1"); err != nil || !s.Found || !s.Delivered {
				b.Fatal(s, err)
			}
		}
	})
	b.Run("GetIdempotency", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.GetIdempotency(ctx, "delivered#d1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("PutDeliveries-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			ds := make([]store.Delivery, n)
			i := 0
			for b.Loop() {
				for j := range ds {
					i++
					ds[j] = store.Delivery{EventID: fmt.Sprintf("e%d", i), ID: fmt.Sprintf("d%d", i), SubscriptionID: "s", PartnerID: "p",
						SchemaID: "x#y#1", Status: store.DeliveryDelivered, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
				}
				if err := st.PutDeliveries(ctx, ds); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("PutLedger-100", func(b *testing.B) {
		b.ReportAllocs()
		recs := make([]store.Idempotency, 100)
		i := 0
		for b.Loop() {
			for j := range recs {
				i++
				recs[j] = store.Idempotency{Key: fmt.Sprintf("delivered#l%d", i), Value: []byte("e"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			}
			if err := st.PutLedger(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
