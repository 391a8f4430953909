package embedded

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

// The store's hot operations on the delivery path: the ledger and status
// read before each attempt (GetDeliveryState, one view; GetIdempotency
// alone for comparison), and the batched status and ledger writes after;
// and the write a producer's 202 waits for, its Idempotency-Key's claim.
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
	// A producer's Idempotency-Key claim, which its 202 waits for: one
	// claim at a time, and claims from 64 producers at once.
	var claims atomic.Int64 // every claim's key its own, across runs
	b.Run("CreateIdempotency", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.CreateIdempotency(ctx, store.Idempotency{Key: fmt.Sprintf("claim#%d", claims.Add(1)), Value: []byte("{}"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CreateIdempotency-64", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32) // 64 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := st.CreateIdempotency(ctx, store.Idempotency{Key: fmt.Sprintf("claim#%d", claims.Add(1)), Value: []byte("{}"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
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

// BenchmarkCountDeliveries counts the dead letters waiting — the
// console's overview — in a store of a million deliveries, a tenth of
// them dead-lettered (an outage's) over ten schemas, and a hundredth
// retrying, from the status index (docs/benchmarks.md, "History at
// volume").
//
//	go test -run '^$' -bench CountDeliveries -benchtime 10x ./store/embedded
func BenchmarkCountDeliveries(b *testing.B) {
	ctx := context.Background()
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n, batch = 1_000_000, 10_000
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i += batch {
		ds := make([]store.Delivery, 0, batch)
		for j := i; j < i+batch; j++ {
			d := store.Delivery{EventID: fmt.Sprintf("e%08d", j), ID: "d", PartnerID: fmt.Sprintf("p%03d", j%100), SchemaID: fmt.Sprintf("s#e%d#1", j%10),
				Status: store.DeliveryDelivered, CreatedAt: base.Add(time.Duration(j) * time.Millisecond)}
			switch {
			case j%10 == 3:
				d.Status = store.DeliveryDeadLettered
			case j%100 == 7:
				d.Status = store.DeliveryRetrying
			}
			ds = append(ds, d)
		}
		if err := s.CreateDeliveries(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		c, err := s.CountDeliveries(ctx, store.DeliveryDeadLettered)
		if err != nil || len(c) != 10 || c["p003"] != n/100 { // partners p003, p013 … p093
			b.Fatalf("%v, %v", c, err)
		}
	}
}
