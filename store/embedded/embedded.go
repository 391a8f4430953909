// Package embedded is the store of `whp dev` and of tests: the five tables
// of DESIGN.md in bbolt files (pure Go, no cgo), with the same keys and
// secondary indexes the DynamoDB store has, so both pass the same
// conformance suite (package storetest). store.db holds every table but
// the events' rows, which have a file of their own, events.db (why: "Its
// file" in eventrow.go).
//
// Each table is a bucket of JSON items (the idempotency ledger's and the
// delivery rows in compact binary forms, ledger.go and deliveryrow.go);
// each GSI is a bucket of index keys maintained in the same transaction
// as the item. Concurrent writes are coalesced into shared transactions
// (bbolt's Batch), so a burst of status writes costs one fsync, not one
// each.
package embedded

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/store"
)

const (
	bSchemas         = store.TableEventSchema
	bSchemaStatus    = store.TableEventSchema + ".status-index"
	bSchemaSensitive = store.TableEventSchema + ".contains_sensitive-index"
	bSubs            = store.TablePartnerEventSubscription
	bSubsSchema      = store.TablePartnerEventSubscription + ".schema-index"
	bSubKafka        = store.TableEventSubscriptionKafka
	bStatus          = store.TableEventDeliveryStatus
	bStatusPartner   = store.TableEventDeliveryStatus + ".partner-index"
	bStatusSchema    = store.TableEventDeliveryStatus + ".schema-index"
	// The status indexes: a partner's (a schema's) deliveries in a status
	// store.StatusIndexed names, by creation time (indexStatus).
	bStatusPartnerState = store.TableEventDeliveryStatus + ".partner-status-index"
	bStatusSchemaState  = store.TableEventDeliveryStatus + ".schema-status-index"
	bEvents             = store.TableEventDeliveryStatus + ".events" // eventrow.go
	bLedger             = store.TableIdempotencyLedger
	sep                 = "\x00"
	eventSortKey        = "EVENT"
	deliverySortKey     = "DELIVERY#"
	defaultPageLimit    = 50
	maxPageLimit        = 1000
	openLockTimeout     = 2 * time.Second
	fileName            = "store.db"
	eventsFileName      = "events.db" // bEvents alone
	dirPerm             = 0o700
	filePerm            = 0o600
)

// sweepBatchMaximum bounds a sweep's write: it shares its commit with the
// deliveries' writes (db.Batch), which wait for it. At 10,000 a sweep
// keeping a one-minute history at 2,000 events a second pushed the p99 to
// 20–90 ms; the sweep loops until none is left.
const sweepBatchMaximum = 1000

// buckets are store.db's; bEvents is events.db's.
var buckets = []string{bSchemas, bSchemaStatus, bSchemaSensitive, bSubs, bSubsSchema, bSubKafka, bStatus, bStatusPartner, bStatusSchema,
	bStatusPartnerState, bStatusSchemaState, bLedger, bAudit, bMeta}

// bAudit holds the approvals audit log, keyed newest first.
const bAudit = "audit"

// Store is the embedded store. Create it with Open.
type Store struct {
	db *bolt.DB // store.db
	// events is events.db: the events' rows (bEvents), written once by
	// the processor and read by GET /v1/events/{id} and the console.
	events *bolt.DB
	// claims commits producers' Idempotency-Key claims, which their 202s
	// wait for, and outcomes to store.db at once or in groups
	// (groupCommit), not held for company as the other writes are.
	claims *groupCommit
	now    func() time.Time
	// subs keeps SubscriptionsForSchema's answers until a subscription is
	// written: the file is this process's alone (bbolt locks it), so every
	// write passes here and no TTL is needed.
	subs store.SubscriptionsCache
	// afterSubsRead, if set (tests), runs between SubscriptionsForSchema's
	// read and its keeping the answer: where a write that races the read
	// lands.
	afterSubsRead func()
	// sweepBatch is how many expired items a sweep deletes in one write;
	// 0: sweepBatchMaximum. afterSweepScan, if set (tests), runs between a
	// sweep's scan and its write.
	sweepBatch     int
	afterSweepScan func()
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store under dir. A second process
// opening the same dir waits briefly for the file lock, then fails.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := openFile(filepath.Join(dir, fileName), func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		if err := migrateHistoryIndex(tx); err != nil {
			return err
		}
		return migrateStatusIndex(tx)
	})
	if err != nil {
		return nil, err
	}
	if err := migrateEvents(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", db.Path(), err)
	}
	events, err := openFile(filepath.Join(dir, eventsFileName), func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(bEvents))
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := migrateEventsFile(db, events); err != nil {
		db.Close()
		events.Close()
		return nil, fmt.Errorf("open store %s: %w", events.Path(), err)
	}
	return &Store{db: db, events: events, claims: &groupCommit{db: db}, now: time.Now}, nil
}

// openFile opens (creating if needed) one of the store's files and runs
// setup in a transaction of its own.
func openFile(path string, setup func(*bolt.Tx) error) (*bolt.DB, error) {
	db, err := bolt.Open(path, filePerm, &bolt.Options{Timeout: openLockTimeout, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: locked by another process (is another whp using this data dir?)", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := db.Update(setup); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Concurrent writers share one transaction (db.Batch); a lone writer
	// waits at most this long for company before committing alone. bbolt's
	// default (10 ms) put that wait on every delivery's path. The writes
	// a producer waits for are committed without it (Store.claims).
	db.MaxBatchDelay = time.Millisecond
	return db, nil
}

// Close writes each file's freelist, then closes the files.
//
// The store commits without its freelist (NoFreelistSync): written, it
// is a page more to write and flush in every commit, 15–30 µs of CPU
// more a commit whatever its size (BenchmarkFreelistCommit), 3–5 % more
// CPU an event in whp bench's soak at 2,000 a second; and after a history sweep it
// holds every page the sweep freed until new rows take them up, which a
// commit would write whole. A file whose last commit did not write it is
// scanned whole when opened to find the free pages — every page read,
// ≈ 0.75 s a GB on this machine with the file in the page cache, and the
// whole file made resident (docs/benchmarks.md, "A restart with
// history"). Close writes it once, so a whp that was stopped opens at
// once; only a crash leaves the scan to the next start — paid once per
// crash rather than on every commit.
func (s *Store) Close() error { return errors.Join(closeFile(s.db), closeFile(s.events)) }

// closeFile commits db's freelist and closes it. A file closed already is
// left alone (a second Close is harmless, as bbolt's is).
func closeFile(db *bolt.DB) error {
	err := db.Update(func(*bolt.Tx) error {
		// Read by this transaction's commit, which holds the writer's
		// lock: no other commit is running, and none runs after it.
		db.NoFreelistSync = false
		return nil
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		err = nil
	}
	return errors.Join(err, db.Close())
}

func put(tx *bolt.Tx, bucket string, key string, v any) error {
	b, err := fastjson.Marshal(v) // json.Marshal's bytes (FuzzMarshal), in about half the time
	if err != nil {
		return err
	}
	return tx.Bucket([]byte(bucket)).Put([]byte(key), b)
}

func get(tx *bolt.Tx, bucket, key string, v any) error {
	b := tx.Bucket([]byte(bucket)).Get([]byte(key))
	if b == nil {
		return store.ErrNotFound
	}
	return fastjson.Unmarshal(b, v)
}

func index(tx *bolt.Tx, bucket string, parts ...string) error {
	return tx.Bucket([]byte(bucket)).Put([]byte(join(parts...)), []byte{})
}

func unindex(tx *bolt.Tx, bucket string, parts ...string) error {
	return tx.Bucket([]byte(bucket)).Delete([]byte(join(parts...)))
}

func join(parts ...string) string { return strings.Join(parts, sep) }

// scanIndex calls fn with the last part of every index key under prefix.
func scanIndex(tx *bolt.Tx, bucket, prefix string, fn func(rest string) error) error {
	c := tx.Bucket([]byte(bucket)).Cursor()
	p := []byte(prefix + sep)
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if err := fn(string(k[len(p):])); err != nil {
			return err
		}
	}
	return nil
}

// all decodes every value in bucket.
func all[T any](tx *bolt.Tx, bucket string) ([]T, error) {
	var out []T
	err := tx.Bucket([]byte(bucket)).ForEach(func(_, v []byte) error {
		var x T
		if err := fastjson.Unmarshal(v, &x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// indexed decodes the values of bucket whose ids the index idx holds under key.
func indexed[T any](tx *bolt.Tx, idx, key, bucket string) ([]T, error) {
	var out []T
	err := scanIndex(tx, idx, key, func(id string) error {
		var x T
		if err := get(tx, bucket, id, &x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// update writes to store.db, in a transaction shared with concurrent
// writers (db.Batch).
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	return update(ctx, s.db, fn)
}

// updateClaims writes to store.db as the producers' Idempotency-Key
// writes are committed (Store.claims): at once when the file is free, else
// with the others that arrive meanwhile.
func (s *Store) updateClaims(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.claims.update(fn)
}

// view reads store.db.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	return view(ctx, s.db, fn)
}

func update(ctx context.Context, db *bolt.DB, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.Batch(fn)
}

func view(ctx context.Context, db *bolt.DB, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.View(fn)
}

// PutSchema implements store.Store.
func (s *Store) PutSchema(ctx context.Context, sc store.Schema) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		var old store.Schema
		switch err := get(tx, bSchemas, sc.ID, &old); {
		case err == nil:
			if err := unindex(tx, bSchemaStatus, old.Status, old.ID); err != nil {
				return err
			}
			if err := unindex(tx, bSchemaSensitive, fmt.Sprint(old.ContainsSensitive), old.ID); err != nil {
				return err
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if err := index(tx, bSchemaStatus, sc.Status, sc.ID); err != nil {
			return err
		}
		if err := index(tx, bSchemaSensitive, fmt.Sprint(sc.ContainsSensitive), sc.ID); err != nil {
			return err
		}
		return put(tx, bSchemas, sc.ID, sc)
	})
}

// GetSchema implements store.Store.
func (s *Store) GetSchema(ctx context.Context, id string) (store.Schema, error) {
	var sc store.Schema
	err := s.view(ctx, func(tx *bolt.Tx) error { return get(tx, bSchemas, id, &sc) })
	return sc, err
}

// ListSchemas implements store.Store.
func (s *Store) ListSchemas(ctx context.Context) ([]store.Schema, error) {
	var out []store.Schema
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		out, err = all[store.Schema](tx, bSchemas)
		return err
	})
	return out, err
}

// SchemasByStatus implements store.Store.
func (s *Store) SchemasByStatus(ctx context.Context, status string) ([]store.Schema, error) {
	var out []store.Schema
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		out, err = indexed[store.Schema](tx, bSchemaStatus, status, bSchemas)
		return err
	})
	return out, err
}

// PutSubscription implements store.Store.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription) (store.Subscription, error) {
	defer s.subs.Invalidate() // after the write commits (or fails)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var old store.Subscription
		switch err := get(tx, bSubs, sub.ID, &old); {
		case errors.Is(err, store.ErrNotFound):
			if sub.Rev != 0 {
				return store.ErrConflict
			}
		case err != nil:
			return err
		default:
			if old.Rev != sub.Rev {
				return store.ErrConflict
			}
			if err := unindex(tx, bSubsSchema, old.SchemaID, old.ID); err != nil {
				return err
			}
		}
		if err := index(tx, bSubsSchema, sub.SchemaID, sub.ID); err != nil {
			return err
		}
		stored := sub
		stored.Rev++
		return put(tx, bSubs, sub.ID, stored)
	})
	if err != nil {
		return store.Subscription{}, err
	}
	sub.Rev++
	return sub, nil
}

// GetSubscription implements store.Store.
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	var sub store.Subscription
	err := s.view(ctx, func(tx *bolt.Tx) error { return get(tx, bSubs, id, &sub) })
	return sub, err
}

// ListSubscriptions implements store.Store.
func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	var out []store.Subscription
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		out, err = all[store.Subscription](tx, bSubs)
		return err
	})
	return out, err
}

// SubscriptionsForSchema implements store.Store. Until a subscription is
// written, it returns the same slice again (store.SubscriptionsCache).
func (s *Store) SubscriptionsForSchema(ctx context.Context, schemaID string) ([]store.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.subs.Load(schemaID, func() (out []store.Subscription, err error) {
		err = s.view(ctx, func(tx *bolt.Tx) (err error) {
			out, err = indexed[store.Subscription](tx, bSubsSchema, schemaID, bSubs)
			return err
		})
		if err == nil && s.afterSubsRead != nil {
			s.afterSubsRead()
		}
		return out, err
	})
}

// PutSubscriptionKafka implements store.Store.
func (s *Store) PutSubscriptionKafka(ctx context.Context, k store.SubscriptionKafka) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		var old store.SubscriptionKafka
		if err := get(tx, bSubKafka, k.SubscriptionID, &old); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		k.Delivered, k.Failed, k.Filtered = old.Delivered, old.Failed, old.Filtered
		return put(tx, bSubKafka, k.SubscriptionID, k)
	})
}

// GetSubscriptionKafka implements store.Store.
func (s *Store) GetSubscriptionKafka(ctx context.Context, id string) (store.SubscriptionKafka, error) {
	var k store.SubscriptionKafka
	err := s.view(ctx, func(tx *bolt.Tx) error { return get(tx, bSubKafka, id, &k) })
	return k, err
}

// ListSubscriptionKafka implements store.Store.
func (s *Store) ListSubscriptionKafka(ctx context.Context) ([]store.SubscriptionKafka, error) {
	var out []store.SubscriptionKafka
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		out, err = all[store.SubscriptionKafka](tx, bSubKafka)
		return err
	})
	return out, err
}

// AddCounts implements store.Store.
func (s *Store) AddCounts(ctx context.Context, id string, c store.Counts) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		k := store.SubscriptionKafka{SubscriptionID: id}
		if err := get(tx, bSubKafka, id, &k); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		k.Delivered += c.Delivered
		k.Failed += c.Failed
		k.Filtered += c.Filtered
		return put(tx, bSubKafka, id, k)
	})
}

// CreateEvents implements store.Store.
func (s *Store) CreateEvents(ctx context.Context, es []store.Event) error {
	return update(ctx, s.events, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bEvents))
		b.FillPercent = eventsFill
		for _, e := range es {
			if b.Get([]byte(e.ID)) != nil {
				continue
			}
			if err := b.Put([]byte(e.ID), appendEventRow(make([]byte, 0, 128+len(e.Data)), e)); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetEvent implements store.Store.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	var e store.Event
	err := view(ctx, s.events, func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bEvents)).Get([]byte(id))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		e, err = decodeEventRow(id, v)
		return err
	})
	return e, err
}

// newestFirst orders the audit log's keys so that a forward scan starts at
// the latest decision.
func newestFirst(t time.Time) string {
	var b [timeKeyLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(math.MaxInt64-t.UnixNano()))
	return string(b[:])
}

const timeKeyLen = 8

// putDelivery writes a delivery's row and its history index entries. The
// entries are keyed by the delivery's partner (or schema) and creation
// time, which an update does not change: the update writes the row alone,
// and a page of history stays where it was while its deliveries are
// retried.
func putDelivery(tx *bolt.Tx, d store.Delivery, onlyNew bool) error {
	key := []byte(deliveryKey(d.EventID, d.ID))
	if v := tx.Bucket([]byte(bStatus)).Get(key); v != nil {
		if onlyNew {
			return nil
		}
		old, err := deliveryIndexFields(key, v)
		if err != nil {
			return err
		}
		if old.PartnerID == d.PartnerID && old.SchemaID == d.SchemaID && historyTime(old.CreatedAt) == historyTime(d.CreatedAt) {
			// The history index entries stay; the status index's move
			// with the status, if either is indexed (pending to
			// delivered, the common write, is neither).
			if old.Status != d.Status {
				if err := indexStatus(tx, old, false); err != nil {
					return err
				}
				if err := indexStatus(tx, d, true); err != nil {
					return err
				}
			}
			return putDeliveryRow(tx, key, d)
		}
		if err := indexDelivery(tx, old, false); err != nil {
			return err
		}
	}
	if err := indexDelivery(tx, d, true); err != nil {
		return err
	}
	return putDeliveryRow(tx, key, d)
}

// indexDelivery adds (or removes) a delivery's history index entries —
// its partner (or schema), creation time and IDs — and its status index
// entries, if its status is indexed.
func indexDelivery(tx *bolt.Tx, d store.Delivery, add bool) error {
	if err := indexEntries(tx, d, add, bStatusPartner, d.PartnerID, bStatusSchema, d.SchemaID); err != nil {
		return err
	}
	return indexStatus(tx, d, add)
}

// indexStatus adds (or removes) a delivery's status index entries if
// store.StatusIndexed names its status: the history index's, under its
// partner (or schema) and status, so the history of one status is a range
// of keys of its own, read as the history is.
func indexStatus(tx *bolt.Tx, d store.Delivery, add bool) error {
	if !store.StatusIndexed(d.Status) {
		return nil
	}
	return indexEntries(tx, d, add, bStatusPartnerState, join(d.PartnerID, d.Status), bStatusSchemaState, join(d.SchemaID, d.Status))
}

// indexEntries adds (or removes) d's entry under each of two hash keys,
// each in its bucket.
func indexEntries(tx *bolt.Tx, d store.Delivery, add bool, bucket1, hashKey1, bucket2, hashKey2 string) error {
	created := historyTime(d.CreatedAt)
	for _, ix := range [...]struct{ bucket, hashKey string }{{bucket1, hashKey1}, {bucket2, hashKey2}} {
		b := tx.Bucket([]byte(ix.bucket))
		b.FillPercent = historyFill
		k := []byte(join(ix.hashKey, created, d.EventID, d.ID))
		var err error
		if add {
			err = b.Put(k, []byte{})
		} else {
			err = b.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// historyTime orders index keys by time, ascending (the sign bit flipped
// so that times before 1970 come first), so that new entries go at the
// end of their hash key's range, which history scans backwards. Its
// timeKeyLen bytes are binary: readers cut it by width.
func historyTime(t time.Time) string {
	var b [timeKeyLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano())^(1<<63))
	return string(b[:])
}

// firstKeyTime and lastKeyTime bound the times historyTime keys hold:
// Unix nanoseconds in an int64.
var (
	firstKeyTime = time.Unix(0, math.MinInt64)
	lastKeyTime  = time.Unix(0, math.MaxInt64)
)

// historyFill is how full bbolt fills the history index's pages when it
// splits them (its default: half). Entries are keyed by creation time and
// never move, so each hash key's range is appended to and a page split is
// not filled again: at fan-out 16 the default left the pages half empty.
const historyFill = 0.9

// History index entries written before metaHistoryKey held historyByCreate
// were keyed by update time (newest first), and moved on every update. A
// store opened without it rebuilds them once, in the transaction that
// sets it (a new store sets it over empty buckets).
const (
	bMeta           = "meta"
	metaHistoryKey  = "history-index"
	historyByCreate = "created-ascending"
)

func migrateHistoryIndex(tx *bolt.Tx) error {
	return buildIndex(tx, metaHistoryKey, historyByCreate, []string{bStatusPartner, bStatusSchema}, "rebuild the history index",
		func(d store.Delivery) error { return indexDelivery(tx, d, true) })
}

// The status indexes came after the history index: a store opened
// without metaStatusKey in its meta bucket has them built, once, in the
// transaction that sets it.
const (
	metaStatusKey    = "status-index"
	statusIndexBuilt = "v1"
)

func migrateStatusIndex(tx *bolt.Tx) error {
	return buildIndex(tx, metaStatusKey, statusIndexBuilt, []string{bStatusPartnerState, bStatusSchemaState}, "build the status index",
		func(d store.Delivery) error { return indexStatus(tx, d, true) })
}

// buildIndex builds an index of every delivery row unless the meta
// bucket's metaKey says version: it empties the index's buckets, calls
// index with each row's index fields, and sets metaKey, all in tx.
func buildIndex(tx *bolt.Tx, metaKey, version string, buckets []string, what string, index func(store.Delivery) error) error {
	meta := tx.Bucket([]byte(bMeta))
	if string(meta.Get([]byte(metaKey))) == version {
		return nil
	}
	for _, b := range buckets {
		if err := tx.DeleteBucket([]byte(b)); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte(b)); err != nil {
			return err
		}
	}
	err := tx.Bucket([]byte(bStatus)).ForEach(func(k, v []byte) error {
		if !isDeliveryKey(k) {
			return nil // an event of an earlier version
		}
		d, err := deliveryIndexFields(k, v)
		if err != nil {
			return err
		}
		return index(d)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return meta.Put([]byte(metaKey), []byte(version))
}

// CreateDeliveries implements store.Store.
func (s *Store) CreateDeliveries(ctx context.Context, ds []store.Delivery) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		for _, d := range ds {
			if err := putDelivery(tx, d, true); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutDeliveries implements store.Store.
func (s *Store) PutDeliveries(ctx context.Context, ds []store.Delivery) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		for _, d := range ds {
			if err := putDelivery(tx, d, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetDelivery implements store.Store.
func (s *Store) GetDelivery(ctx context.Context, eventID, id string) (store.Delivery, error) {
	var d store.Delivery
	err := s.view(ctx, func(tx *bolt.Tx) (err error) { d, err = getDelivery(tx, eventID, id); return err })
	return d, err
}

// GetDeliveries implements store.Store: one read transaction.
func (s *Store) GetDeliveries(ctx context.Context, keys []store.DeliveryKey) ([]store.Delivery, error) {
	out := make([]store.Delivery, len(keys))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		for i, k := range keys {
			var err error
			if out[i], err = getDelivery(tx, k.EventID, k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetDeliveryState implements store.Store: both reads in one transaction.
func (s *Store) GetDeliveryState(ctx context.Context, ledgerKey, eventID, id string) (store.DeliveryState, error) {
	var out store.DeliveryState
	err := s.view(ctx, func(tx *bolt.Tx) error {
		switch _, err := getLiveLedger(tx, ledgerKey, s.now()); {
		case err == nil:
			out.Delivered = true
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		var err error
		switch out.Status, err = getDelivery(tx, eventID, id); {
		case err == nil:
			out.Found = true
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return nil
	})
	return out, err
}

// Deliveries implements store.Store.
func (s *Store) Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error) {
	var out []store.Delivery
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bStatus)).Cursor()
		p := []byte(join(eventID, deliverySortKey))
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			d, err := decodeDeliveryRow(k, v)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// DeliveriesByPartner implements store.Store.
func (s *Store) DeliveriesByPartner(ctx context.Context, partnerID string, p store.Page) (store.DeliveryPage, error) {
	return s.history(ctx, bStatusPartner, bStatusPartnerState, partnerID, p)
}

// DeliveriesBySchema implements store.Store.
func (s *Store) DeliveriesBySchema(ctx context.Context, schemaID string, p store.Page) (store.DeliveryPage, error) {
	return s.history(ctx, bStatusSchema, bStatusSchemaState, schemaID, p)
}

// CountDeliveries implements store.Store: it walks the partner status
// index's keys of status alone, a seek to each partner's range.
func (s *Store) CountDeliveries(ctx context.Context, status string) (map[string]int, error) {
	if !store.StatusIndexed(status) {
		return nil, fmt.Errorf("count of %q deliveries: not an indexed status", status)
	}
	counts := map[string]int{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bStatusPartnerState)).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, sep[0])
			if i < 0 {
				return fmt.Errorf("corrupt index key %q", k)
			}
			partner := string(k[:i])
			prefix := []byte(join(partner, status, ""))
			n := 0
			for k, _ = c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
			if n > 0 {
				counts[partner] = n
			}
			k, _ = c.Seek([]byte(partner + sep + "\xff")) // past the partner's statuses
		}
		return nil
	})
	return counts, err
}

// history reads a page of the index in bucket under hashKey (a partner's
// or a schema's), or, for a status store.StatusIndexed names, of the
// status index in statusBucket under hashKey and the status.
func (s *Store) history(ctx context.Context, bucket, statusBucket, hashKey string, p store.Page) (store.DeliveryPage, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = defaultPageLimit
	}
	limit = min(limit, maxPageLimit)
	filter := p.Status
	if store.StatusIndexed(p.Status) {
		bucket, hashKey, filter = statusBucket, join(hashKey, p.Status), ""
	}
	prefix := []byte(hashKey + sep)
	// The scan runs backwards from before start: the end of the hash key's
	// range (the separator's byte plus one), the first key created at
	// Before, or the last key returned.
	start := []byte(hashKey + "\x01")
	if !p.Before.IsZero() && p.Before.Before(lastKeyTime) {
		// Within the times a key holds (historyTime's nanoseconds, 1678
		// to 2262): past them every delivery is before it.
		before := p.Before
		if before.Before(firstKeyTime) {
			before = firstKeyTime
		}
		start = []byte(join(hashKey, historyTime(before)))
	}
	if p.Cursor != "" {
		last, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || !bytes.HasPrefix(last, prefix) {
			return store.DeliveryPage{}, fmt.Errorf("history: %w", store.ErrInvalidCursor)
		}
		start = last
	}
	var page store.DeliveryPage
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucket)).Cursor()
		var last []byte
		k, _ := c.Seek(start) // the first key at or after start…
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev() // …and the scan starts at the one before it
		}
		// A page is limit entries of the index: with a filter, those
		// of them in its status.
		for read := 0; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			if read == limit {
				page.Next = base64.RawURLEncoding.EncodeToString(last)
				return nil
			}
			read++
			// After the hash key: the creation time, historyTime's 8
			// bytes (any of which may be the separator's zero byte, so it
			// is cut by width), then the event and delivery IDs.
			rest := k[len(prefix):]
			if len(rest) < timeKeyLen+1 || rest[timeKeyLen] != sep[0] {
				return fmt.Errorf("corrupt index key %q", k)
			}
			ids := bytes.SplitN(rest[timeKeyLen+1:], []byte(sep), 2)
			if len(ids) != 2 {
				return fmt.Errorf("corrupt index key %q", k)
			}
			d, err := getDelivery(tx, string(ids[0]), string(ids[1]))
			if err != nil {
				return err
			}
			if filter == "" || d.Status == filter {
				page.Deliveries = append(page.Deliveries, d)
			}
			last = append(last[:0], k...)
		}
		return nil
	})
	return page, err
}

// CreateIdempotency implements store.Store. It is the claim of a
// producer's Idempotency-Key, which the request's 202 waits for: committed
// at once when the file is free, grouped with the claims that arrive
// meanwhile when it is not (Store.claims), not held for company as the
// other writes are.
func (s *Store) CreateIdempotency(ctx context.Context, rec store.Idempotency) (store.Idempotency, error) {
	var existing store.Idempotency
	err := s.updateClaims(ctx, func(tx *bolt.Tx) error {
		var err error
		switch existing, err = getLiveLedger(tx, rec.Key, s.now()); {
		case err == nil:
			return store.ErrConflict
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return putLedger(tx, rec)
	})
	if errors.Is(err, store.ErrConflict) {
		return existing, err
	}
	return store.Idempotency{}, err
}

// GetIdempotency implements store.Store.
func (s *Store) GetIdempotency(ctx context.Context, key string) (store.Idempotency, error) {
	var rec store.Idempotency
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		rec, err = getLiveLedger(tx, key, s.now())
		return err
	})
	return rec, err
}

// PutIdempotency implements store.Store. Its writes are mostly a
// producer's key's outcome or a renewed claim, so it is committed with the
// claims: the claims and outcomes of busy producers share their commits.
// (A dispatcher without a ledger lane writes its ledger entries here too,
// one at a time.)
func (s *Store) PutIdempotency(ctx context.Context, rec store.Idempotency) error {
	return s.updateClaims(ctx, func(tx *bolt.Tx) error { return putLedger(tx, rec) })
}

// PutLedger implements store.Store.
func (s *Store) PutLedger(ctx context.Context, recs []store.Idempotency) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		for _, rec := range recs {
			if err := putLedger(tx, rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutIdempotencyIf implements store.Store.
func (s *Store) PutIdempotencyIf(ctx context.Context, rec store.Idempotency, with ...store.Idempotency) (store.Idempotency, error) {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		for _, w := range with {
			if err := putLedger(tx, w); err != nil {
				return err
			}
		}
		old, err := getLiveLedger(tx, rec.Key, s.now()) // expired: as absent
		live := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// Rev 0 asks for no live item, whatever wrote it (an item of
		// CreateIdempotency has Rev 0 too), as DynamoDB's condition does.
		if rec.Rev == 0 && live || rec.Rev != 0 && (!live || old.Rev != rec.Rev) {
			return store.ErrConflict
		}
		stored := rec
		stored.Rev++
		return putLedger(tx, stored)
	})
	if err != nil {
		return store.Idempotency{}, err
	}
	rec.Rev++
	return rec, nil
}

// DeleteIdempotency implements store.Store.
func (s *Store) DeleteIdempotency(ctx context.Context, key string) error {
	return s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket([]byte(bLedger)).Delete([]byte(key)) })
}

// Sweep deletes expired items, as DynamoDB's TTL does in production: the
// idempotency_ledger's, and event_delivery_status's events and
// deliveries (with their history index entries). Each kind is found in a
// read transaction and deleted in writes of at most s.sweepBatch items,
// again until none is left: a sweep holds no writer while it scans, and
// keeps up with any rate of expiry (one batch every ten minutes kept up
// with 16 events a second). It returns how many it deleted.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	kinds := []struct {
		db     *bolt.DB
		bucket string
		row    func(k, v []byte) (time.Time, store.Delivery, bool, error)
	}{
		{s.db, bLedger, func(k, v []byte) (time.Time, store.Delivery, bool, error) {
			exp, err := ledgerExpiry(k, v)
			if exp.IsZero() {
				exp = time.Unix(1, 0) // dead, as getLiveLedger reads it: swept
			}
			return exp, store.Delivery{}, false, err
		}},
		{s.db, bStatus, statusRow},
		{s.events, bEvents, func(k, v []byte) (time.Time, store.Delivery, bool, error) {
			exp, err := eventExpiry(v)
			if err != nil {
				err = fmt.Errorf("%s row %q: %w", bEvents, k, err)
			}
			return exp, store.Delivery{}, false, err
		}},
	}
	total := 0
	for _, kind := range kinds {
		// Each batch's scan starts past the last key the one before read:
		// the keys before it were deleted, or were live when read.
		var after []byte
		for {
			n, last, err := s.sweepRows(ctx, kind.db, kind.bucket, after, kind.row)
			total += n
			if err != nil {
				return total, err
			}
			if last == nil {
				break
			}
			after = last
		}
	}
	return total, nil
}

// sweepRows finds up to s.sweepBatch expired rows of db's bucket past the key
// after (from the first, if nil) in a read transaction, so that the scan
// holds no writer back, then deletes those still expired in one write,
// and a delivery's history index entries with it. When the batch was full
// (there may be more) last is its last key, else nil. row reads a row's
// expiry and, for a delivery, its index fields.
func (s *Store) sweepRows(ctx context.Context, db *bolt.DB, bucket string, after []byte, row func(k, v []byte) (exp time.Time, d store.Delivery, isDelivery bool, err error)) (n int, last []byte, err error) {
	now, limit := s.now(), cmp.Or(s.sweepBatch, sweepBatchMaximum)
	var expired [][]byte
	err = view(ctx, db, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucket)).Cursor()
		k, v := c.First()
		if after != nil {
			if k, v = c.Seek(after); bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(expired) < limit; k, v = c.Next() {
			exp, _, _, err := row(k, v)
			if err != nil {
				return err
			}
			if hasExpired(exp, now) {
				expired = append(expired, append([]byte(nil), k...))
			}
		}
		return nil
	})
	if err != nil || len(expired) == 0 {
		return 0, nil, err
	}
	if s.afterSweepScan != nil {
		s.afterSweepScan()
	}
	err = update(ctx, db, func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket([]byte(bucket))
		for _, k := range expired {
			v := b.Get(k)
			if v == nil {
				continue
			}
			exp, d, isDelivery, err := row(k, v)
			if err != nil {
				return err
			}
			if !hasExpired(exp, now) {
				continue // rewritten since, with a later expiry
			}
			if isDelivery {
				if err := indexDelivery(tx, d, false); err != nil {
					return err
				}
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if len(expired) == limit {
		last = expired[limit-1]
	}
	return n, last, err
}

// hasExpired: exp is set and not after now.
func hasExpired(exp, now time.Time) bool { return !exp.IsZero() && !exp.After(now) }

// statusRow reads the ExpiresAt of a delivery's row (the zero time:
// none) and the fields its history index entries are made of. (Events
// have a bucket of their own: migrateEvents moved those of earlier
// versions out of this one.)
func statusRow(k, v []byte) (exp time.Time, d store.Delivery, isDelivery bool, err error) {
	if !isDeliveryKey(k) {
		return time.Time{}, store.Delivery{}, false, fmt.Errorf("event_delivery_status: %q is not a delivery's key", k)
	}
	d, err = deliveryIndexFields(k, v)
	return d.ExpiresAt, d, true, err
}

// AppendDecision implements store.Store.
func (s *Store) AppendDecision(ctx context.Context, d store.Decision) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return put(tx, bAudit, join(newestFirst(d.At), d.SubscriptionID, d.Status), d)
	})
}

// Decisions implements store.Store.
func (s *Store) Decisions(ctx context.Context, limit int) ([]store.Decision, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []store.Decision
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bAudit)).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var d store.Decision
			if err := fastjson.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}
