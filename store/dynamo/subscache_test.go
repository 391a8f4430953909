package dynamo

import (
	"context"
	"testing"
	"time"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/store"
)

// TestSubscriptionsKeptForTTL: the processor's store keeps a schema's
// subscriptions — one read, not one a batch — and sees another process's
// write (the console's approval) once SubscriptionsTTL has passed; its
// own writes at once.
func TestSubscriptionsKeptForTTL(t *testing.T) {
	ctx := context.Background()
	db := dynalitetest.Start(t)
	if _, err := CreateTables(ctx, db, "ttl"); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	processor, console := New(db, "ttl"), New(db, "ttl")
	processor.now = func() time.Time { return now }
	const schema = "orders#order.created#1"
	sub, err := console.PutSubscription(ctx, store.Subscription{ID: "acme#" + schema, PartnerID: "acme", SchemaID: schema, Status: store.SubscriptionPending})
	if err != nil {
		t.Fatal(err)
	}
	first, err := processor.SubscriptionsForSchema(ctx, schema)
	if err != nil || len(first) != 1 || first[0].Status != store.SubscriptionPending {
		t.Fatalf("first read: %+v, %v", first, err)
	}
	sub.Status = store.SubscriptionApproved
	if sub, err = console.PutSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	now = now.Add(SubscriptionsTTL - time.Millisecond)
	if kept, _ := processor.SubscriptionsForSchema(ctx, schema); &kept[0] != &first[0] {
		t.Error("within the TTL the subscriptions were read again")
	}
	now = now.Add(time.Millisecond)
	if got, err := processor.SubscriptionsForSchema(ctx, schema); err != nil || len(got) != 1 || got[0].Status != store.SubscriptionApproved {
		t.Errorf("after the TTL: %+v, %v; want the approval", got, err)
	}
	// The processor's own write is seen at once.
	sub.Status = store.SubscriptionCancelled
	if _, err := processor.PutSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if got, _ := processor.SubscriptionsForSchema(ctx, schema); len(got) != 1 || got[0].Status != store.SubscriptionCancelled {
		t.Errorf("after its own write: %+v", got)
	}
}
