package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/internal/rusage"
	"github.com/whp-dev/whp/runtime/envelope"
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

// BenchmarkDeliver is the dispatcher's work for one delivery, all of it
// but the fetch: egress records handed to Deliver 64 at a time, each at
// an offset of its own and without a key, so delivered concurrently as
// consumed ones are (the Lambda dispatcher's path, which the streaming one shares record by
// record: the delivery decoded, its ledger entry and status read, its
// subscription looked up, the request signed and POSTed to a receiver
// on 127.0.0.1 over a kept connection, the attempt recorded, the status,
// ledger entry and counters written). Each delivery's pending status is
// written first, as the processor writes it, outside the timing. An op is
// a batch; ns/delivery is the time over the deliveries, cpu-ns/delivery
// the process's CPU time (what bounds the rate on a busy machine; the
// receiver's share is in it, as it is in the same process). Compare runs
// of the same machine, with benchstat:
//
//	go test -run '^$' -bench 'Deliver$' -count 6 ./runtime/dispatch | benchstat -
func BenchmarkDeliver(b *testing.B) {
	ctx := context.Background()
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	d, emb := batchDispatcher(b, Config{}, store.Subscription{ID: "s-p", PartnerID: "p", SchemaID: "bench/thing.happened/1", URL: srv.URL,
		Status: store.SubscriptionApproved, SigningSecretRef: "whsec/p"})
	body := json.RawMessage(`{"id":"` + strings.Repeat("x", 1000) + `"}`) // a 1 KiB event, as whp bench's
	const batch = 64
	n, cpu := 0, time.Duration(0)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		recs := make([]*kgo.Record, batch)
		pending := make([]store.Delivery, batch)
		for i := range recs {
			id := fmt.Sprintf("d%09d", n+i)
			recs[i] = delivery("p", id, "")
			recs[i].Offset = int64(n + i) // each its own, as consumed: unkeyed records are delivered concurrently
			msg := envelope.Delivery{ID: id, EventID: "e-" + id, SubscriptionID: "s-p", PartnerID: "p", SchemaID: "bench/thing.happened/1",
				Event: "thing.happened", AcceptedAt: time.Now(), CreatedAt: time.Now(), Body: body}
			recs[i].Value = msg.JSON()
			pending[i] = store.Delivery{EventID: msg.EventID, ID: id, SubscriptionID: "s-p", PartnerID: "p", SchemaID: msg.SchemaID,
				Status: store.DeliveryPending, CreatedAt: msg.CreatedAt, UpdatedAt: msg.CreatedAt, ExpiresAt: msg.CreatedAt.Add(time.Hour)}
		}
		if err := emb.CreateDeliveries(ctx, pending); err != nil {
			b.Fatal(err)
		}
		n += batch
		b.StartTimer()
		cpu0 := rusage.CPU()
		if failed := d.Deliver(ctx, recs); len(failed) != 0 {
			b.Fatalf("%d of %d deliveries not handled", len(failed), batch)
		}
		cpu += rusage.CPU() - cpu0
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/delivery")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/delivery")
	if got.Load() != int64(n) {
		b.Fatalf("%d deliveries reached the receiver, want %d", got.Load(), n)
	}
}
