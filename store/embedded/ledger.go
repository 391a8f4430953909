package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/store"
)

// The idempotency_ledger bucket holds one row per delivery made (and per
// producer Idempotency-Key), so its rows are written in a compact binary
// form rather than JSON: the key is the bbolt key and not repeated, the
// times are fixed-width, and the expiry sits at a fixed offset for Sweep,
// which reads every row. A delivery's row went from ≈ 250 bytes of JSON
// (its value base64-encoded, the key twice) to ≈ 55 (TestLedgerRowSize);
// with ledgerFill, the ledger's pages for a fan-out-16 burst from 32 MB
// to 7 in round 5's replay of its writes (docs/benchmarks.md, rounds 5
// and 7).
//
//	byte 0      ledgerRowV1
//	bytes 1–8   ExpiresAt, Unix nanoseconds, big-endian (0: the zero time)
//	bytes 9–16  CreatedAt, likewise
//	then        Rev, a uvarint
//	then        Value, to the end
//
// Rows written before this form are JSON objects, which start with '{';
// they are read as they are and rewritten in this form on their next
// write, so a data dir from an earlier version opens unchanged (an earlier
// version cannot read rows written by this one).
const ledgerRowV1 = 0x01

// ledgerHeader is the marker and the two times. (The Unix epoch itself
// reads back as the zero time; no ledger row is written in 1970.)
const ledgerHeader = 1 + 8 + 8

var errLedgerRow = errors.New("idempotency_ledger row: unknown format")

func appendLedgerRow(b []byte, rec store.Idempotency) []byte {
	b = append(b, ledgerRowV1)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(rec.ExpiresAt)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(rec.CreatedAt)))
	b = binary.AppendUvarint(b, uint64(rec.Rev))
	return append(b, rec.Value...)
}

// decodeLedgerRow decodes a row of either form; key is its bbolt key.
func decodeLedgerRow(key, v []byte) (store.Idempotency, error) {
	var rec store.Idempotency
	switch {
	case len(v) > 0 && v[0] == '{':
		if err := fastjson.Unmarshal(v, &rec); err != nil {
			return store.Idempotency{}, fmt.Errorf("idempotency_ledger row: %w", err)
		}
		return rec, nil
	case len(v) < ledgerHeader+1 || v[0] != ledgerRowV1:
		return store.Idempotency{}, errLedgerRow
	}
	rev, n := binary.Uvarint(v[ledgerHeader:])
	if n <= 0 {
		return store.Idempotency{}, errLedgerRow
	}
	rec.Key = string(key)
	rec.ExpiresAt = fromUnixNano(int64(binary.BigEndian.Uint64(v[1:9])))
	rec.CreatedAt = fromUnixNano(int64(binary.BigEndian.Uint64(v[9:17])))
	rec.Rev = int64(rev)
	if rest := v[ledgerHeader+n:]; len(rest) > 0 {
		rec.Value = append([]byte(nil), rest...) // v belongs to bbolt's mmap
	}
	return rec, nil
}

// ledgerExpiry is a row's ExpiresAt without decoding the rest.
func ledgerExpiry(key, v []byte) (time.Time, error) {
	if len(v) >= ledgerHeader && v[0] == ledgerRowV1 {
		return fromUnixNano(int64(binary.BigEndian.Uint64(v[1:9]))), nil
	}
	rec, err := decodeLedgerRow(key, v)
	return rec.ExpiresAt, err
}

// unixNano is t in Unix nanoseconds, 0 for the zero time. Times beyond
// what int64 nanoseconds hold (before 1678, after 2262) are clamped: a
// ledger row's times are an expiry hours or days ahead and a creation
// time now.
func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minNano):
		return minNano.UnixNano()
	case t.After(maxNano):
		return maxNano.UnixNano()
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

var (
	minNano = time.Unix(0, -1<<63+1).UTC()
	maxNano = time.Unix(0, 1<<63-1).UTC()
)

func putLedger(tx *bolt.Tx, rec store.Idempotency) error {
	b := tx.Bucket([]byte(bLedger))
	b.FillPercent = ledgerFill
	return b.Put([]byte(rec.Key), appendLedgerRow(make([]byte, 0, ledgerHeader+2+len(rec.Value)), rec))
}

// ledgerFill is how full bbolt fills the ledger's pages when it splits
// them (its default: half). A delivery's key starts with its event's ID,
// a UUIDv7, so one partner's deliveries arrive in nearly ascending order
// and a page split at the end is rarely filled again: a fuller split
// suits them. But the partners of a fan-out deliver behind one another,
// each inserting among the keys the ones ahead of it wrote, and there a
// full split page splits again at the next insert. Measured (`whp bench
// --data-dir`, then bbolt's bucket statistics; share of the leaves' bytes
// in use): at fan-out 1, 0.9 70 %, 0.7 67 %, 0.5 60 %; at fan-out 16,
// 0.9 48 %, 0.7 65 %, 0.5 65 %. (Producers' Idempotency-Keys arrive in
// no order; there is one of those per event at most, against one
// delivery row per subscription.)
const ledgerFill = 0.7

func getLedger(tx *bolt.Tx, key string) (store.Idempotency, error) {
	v := tx.Bucket([]byte(bLedger)).Get([]byte(key))
	if v == nil {
		return store.Idempotency{}, store.ErrNotFound
	}
	return decodeLedgerRow([]byte(key), v)
}

// getLiveLedger is getLedger for an item that has not expired at now: an
// expired one is ErrNotFound, as the DynamoDB store's conditions treat it.
func getLiveLedger(tx *bolt.Tx, key string, now time.Time) (store.Idempotency, error) {
	rec, err := getLedger(tx, key)
	if err == nil && !rec.ExpiresAt.After(now) {
		return store.Idempotency{}, store.ErrNotFound
	}
	return rec, err
}
