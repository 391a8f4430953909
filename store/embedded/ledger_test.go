package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/whp-dev/whp/store"
)

// openTemp opens a store in a temporary dir, closed when the test ends.
func openTemp(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func sameLedger(t *testing.T, what string, got, want store.Idempotency) {
	t.Helper()
	if got.Key != want.Key || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.CreatedAt.Equal(want.CreatedAt) || got.Rev != want.Rev || !bytes.Equal(got.Value, want.Value) {
		t.Errorf("%s: got %+v, want %+v", what, got, want)
	}
}

// TestLedgerRow: a ledger row reads back as written, in the compact form
// and in the JSON form earlier versions wrote; a row of neither form is
// an error, not a panic.
func TestLedgerRow(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 26, 53, 550049100, time.UTC)
	for _, rec := range []store.Idempotency{
		{Key: "delivered#01a226d7-e76a-7cc5-b118-cf650af48b5f#04d9db63-e3bf-55d5-9ee8-0cc60d99df0d", Value: []byte("01a226d7-e76a-7cc5-b118-cf650af48b5f"), CreatedAt: now, ExpiresAt: now.Add(72 * time.Hour)},
		{Key: "ingest#producer#k1", Value: []byte(`{"id":"e1"}`), CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), Rev: 300},
		{Key: "no value, no times"},
		{Key: "local zone", CreatedAt: now.In(time.FixedZone("X", 3600)), ExpiresAt: now.Add(time.Nanosecond), Rev: 1<<62 + 1},
	} {
		row := appendLedgerRow(nil, rec)
		got, err := decodeLedgerRow([]byte(rec.Key), row)
		if err != nil {
			t.Fatalf("%q: %v", rec.Key, err)
		}
		sameLedger(t, rec.Key, got, rec)
		if exp, err := ledgerExpiry([]byte(rec.Key), row); err != nil || !exp.Equal(rec.ExpiresAt) {
			t.Errorf("%q: ledgerExpiry = %v, %v; want %v", rec.Key, exp, err, rec.ExpiresAt)
		}
		old, _ := json.Marshal(rec) // what earlier versions stored
		got, err = decodeLedgerRow([]byte(rec.Key), old)
		if err != nil {
			t.Fatalf("%q as JSON: %v", rec.Key, err)
		}
		sameLedger(t, rec.Key+" as JSON", got, rec)
		if exp, err := ledgerExpiry([]byte(rec.Key), old); err != nil || !exp.Equal(rec.ExpiresAt) {
			t.Errorf("%q as JSON: ledgerExpiry = %v, %v; want %v", rec.Key, exp, err, rec.ExpiresAt)
		}
	}
	good := appendLedgerRow(nil, store.Idempotency{Key: "k", ExpiresAt: now, Rev: 200})
	for _, bad := range [][]byte{nil, {}, {ledgerRowV1}, good[:ledgerHeader], good[:ledgerHeader+1], {0x02, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, []byte(`{"key":`)} {
		if _, err := decodeLedgerRow([]byte("k"), bad); err == nil {
			t.Errorf("decodeLedgerRow(%q) succeeded", bad)
		}
	}
}

// TestLedgerRowSize: a delivery's ledger row is a fifth of its JSON form.
func TestLedgerRowSize(t *testing.T) {
	now := time.Now()
	rec := store.Idempotency{Key: "delivered#01a226d7-e76a-7cc5-b118-cf650af48b5f#04d9db63-e3bf-55d5-9ee8-0cc60d99df0d",
		Value: []byte("01a226d7-e76a-7cc5-b118-cf650af48b5f"), CreatedAt: now, ExpiresAt: now.Add(72 * time.Hour)}
	old, _ := json.Marshal(rec)
	if n := len(appendLedgerRow(nil, rec)); n > 60 || n*4 > len(old) {
		t.Errorf("row of %d bytes, against %d in JSON", n, len(old))
	}
}

// TestLedgerRowsOfEarlierVersions: a data dir whose ledger rows are JSON
// (as earlier versions wrote them) serves them — lookups, the conditional
// write, the sweep — and a row rewritten takes the compact form.
func TestLedgerRowsOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	now := time.Now().UTC()
	live := store.Idempotency{Key: "delivered#e1#d1", Value: []byte("e1"), CreatedAt: now, ExpiresAt: now.Add(time.Hour), Rev: 2}
	expired := store.Idempotency{Key: "delivered#e0#d0", Value: []byte("e0"), CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, rec := range []store.Idempotency{live, expired} {
			v, _ := json.Marshal(rec)
			if err := tx.Bucket([]byte(bLedger)).Put([]byte(rec.Key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetIdempotency(ctx, live.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameLedger(t, "GetIdempotency", got, live)
	if st, err := s.GetDeliveryState(ctx, live.Key, "e1", "d1"); err != nil || !st.Delivered {
		t.Errorf("GetDeliveryState = %+v, %v; want delivered", st, err)
	}
	if _, err := s.PutIdempotencyIf(ctx, store.Idempotency{Key: live.Key, Value: []byte("x"), ExpiresAt: now.Add(time.Hour), Rev: 1}); err != store.ErrConflict {
		t.Errorf("PutIdempotencyIf with a stale Rev = %v, want ErrConflict", err)
	}
	if _, err := s.PutIdempotencyIf(ctx, store.Idempotency{Key: live.Key, Value: []byte("x"), ExpiresAt: now.Add(time.Hour), Rev: 2}); err != nil {
		t.Errorf("PutIdempotencyIf with the row's Rev: %v", err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bLedger)).Get([]byte(live.Key)); len(v) == 0 || v[0] != ledgerRowV1 {
			t.Errorf("rewritten row %q, want the compact form", v)
		}
		return nil
	})
	if n, err := s.Sweep(ctx); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v; want the expired JSON row deleted", n, err)
	}
}

// FuzzLedgerRow: any bytes decode or fail without a panic, and any row
// written reads back as written.
func FuzzLedgerRow(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), int64(1795948013000000000), int64(1795700000000000000), int64(3), []byte(`{"key":"k"}`))
	f.Add([]byte(""), []byte(nil), int64(0), int64(0), int64(0), []byte{ledgerRowV1, 0xff})
	f.Fuzz(func(t *testing.T, key, value []byte, exp, created, rev int64, raw []byte) {
		decodeLedgerRow(key, raw)
		ledgerExpiry(key, raw)
		if rev < 0 {
			rev = -rev
		}
		if rev < 0 {
			rev = 0
		}
		rec := store.Idempotency{Key: string(key), Value: value, ExpiresAt: fromUnixNano(exp), CreatedAt: fromUnixNano(created), Rev: rev}
		got, err := decodeLedgerRow(key, appendLedgerRow(nil, rec))
		if err != nil {
			t.Fatal(err)
		}
		sameLedger(t, "round trip", got, rec)
	})
}

// The ledger's pages stay at least 60 % used, whether one partner writes
// its deliveries' rows in order (fan-out 1) or sixteen write theirs
// behind one another, each among the keys the ones ahead of it wrote
// (fan-out 16). (With ledgerFill at 0.9, fan-out 16's pages were 48 %
// used; at bbolt's 0.5, fan-out 1's 60 %.)
func TestLedgerPagesFill(t *testing.T) {
	for _, fanout := range []int{1, 16} {
		s := openTemp(t)
		now := time.Now()
		const events = 3000
		ids := make([]string, events)
		for i := range ids {
			ids[i] = uuid.Must(uuid.NewV7()).String()
		}
		// Partner p is p×40 events behind the first; each writes in
		// batches of 50, as the dispatcher's collector does.
		var batch []store.Idempotency
		for step := 0; step < events+40*fanout; step++ {
			for p := range fanout {
				e := step - 40*p
				if e < 0 || e >= events {
					continue
				}
				batch = append(batch, store.Idempotency{Key: "delivered#" + ids[e] + "#" + uuid.NewString(), Value: []byte(ids[e]), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
				if len(batch) == 50 {
					if err := s.PutLedger(context.Background(), batch); err != nil {
						t.Fatal(err)
					}
					batch = batch[:0]
				}
			}
		}
		var st bolt.BucketStats
		s.db.View(func(tx *bolt.Tx) error { st = tx.Bucket([]byte(bLedger)).Stats(); return nil })
		if st.KeyN != events*fanout {
			t.Fatalf("fan-out %d: %d rows, want %d", fanout, st.KeyN, events*fanout)
		}
		used := float64(st.LeafInuse) / float64(st.LeafAlloc)
		t.Logf("fan-out %d: %.0f %% used", fanout, used*100)
		if used < 0.6 {
			t.Errorf("fan-out %d: the ledger's pages are %.0f %% used", fanout, used*100)
		}
	}
}
