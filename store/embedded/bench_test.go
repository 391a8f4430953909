package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

// The store's hot operations on the delivery path: the ledger lookup
// before each attempt, and the batched status write after a batch.
func BenchmarkHotPath(b *testing.B) {
	ctx := context.Background()
	st, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	st.PutIdempotency(ctx, store.Idempotency{Key: "delivered#d1", Value: []byte("e"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
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
}
