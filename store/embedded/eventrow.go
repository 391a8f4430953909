package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/klauspost/compress/s2"
	bolt "go.etcd.io/bbolt"

	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/store"
)

// An event's row is written once, when the processor routes it, and
// holds the event's data: at fan-out 1 it is the largest row the store
// writes, one per delivery. Two things made it cost more than its data.
//
// Its form. In JSON its data was base64 (4/3 of the bytes) and its
// routing named every subscription's ID, partner and decision in full
// (≈ 88 bytes a subscription): a 1 KiB event routed to sixteen
// subscriptions was a row of ≈ 2,900 bytes. It is written in a compact
// binary form now, like a delivery's: the event ID is the bbolt key and
// not repeated, the data is raw, times are varints of Unix nanoseconds,
// and a route whose subscription ID is its partner's ID and the event's
// schema ID (as the catalog names them) stores the partner alone. The same
// event: ≈ 1,100 bytes (TestEventRowSize).
//
// Its neighbours. Events shared event_delivery_status's bucket with their
// deliveries, whose rows grow after their first attempt, so the pages
// holding both split again and again: at fan-out 1 they were 40–50 % used.
// Events have a bucket of their own now (bEvents, keyed by the event's ID,
// a UUIDv7), where rows arrive nearly in order and never change, so its
// pages are filled to eventsFill before they split (TestEventPagesFill).
//
// Its data, compressed (eventRowV2). Even so the events were 57 % of the
// file after a 10 s burst (96 of 169 MB, 1.4 KB an event), and the file's
// pages the store has touched count in the process's resident memory:
// compressed with S2 (klauspost/compress, which the Kafka client already
// links), an event of the bench's text takes about half the bytes
// (TestEventRowSize: S2 compresses one event ≈ 1.9×; Kafka's batches of
// many, ≈ 3×), for a few µs of CPU on a write that is off the delivery's
// path; decompressed only when the event is read (GET /v1/events/{id},
// the console).
//
// Its file. bbolt reads its file through a shared mapping, and the pages
// of a mapping the process has touched count in its resident set. A read
// fault maps the kernel's cached pages around the one read, up to 64 KiB
// (fault-around; bbolt's MADV_RANDOM does not stop it), and bbolt puts a
// page it writes wherever a freed page is, so in one file the events'
// pages lay among the deliveries' and the ledger's, which the dispatcher
// reads and rewrites for every delivery: after a burst most of the file
// was resident, the events included, though nothing read them
// (/proc/PID/pagemap at the peak of `whp bench`'s default run: 33 of the
// events' 49 MiB). In events.db of their own they are read only where
// CreateEvents looks for a row already there, at the right edge of keys
// that arrive in order, and little of the file is mapped: 9 of 46 MiB in
// the same run, the peak resident set 128–142 MiB against 160–179
// (docs/benchmarks.md, "Round 13"). Each file has its own writer, so the
// processor's events no longer share a commit with the dispatcher's
// statuses; nothing needed them in one transaction: the processor wrote
// events and deliveries in calls of their own already, both
// create-if-absent and written again after a failure. The cost: a
// processor batch's history is two commits (two fsyncs) where one often
// served, a few percent more CPU an event at light load.
//
//	byte 0   eventRowV2 (eventRowV1: the same, its Data raw)
//	then     ExpiresAt (first: the sweep reads it alone), SchemaID, Key,
//	         IdempotencyKey, AcceptedAt, Topic, Partition, Offset,
//	         TraceID, Data (a uvarint of its length plus one, 0 for none,
//	         then its bytes, S2-encoded in V2), the routes' count, then each route: its
//	         flags as a uvarint (routeMatched, routeSubscriptionOfSchema,
//	         routeReason), PartnerID, SubscriptionID unless
//	         routeSubscriptionOfSchema, Reason if routeReason; then, if
//	         RoutingOmitted is not 0, it as a uvarint (rows without it —
//	         all before it was added — end after the routes)
//
// Strings, integers and times as in a delivery's row (deliveryrow.go).
// Rows that earlier versions wrote in event_delivery_status's bucket, as
// JSON objects, are moved here in this form once, when the store opens
// (migrateEvents; an earlier version cannot read them after). V1 rows,
// written before V2, are read as they are; a version before V2 cannot
// read V2 rows.
const (
	eventRowV1 = 0x01
	eventRowV2 = 0x02
)

// A route's flags.
const (
	routeMatched              = 1 << iota
	routeSubscriptionOfSchema // SubscriptionID is PartnerID#SchemaID
	routeReason               // a Reason follows
)

var errEventRow = errors.New("event row: malformed")

// eventsFill is how full bbolt fills bEvents's pages when it splits them
// (its default: half): its keys arrive nearly in ascending order, and its
// rows never change, so a page split at the end is not written again.
const eventsFill = 0.9

func appendEventRow(b []byte, e store.Event) []byte {
	b = append(b, eventRowV2)
	b = binary.AppendVarint(b, unixNano(e.ExpiresAt))
	b = appendString(b, e.SchemaID)
	b = appendString(b, e.Key)
	b = appendString(b, e.IdempotencyKey)
	b = binary.AppendVarint(b, unixNano(e.AcceptedAt))
	b = appendString(b, e.Topic)
	b = binary.AppendVarint(b, int64(e.Partition))
	b = binary.AppendVarint(b, e.Offset)
	b = appendString(b, e.TraceID)
	if e.Data == nil {
		b = append(b, 0)
	} else {
		// Encoded into b past room for its length, then moved down
		// against the length once known: no buffer of its own.
		b = slices.Grow(b, binary.MaxVarintLen64+s2.MaxEncodedLen(len(e.Data)))
		at := len(b)
		enc := s2.Encode(b[at+binary.MaxVarintLen64:cap(b)], e.Data)
		b = binary.AppendUvarint(b, uint64(len(enc))+1)
		b = append(b, enc...) // copy handles the overlap
	}
	b = binary.AppendUvarint(b, uint64(len(e.Routing)))
	for _, r := range e.Routing {
		var flags byte
		if r.Matched {
			flags |= routeMatched
		}
		ofSchema := len(r.SubscriptionID) == len(r.PartnerID)+len(idSep)+len(e.SchemaID) &&
			r.SubscriptionID == r.PartnerID+idSep+e.SchemaID
		if ofSchema {
			flags |= routeSubscriptionOfSchema
		}
		if r.Reason != "" {
			flags |= routeReason
		}
		b = binary.AppendUvarint(b, uint64(flags))
		b = appendString(b, r.PartnerID)
		if !ofSchema {
			b = appendString(b, r.SubscriptionID)
		}
		if r.Reason != "" {
			b = appendString(b, r.Reason)
		}
	}
	if e.RoutingOmitted > 0 {
		b = binary.AppendUvarint(b, uint64(e.RoutingOmitted))
	}
	return b
}

// idSep joins the parts of the catalog's IDs: a schema's domain, event
// and version, and a subscription's partner and schema
// (catalog.SubscriptionID).
const idSep = "#"

// decodeEventRow decodes the row of the event id.
func decodeEventRow(id string, v []byte) (store.Event, error) {
	var e store.Event
	if len(v) == 0 || v[0] != eventRowV1 && v[0] != eventRowV2 {
		return store.Event{}, errEventRow
	}
	e.ID = id
	r := rowReader{b: v[1:]}
	e.ExpiresAt = r.time()
	e.SchemaID = r.string()
	e.Key = r.string()
	e.IdempotencyKey = r.string()
	e.AcceptedAt = r.time()
	e.Topic = r.string()
	e.Partition = r.int32()
	e.Offset = r.varint()
	e.TraceID = r.string()
	if n := r.uvarint(); n > 0 {
		if n-1 > uint64(len(r.b)) {
			return store.Event{}, errEventRow
		}
		if v[0] == eventRowV1 {
			e.Data = bytes.Clone(r.b[:n-1]) // the row belongs to bbolt's memory map
		} else {
			var err error
			if e.Data, err = s2.Decode(nil, r.b[:n-1]); err != nil {
				return store.Event{}, fmt.Errorf("%w: its data: %v", errEventRow, err)
			}
			if e.Data == nil {
				e.Data = []byte{} // empty, not none
			}
		}
		r.b = r.b[n-1:]
	}
	// A route takes at least 2 bytes: its flags and its partner's length.
	if n := r.count(2); n > 0 {
		e.Routing = make([]store.Route, n)
		for i := range e.Routing {
			rt := &e.Routing[i]
			flags := r.uvarint()
			if flags >= routeReason<<1 {
				return store.Event{}, errEventRow
			}
			rt.Matched = flags&routeMatched != 0
			rt.PartnerID = r.string()
			if flags&routeSubscriptionOfSchema != 0 {
				rt.SubscriptionID = rt.PartnerID + idSep + e.SchemaID
			} else {
				rt.SubscriptionID = r.string()
			}
			if flags&routeReason != 0 {
				rt.Reason = r.string()
			}
		}
	}
	if len(r.b) > 0 {
		n := r.uvarint()
		if n == 0 || n > math.MaxInt32 {
			return store.Event{}, errEventRow
		}
		e.RoutingOmitted = int(n)
	}
	if r.bad || len(r.b) != 0 {
		return store.Event{}, errEventRow
	}
	return e, nil
}

// eventExpiry reads the ExpiresAt of an event's row (the zero time:
// none).
func eventExpiry(v []byte) (time.Time, error) {
	if len(v) == 0 || v[0] != eventRowV1 && v[0] != eventRowV2 {
		return time.Time{}, errEventRow
	}
	r := rowReader{b: v[1:]}
	exp := r.time()
	if r.bad {
		return time.Time{}, errEventRow
	}
	return exp, nil
}

// metaEventsKey in store.db's bMeta says where the store's events are:
// unset, in bStatus (the earliest versions); eventsOwnBucket, in bEvents
// of store.db; eventsOwnFile, in bEvents of events.db.
const (
	metaEventsKey   = "events"
	eventsOwnBucket = "own-bucket"
	eventsOwnFile   = "own-file"
	legacyEventSort = sep + eventSortKey // ended an event's key in bStatus
)

// migrateEvents moves the event rows earlier versions wrote in bStatus
// (JSON, under the event's ID and the EVENT sort key) to bEvents of
// store.db in the compact form (migrateEventsFile moves them on to
// events.db), once: eventsMigrationBatch rows a transaction, so that a
// large data dir is not held in memory as one transaction's dirty pages,
// the last of them setting metaEventsKey (a new store sets it over empty
// buckets). A store closed midway goes on where it stopped when it opens
// again.
func migrateEvents(db *bolt.DB) error {
	var after []byte // the last key looked at
	for {
		done := false
		err := db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket([]byte(bMeta))
			if m := string(meta.Get([]byte(metaEventsKey))); m == eventsOwnBucket || m == eventsOwnFile {
				done = true
				return nil
			}
			status := tx.Bucket([]byte(bStatus))
			events, err := tx.CreateBucketIfNotExists([]byte(bEvents))
			if err != nil {
				return err
			}
			events.FillPercent = eventsFill
			var moved [][]byte
			c := status.Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(moved) < eventsMigrationBatch; k, v = c.Next() {
				after = bytes.Clone(k)
				id, ok := bytes.CutSuffix(k, []byte(legacyEventSort))
				if !ok || isDeliveryKey(k) {
					continue
				}
				var e store.Event
				if err := fastjson.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("event_delivery_status row %q: %w", k, err)
				}
				e.ID = string(id)
				if err := events.Put(id, appendEventRow(nil, e)); err != nil {
					return err
				}
				moved = append(moved, k)
			}
			for _, k := range moved {
				if err := status.Delete(k); err != nil {
					return err
				}
			}
			if k != nil {
				return nil // more to move, in the next transaction
			}
			done = true
			return meta.Put([]byte(metaEventsKey), []byte(eventsOwnBucket))
		})
		if err != nil {
			return fmt.Errorf("move the events to their own bucket: %w", err)
		}
		if done {
			return nil
		}
	}
}

// migrateEventsFile moves the event rows of store.db's bEvents, where
// versions before events.db kept them, to events.db, once, in
// transactions of eventsMigrationBatch rows: each batch is written to
// events.db, committed, then deleted from store.db. A store closed
// between the two writes another copy of the batch when it opens again
// (rows never change, so the copy is the same bytes); the last step
// drops the emptied bucket and sets metaEventsKey to eventsOwnFile. A new
// store goes through it with nothing to move. bbolt does not shrink a
// file: store.db keeps its size, the freed pages used again by what it
// writes next.
func migrateEventsFile(db, eventsDB *bolt.DB) error {
	for {
		done := false
		var keys, rows [][]byte
		err := db.View(func(tx *bolt.Tx) error {
			if string(tx.Bucket([]byte(bMeta)).Get([]byte(metaEventsKey))) == eventsOwnFile {
				done = true
				return nil
			}
			b := tx.Bucket([]byte(bEvents))
			if b == nil {
				return nil
			}
			c := b.Cursor()
			for k, v := c.First(); k != nil && len(keys) < eventsMigrationBatch; k, v = c.Next() {
				keys, rows = append(keys, bytes.Clone(k)), append(rows, bytes.Clone(v))
			}
			return nil
		})
		if err == nil && len(keys) > 0 {
			err = eventsDB.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte(bEvents))
				b.FillPercent = eventsFill
				for i, k := range keys {
					if err := b.Put(k, rows[i]); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err == nil && !done {
			err = db.Update(func(tx *bolt.Tx) error {
				if len(keys) == 0 {
					if tx.Bucket([]byte(bEvents)) != nil {
						if err := tx.DeleteBucket([]byte(bEvents)); err != nil {
							return err
						}
					}
					done = true
					return tx.Bucket([]byte(bMeta)).Put([]byte(metaEventsKey), []byte(eventsOwnFile))
				}
				b := tx.Bucket([]byte(bEvents))
				for _, k := range keys {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("move the events to %s: %w", eventsFileName, err)
		}
		if done {
			return nil
		}
	}
}

// eventsMigrationBatch is how many event rows migrateEvents and
// migrateEventsFile move a transaction (a variable for the tests that
// cross its boundaries).
var eventsMigrationBatch = 10000
