package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/store"
)

// A delivery's row in event_delivery_status is written once when the
// delivery is created and again after every attempt, and the burst of a
// busy partner is tens of thousands of them: the largest part of the store
// file, and so of what the store's memory map makes resident. They are
// written in a compact binary form rather than JSON: the event and
// delivery IDs are the bbolt key's and not repeated, there are no field
// names, times are varints of Unix nanoseconds, and the header names every
// attempt records are a byte each. A delivered row with one attempt went
// from ≈ 790 bytes of JSON to ≈ 300 (TestDeliveryRowSize). Events, which
// share the bucket, have a compact form of their own (eventrow.go).
//
//	byte 0   deliveryRowV2 (deliveryRowV1: the same without Reason)
//	then     PartnerID, SchemaID, UpdatedAt, SubscriptionID, Status,
//	         Replay, Topic, Partition, Offset, CreatedAt, ExpiresAt,
//	         NextAttemptAt, the attempts' count, then each attempt:
//	         N, At, URL, StatusCode, Latency, Error, the headers' count,
//	         each header's name and value, ResponseExcerpt;
//	         then Reason
//
// A string is a uvarint length and its bytes; an integer a varint; a time
// a varint of Unix nanoseconds (0: the zero time; read back in UTC); a
// header name a uvarint, 0 followed by the name as a string or i for
// headerNames[i-1]. (deliveryIndexFields reads the fields up to
// ExpiresAt only.)
//
// Rows written before this form are JSON objects, which start with '{';
// they are read as they are and rewritten in this form on their next
// write (an earlier version cannot read rows written by this one). Rows
// of the first compact form, deliveryRowV1, which had no Reason, are read
// with none, and rewritten in the second on their next write.
const (
	deliveryRowV1 = 0x01
	deliveryRowV2 = 0x02
)

// headerNames are the request headers every attempt records. Append only:
// a row refers to a name by its position.
var headerNames = []string{"content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature", "authorization"}

var errDeliveryRow = errors.New("event_delivery_status row: malformed")

func appendDeliveryRow(b []byte, d store.Delivery) []byte {
	b = append(b, deliveryRowV2)
	b = appendString(b, d.PartnerID)
	b = appendString(b, d.SchemaID)
	b = binary.AppendVarint(b, unixNano(d.UpdatedAt))
	b = appendString(b, d.SubscriptionID)
	b = appendString(b, d.Status)
	b = appendString(b, d.Replay)
	b = appendString(b, d.Topic)
	b = binary.AppendVarint(b, int64(d.Partition))
	b = binary.AppendVarint(b, d.Offset)
	b = binary.AppendVarint(b, unixNano(d.CreatedAt))
	b = binary.AppendVarint(b, unixNano(d.ExpiresAt))
	b = binary.AppendVarint(b, unixNano(d.NextAttemptAt))
	b = binary.AppendUvarint(b, uint64(len(d.Attempts)))
	var names [8]string
	for _, a := range d.Attempts {
		b = binary.AppendVarint(b, int64(a.N))
		b = binary.AppendVarint(b, unixNano(a.At))
		b = appendString(b, a.URL)
		b = binary.AppendVarint(b, int64(a.StatusCode))
		b = binary.AppendVarint(b, int64(a.Latency))
		b = appendString(b, a.Error)
		b = binary.AppendUvarint(b, uint64(len(a.RequestHeaders)))
		keys := names[:0]
		for k := range a.RequestHeaders {
			keys = append(keys, k)
		}
		slices.Sort(keys) // the same row, the same bytes
		for _, k := range keys {
			if i := slices.Index(headerNames, k); i >= 0 {
				b = binary.AppendUvarint(b, uint64(i+1))
			} else {
				b = append(b, 0)
				b = appendString(b, k)
			}
			b = appendString(b, a.RequestHeaders[k])
		}
		b = appendString(b, a.ResponseExcerpt)
	}
	return appendString(b, d.Reason)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// rowReader reads a row's fields in order; the first malformed read
// leaves bad set and every later read a zero value.
type rowReader struct {
	b   []byte
	bad bool
}

// fail marks the row malformed: every later read is a zero value.
func (r *rowReader) fail() { r.bad, r.b = true, nil }

// advance moves past a read of n bytes, as encoding/binary reports them
// (n <= 0: the read failed).
func (r *rowReader) advance(n int) bool {
	if n <= 0 {
		r.fail()
		return false
	}
	r.b = r.b[n:]
	return true
}

func (r *rowReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if !r.advance(n) {
		return 0
	}
	return v
}

func (r *rowReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if !r.advance(n) {
		return 0
	}
	return v
}

// int32 reads a varint that must fit an int32.
func (r *rowReader) int32() int32 {
	v := r.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail()
		return 0
	}
	return int32(v)
}

// count reads a uvarint count of items each at least min bytes long, so a
// corrupt count cannot ask for more than the row holds.
func (r *rowReader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.fail()
		return 0
	}
	return int(n)
}

// field reads a length-prefixed field; its bytes are the row's.
func (r *rowReader) field() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	f := r.b[:n]
	r.b = r.b[n:]
	return f
}

// string copies: the row belongs to bbolt's memory map.
func (r *rowReader) string() string { return string(r.field()) }

func (r *rowReader) skipString() { r.field() }

// status is a row's status: one of the constants, without a copy, or a
// copy of what an unknown one holds.
func status(b []byte) string {
	for _, s := range store.DeliveryStatuses {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

func (r *rowReader) time() time.Time { return fromUnixNano(r.varint()) }

func (r *rowReader) headerName() string {
	i := r.uvarint()
	switch {
	case i == 0:
		return r.string()
	case i <= uint64(len(headerNames)):
		return headerNames[i-1]
	}
	r.fail()
	return ""
}

// deliveryMarker separates a delivery's key's event ID from its ID; an
// event's key has none.
var deliveryMarker = []byte(sep + deliverySortKey)

func isDeliveryKey(key []byte) bool { return bytes.Contains(key, deliveryMarker) }

// deliveryIDs are the event and delivery IDs of a delivery's key.
func deliveryIDs(key []byte) (eventID, id string, err error) {
	i := bytes.Index(key, deliveryMarker)
	if i < 0 {
		return "", "", fmt.Errorf("event_delivery_status: %q is not a delivery's key", key)
	}
	return string(key[:i]), string(key[i+len(deliveryMarker):]), nil
}

// openDeliveryRow starts decoding a row of either form; key is its bbolt
// key. A JSON row is decoded whole (done); a compact row's IDs and its
// first fields (PartnerID, SchemaID, UpdatedAt) are read, and r is left
// at the next; version is the form's first byte.
func openDeliveryRow(key, v []byte) (d store.Delivery, r rowReader, version byte, done bool, err error) {
	if len(v) > 0 && v[0] == '{' {
		if err := fastjson.Unmarshal(v, &d); err != nil {
			return store.Delivery{}, r, 0, false, fmt.Errorf("event_delivery_status row: %w", err)
		}
		return d, r, 0, true, nil
	}
	if len(v) == 0 || (v[0] != deliveryRowV1 && v[0] != deliveryRowV2) {
		return store.Delivery{}, r, 0, false, errDeliveryRow
	}
	if d.EventID, d.ID, err = deliveryIDs(key); err != nil {
		return store.Delivery{}, r, 0, false, err
	}
	r = rowReader{b: v[1:]}
	d.PartnerID = r.string()
	d.SchemaID = r.string()
	d.UpdatedAt = r.time()
	return d, r, v[0], false, nil
}

// decodeDeliveryRow decodes a row of either form; key is its bbolt key.
func decodeDeliveryRow(key, v []byte) (store.Delivery, error) {
	d, r, version, done, err := openDeliveryRow(key, v)
	if done || err != nil {
		return d, err
	}
	d.SubscriptionID = r.string()
	d.Status = r.string()
	d.Replay = r.string()
	d.Topic = r.string()
	d.Partition = r.int32()
	d.Offset = r.varint()
	d.CreatedAt = r.time()
	d.ExpiresAt = r.time()
	d.NextAttemptAt = r.time()
	// An attempt takes at least 8 bytes: its seven varints and a count.
	if n := r.count(8); n > 0 {
		d.Attempts = make([]store.Attempt, n)
		for i := range d.Attempts {
			a := &d.Attempts[i]
			a.N = int(r.varint())
			a.At = r.time()
			a.URL = r.string()
			a.StatusCode = int(r.varint())
			a.Latency = store.Duration(r.varint())
			a.Error = r.string()
			if nh := r.count(2); nh > 0 {
				a.RequestHeaders = make(map[string]string, nh)
				for range nh {
					k := r.headerName()
					a.RequestHeaders[k] = r.string()
				}
			}
			a.ResponseExcerpt = r.string()
		}
	}
	if version >= deliveryRowV2 {
		d.Reason = r.string()
	}
	if r.bad || len(r.b) != 0 {
		return store.Delivery{}, errDeliveryRow
	}
	return d, nil
}

// deliveryIndexFields decodes what a row's history index entries are
// made of — its IDs, partner, schema, status and creation time — and its
// expiry (the fields it skips on the way are not copied).
func deliveryIndexFields(key, v []byte) (store.Delivery, error) {
	d, r, _, done, err := openDeliveryRow(key, v)
	if done || err != nil {
		return d, err
	}
	r.skipString() // SubscriptionID
	d.Status = status(r.field())
	r.skipString() // Replay
	r.skipString() // Topic
	r.varint()     // Partition
	r.varint()     // Offset
	d.CreatedAt = r.time()
	d.ExpiresAt = r.time()
	if r.bad {
		return store.Delivery{}, errDeliveryRow
	}
	return d, nil
}

func deliveryKey(eventID, id string) string { return join(eventID, deliverySortKey+id) }

// putDeliveryRow writes d's row under its key (deliveryKey).
func putDeliveryRow(tx *bolt.Tx, key []byte, d store.Delivery) error {
	return tx.Bucket([]byte(bStatus)).Put(key, appendDeliveryRow(make([]byte, 0, 256), d))
}

func getDelivery(tx *bolt.Tx, eventID, id string) (store.Delivery, error) {
	key := []byte(deliveryKey(eventID, id))
	v := tx.Bucket([]byte(bStatus)).Get(key)
	if v == nil {
		return store.Delivery{}, store.ErrNotFound
	}
	return decodeDeliveryRow(key, v)
}
