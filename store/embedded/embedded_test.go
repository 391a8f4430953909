package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
	"github.com/whp-dev/whp/store/storetest"
)

func open(t *testing.T, dir string) store.Store {
	t.Helper()
	s, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}

func TestSecondOpenerFails(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if s, err := embedded.Open(dir); err == nil {
		s.Close()
		t.Fatal("a second Open of a locked data dir succeeded")
	}
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	s, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for i, exp := range []time.Time{now.Add(-time.Minute), now.Add(-time.Second), now.Add(time.Hour)} {
		if err := s.PutIdempotency(ctx, store.Idempotency{Key: string(rune('a' + i)), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	// Events and deliveries expire too (the status TTL): an expired
	// delivery leaves history with its row; one without an expiry stays.
	var ds []store.Delivery
	for i, exp := range []time.Time{now.Add(-time.Minute), now.Add(time.Hour), {}} {
		id := string(rune('a' + i))
		if err := s.CreateEvents(ctx, []store.Event{{ID: "e" + id, SchemaID: "x#y#1", AcceptedAt: now, ExpiresAt: exp}}); err != nil {
			t.Fatal(err)
		}
		status := store.DeliveryDelivered
		if i < 2 {
			status = store.DeliveryDeadLettered // in the status index too
		}
		ds = append(ds, store.Delivery{EventID: "e" + id, ID: "d" + id, PartnerID: "acme", SchemaID: "x#y#1", Status: status,
			CreatedAt: now.Add(time.Duration(i) * time.Second), UpdatedAt: now, ExpiresAt: exp})
	}
	if err := s.CreateDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 4 {
		t.Fatalf("Sweep = %d, %v; want 4 expired items deleted (2 ledger items, an event, a delivery)", n, err)
	}
	if _, err := s.GetIdempotency(ctx, "c"); err != nil {
		t.Errorf("live item gone after sweep: %v", err)
	}
	if _, err := s.GetEvent(ctx, "ea"); err != store.ErrNotFound {
		t.Errorf("expired event: %v, want ErrNotFound", err)
	}
	if _, err := s.GetDelivery(ctx, "ea", "da"); err != store.ErrNotFound {
		t.Errorf("expired delivery: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"b", "c"} {
		if _, err := s.GetEvent(ctx, "e"+id); err != nil {
			t.Errorf("event e%s gone after sweep: %v", id, err)
		}
	}
	for name, page := range map[string]func(context.Context, string, store.Page) (store.DeliveryPage, error){
		"acme": s.DeliveriesByPartner, "x#y#1": s.DeliveriesBySchema} {
		p, err := page(ctx, name, store.Page{})
		if err != nil || len(p.Deliveries) != 2 || p.Deliveries[0].ID != "dc" || p.Deliveries[1].ID != "db" {
			t.Errorf("history of %s after sweep: %+v, %v; want dc, db", name, p.Deliveries, err)
		}
	}
	for name, page := range map[string]func(context.Context, string, store.Page) (store.DeliveryPage, error){
		"acme": s.DeliveriesByPartner, "x#y#1": s.DeliveriesBySchema} {
		p, err := page(ctx, name, store.Page{Status: store.DeliveryDeadLettered})
		if err != nil || len(p.Deliveries) != 1 || p.Deliveries[0].ID != "db" {
			t.Errorf("dead-lettered history of %s after sweep: %+v, %v; want db", name, p.Deliveries, err)
		}
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want nothing left to delete", n, err)
	}
}
