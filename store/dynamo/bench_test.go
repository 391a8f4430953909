package dynamo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/store"
)

// BenchmarkCreateDeliveries writes the pending statuses of a processor's
// batch — 500 deliveries — to dynalite, as CreateDeliveries does (each a
// conditional put: a replayed batch must not overwrite a status the
// dispatcher has moved on), and reports them a second.
//
//	go test -run '^$' -bench CreateDeliveries -benchtime 5x ./store/dynamo
func BenchmarkCreateDeliveries(b *testing.B) {
	db := dynalitetest.Start(b)
	if _, err := CreateTables(context.Background(), db, "bench"); err != nil {
		b.Fatal(err)
	}
	s := New(db, "bench")
	const n = 500
	at := time.Now().UTC()
	i := 0
	for b.Loop() {
		ds := make([]store.Delivery, n)
		for j := range ds {
			ds[j] = store.Delivery{EventID: fmt.Sprintf("0193a1b2-0000-7000-8000-%06d%06d", i, j), ID: fmt.Sprintf("d-%d", j), SubscriptionID: "acme#orders#order.created#1",
				PartnerID: "acme", SchemaID: "orders#order.created#1", Status: store.DeliveryPending, CreatedAt: at, UpdatedAt: at, ExpiresAt: at.Add(time.Hour)}
		}
		i++
		start := time.Now()
		if err := s.CreateDeliveries(context.Background(), ds); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(n/time.Since(start).Seconds(), "deliveries/s")
	}
}

// BenchmarkPutDeliveries writes the statuses of a dispatcher's batch —
// 500 deliveries — to dynalite, as PutDeliveries does (BatchWriteItem,
// 25 items a request), and reports them a second.
//
//	go test -run '^$' -bench PutDeliveries -benchtime 5x ./store/dynamo
func BenchmarkPutDeliveries(b *testing.B) {
	db := dynalitetest.Start(b)
	if _, err := CreateTables(context.Background(), db, "bench"); err != nil {
		b.Fatal(err)
	}
	s := New(db, "bench")
	const n = 500
	at := time.Now().UTC()
	i := 0
	for b.Loop() {
		ds := make([]store.Delivery, n)
		for j := range ds {
			ds[j] = store.Delivery{EventID: fmt.Sprintf("0193a1b2-0000-7000-8000-%06d%06d", i, j), ID: fmt.Sprintf("d-%d", j), SubscriptionID: "acme#orders#order.created#1",
				PartnerID: "acme", SchemaID: "orders#order.created#1", Status: store.DeliveryDelivered, CreatedAt: at, UpdatedAt: at, ExpiresAt: at.Add(time.Hour),
				Attempts: []store.Attempt{{N: 1, At: at, StatusCode: 204, Latency: store.Duration(3 * time.Millisecond)}}}
		}
		i++
		start := time.Now()
		if err := s.PutDeliveries(context.Background(), ds); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(n/time.Since(start).Seconds(), "deliveries/s")
	}
}
