package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/whp-dev/whp/store"
)

// deliveredRow is a delivery as the dispatcher records it after one
// successful attempt at fan-out.
func deliveredRow(now time.Time) store.Delivery {
	return store.Delivery{EventID: "01a226d7-e76a-7cc5-b118-cf650af48b5f", ID: "04d9db63-e3bf-55d5-9ee8-0cc60d99df0d",
		SubscriptionID: "p7#bench#thing.happened#1", PartnerID: "p7", SchemaID: "bench#thing.happened#1", Status: store.DeliveryDelivered,
		Topic: "wh.egress.p7.thing.happened", Partition: 3, Offset: 48211, CreatedAt: now, UpdatedAt: now.Add(12 * time.Millisecond),
		ExpiresAt: now.Add(30 * 24 * time.Hour),
		Attempts: []store.Attempt{{N: 1, At: now.Add(2 * time.Millisecond), URL: "http://127.0.0.1:46741/p7", StatusCode: 204,
			Latency: store.Duration(9700 * time.Microsecond), RequestHeaders: map[string]string{
				"content-type": "application/json", "user-agent": "whp-webhooks/1", "webhook-id": "04d9db63-e3bf-55d5-9ee8-0cc60d99df0d",
				"webhook-signature": "v1,0j1h8NwWKYONN+EtCnEciQFvWmvE2THfHtnMVv6oKn8=", "webhook-timestamp": "1795948013"}}}}
}

// TestDeliveryRow: a delivery row reads back as written, in the compact
// form and in the JSON form earlier versions wrote; a row of neither form
// is an error, not a panic.
func TestDeliveryRow(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 26, 53, 550049100, time.UTC)
	retried := deliveredRow(now)
	retried.Status, retried.Replay, retried.NextAttemptAt = store.DeliveryRetrying, "rp-1", now.Add(time.Minute)
	retried.Attempts = append(retried.Attempts,
		store.Attempt{N: 2, At: now.Add(time.Second), URL: "https://hooks.example.com/in?x=1", Error: "timed out", Latency: store.Duration(10 * time.Second)},
		store.Attempt{N: 3, At: now.In(time.FixedZone("X", 3600)), StatusCode: 503, ResponseExcerpt: "busy ✓",
			RequestHeaders: map[string]string{"x-api-key": "[redacted]", "authorization": "[redacted]", "": "empty name"}})
	dead := retried
	dead.Status, dead.NextAttemptAt, dead.Reason = store.DeliveryDeadLettered, time.Time{}, "attempts exhausted after 3 (last: 503 Service Unavailable)"
	for _, d := range []store.Delivery{
		deliveredRow(now),
		retried,
		dead,
		{EventID: "e", ID: "d", Status: store.DeliveryPending, Partition: -1, Offset: -1},
		{EventID: "e\x00x", ID: "", PartnerID: "p"}, // a separator inside the event ID is its own
	} {
		key := []byte(deliveryKey(d.EventID, d.ID))
		got, err := decodeDeliveryRow(key, appendDeliveryRow(nil, d))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", key, diff)
		}
		idx, err := deliveryIndexFields(key, appendDeliveryRow(nil, d))
		if err != nil || idx.EventID != d.EventID || idx.ID != d.ID || idx.PartnerID != d.PartnerID || idx.SchemaID != d.SchemaID || !idx.UpdatedAt.Equal(d.UpdatedAt) || !idx.CreatedAt.Equal(d.CreatedAt) {
			t.Errorf("%q: index fields %+v, %v", key, idx, err)
		}
		old, _ := json.Marshal(d) // what earlier versions stored
		got, err = decodeDeliveryRow(key, old)
		if err != nil {
			t.Fatalf("%q as JSON: %v", key, err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("%q as JSON (-want +got):\n%s", key, diff)
		}
	}
	key := []byte(deliveryKey("e", "d"))
	good := appendDeliveryRow(nil, retried)
	for _, bad := range [][]byte{nil, {}, {deliveryRowV1}, good[:len(good)-1], append(good[:len(good):len(good)], 0),
		{0x03, 0, 0, 0}, []byte(`{"event_id":`),
		{deliveryRowV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, // 2³² attempts
	} {
		if _, err := decodeDeliveryRow(key, bad); err == nil {
			t.Errorf("decodeDeliveryRow(%q) succeeded", bad)
		}
	}
	if _, err := decodeDeliveryRow([]byte("e\x00EVENT"), good); err == nil {
		t.Error("a row under an event's key decoded as a delivery")
	}
	// The first compact form: the second's without Reason (an empty one
	// is its last byte, a zero length).
	v1 := append([]byte{deliveryRowV1}, good[1:len(good)-1]...)
	if got, err := decodeDeliveryRow(key, v1); err != nil || got.Reason != "" || got.Status != retried.Status || len(got.Attempts) != 3 {
		t.Errorf("a row of the first compact form: %+v, %v", got, err)
	}
	if _, err := decodeDeliveryRow(key, append(v1, 0)); err == nil {
		t.Error("a first-form row with a byte after its attempts decoded")
	}
}

// TestDeliveryRowSize: a delivered row is under two fifths of its JSON.
func TestDeliveryRowSize(t *testing.T) {
	d := deliveredRow(time.Now())
	old, _ := json.Marshal(d)
	if n := len(appendDeliveryRow(nil, d)); n > 320 || n*5 > len(old)*2 {
		t.Errorf("row of %d bytes, against %d in JSON", n, len(old))
	}
}

// TestDeliveryRowsOfEarlierVersions: a data dir whose delivery rows are
// JSON (as earlier versions wrote them) serves them — reads, history by
// partner and schema — and an update rewrites the row in the compact form
// and moves its index entries.
func TestDeliveryRowsOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	now := time.Now().UTC()
	d := deliveredRow(now)
	d.Status, d.Attempts = store.DeliveryPending, nil
	err := s.db.Update(func(tx *bolt.Tx) error {
		v, _ := json.Marshal(d)
		if err := tx.Bucket([]byte(bStatus)).Put([]byte(deliveryKey(d.EventID, d.ID)), v); err != nil {
			return err
		}
		return indexDelivery(tx, d, true)
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, want store.Delivery) {
		t.Helper()
		got, err := s.GetDelivery(ctx, want.EventID, want.ID)
		if diff := cmp.Diff(want, got); err != nil || diff != "" {
			t.Errorf("%s: GetDelivery: %v (-want +got):\n%s", what, err, diff)
		}
		all, err := s.Deliveries(ctx, want.EventID)
		if diff := cmp.Diff([]store.Delivery{want}, all); err != nil || diff != "" {
			t.Errorf("%s: Deliveries: %v (-want +got):\n%s", what, err, diff)
		}
		for name, page := range map[string]func(context.Context, string, store.Page) (store.DeliveryPage, error){
			want.PartnerID: s.DeliveriesByPartner, want.SchemaID: s.DeliveriesBySchema} {
			p, err := page(ctx, name, store.Page{})
			if diff := cmp.Diff([]store.Delivery{want}, p.Deliveries); err != nil || diff != "" {
				t.Errorf("%s: history of %s: %v (-want +got):\n%s", what, name, err, diff)
			}
		}
		if st, err := s.GetDeliveryState(ctx, "delivered#"+want.ID, want.EventID, want.ID); err != nil || !st.Found || st.Status.Status != want.Status {
			t.Errorf("%s: GetDeliveryState = %+v, %v", what, st, err)
		}
	}
	check("JSON row", d)
	done := deliveredRow(now)
	if err := s.PutDeliveries(ctx, []store.Delivery{done}); err != nil {
		t.Fatal(err)
	}
	check("rewritten row", done) // one index entry each: the JSON row's were removed
	s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bStatus)).Get([]byte(deliveryKey(d.EventID, d.ID))); len(v) == 0 || v[0] != deliveryRowV2 {
			t.Errorf("rewritten row %q, want the compact form", v)
		}
		return nil
	})
}

// FuzzDeliveryRow: any bytes decode or fail without a panic, and any row
// written reads back as written.
func FuzzDeliveryRow(f *testing.F) {
	now := time.Date(2026, 11, 29, 10, 26, 53, 550049100, time.UTC)
	f.Add("e", "d", "p", "running", "https://x/y", "webhook-id", "v", int64(3), int64(now.UnixNano()), appendDeliveryRow(nil, deliveredRow(now)))
	f.Add("", "", "", "", "", "", "", int64(0), int64(0), []byte{deliveryRowV1, 0xff})
	f.Fuzz(func(t *testing.T, eventID, id, partner, status, url, header, value string, n, at int64, raw []byte) {
		decodeDeliveryRow([]byte(deliveryKey(eventID, id)), raw)
		deliveryIndexFields([]byte(deliveryKey(eventID, id)), raw)
		d := store.Delivery{EventID: eventID, ID: id, PartnerID: partner, SchemaID: status + url, Status: status, Replay: header,
			Reason: value + status, Topic: value, Partition: int32(n), Offset: n, CreatedAt: fromUnixNano(at), UpdatedAt: fromUnixNano(-at), NextAttemptAt: fromUnixNano(n),
			Attempts: []store.Attempt{{N: int(n), At: fromUnixNano(at), URL: url, StatusCode: int(-n), Latency: store.Duration(n), Error: value,
				RequestHeaders: map[string]string{header: value, "webhook-id": id}, ResponseExcerpt: status}}}
		if strings.Index(deliveryKey(eventID, id), sep+deliverySortKey) < len(eventID) {
			return // the key names another event: not a key whp writes
		}
		got, err := decodeDeliveryRow([]byte(deliveryKey(eventID, id)), appendDeliveryRow(nil, d))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

// TestHistoryIndexOfEarlierVersions: a data dir whose history index is
// keyed by update time, as earlier versions kept it, has it rebuilt by
// creation time when opened — every delivery once, in creation order —
// and opening it again leaves it be.
func TestHistoryIndexOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var ds []store.Delivery
	for i, updated := range []time.Duration{3, 1, 2} { // updated in another order than created
		d := deliveredRow(now.Add(time.Duration(i) * time.Second))
		d.EventID, d.ID = fmt.Sprintf("e%d", i), fmt.Sprintf("d%d", i)
		d.UpdatedAt = now.Add(updated * time.Minute)
		ds = append(ds, d)
	}
	if err := s.PutDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { // as an earlier version left it
		for _, b := range []string{bStatusPartner, bStatusSchema} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		for _, d := range ds {
			if err := index(tx, bStatusPartner, d.PartnerID, newestFirst(d.UpdatedAt), d.EventID, d.ID); err != nil {
				return err
			}
			if err := index(tx, bStatusSchema, d.SchemaID, newestFirst(d.UpdatedAt), d.EventID, d.ID); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bMeta)).Delete([]byte(metaHistoryKey))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := []store.Delivery{ds[2], ds[1], ds[0]}
	for _, reopen := range []string{"rebuilt", "as it was"} {
		if s, err = Open(dir); err != nil {
			t.Fatal(err)
		}
		for name, page := range map[string]func(context.Context, string, store.Page) (store.DeliveryPage, error){
			ds[0].PartnerID: s.DeliveriesByPartner, ds[0].SchemaID: s.DeliveriesBySchema} {
			p, err := page(ctx, name, store.Page{})
			if diff := cmp.Diff(want, p.Deliveries); err != nil || diff != "" {
				t.Errorf("%s: history of %s: %v (-want +got):\n%s", reopen, name, err, diff)
			}
		}
		s.Close()
	}
}

// A store written before the status index has it built when opened, once.
func TestStatusIndexOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var ds []store.Delivery
	for i, status := range []string{store.DeliveryDeadLettered, store.DeliveryDelivered, store.DeliveryDeadLettered, store.DeliveryRetrying} {
		d := deliveredRow(now.Add(time.Duration(i) * time.Second))
		d.EventID, d.ID, d.Status = fmt.Sprintf("e%d", i), fmt.Sprintf("d%d", i), status
		ds = append(ds, d)
	}
	if err := s.PutDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { // as an earlier version left it
		for _, b := range []string{bStatusPartnerState, bStatusSchemaState} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bMeta)).Delete([]byte(metaStatusKey))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, reopen := range []string{"built", "as it was"} {
		if s, err = Open(dir); err != nil {
			t.Fatal(err)
		}
		for status, want := range map[string][]store.Delivery{store.DeliveryDeadLettered: {ds[2], ds[0]}, store.DeliveryRetrying: {ds[3]}} {
			for name, page := range map[string]func(context.Context, string, store.Page) (store.DeliveryPage, error){
				ds[0].PartnerID: s.DeliveriesByPartner, ds[0].SchemaID: s.DeliveriesBySchema} {
				p, err := page(ctx, name, store.Page{Status: status, Limit: 1})
				got := p.Deliveries
				if err == nil && p.Next != "" {
					var more store.DeliveryPage
					more, err = page(ctx, name, store.Page{Status: status, Cursor: p.Next})
					got = append(got, more.Deliveries...)
				}
				if diff := cmp.Diff(want, got); err != nil || diff != "" {
					t.Errorf("%s: %s history of %s: %v (-want +got):\n%s", reopen, status, name, err, diff)
				}
			}
		}
		s.Close()
	}
}

// TestHistoryCursorPastAGoneEntry: a page's cursor is the last index key
// it returned; when that entry is gone by the next page (its delivery
// re-created under another partner), history goes on from the entry
// before where it was, skipping nothing.
func TestHistoryCursorPastAGoneEntry(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	now := time.Now().UTC()
	var ds []store.Delivery
	for i := range 5 {
		d := deliveredRow(now.Add(time.Duration(i) * time.Second))
		d.EventID, d.ID = fmt.Sprintf("e%d", i), "d"
		ds = append(ds, d)
	}
	if err := s.CreateDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	first, err := s.DeliveriesByPartner(ctx, ds[0].PartnerID, store.Page{Limit: 2})
	if err != nil || len(first.Deliveries) != 2 || first.Next == "" {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	gone := ds[3] // the first page's last
	if err := s.db.Update(func(tx *bolt.Tx) error { return indexDelivery(tx, gone, false) }); err != nil {
		t.Fatal(err)
	}
	rest, err := s.DeliveriesByPartner(ctx, ds[0].PartnerID, store.Page{Limit: 10, Cursor: first.Next})
	if diff := cmp.Diff([]store.Delivery{ds[2], ds[1], ds[0]}, rest.Deliveries); err != nil || diff != "" {
		t.Errorf("after a gone cursor entry: %v (-want +got):\n%s", err, diff)
	}
}
