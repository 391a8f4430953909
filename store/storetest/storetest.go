// Package storetest is the conformance suite every store.Store
// implementation runs: the embedded store in its own tests, the DynamoDB
// store against dynalite. A backend passes when Run passes.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/whp-dev/whp/store"
)

// Opener opens a store on dir. Opening the same dir again after Close must
// see everything written before (the suite checks persistence this way).
type Opener func(t *testing.T, dir string) store.Store

// Run runs the whole suite; each case gets a fresh dir.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"Schemas", testSchemas},
		{"SubscriptionRev", testSubscriptionRev},
		{"SubscriptionsForSchema", testSubscriptionsForSchema},
		{"SubscriptionKafkaCounters", testCounters},
		{"Events", testEvents},
		{"Deliveries", testDeliveries},
		{"GetDeliveries", testGetDeliveries},
		{"HistoryPaging", testHistoryPaging},
		{"HistoryByStatus", testHistoryByStatus},
		{"HistoryBefore", testHistoryBefore},
		{"Idempotency", testIdempotency},
		{"DeliveryState", testDeliveryState},
		{"IdempotencyRev", testIdempotencyRev},
		{"IdempotencyIfWith", testIdempotencyIfWith},
		{"Persistence", testPersistence},
		{"Decisions", testDecisions},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// at is a fixed instant, truncated so that encodings that keep less than
// nanoseconds compare equal.
var at = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func schema(id, status string, sensitive bool) store.Schema {
	return store.Schema{ID: id, Domain: "orders", Event: "order.created", Version: "1", Status: status,
		ContainsSensitive: sensitive, JSONSchema: []byte(`{"type":"object"}`), CUESource: "{}", Revision: "r1", UpdatedAt: at}
}

func testSchemas(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	a := schema("orders#order.created#1", "ACTIVE", false)
	b := schema("orders#order.created#2", "ACTIVE", true)
	must(t, s.PutSchema(ctx, a))
	must(t, s.PutSchema(ctx, b))
	got, err := s.GetSchema(ctx, a.ID)
	must(t, err)
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("GetSchema (-want +got):\n%s", diff)
	}
	if _, err := s.GetSchema(ctx, "nope#x.y#1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSchema(missing) error = %v, want ErrNotFound", err)
	}
	// Deactivating moves the schema between status-index entries.
	b.Status = "INACTIVE"
	must(t, s.PutSchema(ctx, b))
	active, err := s.SchemasByStatus(ctx, "ACTIVE")
	must(t, err)
	if diff := cmp.Diff([]store.Schema{a}, active); diff != "" {
		t.Errorf("SchemasByStatus(ACTIVE) (-want +got):\n%s", diff)
	}
	inactive, err := s.SchemasByStatus(ctx, "INACTIVE")
	must(t, err)
	if diff := cmp.Diff([]store.Schema{b}, inactive); diff != "" {
		t.Errorf("SchemasByStatus(INACTIVE) (-want +got):\n%s", diff)
	}
	all, err := s.ListSchemas(ctx)
	must(t, err)
	if diff := cmp.Diff([]store.Schema{a, b}, all); diff != "" {
		t.Errorf("ListSchemas (-want +got):\n%s", diff)
	}
}

func subscription(partner, schemaID string) store.Subscription {
	return store.Subscription{ID: partner + "#" + schemaID, PartnerID: partner, SchemaID: schemaID, Name: partner + ".sub",
		URL: "https://" + partner + ".example/hook", AuthKind: "none", SigningSecretRef: "partners/" + partner + "/signing",
		ConfigHash: "h1", Status: store.SubscriptionPending, Revision: "r1", UpdatedAt: at}
}

func testSubscriptionRev(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	sub := subscription("acme", "orders#order.created#1")
	stored, err := s.PutSubscription(ctx, sub)
	must(t, err)
	if stored.Rev != 1 {
		t.Fatalf("first put Rev = %d, want 1", stored.Rev)
	}
	// A second create of the same item conflicts.
	if _, err := s.PutSubscription(ctx, sub); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create of existing item error = %v, want ErrConflict", err)
	}
	// An approval based on the stored item wins; a stale one then loses.
	approve := stored
	approve.Status, approve.DecidedBy, approve.DecidedAt, approve.Reason = store.SubscriptionApproved, "alice", at, "looks right"
	approve.MaxInFlight, approve.RateLimitPerSecond = 8, 2.5 // the partner's delivery settings travel with it
	approved, err := s.PutSubscription(ctx, approve)
	must(t, err)
	stale := stored
	stale.Status = store.SubscriptionRejected
	if _, err := s.PutSubscription(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale put error = %v, want ErrConflict", err)
	}
	got, err := s.GetSubscription(ctx, sub.ID)
	must(t, err)
	if diff := cmp.Diff(approved, got); diff != "" {
		t.Errorf("GetSubscription (-want +got):\n%s", diff)
	}
	if got.Rev != 2 {
		t.Errorf("Rev after two writes = %d, want 2", got.Rev)
	}
	if _, err := s.GetSubscription(ctx, "x#y"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSubscription(missing) error = %v, want ErrNotFound", err)
	}
	// Concurrent writers of one Rev: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan int, 8)
	for i := range 8 {
		wg.Go(func() {
			u := got
			u.Reason = fmt.Sprint("writer ", i)
			if _, err := s.PutSubscription(ctx, u); err == nil {
				wins <- i
			} else if !errors.Is(err, store.ErrConflict) {
				t.Errorf("concurrent put: %v", err)
			}
		})
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Errorf("%d concurrent writers of one Rev won, want exactly 1", n)
	}
}

func testSubscriptionsForSchema(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	a := subscription("acme", "orders#order.created#1")
	b := subscription("beta", "orders#order.created#1")
	c := subscription("acme", "orders#order.cancelled#1")
	var stored []store.Subscription
	for _, sub := range []store.Subscription{a, b, c} {
		got, err := s.PutSubscription(ctx, sub)
		must(t, err)
		stored = append(stored, got)
	}
	got, err := s.SubscriptionsForSchema(ctx, "orders#order.created#1")
	must(t, err)
	if diff := cmp.Diff([]store.Subscription{stored[0], stored[1]}, got); diff != "" {
		t.Errorf("SubscriptionsForSchema (-want +got):\n%s", diff)
	}
	all, err := s.ListSubscriptions(ctx)
	must(t, err)
	if diff := cmp.Diff([]store.Subscription{stored[2], stored[0], stored[1]}, all); diff != "" {
		t.Errorf("ListSubscriptions (-want +got):\n%s", diff)
	}
	// A subscription written after a read — approved, moved to another
	// schema, a new one — is in the next read (a store that keeps its
	// answers must not keep them past a write).
	approved := stored[1]
	approved.Status = store.SubscriptionApproved
	approved, err = s.PutSubscription(ctx, approved)
	must(t, err)
	moved := stored[0]
	moved.SchemaID = "orders#order.created#2"
	moved, err = s.PutSubscription(ctx, moved)
	must(t, err)
	added, err := s.PutSubscription(ctx, subscription("gamma", "orders#order.created#1"))
	must(t, err)
	got, err = s.SubscriptionsForSchema(ctx, "orders#order.created#1")
	must(t, err)
	if diff := cmp.Diff([]store.Subscription{approved, added}, got); diff != "" {
		t.Errorf("SubscriptionsForSchema after writes (-want +got):\n%s", diff)
	}
	got, err = s.SubscriptionsForSchema(ctx, "orders#order.created#2")
	must(t, err)
	if diff := cmp.Diff([]store.Subscription{moved}, got); diff != "" {
		t.Errorf("SubscriptionsForSchema of the schema moved to (-want +got):\n%s", diff)
	}
}

func testCounters(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	id := "acme#orders#order.created#1"
	// Counters before the metadata exists create the item.
	must(t, s.AddCounts(ctx, id, store.Counts{Delivered: 1}))
	must(t, s.PutSubscriptionKafka(ctx, store.SubscriptionKafka{SubscriptionID: id, EgressTopic: "wh.egress.acme.order.created",
		RetryTopic: "wh.retry.order.created", DLQTopic: "wh.dlq.order.created", UpdatedAt: at}))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := s.AddCounts(ctx, id, store.Counts{Delivered: 2, Failed: 1, Filtered: 3}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.GetSubscriptionKafka(ctx, id)
	must(t, err)
	want := store.SubscriptionKafka{SubscriptionID: id, EgressTopic: "wh.egress.acme.order.created", RetryTopic: "wh.retry.order.created",
		DLQTopic: "wh.dlq.order.created", Delivered: 41, Failed: 20, Filtered: 60, UpdatedAt: at}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters after concurrent adds (-want +got):\n%s", diff)
	}
	// Rewriting topic metadata keeps the counters.
	want.EgressTopic = "wh.egress.acme.order.created.v2"
	meta := want
	meta.Delivered, meta.Failed, meta.Filtered = 0, 0, 0
	must(t, s.PutSubscriptionKafka(ctx, meta))
	got, err = s.GetSubscriptionKafka(ctx, id)
	must(t, err)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after metadata rewrite (-want +got):\n%s", diff)
	}
	// Listed in one read, in ID order: the one with metadata, and one
	// that has counters only.
	other := "beta#orders#order.created#1"
	must(t, s.AddCounts(ctx, other, store.Counts{Failed: 4}))
	list, err := s.ListSubscriptionKafka(ctx)
	must(t, err)
	if diff := cmp.Diff([]store.SubscriptionKafka{want, {SubscriptionID: other, Failed: 4}}, list); diff != "" {
		t.Errorf("ListSubscriptionKafka (-want +got):\n%s", diff)
	}
}

func testEvents(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	e := store.Event{ID: "0193a1b2-0000-7000-8000-000000000001", SchemaID: "orders#order.created#1", Key: "ord_1",
		AcceptedAt: at, Topic: "wh.ingress.orders.order.created", Partition: 2, Offset: 41, Data: []byte(`{"a":1}`), ExpiresAt: at.Add(time.Hour),
		Routing: []store.Route{{SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme", Matched: false, Reason: "data.amount is 5, not >= 100"}}, RoutingOmitted: 3}
	must(t, s.CreateEvents(ctx, []store.Event{e}))
	// A replayed processor records the event again: the first record wins.
	dup := e
	dup.Offset = 99
	other := store.Event{ID: "0193a1b2-0000-7000-8000-000000000009", SchemaID: e.SchemaID, AcceptedAt: at, Topic: e.Topic}
	must(t, s.CreateEvents(ctx, []store.Event{dup, other}))
	if got, err := s.GetEvent(ctx, other.ID); err != nil || got.ID != other.ID {
		t.Errorf("event created beside an existing one: %v, %v", got, err)
	}
	got, err := s.GetEvent(ctx, e.ID)
	must(t, err)
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("GetEvent (-want +got):\n%s", diff)
	}
	if _, err := s.GetEvent(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEvent(missing) error = %v, want ErrNotFound", err)
	}
}

func delivery(eventID, id, partner string, created time.Time) store.Delivery {
	return store.Delivery{EventID: eventID, ID: id, SubscriptionID: partner + "#orders#order.created#1", PartnerID: partner,
		SchemaID: "orders#order.created#1", Status: store.DeliveryPending, Topic: "wh.egress." + partner + ".order.created",
		CreatedAt: created, UpdatedAt: created}
}

func testDeliveries(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	ev := "0193a1b2-0000-7000-8000-000000000002"
	a := delivery(ev, "d-a", "acme", at)
	b := delivery(ev, "d-b", "beta", at)
	b.Status, b.Reason = store.DeliveryDeadLettered, "final failure: 400 Bad Request" // read back as written
	must(t, s.CreateDeliveries(ctx, []store.Delivery{a, b}))
	// The dispatcher records an attempt and success...
	a.Status = store.DeliveryDelivered
	a.UpdatedAt = at.Add(time.Second)
	a.Attempts = []store.Attempt{{N: 1, At: at, URL: "https://acme.example/hook", StatusCode: 204,
		Latency: store.Duration(12500 * time.Microsecond), RequestHeaders: map[string]string{"webhook-id": "d-a"}, ResponseExcerpt: "ok"}}
	must(t, s.PutDeliveries(ctx, []store.Delivery{a}))
	// ...and a replayed processor creating it again changes nothing.
	must(t, s.CreateDeliveries(ctx, []store.Delivery{delivery(ev, "d-a", "acme", at.Add(time.Hour))}))
	got, err := s.Deliveries(ctx, ev)
	must(t, err)
	if diff := cmp.Diff([]store.Delivery{a, b}, got); diff != "" {
		t.Errorf("Deliveries (-want +got):\n%s", diff)
	}
	one, err := s.GetDelivery(ctx, ev, "d-b")
	must(t, err)
	if diff := cmp.Diff(b, one); diff != "" {
		t.Errorf("GetDelivery (-want +got):\n%s", diff)
	}
	if _, err := s.GetDelivery(ctx, ev, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDelivery(missing) error = %v, want ErrNotFound", err)
	}
	// The partner index follows the update: one entry per delivery.
	page, err := s.DeliveriesByPartner(ctx, "acme", store.Page{})
	must(t, err)
	if diff := cmp.Diff([]store.Delivery{a}, page.Deliveries); diff != "" {
		t.Errorf("DeliveriesByPartner (-want +got):\n%s", diff)
	}
}

// GetDeliveries reads what it finds of many keys at once: more than one
// request's worth, a key asked for twice, keys of no item.
func testGetDeliveries(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	var ds []store.Delivery
	var keys []store.DeliveryKey
	for i := range 230 {
		d := delivery(fmt.Sprintf("0193a1b2-0000-7000-8000-%012d", i/3), fmt.Sprintf("d-%03d", i), "acme", at.Add(time.Duration(i)*time.Second))
		if i%2 == 0 {
			d.Status = store.DeliveryDeadLettered
		}
		ds = append(ds, d)
		keys = append(keys, store.DeliveryKey{EventID: d.EventID, ID: d.ID})
	}
	must(t, s.PutDeliveries(ctx, ds))
	missing := store.DeliveryKey{EventID: ds[0].EventID, ID: "d-none"}
	asked := append(append(keys, keys[7], missing), keys[:5]...)
	want := append(append(ds, ds[7], store.Delivery{}), ds[:5]...)
	got, err := s.GetDeliveries(ctx, asked)
	must(t, err)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetDeliveries (-want +got):\n%s", diff)
	}
	if none, err := s.GetDeliveries(ctx, nil); err != nil || len(none) != 0 {
		t.Errorf("GetDeliveries(none) = %v, %v", none, err)
	}
}

func testHistoryPaging(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	var all []store.Delivery
	for i := range 7 {
		d := delivery(fmt.Sprintf("ev-%d", i), fmt.Sprintf("d-%d", i), "acme", at.Add(time.Duration(i)*time.Minute))
		all = append(all, d)
	}
	must(t, s.CreateDeliveries(ctx, all))
	must(t, s.CreateDeliveries(ctx, []store.Delivery{delivery("ev-x", "d-x", "beta", at)}))
	var got []store.Delivery
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 4 {
			t.Fatal("paging does not end")
		}
		page, err := s.DeliveriesByPartner(ctx, "acme", store.Page{Limit: 3, Cursor: cursor})
		must(t, err)
		if len(page.Deliveries) > 3 {
			t.Fatalf("page of %d items, limit 3", len(page.Deliveries))
		}
		got = append(got, page.Deliveries...)
		if page.Next == "" {
			break
		}
		cursor = page.Next
		if pages == 0 {
			// Deliveries retried while a reader pages: history is by
			// creation, so neither moves — the one on the page read is
			// not read again, the one ahead is not skipped.
			for _, i := range []int{len(all) - 1, 0} {
				all[i].Status, all[i].UpdatedAt = store.DeliveryRetrying, at.Add(time.Hour)
				must(t, s.PutDeliveries(ctx, []store.Delivery{all[i]}))
			}
			got[0] = all[len(all)-1]
		}
	}
	var want []store.Delivery
	for i := len(all) - 1; i >= 0; i-- {
		want = append(want, all[i])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged history, newest first by creation (-want +got):\n%s", diff)
	}
	bySchema, err := s.DeliveriesBySchema(ctx, "orders#order.created#1", store.Page{Limit: 100})
	must(t, err)
	if len(bySchema.Deliveries) != 8 || bySchema.Next != "" {
		t.Errorf("DeliveriesBySchema = %d items (next %q), want 8 and no next page", len(bySchema.Deliveries), bySchema.Next)
	}
	if _, err := s.DeliveriesByPartner(ctx, "acme", store.Page{Cursor: "!!not-a-cursor"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("a corrupt cursor: %v, want ErrInvalidCursor", err)
	}
	// Any creation time, whatever its bytes: a time whose nanoseconds end
	// in 255 puts a zero byte in the embedded store's index key, which once
	// split the key at that byte and lost the row.
	ns := at.UnixNano()/256*256 + 255
	odd := delivery("ev-odd", "d-odd", "odd", time.Unix(0, ns).UTC())
	must(t, s.CreateDeliveries(ctx, []store.Delivery{odd}))
	if page, err := s.DeliveriesByPartner(ctx, "odd", store.Page{}); err != nil || len(page.Deliveries) != 1 || page.Deliveries[0].ID != "d-odd" {
		t.Errorf("history of a delivery created at %s = %+v, %v", odd.CreatedAt, page.Deliveries, err)
	}
}

// pageAll reads every page of a partner's (or, with schema set, a
// schema's) history of p's status from p's start, limit deliveries a page,
// and returns the deliveries' IDs and the pages read up to the last that
// held any (empty pages after it are not counted: DynamoDB cannot tell
// that a full page is the last, and a filtered page may be empty).
func pageAll(t *testing.T, s store.Store, partner, schema string, p store.Page) (ids []string, pages int) {
	t.Helper()
	for read := 1; ; read++ {
		if read > 100 {
			t.Fatal("paging does not end")
		}
		var page store.DeliveryPage
		var err error
		if schema != "" {
			page, err = s.DeliveriesBySchema(context.Background(), schema, p)
		} else {
			page, err = s.DeliveriesByPartner(context.Background(), partner, p)
		}
		must(t, err)
		if len(page.Deliveries) > p.Limit {
			t.Fatalf("page of %d items, limit %d", len(page.Deliveries), p.Limit)
		}
		if len(page.Deliveries) > 0 || read == 1 {
			pages = read
		}
		for _, d := range page.Deliveries {
			if p.Status != "" && d.Status != p.Status {
				t.Errorf("%s is %s, on a page of %s ones", d.ID, d.Status, p.Status)
			}
			ids = append(ids, d.ID)
		}
		if page.Next == "" {
			return ids, pages
		}
		p.Cursor = page.Next
	}
}

// The history of one status: an indexed status (store.StatusIndexed) is
// read from its index, pages full however rare it is, and follows every
// change of a delivery's status — in, out, from one indexed status to
// another; any other status filters pages of the history.
func testHistoryByStatus(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	var all []store.Delivery
	for i := range 60 {
		d := delivery(fmt.Sprintf("ev-%02d", i), fmt.Sprintf("d-%02d", i), "acme", at.Add(time.Duration(i)*time.Minute))
		if i == 59 {
			d.PartnerID = "beta" // another partner's, in the same status
		}
		all = append(all, d)
	}
	must(t, s.CreateDeliveries(ctx, all))
	for i := range all {
		switch {
		case i%10 == 3:
			all[i].Status = store.DeliveryDeadLettered
		case i%10 == 5:
			all[i].Status = store.DeliveryRetrying
		case i < 50:
			all[i].Status = store.DeliveryDelivered
		}
		all[i].UpdatedAt = all[i].CreatedAt.Add(time.Second)
	}
	all[59].Status = store.DeliveryDeadLettered
	must(t, s.PutDeliveries(ctx, all))
	want := func(status string, skip ...int) []string {
		var ids []string
		for i := 58; i >= 0; i-- {
			if all[i].Status == status && !slices.Contains(skip, i) {
				ids = append(ids, all[i].ID)
			}
		}
		return ids
	}
	check := func(what string, p store.Page, wantIDs []string, maxPages int) {
		t.Helper()
		got, pages := pageAll(t, s, "acme", "", p)
		if !slices.Equal(got, wantIDs) || pages > maxPages {
			t.Errorf("%s: %v in %d pages, want %v in at most %d", what, got, pages, wantIDs, maxPages)
		}
	}
	check("dead-lettered, 2 a page", store.Page{Limit: 2, Status: store.DeliveryDeadLettered}, want(store.DeliveryDeadLettered), 3)
	check("retrying, 10 a page", store.Page{Limit: 10, Status: store.DeliveryRetrying}, want(store.DeliveryRetrying), 1)
	check("cancelled: none", store.Page{Limit: 10, Status: store.DeliveryCancelled}, nil, 1)
	// Unindexed: the history's pages, filtered.
	check("pending, 20 a page", store.Page{Limit: 20, Status: store.DeliveryPending}, want(store.DeliveryPending), 3)
	check("delivered, 20 a page", store.Page{Limit: 20, Status: store.DeliveryDelivered}, want(store.DeliveryDelivered), 3)
	if ids, _ := pageAll(t, s, "", "orders#order.created#1", store.Page{Limit: 50, Status: store.DeliveryDeadLettered}); len(ids) != 7 {
		t.Errorf("a schema's dead-lettered: %v, want 7 (six of acme's, one of beta's)", ids)
	}
	// Counted from the index, over every schema: another schema's one.
	other := delivery("ev-other", "d-other", "gamma", at)
	other.SchemaID, other.Status = "billing#invoice.paid#1", store.DeliveryDeadLettered
	// An event named after a status is not counted in that status.
	named := delivery("ev-named", "d-named", "gamma", at)
	named.SchemaID, named.Status = "billing#dead_lettered#1", store.DeliveryRetrying
	must(t, s.PutDeliveries(ctx, []store.Delivery{other, named}))
	count := func(status string, want map[string]int) {
		t.Helper()
		if n, err := s.CountDeliveries(ctx, status); err != nil || !maps.Equal(n, want) {
			t.Errorf("CountDeliveries(%s) = %v, %v; want %v", status, n, err, want)
		}
	}
	count(store.DeliveryDeadLettered, map[string]int{"acme": 6, "beta": 1, "gamma": 1})
	count(store.DeliveryRetrying, map[string]int{"acme": 6, "gamma": 1})
	count(store.DeliveryCancelled, map[string]int{})
	if _, err := s.CountDeliveries(ctx, store.DeliveryDelivered); err == nil {
		t.Error("CountDeliveries(delivered): no error; it is not indexed")
	}
	// Retried into dead letters, redriven to delivered: each status's
	// history follows.
	all[5].Status, all[13].Status = store.DeliveryDeadLettered, store.DeliveryDelivered
	all[5].UpdatedAt, all[13].UpdatedAt = at.Add(time.Hour), at.Add(time.Hour)
	must(t, s.PutDeliveries(ctx, []store.Delivery{all[5], all[13]}))
	check("dead-lettered after the changes", store.Page{Limit: 50, Status: store.DeliveryDeadLettered}, want(store.DeliveryDeadLettered), 1)
	check("retrying after the changes", store.Page{Limit: 50, Status: store.DeliveryRetrying}, want(store.DeliveryRetrying), 1)
	count(store.DeliveryDeadLettered, map[string]int{"acme": 6, "beta": 1, "gamma": 1}) // one in, one out
	count(store.DeliveryRetrying, map[string]int{"acme": 5, "gamma": 1})
	if slices.Contains(want(store.DeliveryDeadLettered), "d-13") || !slices.Contains(want(store.DeliveryDeadLettered), "d-05") {
		t.Fatal("the test's own bookkeeping is wrong")
	}
	if _, err := s.DeliveriesByPartner(ctx, "acme", store.Page{Status: store.DeliveryDeadLettered, Cursor: "!!not-a-cursor"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("a corrupt cursor: %v, want ErrInvalidCursor", err)
	}
	// A cursor of another query's pages: the history's for the status's,
	// one partner's for another's.
	first, err := s.DeliveriesByPartner(ctx, "acme", store.Page{Limit: 2})
	if err != nil || first.Next == "" {
		t.Fatalf("a first page: %v, next %q", err, first.Next)
	}
	if _, err := s.DeliveriesByPartner(ctx, "acme", store.Page{Status: store.DeliveryDeadLettered, Cursor: first.Next}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("the history's cursor for a status: %v, want ErrInvalidCursor", err)
	}
	if _, err := s.DeliveriesByPartner(ctx, "beta", store.Page{Cursor: first.Next}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("acme's cursor for beta: %v, want ErrInvalidCursor", err)
	}
}

// Before starts the history at the deliveries created before it, with or
// without a status; a cursor goes on from its page.
func testHistoryBefore(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	var all []store.Delivery
	for i := range 30 {
		d := delivery(fmt.Sprintf("ev-%02d", i), fmt.Sprintf("d-%02d", i), "acme", at.Add(time.Duration(i)*time.Minute))
		if i%3 == 0 {
			d.Status = store.DeliveryHeld
		}
		all = append(all, d)
	}
	must(t, s.CreateDeliveries(ctx, all))
	ids := func(from int, status string) []string {
		var out []string
		for i := from; i >= 0; i-- {
			if status == "" || all[i].Status == status {
				out = append(out, all[i].ID)
			}
		}
		return out
	}
	for _, c := range []struct {
		what   string
		p      store.Page
		want   []string
		schema string
	}{
		{"before minute 20", store.Page{Limit: 7, Before: at.Add(20 * time.Minute)}, ids(19, ""), ""},
		{"before minute 19:30", store.Page{Limit: 7, Before: at.Add(19*time.Minute + 30*time.Second)}, ids(19, ""), ""},
		{"a schema's, before minute 20", store.Page{Limit: 7, Before: at.Add(20 * time.Minute)}, ids(19, ""), "orders#order.created#1"},
		{"held, before minute 20", store.Page{Limit: 2, Status: store.DeliveryHeld, Before: at.Add(20 * time.Minute)}, ids(19, store.DeliveryHeld), ""},
		{"pending, before minute 20", store.Page{Limit: 4, Status: store.DeliveryPending, Before: at.Add(20 * time.Minute)}, ids(19, store.DeliveryPending), ""},
		{"before the first", store.Page{Limit: 7, Before: at}, nil, ""},
		{"before any of them was created", store.Page{Limit: 7, Before: at.Add(-time.Hour)}, nil, ""},
		{"before a time after all", store.Page{Limit: 7, Before: at.Add(time.Hour)}, ids(29, ""), ""},
		// Times past what nanoseconds since 1970 hold in 64 bits.
		{"before the year 9999", store.Page{Limit: 7, Before: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, ids(29, ""), ""},
		{"held, before the year 9999", store.Page{Limit: 7, Status: store.DeliveryHeld, Before: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, ids(29, store.DeliveryHeld), ""},
		{"before the year 1000", store.Page{Limit: 7, Before: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil, ""},
	} {
		got, _ := pageAll(t, s, "acme", c.schema, c.p)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}

func testIdempotency(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := store.Idempotency{Key: "ingest#k1", Value: []byte(`{"id":"e1"}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := s.CreateIdempotency(ctx, rec); err != nil {
		t.Fatal(err)
	}
	other := rec
	other.Value = []byte(`{"id":"e2"}`)
	existing, err := s.CreateIdempotency(ctx, other)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateIdempotency error = %v, want ErrConflict", err)
	}
	if diff := cmp.Diff(rec, existing); diff != "" {
		t.Errorf("existing item returned on conflict (-want +got):\n%s", diff)
	}
	// Only one of many concurrent creators wins.
	var wg sync.WaitGroup
	wins := make(chan struct{}, 10)
	for i := range 10 {
		wg.Go(func() {
			r := store.Idempotency{Key: "ingest#race", Value: []byte(fmt.Sprint(i)), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if _, err := s.CreateIdempotency(ctx, r); err == nil {
				wins <- struct{}{}
			}
		})
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Errorf("%d concurrent creators won, want 1", len(wins))
	}
	// An expired item is absent, and may be created again.
	old := store.Idempotency{Key: "ingest#old", Value: []byte("x"), CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	must(t, s.PutIdempotency(ctx, old))
	if _, err := s.GetIdempotency(ctx, old.Key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetIdempotency(expired) error = %v, want ErrNotFound", err)
	}
	fresh := store.Idempotency{Key: old.Key, Value: []byte("y"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := s.CreateIdempotency(ctx, fresh); err != nil {
		t.Errorf("CreateIdempotency over an expired item: %v", err)
	}
	must(t, s.DeleteIdempotency(ctx, rec.Key))
	if _, err := s.GetIdempotency(ctx, rec.Key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetIdempotency(deleted) error = %v, want ErrNotFound", err)
	}

	// PutLedger: a batch larger than one DynamoDB request (25), holding a
	// key twice (the last wins) and replacing an existing item.
	must(t, s.PutIdempotency(ctx, store.Idempotency{Key: "delivered#d0", Value: []byte("old"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	var batch []store.Idempotency
	for i := range 30 {
		batch = append(batch, store.Idempotency{Key: fmt.Sprintf("delivered#d%d", i), Value: []byte(fmt.Sprint("e", i)), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	}
	batch = append(batch, store.Idempotency{Key: "delivered#d7", Value: []byte("last"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	must(t, s.PutLedger(ctx, batch))
	for i := range 30 {
		want := fmt.Sprint("e", i)
		if i == 7 {
			want = "last"
		}
		got, err := s.GetIdempotency(ctx, fmt.Sprintf("delivered#d%d", i))
		if err != nil || string(got.Value) != want {
			t.Errorf("after PutLedger, d%d = %q, %v; want %q", i, got.Value, err, want)
		}
	}
	must(t, s.PutLedger(ctx, nil))
}

func testPersistence(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	must(t, s.PutSchema(ctx, schema("orders#order.created#1", "ACTIVE", false)))
	sub, err := s.PutSubscription(ctx, subscription("acme", "orders#order.created#1"))
	must(t, err)
	d := delivery("ev-p", "d-p", "acme", at)
	must(t, s.CreateDeliveries(ctx, []store.Delivery{d}))
	must(t, s.Close())
	s = open(t, dir)
	if _, err := s.GetSchema(ctx, "orders#order.created#1"); err != nil {
		t.Errorf("schema after reopen: %v", err)
	}
	got, err := s.GetSubscription(ctx, sub.ID)
	must(t, err)
	if diff := cmp.Diff(sub, got); diff != "" {
		t.Errorf("subscription after reopen (-want +got):\n%s", diff)
	}
	if _, err := s.GetDelivery(ctx, "ev-p", "d-p"); err != nil {
		t.Errorf("delivery after reopen: %v", err)
	}
}

// testIdempotencyIfWith: a conditional put writes the items it carries
// with it; in conflict, it does not write its own item (whether the
// items it carried are written is the store's: see store.Store).
func testIdempotencyIfWith(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Millisecond)
	gate := store.Idempotency{Key: "order#s#k", Value: []byte(`{"tail":2}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	items := []store.Idempotency{
		{Key: "order-wait#0#s#k", Value: []byte("first"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{Key: "order-wait#1#s#k", Value: []byte("second"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}
	stored, err := s.PutIdempotencyIf(ctx, gate, items...)
	if err != nil || stored.Rev != 1 {
		t.Fatalf("conditional put with two items = %+v, %v", stored, err)
	}
	for _, it := range items {
		if got, err := s.GetIdempotency(ctx, it.Key); err != nil || string(got.Value) != string(it.Value) {
			t.Errorf("%s = %+v, %v", it.Key, got, err)
		}
	}
	stale := gate // Rev 0: asks for no live item
	stale.Value = []byte(`{"tail":3}`)
	if _, err := s.PutIdempotencyIf(ctx, stale, store.Idempotency{Key: "order-wait#2#s#k", Value: []byte("third"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a stale conditional put with an item = %v, want ErrConflict", err)
	}
	if got, err := s.GetIdempotency(ctx, gate.Key); err != nil || string(got.Value) != `{"tail":2}` || got.Rev != 1 {
		t.Errorf("after the conflict the gate is %+v, %v", got, err)
	}
}

func testIdempotencyRev(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := store.Idempotency{Key: "order#s#k", Value: []byte("a"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	first, err := s.PutIdempotencyIf(ctx, rec)
	if err != nil || first.Rev != 1 {
		t.Fatalf("first conditional put = %+v, %v", first, err)
	}
	if _, err := s.PutIdempotencyIf(ctx, rec); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second create = %v, want ErrConflict", err)
	}
	next := first
	next.Value = []byte("b")
	second, err := s.PutIdempotencyIf(ctx, next)
	if err != nil || second.Rev != 2 {
		t.Fatalf("update at the stored rev = %+v, %v", second, err)
	}
	got, err := s.GetIdempotency(ctx, rec.Key)
	if err != nil || string(got.Value) != "b" || got.Rev != 2 {
		t.Errorf("stored = %+v, %v", got, err)
	}
	// Concurrent writers of one rev: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan struct{}, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := s.PutIdempotencyIf(ctx, got); err == nil {
				wins <- struct{}{}
			}
		})
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Errorf("%d concurrent writers of one rev won, want 1", len(wins))
	}
	// An expired item counts as absent.
	old := store.Idempotency{Key: "order#s#old", Value: []byte("x"), CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	if err := s.PutIdempotency(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIdempotencyIf(ctx, store.Idempotency{Key: old.Key, Value: []byte("y"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Errorf("create over an expired item: %v", err)
	}
	// Rev 0 means "no live item", whatever wrote the live one: an item of
	// CreateIdempotency or PutIdempotency (which carry no rev) is not
	// overwritten by a conditional create.
	plain := store.Idempotency{Key: "order#s#plain", Value: []byte("p"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := s.CreateIdempotency(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIdempotencyIf(ctx, store.Idempotency{Key: plain.Key, Value: []byte("q"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a conditional create over a live item of CreateIdempotency = %v, want ErrConflict", err)
	}
	if got, err := s.GetIdempotency(ctx, plain.Key); err != nil || string(got.Value) != "p" {
		t.Errorf("the live item after the refused create = %+v, %v; want it unchanged", got, err)
	}
}

// The audit log reads back newest first, whole, limited, and keeps two
// decisions on one subscription in the same instant apart by status.
func testDecisions(t *testing.T, open Opener) {
	ctx := context.Background()
	st := open(t, t.TempDir())
	defer st.Close()
	if ds, err := st.Decisions(ctx, 0); err != nil || len(ds) != 0 {
		t.Fatalf("empty log: %v, %v", ds, err)
	}
	for i, d := range []store.Decision{
		{SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme", Status: store.SubscriptionApproved, By: "ann", Reason: "reviewed", ConfigHash: "h1", At: at},
		{SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme", Status: store.SubscriptionRejected, By: "bob", Reason: "URL changed", At: at.Add(time.Minute)},
		{SubscriptionID: "beta#orders#order.created#1", PartnerID: "beta", Status: store.SubscriptionApproved, By: "ann", At: at.Add(2 * time.Minute)},
	} {
		if err := st.AppendDecision(ctx, d); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	ds, err := st.Decisions(ctx, 0)
	must(t, err)
	if len(ds) != 3 || ds[0].PartnerID != "beta" || ds[1].By != "bob" || ds[2].Reason != "reviewed" || ds[2].ConfigHash != "h1" || !ds[2].At.Equal(at) {
		t.Fatalf("decisions = %+v, want beta, bob, ann newest first", ds)
	}
	if ds, _ := st.Decisions(ctx, 2); len(ds) != 2 || ds[1].By != "bob" {
		t.Errorf("limit 2: %+v", ds)
	}
}

// testDeliveryState: the dispatcher's one read before an attempt sees the
// ledger entry (live ones only) and the status item, each or both.
func testDeliveryState(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Millisecond)
	state := func(ledgerKey, eventID, id string) store.DeliveryState {
		t.Helper()
		st, err := s.GetDeliveryState(ctx, ledgerKey, eventID, id)
		if err != nil {
			t.Fatalf("GetDeliveryState(%s, %s, %s): %v", ledgerKey, eventID, id, err)
		}
		return st
	}
	if st := state("delivered#d1", "e1", "d1"); st.Delivered || st.Found {
		t.Errorf("nothing stored: state = %+v, want neither delivered nor found", st)
	}
	d := store.Delivery{EventID: "e1", ID: "d1", SubscriptionID: "s1", PartnerID: "p1", SchemaID: "x/y/1", Status: store.DeliveryPending,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
	must(t, s.CreateDeliveries(ctx, []store.Delivery{d}))
	if st := state("delivered#d1", "e1", "d1"); st.Delivered || !st.Found || st.Status.Status != store.DeliveryPending || st.Status.SubscriptionID != "s1" {
		t.Errorf("status only: state = %+v, want found pending for s1, not delivered", st)
	}
	must(t, s.PutLedger(ctx, []store.Idempotency{{Key: "delivered#d1", Value: []byte("e1"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}))
	if st := state("delivered#d1", "e1", "d1"); !st.Delivered || !st.Found {
		t.Errorf("both: state = %+v, want delivered and found", st)
	}
	must(t, s.PutIdempotency(ctx, store.Idempotency{Key: "delivered#d2", Value: []byte("e1"), CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}))
	if st := state("delivered#d2", "e1", "d2"); st.Delivered || st.Found {
		t.Errorf("expired ledger entry: state = %+v, want neither delivered nor found", st)
	}
	must(t, s.PutLedger(ctx, []store.Idempotency{{Key: "delivered#d3", Value: []byte("e9"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}))
	if st := state("delivered#d3", "e9", "d3"); !st.Delivered || st.Found {
		t.Errorf("ledger only: state = %+v, want delivered, not found", st)
	}
}
