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
	benchmarkWrite(b, store.DeliveryPending, nil, (*Store).CreateDeliveries)
}

// BenchmarkPutDeliveries writes the statuses of a dispatcher's batch —
// 500 deliveries — to dynalite, as PutDeliveries does (BatchWriteItem,
// 25 items a request), and reports them a second.
//
//	go test -run '^$' -bench PutDeliveries -benchtime 5x ./store/dynamo
func BenchmarkPutDeliveries(b *testing.B) {
	at := time.Now().UTC()
	benchmarkWrite(b, store.DeliveryDelivered, []store.Attempt{{N: 1, At: at, StatusCode: 204, Latency: store.Duration(3 * time.Millisecond)}}, (*Store).PutDeliveries)
}

// benchmarkWrite writes 500 new deliveries of status, with attempts, to
// dynalite with write each iteration, and reports them a second.
func benchmarkWrite(b *testing.B, status string, attempts []store.Attempt, write func(*Store, context.Context, []store.Delivery) error) {
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
				PartnerID: "acme", SchemaID: "orders#order.created#1", Status: status, CreatedAt: at, UpdatedAt: at, ExpiresAt: at.Add(time.Hour), Attempts: attempts}
		}
		i++
		start := time.Now()
		if err := write(s, context.Background(), ds); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(n/time.Since(start).Seconds(), "deliveries/s")
	}
}
