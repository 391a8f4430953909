package embedded

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/whp-dev/whp/store"
)

// routedEvent is a 1 KiB event as the processor records it, routed to
// fanout subscriptions of the bench's catalog.
func routedEvent(now time.Time, fanout int) store.Event {
	e := store.Event{ID: "01a2287e-dd6c-77c6-aa7c-f42775b2fb08", SchemaID: "bench#thing.happened#1", AcceptedAt: now,
		Topic: "wh.ingress.bench.thing.happened", Partition: 2, Offset: 789, TraceID: "42bae06a28e75ce59bcb8548dc1557ab",
		Data: []byte(`{"id":"t353","pad":"` + strings.Repeat("status quantity pending ", 39) + `"}`), ExpiresAt: now.Add(72 * time.Hour)}
	for i := range fanout {
		p := fmt.Sprintf("p%d", i)
		e.Routing = append(e.Routing, store.Route{SubscriptionID: p + "#" + e.SchemaID, PartnerID: p, Matched: true})
	}
	return e
}

// TestEventRow: an event's row reads back as written; a malformed row is
// an error, not a panic.
func TestEventRow(t *testing.T) {
	now := time.Date(2026, 11, 29, 18, 8, 52, 588509929, time.UTC)
	unusual := routedEvent(now, 2)
	unusual.Key, unusual.IdempotencyKey, unusual.Partition, unusual.Offset = "ord_1", "idem-✓", -1, -1
	unusual.Routing = append(unusual.Routing,
		store.Route{SubscriptionID: "audit#orders#order.created#1", PartnerID: "audit", Matched: false, Reason: "filter: amount < 100"},
		store.Route{SubscriptionID: "p9", PartnerID: "p9", Matched: true},
		store.Route{SubscriptionID: "", PartnerID: "", Reason: "no partner"})
	sensitive := routedEvent(now, 1)
	sensitive.Data = nil
	omitted := routedEvent(now, 1) // one tenant's subscription took it, 967 others' were not listed
	omitted.RoutingOmitted = 967
	for _, e := range []store.Event{routedEvent(now, 16), unusual, sensitive, omitted, {ID: "e", Data: []byte{}}} {
		row := appendEventRow(nil, e)
		got, err := decodeEventRow(e.ID, row)
		if err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
		if diff := cmp.Diff(e, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", e.ID, diff)
		}
		if exp, err := eventExpiry(row); err != nil || !exp.Equal(e.ExpiresAt) {
			t.Errorf("%s: expiry %v, %v", e.ID, exp, err)
		}
	}
	good := appendEventRow(nil, unusual)
	withOmitted := appendEventRow(nil, omitted)
	for _, bad := range [][]byte{nil, {}, {eventRowV1}, good[:len(good)-1], append(good[:len(good):len(good)], 0),
		append(withOmitted[:len(withOmitted):len(withOmitted)], 1), // a byte after the omitted count
		{0x02, 0}, []byte(`{"id":"e"}`),
		{eventRowV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},    // data longer than the row
		{eventRowV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, // 2³² routes
		{eventRowV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 8, 0},                      // a route's unknown flag
	} {
		if _, err := decodeEventRow("e", bad); err == nil {
			t.Errorf("decodeEventRow(%q) succeeded", bad)
		}
	}
}

// TestEventRowSize: a 1 KiB event routed to sixteen subscriptions takes
// its data and a little more, under two fifths of its JSON (≈ 2,900
// bytes, the data in base64 and each route in full) — and, its data
// text of words drawn at random (as the bench's), under three fifths of
// its data (≈ 0.53: S2 compresses an event alone about 1.9×).
func TestEventRowSize(t *testing.T) {
	e := routedEvent(time.Now(), 16)
	old, _ := json.Marshal(e)
	if n := len(appendEventRow(nil, e)); n > len(e.Data)+200 || n*5 > len(old)*2 {
		t.Errorf("row of %d bytes for %d bytes of data, against %d in JSON", n, len(e.Data), len(old))
	}
	text := wordText(1000)
	e.Routing = e.Routing[:1]
	e.Data = []byte(`{"id":"t353","pad":"` + string(text) + `"}`)
	if n := len(appendEventRow(nil, e)); n*5 > len(e.Data)*3 {
		t.Errorf("row of %d bytes for %d bytes of text", n, len(e.Data))
	}
}

// wordText is about n bytes of words drawn at random from a small
// vocabulary, as the bench pads its events: text that compresses as JSON
// does, not as a run of one letter.
func wordText(n int) []byte {
	words := strings.Fields("order shipped invoice paid customer account created updated refund warehouse parcel carrier tracking address street city postal amount currency total tax discount item quantity price")
	rng := rand.New(rand.NewPCG(3, 4))
	var text []byte
	for len(text) < n {
		text = append(text, words[rng.IntN(len(words))]...)
		text = append(text, ' ')
	}
	return text
}

// TestEventRowV1: rows written before the data was compressed read as
// they were written (the bytes below are what that version wrote).
func TestEventRowV1(t *testing.T) {
	row, _ := hex.DecodeString("01d2eb8ceeffebccec31166f7264657273236f726465722e637265617465642331056f72645f3100d2ebc7e2b99acbec311f77682e696e67726573732e6f72646572732e6f726465722e63726561746564045200247b226f726465725f6964223a226f72645f31222c22616d6f756e74223a3132392e357d01030461636d65")
	at := time.Date(2026, 11, 29, 18, 8, 52, 588509929, time.UTC)
	want := store.Event{ID: "e", SchemaID: "orders#order.created#1", Key: "ord_1", AcceptedAt: at, Topic: "wh.ingress.orders.order.created", Partition: 2, Offset: 41,
		Data: []byte(`{"order_id":"ord_1","amount":129.5}`), ExpiresAt: at.Add(time.Hour),
		Routing: []store.Route{{SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme", Matched: true}}}
	got, err := decodeEventRow("e", row)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("V1 row (-want +got):\n%s", diff)
	}
	if exp, err := eventExpiry(row); err != nil || !exp.Equal(want.ExpiresAt) {
		t.Errorf("V1 expiry %v, %v", exp, err)
	}
	// The same event written now: V2, read back the same.
	v2 := appendEventRow(nil, want)
	if got, err := decodeEventRow("e", v2); v2[0] != eventRowV2 || err != nil || !cmp.Equal(want, got) {
		t.Errorf("written as version %d, read back %+v, %v", v2[0], got, err)
	}
	// Its data corrupted: an error, not a panic.
	bad := bytes.Clone(row)
	bad[0] = eventRowV2
	if _, err := decodeEventRow("e", bad); err == nil {
		t.Error("a V2 row whose data is not S2 decoded")
	}
}

// TestEventRowsOfEarlierVersions: a data dir whose event rows are JSON in
// event_delivery_status's bucket, as earlier versions wrote them, has
// them moved to the events' bucket in the compact form when it opens —
// every one, and nothing else, a transaction at a time — and serves
// them; the sweep deletes them once they expire. Opening it again leaves
// it be.
func TestEventRowsOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	old := routedEvent(now, 2)
	other := routedEvent(now, 1)
	other.ID, other.ExpiresAt = "01a2287e-dd6c-77c6-aa7c-f42775b2fb09", now.Add(96*time.Hour)
	d := deliveredRow(now)
	d.EventID = old.ID
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, e := range []store.Event{old, other} {
			v, _ := json.Marshal(e)
			if err := tx.Bucket([]byte(bStatus)).Put([]byte(e.ID+sep+eventSortKey), v); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte(bMeta)).Delete([]byte(metaEventsKey)); err != nil {
			return err
		}
		return putDelivery(tx, d, false)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// One row a transaction: the migration crosses its batches' bounds.
	migrateInBatchesOf(t, 1)
	for range 2 {
		if s, err = Open(dir); err != nil {
			t.Fatal(err)
		}
		for _, want := range []store.Event{old, other} {
			got, err := s.GetEvent(ctx, want.ID)
			if diff := cmp.Diff(want, got); err != nil || diff != "" {
				t.Errorf("GetEvent(%s): %v (-want +got):\n%s", want.ID, err, diff)
			}
		}
		if got, err := s.GetDelivery(ctx, d.EventID, d.ID); err != nil || got.Status != d.Status {
			t.Errorf("the event's delivery: %+v, %v", got, err)
		}
		s.db.View(func(tx *bolt.Tx) error {
			if n := tx.Bucket([]byte(bStatus)).Stats().KeyN; n != 1 {
				t.Errorf("event_delivery_status holds %d rows, want the delivery's alone", n)
			}
			return nil
		})
		s.Close()
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.now = func() time.Time { return now.Add(80 * time.Hour) }
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetEvent(ctx, old.ID); err != store.ErrNotFound {
		t.Errorf("the expired event: %v, want it swept", err)
	}
	if _, err := s.GetEvent(ctx, other.ID); err != nil {
		t.Errorf("the event not expired: %v", err)
	}
}

// migrateInBatchesOf has the migrations move n rows a transaction for the
// rest of the test.
func migrateInBatchesOf(t *testing.T, n int) {
	batch := eventsMigrationBatch
	eventsMigrationBatch = n
	t.Cleanup(func() { eventsMigrationBatch = batch })
}

// TestEventsOfEarlierVersionsFile: a data dir whose events are in
// store.db's bucket, as versions before events.db kept them, has them
// moved to events.db when it opens, a transaction at a time — one of them
// copied already by an open that stopped between the copy and the
// delete — and the bucket dropped from store.db; each is served once,
// and opening it again leaves it be. New events are written to events.db
// alone.
func TestEventsOfEarlierVersionsFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var want []store.Event
	for i := range 5 {
		e := routedEvent(now, 1+i%2)
		e.ID = uuid.Must(uuid.NewV7()).String()
		want = append(want, e)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte(bEvents))
		if err != nil {
			return err
		}
		for _, e := range want {
			if err := b.Put([]byte(e.ID), appendEventRow(nil, e)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bMeta)).Put([]byte(metaEventsKey), []byte(eventsOwnBucket))
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first event copied to events.db already, not yet deleted.
	if err := s.CreateEvents(ctx, want[:1]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	migrateInBatchesOf(t, 2)
	for range 2 {
		if s, err = Open(dir); err != nil {
			t.Fatal(err)
		}
		for _, e := range want {
			got, err := s.GetEvent(ctx, e.ID)
			if diff := cmp.Diff(e, got); err != nil || diff != "" {
				t.Errorf("GetEvent(%s): %v (-want +got):\n%s", e.ID, err, diff)
			}
		}
		s.db.View(func(tx *bolt.Tx) error {
			if tx.Bucket([]byte(bEvents)) != nil {
				t.Errorf("store.db still has a bucket %s", bEvents)
			}
			if m := tx.Bucket([]byte(bMeta)).Get([]byte(metaEventsKey)); string(m) != eventsOwnFile {
				t.Errorf("store.db's %s is %q, want %q", metaEventsKey, m, eventsOwnFile)
			}
			return nil
		})
		s.events.View(func(tx *bolt.Tx) error {
			if n := tx.Bucket([]byte(bEvents)).Stats().KeyN; n != len(want) {
				t.Errorf("events.db holds %d events, want %d", n, len(want))
			}
			return nil
		})
		s.Close()
	}
	// A new event: in events.db, and store.db gains no bucket for it.
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := routedEvent(now, 1)
	e.ID = uuid.Must(uuid.NewV7()).String()
	if err := s.CreateEvents(ctx, []store.Event{e}); err != nil {
		t.Fatal(err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bEvents)) != nil {
			t.Error("a new event made store.db a bucket of events")
		}
		return nil
	})
	s.events.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bEvents)).Get([]byte(e.ID)) == nil {
			t.Error("the new event is not in events.db")
		}
		return nil
	})
}

// The events' pages stay at least 80 % used as the processor writes them:
// a batch at a time, each of events from a few partitions, so nearly but
// not quite in order. (Beside their deliveries in one bucket they were
// 40–50 % used.)
func TestEventPagesFill(t *testing.T) {
	s := openTemp(t)
	now := time.Now()
	var pending []store.Event
	for i := range 3000 {
		e := routedEvent(now, 1)
		e.ID = uuid.Must(uuid.NewV7()).String()
		pending = append(pending, e)
		// Three partitions' batches of 20, one of them written with the
		// next round's, and each batch in no order.
		if i%60 == 59 || i == 2999 {
			n := len(pending)
			if i != 2999 {
				n -= 20
			}
			slices.Reverse(pending[:n])
			if err := s.CreateEvents(context.Background(), pending[:n]); err != nil {
				t.Fatal(err)
			}
			pending = slices.Clone(pending[n:])
		}
	}
	var st bolt.BucketStats
	s.events.View(func(tx *bolt.Tx) error { st = tx.Bucket([]byte(bEvents)).Stats(); return nil })
	if st.KeyN != 3000 {
		t.Fatalf("%d events, want 3000", st.KeyN)
	}
	used := float64(st.LeafInuse) / float64(st.LeafAlloc)
	t.Logf("%.0f %% used", used*100)
	if used < 0.8 {
		t.Errorf("the events' pages are %.0f %% used", used*100)
	}
}

// FuzzEventRow: any bytes decode or fail without a panic, and any row
// written reads back as written.
func FuzzEventRow(f *testing.F) {
	now := time.Date(2026, 11, 29, 18, 8, 52, 588509929, time.UTC)
	f.Add("e", "bench#thing.happened#1", "p0", "p0#bench#thing.happened#1", "", int64(3), int64(now.UnixNano()), []byte("{}"), appendEventRow(nil, routedEvent(now, 2)))
	f.Add("", "", "", "", "why", int64(0), int64(0), []byte(nil), []byte{eventRowV1, 0xff})
	f.Fuzz(func(t *testing.T, id, schema, partner, sub, reason string, n, at int64, data, raw []byte) {
		decodeEventRow(id, raw)
		eventExpiry(raw)
		e := store.Event{ID: id, SchemaID: schema, Key: reason, IdempotencyKey: sub, AcceptedAt: fromUnixNano(at), Topic: partner,
			Partition: int32(n), Offset: n, TraceID: schema, Data: data, ExpiresAt: fromUnixNano(-at),
			Routing: []store.Route{{SubscriptionID: sub, PartnerID: partner, Matched: n%2 == 0, Reason: reason}, {SubscriptionID: partner + "#" + schema, PartnerID: partner}}}
		got, err := decodeEventRow(id, appendEventRow(nil, e))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(e, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

// BenchmarkEventRow: an event's row, written once by the processor's
// history write and read by GET /v1/events/{id} — a 1 KiB event of
// words, routed to one subscription.
func BenchmarkEventRow(b *testing.B) {
	text := wordText(1000)
	e := routedEvent(time.Now(), 1)
	e.Data = []byte(`{"id":"t353","pad":"` + string(text) + `"}`)
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			buf = appendEventRow(buf[:0], e)
		}
		b.ReportMetric(float64(len(buf)), "bytes/row")
	})
	row := appendEventRow(nil, e)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEventRow(e.ID, row); err != nil {
				b.Fatal(err)
			}
		}
	})
}
