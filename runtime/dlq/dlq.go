// Package dlq reads and redrives the dead-letter queue: the
// wh.dlq.{event} topics of the egress cluster, where deliveries go when
// their attempts are exhausted or failed for good.
//
// A redrive writes the delivery back to its egress topic with the same
// delivery id, as a new first attempt (the history in
// event_delivery_status goes on); the ledger still guards against
// delivering twice. Kafka records cannot be deleted one by one, so what
// was redriven is told by the delivery's status: an entry counts as in the
// queue while its delivery is dead_lettered.
package dlq

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Store is the part of the state the DLQ uses.
type Store interface {
	GetDeliveries(ctx context.Context, keys []store.DeliveryKey) ([]store.Delivery, error)
	DeliveriesByPartner(ctx context.Context, partnerID string, p store.Page) (store.DeliveryPage, error)
	CountDeliveries(ctx context.Context, status string) (map[string]int, error)
	PutDeliveries(ctx context.Context, ds []store.Delivery) error
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	ListSubscriptions(ctx context.Context) ([]store.Subscription, error)
}

// Entry is one dead-lettered delivery.
type Entry struct {
	DeliveryID     string    `json:"delivery_id"`
	EventID        string    `json:"event_id"`
	SubscriptionID string    `json:"subscription_id"`
	PartnerID      string    `json:"partner_id"`
	SchemaID       string    `json:"schema_id"`
	Reason         string    `json:"reason"`
	Attempts       int       `json:"attempts"`
	LastStatusCode int       `json:"last_status_code,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	FailedAt       time.Time `json:"failed_at"`
	// Status is the delivery's status now: dead_lettered while it waits
	// in the queue, something else once redriven.
	Status string `json:"status"`

	delivery envelope.Delivery
	// stored is the delivery's status item as its batch read it
	// (withStatus), nil if it had none.
	stored *store.Delivery
}

// Ref is how Filter.DeliveryIDs names e best: EVENT_ID/DELIVERY_ID, so
// that a redrive of it reads its dead letter where its status says it is
// (its delivery id alone if its event's is unknown).
func (e Entry) Ref() string {
	if e.EventID == "" {
		return e.DeliveryID
	}
	return e.EventID + "/" + e.DeliveryID
}

// Filter selects entries. Empty fields select everything.
type Filter struct {
	// DeliveryIDs are deliveries by their ids, each EVENT_ID/DELIVERY_ID
	// or DELIVERY_ID alone. A redrive of ids all of the first form reads
	// their dead letters where their statuses say they are (a few picked
	// among a million: a few records read); a bare id is looked for in
	// the queue's topics.
	DeliveryIDs    []string  `json:"delivery_ids,omitempty"`
	SubscriptionID string    `json:"subscription,omitempty"`
	PartnerID      string    `json:"partner,omitempty"`
	From           time.Time `json:"from,omitzero"` // failed at or after
	To             time.Time `json:"to,omitzero"`   // failed before
	// All includes entries already redriven.
	All bool `json:"all,omitempty"`
}

// topics are the dead-letter topics that can hold the entries f selects:
// a subscription's are in its event's topic alone (wh.dlq.{event}, the
// event of the schema its ID names: PARTNER#SCHEMA_ID); nil: every one.
func (f Filter) topics() map[string]bool {
	_, schemaID, _ := strings.Cut(f.SubscriptionID, "#")
	_, event, _, ok := catalog.SplitSchemaID(schemaID)
	if !ok {
		return nil
	}
	return map[string]bool{topic.DLQ(event): true}
}

// topicsOf are the dead-letter topics that can hold the entries f
// selects, as topics says, and a partner's: the topics of the events of
// its subscriptions in the store (those that left the catalog among them,
// Cancelled), not every event's — after one partner's outage, the other
// partners' dead letters of other events are not read. Nil: every one.
func (q *Queue) topicsOf(ctx context.Context, f Filter) (map[string]bool, error) {
	if only := f.topics(); only != nil || f.PartnerID == "" {
		return only, nil
	}
	subs, err := q.st.ListSubscriptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("the partner's subscriptions: %w", err)
	}
	only := map[string]bool{}
	for _, s := range subs {
		if _, event, _, ok := catalog.SplitSchemaID(s.SchemaID); ok && s.PartnerID == f.PartnerID {
			only[topic.DLQ(event)] = true
		}
	}
	return only, nil
}

// matchRecord reports whether f selects e by what its record says — all
// but its status, which is read afterwards for the entries it selects.
func (f Filter) matchRecord(e Entry, ids map[string]bool) bool {
	if len(ids) > 0 && !ids[e.DeliveryID] {
		return false
	}
	switch {
	case f.SubscriptionID != "" && e.SubscriptionID != f.SubscriptionID,
		f.PartnerID != "" && e.PartnerID != f.PartnerID,
		!f.From.IsZero() && e.FailedAt.Before(f.From),
		!f.To.IsZero() && !e.FailedAt.Before(f.To):
		return false
	}
	return true
}

// Queue reads and redrives the DLQ.
type Queue struct {
	cl  *kgo.Client // egress cluster: reads dlq topics, produces to egress
	st  Store
	now func() time.Time
	// read counts the records scans have read (the tests').
	read atomic.Int64
}

// New returns a Queue over an egress cluster client.
func New(cl *kgo.Client, st Store) *Queue { return &Queue{cl: cl, st: st, now: time.Now} }

// List returns the newest limit entries f selects, the latest record of
// each delivery, most recent failure first, and how many f selects in
// all. It reads the queue's records once, holding the limit entries, a
// batch of those waiting for their statuses, and an 8-byte hash of each
// delivery counted — not every entry f selects: "include redriven" (f.All)
// is the whole queue, and listing it whole held more than a gigabyte for
// a million dead letters (docs/benchmarks.md, "The dead-letter queue
// after an outage").
func (q *Queue) List(ctx context.Context, f Filter, limit int) ([]Entry, int, error) {
	top := newestEntries{limit: max(limit, 0), at: map[string]int{}}
	counted := newDeliverySet()
	bt := q.batcher(f, func(sel []Entry) error {
		for _, e := range sel {
			counted.add(e.DeliveryID)
			// Neither the status read nor the delivery (whose body is a
			// slice of its fetch's buffer) stays with an entry kept.
			e.stored, e.delivery = nil, envelope.Delivery{}
			top.add(e)
		}
		return nil
	})
	each := func(r *kgo.Record) error {
		if e, ok := bt.entry(r); ok {
			return bt.add(ctx, e)
		}
		return nil
	}
	// Every event's topics, unless a subscription names one: the
	// archive of a partner's too, whatever subscriptions the store holds.
	topics := func() (map[string]bool, error) { return f.topics(), nil }
	_, err := q.records(ctx, f, topics, nil, each)
	if err == nil {
		err = bt.flush(ctx)
	}
	if err != nil {
		return nil, 0, err
	}
	return top.sorted(), len(counted.m), nil
}

// newestEntries keeps the limit entries of the latest failures, one per
// delivery (its latest): a heap whose root is the entry that would be
// listed last.
type newestEntries struct {
	limit int
	h     []Entry
	at    map[string]int // delivery id → index in h
}

// listOrder is a list's order: the most recent failure first, then by
// delivery id.
func listOrder(a, b Entry) int {
	return cmp.Or(b.FailedAt.Compare(a.FailedAt), strings.Compare(a.DeliveryID, b.DeliveryID))
}

// after reports whether a is listed after b.
func after(a, b Entry) bool { return listOrder(a, b) > 0 }

func (n *newestEntries) Len() int           { return len(n.h) }
func (n *newestEntries) Less(i, j int) bool { return after(n.h[i], n.h[j]) }
func (n *newestEntries) Swap(i, j int) {
	n.h[i], n.h[j] = n.h[j], n.h[i]
	n.at[n.h[i].DeliveryID], n.at[n.h[j].DeliveryID] = i, j
}
func (n *newestEntries) Push(x any) {
	n.at[x.(Entry).DeliveryID] = len(n.h)
	n.h = append(n.h, x.(Entry))
}
func (n *newestEntries) Pop() any {
	e := n.h[len(n.h)-1]
	n.h = n.h[:len(n.h)-1]
	delete(n.at, e.DeliveryID)
	return e
}

func (n *newestEntries) add(e Entry) {
	switch i, ok := n.at[e.DeliveryID]; {
	case ok:
		if e.FailedAt.After(n.h[i].FailedAt) { // a later record of it
			n.h[i] = e
			heap.Fix(n, i)
		}
	case len(n.h) < n.limit:
		heap.Push(n, e)
	case n.limit > 0 && after(n.h[0], e):
		delete(n.at, n.h[0].DeliveryID)
		n.h[0] = e
		n.at[e.DeliveryID] = 0
		heap.Fix(n, 0)
	}
}

// sorted returns the entries kept, most recent failure first.
func (n *newestEntries) sorted() []Entry {
	out := slices.Clone(n.h)
	slices.SortFunc(out, listOrder)
	return out
}

// entryOfRecord reads a wh.dlq.* record's entry; false if it holds none.
func entryOfRecord(r *kgo.Record) (Entry, bool) {
	var rec envelope.DeadLetter
	if fastjson.Unmarshal(r.Value, &rec) != nil || rec.Delivery.ID == "" {
		return Entry{}, false
	}
	e := Entry{DeliveryID: rec.Delivery.ID, EventID: rec.Delivery.EventID, SubscriptionID: rec.Delivery.SubscriptionID,
		PartnerID: rec.Delivery.PartnerID, SchemaID: rec.Delivery.SchemaID, Reason: rec.Reason, Attempts: rec.Attempts,
		FailedAt: rec.FailedAt, delivery: rec.Delivery}
	if rec.LastAttempt != nil {
		e.LastStatusCode, e.LastError = rec.LastAttempt.StatusCode, rec.LastAttempt.Error
	}
	return e, true
}

// idSet is the delivery ids of ids, each a delivery id or
// EVENT_ID/DELIVERY_ID.
func idSet(ids []string) map[string]bool {
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		_, d, ok := strings.Cut(id, "/")
		if !ok {
			d = id
		}
		set[d] = true
	}
	return set
}

// withStatus reads the statuses of entries (in one GetDeliveries) and
// returns, in place, those still in the queue — all of them if f.All —
// each with its status.
func (q *Queue) withStatus(ctx context.Context, f Filter, entries []Entry) ([]Entry, error) {
	keys := make([]store.DeliveryKey, len(entries))
	for i, e := range entries {
		keys[i] = store.DeliveryKey{EventID: e.EventID, ID: e.DeliveryID}
	}
	stored, err := q.st.GetDeliveries(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("dead letters' deliveries: %w", err)
	}
	out := entries[:0]
	for i, e := range entries {
		e.Status = store.DeliveryDeadLettered // no item (expired): still in the queue
		if stored[i].ID != "" {
			e.stored, e.Status = &stored[i], stored[i].Status
		}
		if f.All || e.Status == store.DeliveryDeadLettered {
			out = append(out, e)
		}
	}
	return out, nil
}

// batcher gathers the entries a read of the queue selects and hands them
// on a batch at a time, with their statuses, to fn: those still in the
// queue, all of them if f.All (withStatus). The statuses are read a batch
// at once (one GetItem each was a round trip each on DynamoDB: seconds
// for every thousand entries), and of the entries the records select
// alone: a few selected, or one partner's, not the whole queue's.
type batcher struct {
	q   *Queue
	f   Filter
	ids map[string]bool // f.DeliveryIDs' delivery ids
	buf []Entry
	fn  func(sel []Entry) error
}

func (q *Queue) batcher(f Filter, fn func(sel []Entry) error) *batcher {
	return &batcher{q: q, f: f, ids: idSet(f.DeliveryIDs), buf: make([]Entry, 0, batch), fn: fn}
}

// entry is r's entry if f selects it by what the record says.
func (b *batcher) entry(r *kgo.Record) (Entry, bool) {
	e, ok := entryOfRecord(r)
	return e, ok && b.f.matchRecord(e, b.ids)
}

func (b *batcher) add(ctx context.Context, e Entry) error {
	if b.buf = append(b.buf, e); len(b.buf) == batch {
		return b.flush(ctx)
	}
	return nil
}

func (b *batcher) flush(ctx context.Context) error {
	if len(b.buf) == 0 {
		return nil
	}
	sel, err := b.q.withStatus(ctx, b.f, b.buf)
	if err == nil {
		err = b.fn(sel)
	}
	clear(b.buf) // their deliveries' bodies, for the collector
	b.buf = b.buf[:0]
	return err
}

// deliverySet is a set of deliveries by an 8-byte hash of each id (≈ 16
// bytes an entry against ≈ 90 for the id): two ids of one hash count as
// one — at a million, a chance in ≈ 3·10⁷.
type deliverySet struct {
	seed maphash.Seed
	m    map[uint64]struct{}
}

func newDeliverySet() deliverySet {
	return deliverySet{seed: maphash.MakeSeed(), m: map[uint64]struct{}{}}
}

// add reports whether id was not in the set yet.
func (s deliverySet) add(id string) bool {
	h := maphash.String(s.seed, id)
	if _, ok := s.m[h]; ok {
		return false
	}
	s.m[h] = struct{}{}
	return true
}

// scan reads every record present when it starts in the wh.dlq.* topics
// that only names (nil: all of them), calling fn with each until fn
// returns an error, and size with how many records they hold before the
// first.
func (q *Queue) scan(ctx context.Context, only map[string]bool, size func(int), fn func(*kgo.Record) error) error {
	req := kmsg.NewPtrMetadataRequest()
	resp, err := req.RequestWith(ctx, q.cl)
	if err != nil {
		return fmt.Errorf("list dlq topics: %w", err)
	}
	var topics []string
	for _, t := range resp.Topics {
		if t.Topic != nil && t.ErrorCode == 0 && strings.HasPrefix(*t.Topic, topic.DLQPrefix) && (only == nil || only[*t.Topic]) {
			topics = append(topics, *t.Topic)
		}
	}
	if len(topics) == 0 {
		size(0)
		return nil
	}
	starts, ends, err := q.bounds(ctx, topics)
	if err != nil {
		return err
	}
	// Each partition from its start — what retention has not removed —
	// to its end now. One retention has emptied (its start at its end)
	// is not read: waiting for a record of it waited for ever.
	assign := map[string]map[int32]kgo.Offset{}
	remaining := map[string]map[int32]int64{}
	n := 0
	ends.Each(func(o kadm.ListedOffset) {
		start, ok := starts.Lookup(o.Topic, o.Partition)
		if o.Err != nil || !ok || start.Err != nil || start.Offset >= o.Offset {
			return
		}
		if assign[o.Topic] == nil {
			assign[o.Topic], remaining[o.Topic] = map[int32]kgo.Offset{}, map[int32]int64{}
		}
		assign[o.Topic][o.Partition] = kgo.NewOffset().At(start.Offset)
		remaining[o.Topic][o.Partition] = o.Offset
		n += int(o.Offset - start.Offset)
	})
	size(n)
	if len(assign) == 0 {
		return nil
	}
	reader, err := q.reader(assign)
	if err != nil {
		return err
	}
	defer reader.Close()
	left := 0
	for _, ps := range remaining {
		left += len(ps)
	}
	for left > 0 {
		fetches, err := poll(ctx, reader)
		if err != nil {
			return err
		}
		if fetches == nil {
			// Quiet: a partition retention has emptied since is done.
			starts, err := q.starts(ctx, topics)
			if err != nil {
				return err
			}
			for t, ps := range remaining {
				for p, end := range ps {
					if start, ok := starts.Lookup(t, p); ok && start.Err == nil && start.Offset >= end {
						delete(ps, p)
						left--
					}
				}
			}
			continue
		}
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			end, ok := remaining[r.Topic][r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			q.read.Add(1)
			if err := fn(r); err != nil {
				return err
			}
			if r.Offset >= end-1 {
				delete(remaining[r.Topic], r.Partition)
				left--
			}
		}
	}
	return nil
}

// reader consumes the queue's partitions from where assign says, a fetch
// of at most 4 MiB (kgo's default is 50): what it holds while its records
// are read is a fetch, buffered, per broker — the queue's size does not
// show in its memory.
func (q *Queue) reader(assign map[string]map[int32]kgo.Offset) (*kgo.Client, error) {
	return kgo.NewClient(kgo.SeedBrokers(q.cl.OptValue(kgo.SeedBrokers).([]string)...), kgo.ConsumePartitions(assign),
		kgo.FetchMaxBytes(4<<20), kgo.FetchMaxPartitionBytes(1<<20))
}

// poll returns the reader's next fetches, or why there are none; none
// and no error when none came for quietAfter, for its caller to see
// whether what it waits for is still in the queue (starts).
func poll(ctx context.Context, reader *kgo.Client) (kgo.Fetches, error) {
	pctx, cancel := context.WithTimeout(ctx, quietAfter)
	defer cancel()
	fetches := reader.PollFetches(pctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if pctx.Err() != nil && fetches.NumRecords() == 0 {
		return nil, nil // quiet
	}
	var ferr error
	fetches.EachError(func(_ string, _ int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) {
			ferr = err
		}
	})
	if ferr != nil {
		return nil, fmt.Errorf("read dlq: %w", ferr)
	}
	return fetches, nil
}

// quietAfter is how long a read of the queue waits for a fetch before it
// asks where the partitions it waits on start: retention may have
// removed, while it read, the records it was waiting for (the reader,
// reset to the partition's new start, then waited for ever).
const quietAfter = 2 * time.Second

// bounds lists where the partitions of topics start and end now.
func (q *Queue) bounds(ctx context.Context, topics []string) (starts, ends kadm.ListedOffsets, err error) {
	if starts, err = q.starts(ctx, topics); err != nil {
		return nil, nil, err
	}
	if ends, err = kadm.NewClient(q.cl).ListEndOffsets(ctx, topics...); err != nil {
		return nil, nil, fmt.Errorf("dlq end offsets: %w", err)
	}
	return starts, ends, nil
}

// starts lists where the partitions of topics start.
func (q *Queue) starts(ctx context.Context, topics []string) (kadm.ListedOffsets, error) {
	starts, err := kadm.NewClient(q.cl).ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("dlq start offsets: %w", err)
	}
	return starts, nil
}

// Progress reports a redrive's or a reindex's advance: the job reads the
// dead-letter topics its filter can select from, once, a batch of
// entries at a time.
type Progress struct {
	// Records is how many records those topics held when the job
	// started, Scanned how many of them it has read: its advance.
	Records int `json:"records"`
	Scanned int `json:"scanned"`
	// Total counts the entries the filter has selected so far — waiting
	// in the queue, the latest record of each delivery — final once the
	// job ends; Done those handled.
	Total    int `json:"total"`
	Done     int `json:"done"`
	Redriven int `json:"redriven"`
	Skipped  int `json:"skipped"`
	// Indexed counts the dead letters a reindex added to the store's
	// status index (Reindex).
	Indexed int      `json:"indexed,omitempty"`
	Notes   []string `json:"notes,omitempty"` // why entries were skipped
}

// Redrive writes every entry matching f back to its egress topic, calling
// progress as it goes. Entries whose subscription is not Approved are
// skipped and said so: they would only fail again.
func (q *Queue) Redrive(ctx context.Context, f Filter, progress func(Progress)) (Progress, error) {
	subs := map[string]store.Subscription{}
	return q.inBatches(ctx, f, progress, func(chunk []Entry, p *Progress) error {
		var recs []*kgo.Record
		var statuses, before []store.Delivery // before: as read, to put back if the writes fail
		for _, e := range chunk {
			sub, ok := subs[e.SubscriptionID]
			if !ok {
				var err error
				sub, err = q.st.GetSubscription(ctx, e.SubscriptionID)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				subs[e.SubscriptionID] = sub
			}
			if sub.Status != store.SubscriptionApproved {
				p.Skipped++
				p.Notes = appendOnce(p.Notes, fmt.Sprintf("subscription %s is %s, not Approved: approve it, then redrive", e.SubscriptionID, orNone(sub.Status)))
				continue
			}
			value, err := json.Marshal(e.delivery)
			if err != nil {
				return err
			}
			_, event, _, _ := catalog.SplitSchemaID(e.SchemaID)
			// Keyed as the processor keyed it (the event's partition
			// key, its id without one): in its key's partition, after
			// what the key's deliveries are there.
			key := cmp.Or(e.delivery.Key, e.EventID)
			recs = append(recs, &kgo.Record{Topic: topic.Egress(e.PartnerID, event), Key: []byte(key), Value: value,
				Headers: []kgo.RecordHeader{{Key: "whp-delivery-id", Value: []byte(e.DeliveryID)}, {Key: "whp-redrive", Value: []byte("1")}}})
			d := store.Delivery{EventID: e.EventID, ID: e.DeliveryID, SubscriptionID: e.SubscriptionID, PartnerID: e.PartnerID,
				SchemaID: e.SchemaID, Status: store.DeliveryDeadLettered, Reason: e.Reason, CreatedAt: q.now().UTC(), UpdatedAt: e.FailedAt}
			if e.stored != nil {
				d = *e.stored // as read with the entry
			}
			before = append(before, d)
			d.Status, d.Reason, d.UpdatedAt, d.NextAttemptAt = store.DeliveryPending, "", q.now().UTC(), time.Time{}
			statuses = append(statuses, d)
		}
		// The status first: an entry is out of the queue once pending,
		// and the dispatcher's result then overwrites it.
		if len(statuses) > 0 {
			if err := q.st.PutDeliveries(ctx, statuses); err != nil {
				return fmt.Errorf("redrive: %w", err)
			}
			if err := q.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				// Back into the queue: nothing was redriven.
				if rerr := q.st.PutDeliveries(context.WithoutCancel(ctx), before); rerr != nil {
					err = errors.Join(err, rerr)
				}
				return fmt.Errorf("redrive: %w", err)
			}
		}
		p.Redriven += len(recs)
		return nil
	})
}

// batch is how many entries a redrive, a reindex or a list reads the
// statuses of, and writes, at once: on the embedded store a transaction
// and its fsync, on DynamoDB five BatchGetItems and twenty BatchWriteItems
// in flight together (GetDeliveries, PutDeliveries), and one produce. A
// batch of 100 redrove 50,000 in 3.2–3.8 s on the embedded store, 2.0–2.3
// s at 500 (BenchmarkRedrive), for a megabyte or so more held.
const batch = 500

// inBatches reads the queue's records f can select and calls fn with
// each batch of the entries f selects, with their statuses, which fn
// counts in p as it goes; progress is called before the first record,
// after each batch, and every 10,000 records read.
//
// The records it reads are the dead-letter topics f can select from
// (topicsOf), once — or, for deliveries f names by their event and
// delivery ids, the records their statuses say are theirs (locate).
//
// What it holds is a batch of entries, the reader's fetch, and an 8-byte
// hash of each delivery it has selected (a delivery dead-lettered,
// redriven and dead-lettered again has a record for each time: the first
// selects it, by the record's failure time when f has a range), not the
// queue: a List of the whole queue to act on held 1.1–1.7 KB an entry of
// a 1 KiB body at once, more than a gigabyte for a million dead letters
// (BenchmarkRedrive: 145–172 MB for 100,000; 19–49 MB since).
func (q *Queue) inBatches(ctx context.Context, f Filter, progress func(Progress), fn func(chunk []Entry, p *Progress) error) (Progress, error) {
	var p Progress
	report := func() {
		if progress != nil {
			progress(p)
		}
	}
	bt := q.batcher(f, func(sel []Entry) error {
		p.Total += len(sel)
		if err := fn(sel, &p); err != nil {
			return err
		}
		p.Done += len(sel)
		report()
		return nil
	})
	seen := newDeliverySet()
	each := func(r *kgo.Record) error {
		if p.Scanned++; p.Scanned%10_000 == 0 {
			report()
		}
		if e, ok := bt.entry(r); ok && seen.add(e.DeliveryID) {
			return bt.add(ctx, e)
		}
		return nil
	}
	topics := func() (map[string]bool, error) { return q.topicsOf(ctx, f) }
	gone, err := q.records(ctx, f, topics, func(n int) { p.Records = n; report() }, each)
	if gone > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("%d of them past the queue's retention: gone, not redriven", gone))
	}
	if err != nil {
		return p, err
	}
	err = bt.flush(ctx)
	p.Records = max(p.Records, p.Scanned) // records written while it read
	return p, err
}

// records calls each with the queue's records f can select, until each
// returns an error: for the deliveries f names by their event and delivery
// ids, the records their statuses locate (locate, readAt); if any is left
// to look for, every record of topics' topics (scan). size, if not nil,
// is told how many records that is as it learns it; gone counts the
// located records retention has removed.
func (q *Queue) records(ctx context.Context, f Filter, topics func() (map[string]bool, error), size func(int), each func(*kgo.Record) error) (gone int, err error) {
	tell := func(n int) {
		if size != nil {
			size(n)
		}
	}
	at, rest, err := q.locate(ctx, f)
	if err != nil {
		return 0, err
	}
	if len(at) > 0 {
		tell(len(at))
		if gone, err = q.readAt(ctx, at, each); err != nil {
			return gone, err
		}
		tell(len(at) - gone)
	}
	if !rest {
		return gone, nil
	}
	only, err := topics()
	if err != nil {
		return gone, err
	}
	located := len(at) - gone
	return gone, q.scan(ctx, only, func(n int) { tell(located + n) }, each)
}

// keys are the deliveries f names by their event and delivery ids
// ("EVENT_ID/DELIVERY_ID", as the console's rows name them); false if f
// names none, or any by its delivery id alone.
func (f Filter) keys() ([]store.DeliveryKey, bool) {
	keys := make([]store.DeliveryKey, 0, len(f.DeliveryIDs))
	for _, id := range f.DeliveryIDs {
		ev, d, ok := strings.Cut(id, "/")
		if !ok {
			return nil, false
		}
		keys = append(keys, store.DeliveryKey{EventID: ev, ID: d})
	}
	return keys, len(keys) > 0
}

// locate reads the statuses of the deliveries f names by their event and
// delivery ids, and returns those still dead-lettered whose status says
// where their dead letter is (the dispatcher records it: Topic,
// Partition, Offset), and whether the queue's topics must be read for the
// others — named by a delivery id alone, with no status (past the
// history's TTL), or dead-lettered by a version that did not record where.
// A redrive of a few dead letters picked among a million reads their
// records, not the million. f.All (a list of what was redriven too)
// reads the topics: a redriven delivery's status no longer says where.
func (q *Queue) locate(ctx context.Context, f Filter) (at []store.Delivery, rest bool, err error) {
	keys, ok := f.keys()
	if !ok || f.All {
		return nil, true, nil
	}
	stored, err := q.st.GetDeliveries(ctx, keys)
	if err != nil {
		return nil, false, fmt.Errorf("dead letters' deliveries: %w", err)
	}
	for _, d := range stored {
		switch {
		case d.ID != "" && d.Status != store.DeliveryDeadLettered:
			// Redriven, or never dead-lettered: not in the queue.
		case d.ID != "" && strings.HasPrefix(d.Topic, topic.DLQPrefix):
			at = append(at, d)
		default:
			rest = true
		}
	}
	return at, rest, nil
}

// readAt reads the records at the places at's deliveries give, calling fn
// with each until fn returns an error, and returns how many of them
// retention has removed from the queue. A partition's records are read
// in their order, and the reader jumps over a gap of more than
// readAtGap records rather than read through it.
func (q *Queue) readAt(ctx context.Context, at []store.Delivery, fn func(*kgo.Record) error) (gone int, err error) {
	want := map[string]map[int32][]int64{}
	var topics []string
	for _, d := range at {
		if want[d.Topic] == nil {
			want[d.Topic] = map[int32][]int64{}
			topics = append(topics, d.Topic)
		}
		want[d.Topic][d.Partition] = append(want[d.Topic][d.Partition], d.Offset)
	}
	starts, ends, err := q.bounds(ctx, topics)
	if err != nil {
		return 0, err
	}
	assign := map[string]map[int32]kgo.Offset{}
	left := 0
	for t, ps := range want {
		for p, offsets := range ps {
			slices.Sort(offsets)
			offsets = slices.Compact(offsets)
			start, sok := starts.Lookup(t, p)
			end, eok := ends.Lookup(t, p)
			kept := offsets[:0]
			for _, o := range offsets {
				if sok && eok && start.Err == nil && end.Err == nil && o >= start.Offset && o < end.Offset {
					kept = append(kept, o)
				} else {
					gone++
				}
			}
			if len(kept) == 0 {
				delete(ps, p)
				continue
			}
			ps[p] = kept
			if assign[t] == nil {
				assign[t] = map[int32]kgo.Offset{}
			}
			assign[t][p] = kgo.NewOffset().At(kept[0])
			left += len(kept)
		}
	}
	if left == 0 {
		return gone, nil
	}
	reader, err := q.reader(assign)
	if err != nil {
		return gone, err
	}
	defer reader.Close()
	for left > 0 {
		fetches, err := poll(ctx, reader)
		if err != nil {
			return gone, err
		}
		if fetches == nil {
			// Quiet: what retention has removed since is gone.
			starts, err := q.starts(ctx, topics)
			if err != nil {
				return gone, err
			}
			for t, ps := range want {
				for p, offsets := range ps {
					start, ok := starts.Lookup(t, p)
					for ok && start.Err == nil && len(offsets) > 0 && offsets[0] < start.Offset {
						offsets, gone, left = offsets[1:], gone+1, left-1
					}
					want[t][p] = offsets
				}
			}
			continue
		}
		last := map[string]map[int32]int64{} // each partition's last record read
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			q.read.Add(1)
			if last[r.Topic] == nil {
				last[r.Topic] = map[int32]int64{}
			}
			last[r.Topic][r.Partition] = r.Offset
			offsets := want[r.Topic][r.Partition]
			// One past: not in the partition after all (a record the
			// log no longer has); one before: read on the way.
			for len(offsets) > 0 && offsets[0] < r.Offset {
				offsets, gone, left = offsets[1:], gone+1, left-1
			}
			if len(offsets) > 0 && offsets[0] == r.Offset {
				offsets, left = offsets[1:], left-1
				if err := fn(r); err != nil {
					return gone, err
				}
			}
			want[r.Topic][r.Partition] = offsets
		}
		jump := map[string]map[int32]kgo.EpochOffset{}
		for t, ps := range last {
			for p, o := range ps {
				switch offsets := want[t][p]; {
				case len(offsets) == 0:
					reader.PauseFetchPartitions(map[string][]int32{t: {p}})
				case offsets[0]-o > readAtGap:
					if jump[t] == nil {
						jump[t] = map[int32]kgo.EpochOffset{}
					}
					jump[t][p] = kgo.EpochOffset{Epoch: -1, Offset: offsets[0]}
				}
			}
		}
		reader.SetOffsets(jump)
	}
	return gone, nil
}

// readAtGap is the most records readAt reads through to reach the next
// it wants, rather than jump: a fetch or two of dead letters.
const readAtGap = 1000

// Indexer is a store that can add to its status indexes the deliveries
// written before it had them (store/dynamo.Store.IndexDeliveries). The
// embedded store builds its indexes when it opens, and is not one.
type Indexer interface {
	IndexDeliveries(ctx context.Context, ds []store.Delivery) (int, error)
}

// Reindex adds to the store's index of dead letters — what Waiting, the
// console's DLQ page and GET /v1/dlq read — the dead letters waiting in
// the queue whose status items were written before the index existed: a
// step of an upgrade from a version without it, on DynamoDB
// (infra/modules/dynamodb/README.md). It reads the queue as List does and
// asks the store to index each entry still dead-lettered; what is
// indexed already, or has changed since, is left as it is. Run again, it
// indexes nothing.
func (q *Queue) Reindex(ctx context.Context, progress func(Progress)) (Progress, error) {
	ix, ok := q.st.(Indexer)
	if !ok {
		return Progress{Notes: []string{"this store builds its indexes when it opens: nothing to do"}}, nil
	}
	return q.inBatches(ctx, Filter{}, progress, func(chunk []Entry, p *Progress) error {
		ds := make([]store.Delivery, 0, len(chunk))
		for _, e := range chunk {
			if e.stored != nil { // none: expired, in no history
				ds = append(ds, *e.stored)
			}
		}
		n, err := ix.IndexDeliveries(ctx, ds)
		p.Indexed += n
		if err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		return nil
	})
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func orNone(s string) string {
	if s == "" {
		return "gone"
	}
	return s
}
