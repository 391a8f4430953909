package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

// TestSweepKeepsUp: one Sweep deletes every expired item, however many
// batches that takes (it deleted one batch of each kind before: ten
// thousand every ten minutes fell behind at 16 events a second), and
// between its scan and its write the store takes other writes (the
// ledger's scan ran inside the write, holding every writer back for as
// long as it took to read the whole ledger).
func TestSweepKeepsUp(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.sweepBatch = 7
	now := time.Now()
	past, future := now.Add(-time.Minute), now.Add(time.Hour)
	const expired, live = 30, 4
	var events []store.Event
	var deliveries []store.Delivery
	for i := range expired + live {
		exp := past
		if i >= expired {
			exp = future
		}
		if err := s.PutIdempotency(ctx, store.Idempotency{Key: fmt.Sprintf("k%02d", i), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("e%02d", i)
		events = append(events, store.Event{ID: id, SchemaID: "x#y#1", AcceptedAt: now, ExpiresAt: exp})
		deliveries = append(deliveries, store.Delivery{EventID: id, ID: "d" + id, PartnerID: "acme", SchemaID: "x#y#1",
			Status: store.DeliveryDelivered, CreatedAt: now, UpdatedAt: now, ExpiresAt: exp})
	}
	if err := s.CreateEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDeliveries(ctx, deliveries); err != nil {
		t.Fatal(err)
	}
	scans := 0
	s.afterSweepScan = func() {
		scans++
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.PutIdempotency(wctx, store.Idempotency{Key: fmt.Sprintf("during%d", scans), ExpiresAt: future}); err != nil {
			t.Errorf("a write while the sweep had scanned: %v", err)
		}
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 3*expired {
		t.Fatalf("Sweep = %d, %v; want all %d expired items (ledger, deliveries, events) deleted", n, err, 3*expired)
	}
	if want := 3 * (expired/7 + 1); scans != want {
		t.Errorf("%d batches, want %d (%d of each kind, 7 at a time)", scans, want, expired)
	}
	for i := range expired + live {
		_, lerr := s.GetIdempotency(ctx, fmt.Sprintf("k%02d", i))
		_, eerr := s.GetEvent(ctx, fmt.Sprintf("e%02d", i))
		_, derr := s.GetDelivery(ctx, fmt.Sprintf("e%02d", i), fmt.Sprintf("de%02d", i))
		if gone := i < expired; (lerr == store.ErrNotFound) != gone || (eerr == store.ErrNotFound) != gone || (derr == store.ErrNotFound) != gone {
			t.Errorf("item %d (expired %v): ledger %v, event %v, delivery %v", i, gone, lerr, eerr, derr)
		}
	}
	p, err := s.DeliveriesByPartner(ctx, "acme", store.Page{})
	if err != nil || len(p.Deliveries) != live {
		t.Errorf("acme's history after the sweep: %d deliveries, %v; want the %d live", len(p.Deliveries), err, live)
	}
}
