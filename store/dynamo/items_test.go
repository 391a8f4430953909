package dynamo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/store"
)

// itemBytes is an item's size as DynamoDB bills it: the sum of its
// attribute names and values, a number ≈ one byte per two significant
// digits plus one. (Only the attribute types this store writes.)
func itemBytes(t *testing.T, it map[string]types.AttributeValue) int {
	n := 0
	for name, v := range it {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			digits := len(strings.Trim(strings.TrimLeft(v.Value, "-"), "0"))
			n += (digits+1)/2 + 1
		default:
			t.Fatalf("attribute %s: %T not sized", name, v)
		}
	}
	return n
}

// writeUnits is what writing an item of n bytes costs: one unit a KB.
func writeUnits(n int) int { return (n + 1023) / 1024 }

// TestWriteUnitsPerDelivery is the store's write cost of one delivery in
// DynamoDB write units (what on-demand bills per request and provisioned
// capacity must sustain), from the items this store writes for a 1 KiB
// event: the pending item, the delivered one after one attempt, their
// two history GSIs (projection ALL: an index entry costs what the item
// does; the sort key is the creation time, so an update puts each entry
// in place — were it to change, a delete and a put), the ledger item,
// and the event item shared by its deliveries. docs/benchmarks.md ("What a delivery costs in
// DynamoDB") turns it into money; a change that grows an item past a
// kilobyte boundary fails here and is a decision to make there.
func TestWriteUnitsPerDelivery(t *testing.T) {
	items := sampleItems(t)
	pendingB, deliveredB := itemBytes(t, items["pending"]), itemBytes(t, items["delivered"])
	ledgerB, eventB := itemBytes(t, items["ledger"]), itemBytes(t, items["event"])

	const gsis = 2 // partner-index, schema-index
	// The status indexes are sparse: neither a pending nor a delivered
	// item is in them, so they cost such a delivery nothing.
	for _, name := range []string{"pending", "delivered"} {
		for _, attr := range []string{attrPartnerStatus, attrSchemaStatus} {
			if _, ok := items[name][attr]; ok {
				t.Errorf("the %s item has %s: it is written to a status index", name, attr)
			}
		}
	}
	dead := store.Delivery{EventID: "e", ID: "d", PartnerID: "acme", SchemaID: "s#e#1", Status: store.DeliveryDeadLettered}
	if it, err := deliveryItem(dead); err != nil || it[attrPartnerStatus] == nil || it[attrSchemaStatus] == nil {
		t.Errorf("a dead-lettered item lacks the status indexes' keys: %v", err)
	}
	create := writeUnits(pendingB) * (1 + gsis)
	update := writeUnits(deliveredB) * (1 + gsis)
	perDelivery := create + update + writeUnits(ledgerB)
	t.Logf("items: pending %d B, delivered %d B, ledger %d B, event %d B", pendingB, deliveredB, ledgerB, eventB)
	t.Logf("write units a delivery: pending %d + delivered %d + ledger %d = %d; the event's %d shared by its deliveries",
		create, update, writeUnits(ledgerB), perDelivery, writeUnits(eventB))
	// The budget: what the items cost when this test was written. Growing
	// past it means a kilobyte boundary was crossed.
	if perDelivery > 7 || writeUnits(eventB) > 2 {
		t.Errorf("a delivery costs %d write units and its event %d; the budget is 7 and 2", perDelivery, writeUnits(eventB))
	}
	if pendingB >= 1024 {
		t.Errorf("pending item %d B: a kilobyte or more, each of its three writes costs double", pendingB)
	}
}

// sampleItems are the items the store writes for one delivery of a 1 KiB
// event: the pending and delivered delivery (one attempt), its ledger
// entry and the event.
func sampleItems(t *testing.T) map[string]map[string]types.AttributeValue {
	t.Helper()
	now := time.Date(2026, 11, 29, 10, 26, 53, 550049100, time.UTC)
	eventID, id := "01a226d7-e76a-7cc5-b118-cf650af48b5f", "04d9db63-e3bf-55d5-9ee8-0cc60d99df0d"
	pending := store.Delivery{EventID: eventID, ID: id, SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme",
		SchemaID: "orders#order.created#1", Status: store.DeliveryPending, Topic: "wh.egress.acme.order.created", Partition: 3, Offset: 48211,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}
	delivered := pending
	delivered.Status, delivered.UpdatedAt = store.DeliveryDelivered, now.Add(12*time.Millisecond)
	delivered.Attempts = []store.Attempt{{N: 1, At: now.Add(2 * time.Millisecond), URL: "https://hooks.acme.example/whp/orders", StatusCode: 204,
		Latency: store.Duration(48700 * time.Microsecond), RequestHeaders: map[string]string{
			"content-type": "application/json", "user-agent": "whp-webhooks/1", "webhook-id": id,
			"webhook-signature": "v1,0j1h8NwWKYONN+EtCnEciQFvWmvE2THfHtnMVv6oKn8=", "webhook-timestamp": "1795948013"}}}
	event := store.Event{ID: eventID, SchemaID: pending.SchemaID, Key: "order-81723", AcceptedAt: now, Topic: "wh.ingress.orders.order.created",
		Partition: 1, Offset: 99120, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Data: []byte(`{"pad":"` + strings.Repeat("x", 1014) + `"}`),
		Routing: []store.Route{{SubscriptionID: pending.SubscriptionID, PartnerID: "acme", Matched: true}}, ExpiresAt: now.Add(30 * 24 * time.Hour)}
	ledger := store.Idempotency{Key: "delivered#" + eventID + "#" + id, Value: []byte(eventID), CreatedAt: now, ExpiresAt: now.Add(72 * time.Hour)}
	out := map[string]map[string]types.AttributeValue{}
	must := func(name string, it map[string]types.AttributeValue, e error) {
		if e != nil {
			t.Fatal(e)
		}
		out[name] = it
	}
	it, err := deliveryItem(pending)
	must("pending", it, err)
	it, err = deliveryItem(delivered)
	must("delivered", it, err)
	it, err = ledgerItem(ledger)
	must("ledger", it, err)
	it, err = item(event.ID, event, ttl(event.ExpiresAt))
	if err == nil {
		it[AttrSK] = str(eventSK)
	}
	must("event", it, err)
	return out
}

// tablesOnDynalite starts dynalite with the tables of environment env.
func tablesOnDynalite(t *testing.T, env string) (*dynamodb.Client, *Store) {
	t.Helper()
	db := dynalitetest.Start(t)
	if _, err := CreateTables(context.Background(), db, env); err != nil {
		t.Fatal(err)
	}
	return db, New(db, env)
}

// TestItemSizesOnDynalite: the write units itemBytes predicts for each
// sample item are what dynalite, which implements DynamoDB's item size
// rules, reports consuming in the table (it reports no GSI units; those
// are the model's).
func TestItemSizesOnDynalite(t *testing.T) {
	ctx := context.Background()
	db, s := tablesOnDynalite(t, "units")
	items := sampleItems(t)
	for _, name := range []string{"event", "pending", "delivered", "ledger"} { // delivered replaces pending
		table := store.TableEventDeliveryStatus
		if name == "ledger" {
			table = store.TableIdempotencyLedger
		}
		out, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table(table), Item: items[name],
			ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
		if err != nil {
			t.Fatal(err)
		}
		want := writeUnits(itemBytes(t, items[name]))
		if out.ConsumedCapacity == nil || out.ConsumedCapacity.CapacityUnits == nil || *out.ConsumedCapacity.CapacityUnits != float64(want) {
			t.Errorf("%s: dynalite consumed %+v, itemBytes predicts %d units", name, out.ConsumedCapacity, want)
		}
	}
}

// TestDeliveryItemsOfEarlierVersions: delivery items written before the
// doc left out the item's own attributes, and updated_key held the update
// time and both IDs, still read everywhere, and sort by their time beside
// the new ones in history.
func TestDeliveryItemsOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	db, s := tablesOnDynalite(t, "old")
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := store.Delivery{EventID: "e-old", ID: "d-old", SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme",
		SchemaID: "orders#order.created#1", Status: store.DeliveryDelivered, CreatedAt: now, UpdatedAt: now,
		Attempts: []store.Attempt{{N: 1, At: now, URL: "https://hooks.acme.example/in", StatusCode: 200}}}
	// As earlier versions wrote it: the whole delivery in the doc, the IDs
	// after updated_key's time.
	it, err := item(old.EventID, old, map[string]types.AttributeValue{AttrSK: str(deliverySK + old.ID), "partner_id": str(old.PartnerID),
		"schema_id": str(old.SchemaID), "updated_key": str(old.UpdatedAt.Format("2006-01-02T15:04:05.000000000Z") + "#" + old.EventID + "#" + old.ID)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table(store.TableEventDeliveryStatus), Item: it}); err != nil {
		t.Fatal(err)
	}
	newer, older := old, old
	newer.EventID, newer.ID, newer.CreatedAt, newer.UpdatedAt = "e-new", "d-new", now.Add(time.Second), now.Add(time.Second)
	older.EventID, older.ID, older.CreatedAt, older.UpdatedAt = "e-older", "d-older", now.Add(-time.Second), now.Add(-time.Second)
	if err := s.PutDeliveries(ctx, []store.Delivery{newer, older}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetDelivery(ctx, old.EventID, old.ID)
	if diff := cmp.Diff(old, got); err != nil || diff != "" {
		t.Errorf("GetDelivery: %v (-want +got):\n%s", err, diff)
	}
	st, err := s.GetDeliveryState(ctx, "delivered#x", old.EventID, old.ID)
	if diff := cmp.Diff(old, st.Status); err != nil || !st.Found || diff != "" {
		t.Errorf("GetDeliveryState: %v, found %v (-want +got):\n%s", err, st.Found, diff)
	}
	all, err := s.Deliveries(ctx, newer.EventID)
	if diff := cmp.Diff([]store.Delivery{newer}, all); err != nil || diff != "" {
		t.Errorf("Deliveries of a new item: %v (-want +got):\n%s", err, diff)
	}
	for name, page := range map[string]func(context.Context, string, store.Page) (store.DeliveryPage, error){
		old.PartnerID: s.DeliveriesByPartner, old.SchemaID: s.DeliveriesBySchema} {
		var seen []store.Delivery
		p := store.Page{Limit: 1}
		for {
			pg, err := page(ctx, name, p)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, pg.Deliveries...)
			if p.Cursor = pg.Next; p.Cursor == "" {
				break
			}
		}
		if diff := cmp.Diff([]store.Delivery{newer, old, older}, seen); diff != "" {
			t.Errorf("history of %s, a page at a time (-want +got):\n%s", name, diff)
		}
	}
}

// TestIndexDeliveriesOfEarlierVersions: items written before the status
// indexes lack their keys, and are in no status's history or count until
// IndexDeliveries gives them the keys — only those still in the status
// they were read in, and not yet indexed; a delivery redriven since it was
// read is left as it is.
func TestIndexDeliveriesOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	db, s := tablesOnDynalite(t, "old")
	now := time.Now().UTC().Truncate(time.Microsecond)
	var read []store.Delivery // as a read of the items returned them
	for i, status := range []string{store.DeliveryDeadLettered, store.DeliveryDeadLettered, store.DeliveryCancelled, store.DeliveryDeadLettered, store.DeliveryDelivered} {
		d := store.Delivery{EventID: fmt.Sprintf("e-%d", i), ID: fmt.Sprintf("d-%d", i), SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme",
			SchemaID: "orders#order.created#1", Status: status, Reason: "final failure: HTTP 400", CreatedAt: now.Add(time.Duration(i) * time.Second), UpdatedAt: now,
			Attempts: []store.Attempt{{N: 1, At: now, StatusCode: 400, ResponseExcerpt: `{"status":"dead_lettered"}`}}}
		read = append(read, d)
		if i == 3 {
			d.Status = store.DeliveryPending // redriven after the read
		}
		it, err := deliveryItem(d)
		if err != nil {
			t.Fatal(err)
		}
		delete(it, attrPartnerStatus) // as earlier versions wrote it
		delete(it, attrSchemaStatus)
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table(store.TableEventDeliveryStatus), Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	indexedNow := read[0]
	indexedNow.ID, indexedNow.EventID = "d-indexed", "e-indexed"
	if err := s.PutDeliveries(ctx, []store.Delivery{indexedNow}); err != nil {
		t.Fatal(err)
	}
	read = append(read, indexedNow)
	count := func(want int) {
		t.Helper()
		if c, err := s.CountDeliveries(ctx, store.DeliveryDeadLettered); err != nil || c["acme"] != want {
			t.Errorf("dead letters counted %v, %v; want %d of acme's", c, err, want)
		}
	}
	count(1)
	n, err := s.IndexDeliveries(ctx, read)
	if err != nil || n != 3 {
		t.Fatalf("IndexDeliveries = %d, %v; want 3 (two dead letters and the cancelled one)", n, err)
	}
	count(3)
	page, err := s.DeliveriesByPartner(ctx, "acme", store.Page{Status: store.DeliveryDeadLettered})
	if err != nil || len(page.Deliveries) != 3 || page.Deliveries[0].ID != "d-1" || page.Deliveries[0].Reason != "final failure: HTTP 400" {
		t.Errorf("acme's dead letters: %+v, %v", page.Deliveries, err)
	}
	if c, _ := s.CountDeliveries(ctx, store.DeliveryCancelled); c["acme"] != 1 {
		t.Errorf("cancelled counted %v", c)
	}
	if d, err := s.GetDelivery(ctx, "e-3", "d-3"); err != nil || d.Status != store.DeliveryPending {
		t.Errorf("the redriven delivery: %+v, %v", d, err)
	}
	if n, err := s.IndexDeliveries(ctx, read); err != nil || n != 0 {
		t.Errorf("IndexDeliveries again = %d, %v; want none", n, err)
	}
}
