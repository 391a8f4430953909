package dispatch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// BenchmarkWriteBatches is one background write of what deliveries left
// at fan-out 16 on the embedded store: 8 batches (the pipeline's queue
// when it is full) of 16 deliveries each, their statuses, ledger entries
// and counters, each status replacing the pending one the processor
// wrote — as long as the ledger entries of the last deliveries to finish
// wait for the write before them.
//
//	go test -run '^$' -bench WriteBatches -count 6 ./runtime/dispatch | benchstat -
func BenchmarkWriteBatches(b *testing.B) {
	ctx := context.Background()
	emb, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { emb.Close() })
	d := &Dispatcher{st: emb, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	const batches, fanout = 8, 16
	now := time.Now()
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		ws := make([]batchWrites, batches)
		for i := range ws {
			ws[i].counts = map[string]store.Counts{}
			for p := range fanout {
				n++
				ev, id, sub := fmt.Sprintf("e%09d", n/fanout), fmt.Sprintf("d%09d", n), fmt.Sprintf("s%d", p)
				ws[i].statuses = append(ws[i].statuses, store.Delivery{EventID: ev, ID: id, SubscriptionID: sub, PartnerID: fmt.Sprintf("p%d", p),
					SchemaID: "x#y#1", Status: store.DeliveryDelivered, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)})
				ws[i].ledger = append(ws[i].ledger, store.Idempotency{Key: ledgerKey(ev, id), Value: []byte(ev), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
				ws[i].counts[sub] = ws[i].counts[sub].Plus(store.Counts{Delivered: 1})
			}
		}
		for _, w := range ws {
			pending := make([]store.Delivery, len(w.statuses))
			for i, st := range w.statuses {
				st.Status = store.DeliveryPending
				pending[i] = st
			}
			if err := emb.CreateDeliveries(ctx, pending); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := d.writeBatches(ctx, ws); err != nil {
			b.Fatal(err)
		}
	}
}
