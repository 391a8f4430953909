package dlq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/internal/teststores"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/dynamo"
)

// deadLetters is a DLQ of n entries over two subscriptions, each
// delivery dead-lettered in st, in a kfake cluster of its own.
func deadLetters(tb testing.TB, n int, st Store) *Queue {
	tb.Helper()
	return deadLettersOf(tb, n, 0, st)
}

// deadLettersOf is deadLetters with a body of size bytes for each
// delivery, random hex (as uncompressible as real bodies are: a body
// repeated compresses a batch hundredfold); {"n":1} for 0.
func deadLettersOf(tb testing.TB, n, size int, st Store) *Queue {
	tb.Helper()
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic.DLQ("thing.happened"), topic.Egress("p0", "thing.happened"), topic.Egress("p1", "thing.happened"),
		topic.DLQ("other.happened")))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	now := time.Now().UTC()
	ds := make([]store.Delivery, n) // written by the produce's promises
	for i := range n {
		body := json.RawMessage(`{"n":1}`)
		if size > 0 {
			data := make([]byte, size/2)
			rand.Read(data)
			body = json.RawMessage(`"` + hex.EncodeToString(data) + `"`)
		}
		sub := fmt.Sprintf("p%d#bench#thing.happened#1", i%2)
		d := envelope.Delivery{ID: fmt.Sprintf("d%06d", i), EventID: fmt.Sprintf("e%06d", i), SubscriptionID: sub, PartnerID: fmt.Sprintf("p%d", i%2),
			SchemaID: "bench#thing.happened#1", Event: "thing.happened", AcceptedAt: now, CreatedAt: now, Body: body}
		v, _ := json.Marshal(envelope.DeadLetter{Delivery: d, Reason: "attempts exhausted", Attempts: 8, FailedAt: now.Add(time.Duration(i) * time.Millisecond)})
		ds[i] = store.Delivery{EventID: d.EventID, ID: d.ID, SubscriptionID: sub, PartnerID: d.PartnerID, SchemaID: d.SchemaID,
			Status: store.DeliveryDeadLettered, Reason: "attempts exhausted", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
		cl.Produce(ctx, &kgo.Record{Topic: topic.DLQ("thing.happened"), Key: []byte(d.EventID), Value: v}, func(r *kgo.Record, err error) {
			if err == nil { // where the dispatcher's status says its dead letter is
				ds[i].Topic, ds[i].Partition, ds[i].Offset = r.Topic, r.Partition, r.Offset
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(ds); i += 1000 {
		if err := st.PutDeliveries(ctx, ds[i:min(i+1000, len(ds))]); err != nil {
			tb.Fatal(err)
		}
	}
	return New(cl, st)
}

// testDelivery is a delivery of event's to partner's subscription, as
// the fixtures make them.
func testDelivery(id, eventID, partner, event string) envelope.Delivery {
	now := time.Now().UTC()
	schema := "bench#" + event + "#1"
	return envelope.Delivery{ID: id, EventID: eventID, SubscriptionID: partner + "#" + schema, PartnerID: partner, SchemaID: schema,
		Event: event, AcceptedAt: now, CreatedAt: now, Body: json.RawMessage(`{"n":1}`)}
}

// putDeadLetter writes d's record to its event's dead-letter queue,
// keyed by its event's id as the fixtures' are: attempts exhausted, its
// last at failedAt.
func putDeadLetter(tb testing.TB, q *Queue, d envelope.Delivery, attempts int, failedAt time.Time) {
	tb.Helper()
	v, _ := json.Marshal(envelope.DeadLetter{Delivery: d, Reason: "attempts exhausted", Attempts: attempts, FailedAt: failedAt})
	if err := q.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic.DLQ(d.Event), Key: []byte(d.EventID), Value: v}).FirstErr(); err != nil {
		tb.Fatal(err)
	}
}

// subscribe puts subscription id (PARTNER#SCHEMA_ID) in st, in status.
func subscribe(tb testing.TB, st store.Store, id, status string) {
	tb.Helper()
	partner, schema, _ := strings.Cut(id, "#")
	if _, err := st.PutSubscription(context.Background(), store.Subscription{ID: id, PartnerID: partner, SchemaID: schema, Status: status}); err != nil {
		tb.Fatal(err)
	}
}

// listAll lists every entry f selects.
func listAll(ctx context.Context, q *Queue, f Filter) ([]Entry, error) {
	es, total, err := q.List(ctx, f, math.MaxInt)
	if err == nil && total != len(es) {
		err = fmt.Errorf("%d entries listed of %d", len(es), total)
	}
	return es, err
}

// benchQueues runs read in a sub-benchmark for each queue the DLQ
// benchmarks read, of n dead letters: an outage's thousands on both
// stores, and a hundred thousand on the embedded one (on dynalite,
// writing them takes minutes).
func benchQueues(b *testing.B, read func(b *testing.B, q *Queue, n int)) {
	for _, st := range teststores.All {
		sizes := []int{1_000, 10_000}
		if st.Name == teststores.All[0].Name {
			sizes = append(sizes, 100_000)
		}
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", st.Name, n), func(b *testing.B) {
				read(b, deadLetters(b, n, st.Open(b)), n)
			})
		}
	}
}

// BenchmarkList lists a DLQ of 1,000 to 100,000 entries, as the console's
// DLQ page with "include redriven", a redrive, and `whp dlq list --all`
// do (and, until round 17, the DLQ page on each load).
//
//	go test -run '^$' -bench List -benchmem ./runtime/dlq
func BenchmarkList(b *testing.B) {
	benchQueues(b, func(b *testing.B, q *Queue, n int) {
		var held float64
		for b.Loop() {
			b.StopTimer()
			stop := liveHeap()
			b.StartTimer()
			es, total, err := q.List(context.Background(), Filter{}, 200)
			b.StopTimer()
			peak, after := stop()
			held = max(held, peak-after)
			b.StartTimer()
			if err != nil || len(es) != 200 || total != n {
				b.Fatalf("%d entries of %d, %v", len(es), total, err)
			}
		}
		b.ReportMetric(held/(1<<20), "held-MB")
	})
}

// BenchmarkWaiting reads what the console's DLQ page shows on each load —
// the count by partner and the newest 200 — from the same queues as
// BenchmarkList, on both stores.
//
//	go test -run '^$' -bench Waiting -benchmem ./runtime/dlq
func BenchmarkWaiting(b *testing.B) {
	benchQueues(b, func(b *testing.B, q *Queue, n int) {
		for b.Loop() {
			w, err := q.Waiting(context.Background(), Filter{}, 200)
			if err != nil || len(w.Entries) != 200 || w.Total != n {
				b.Fatalf("%d entries of %d, %v", len(w.Entries), w.Total, err)
			}
		}
	})
}

// A list of one subscription's dead letters reads its event's topic
// alone; an unfiltered one reads them all.
func TestListReadsTheSubscriptionsTopic(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	q := deadLetters(t, 50, st) // thing.happened's
	now := time.Now().UTC()
	for i := range 30 {
		putDeadLetter(t, q, testDelivery(fmt.Sprintf("o%06d", i), fmt.Sprintf("eo%06d", i), "p0", "other.happened"), 8, now)
	}
	for _, c := range []struct {
		f           Filter
		read, found int
	}{
		{Filter{SubscriptionID: "p0#bench#thing.happened#1"}, 50, 25},
		{Filter{SubscriptionID: "p0#bench#other.happened#1", All: true}, 30, 30},
		{Filter{}, 80, 80}, // other.happened's have no status: still in the queue
	} {
		before := q.read.Load()
		es, err := listAll(ctx, q, c.f)
		if read := q.read.Load() - before; err != nil || read != int64(c.read) || len(es) != c.found {
			t.Errorf("List(%+v): read %d records, found %d (%v); want %d and %d", c.f, read, len(es), err, c.read, c.found)
		}
	}
}

// List reads each entry's status in the store — more entries than one
// BatchGetItem takes — and leaves out those redriven (unless asked for
// all); a filter by delivery IDs takes those alone; Redrive of one
// subscription's writes them back to their egress topic as pending, and
// a second redrive finds none left. On both stores.
func TestListAndRedrive(t *testing.T) {
	for _, s := range teststores.All {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			st := s.Open(t)
			q := deadLetters(t, 250, st)
			// Two already redriven (pending again).
			for _, id := range []string{"d000003", "d000004"} {
				d, err := st.GetDelivery(ctx, "e"+id[1:], id)
				if err != nil {
					t.Fatal(err)
				}
				d.Status = store.DeliveryPending
				if err := st.PutDeliveries(ctx, []store.Delivery{d}); err != nil {
					t.Fatal(err)
				}
			}
			es, err := listAll(ctx, q, Filter{})
			if err != nil || len(es) != 248 {
				t.Fatalf("List: %d entries, %v; want 248", len(es), err)
			}
			if es[0].DeliveryID != "d000249" || es[0].Status != store.DeliveryDeadLettered || es[0].Attempts != 8 {
				t.Errorf("most recent first: %+v", es[0])
			}
			if all, _ := listAll(ctx, q, Filter{All: true}); len(all) != 250 {
				t.Errorf("List(all): %d entries", len(all))
			}
			picked, _ := listAll(ctx, q, Filter{DeliveryIDs: []string{"d000007", "d000003", "d000100"}, All: true})
			if len(picked) != 3 || picked[2].DeliveryID != "d000003" || picked[2].Status != store.DeliveryPending {
				t.Errorf("List(ids): %+v", picked)
			}
			subscribe(t, st, "p0#bench#thing.happened#1", store.SubscriptionApproved)
			p, err := q.Redrive(ctx, Filter{SubscriptionID: "p0#bench#thing.happened#1"}, nil)
			if err != nil || p.Total != 124 || p.Redriven != 124 || p.Skipped != 0 {
				t.Fatalf("Redrive: %+v, %v; want 124 redriven (p0's 125 but d000004)", p, err)
			}
			if d, err := st.GetDelivery(ctx, "e000000", "d000000"); err != nil || d.Status != store.DeliveryPending || d.Reason != "" {
				t.Errorf("a redriven delivery: %s, reason %q, %v; want pending without the dead letter's reason", d.Status, d.Reason, err)
			}
			if left, _ := listAll(ctx, q, Filter{SubscriptionID: "p0#bench#thing.happened#1"}); len(left) != 0 {
				t.Errorf("%d of p0's left after the redrive", len(left))
			}
			if left, _ := listAll(ctx, q, Filter{}); len(left) != 124 {
				t.Errorf("%d left in the queue, want p1's 124", len(left))
			}
		})
	}
}

// TestListNewest: a list keeps the newest it was asked for, the latest
// record of each delivery, and counts every delivery it selects once.
func TestListNewest(t *testing.T) {
	ctx := context.Background()
	q := deadLetters(t, 1000, teststores.All[0].Open(t)) // d000999 failed last
	es, total, err := q.List(ctx, Filter{}, 10)
	if err != nil || total != 1000 || len(es) != 10 || es[0].DeliveryID != "d000999" || es[9].DeliveryID != "d000990" {
		t.Fatalf("List(10) = %d entries of %d (%v), first %s", len(es), total, err, es[0].DeliveryID)
	}
	// d000998 failed again, later than any: listed first, once, with
	// its latest failure's attempts.
	putDeadLetter(t, q, testDelivery("d000998", "e000998", "p0", "thing.happened"), 9, time.Now().UTC().Add(time.Hour))
	es, total, err = q.List(ctx, Filter{All: true}, 3)
	if err != nil || total != 1000 || len(es) != 3 || es[0].DeliveryID != "d000998" || es[0].Attempts != 9 || es[1].DeliveryID != "d000999" || es[2].DeliveryID != "d000997" {
		t.Errorf("List(all, 3) after d000998 failed again = %+v, %d, %v", es, total, err)
	}
	if es, total, err := q.List(ctx, Filter{PartnerID: "p0"}, 0); err != nil || total != 500 || len(es) != 0 {
		t.Errorf("List(p0, 0) = %d entries of %d, %v; want none of 500", len(es), total, err)
	}
}

// TestRedriveABatchAtATime: a redrive reads the queue once and acts on
// it a batch at a time as it reads — its first batch is redriven before
// the queue is read to its end, where a list of the whole queue came
// first — and redrives a delivery with more than one record in the queue
// (dead-lettered, redriven, dead-lettered again) once: records of it in
// one batch, and in batches far apart when the delivery is dead-lettered
// again while the redrive runs.
func TestRedriveABatchAtATime(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	// p1's half: batches of batch, batch, and batch less five.
	n := 6*batch - 10
	q := deadLetters(t, n, st)
	subscribe(t, st, "p1#bench#thing.happened#1", store.SubscriptionApproved)
	// Records of deliveries again, after the others: each failed again
	// after an earlier redrive. Keyed as the fixture's, so in the same
	// partition as the first.
	again := func(i int) {
		putDeadLetter(t, q, testDelivery(fmt.Sprintf("d%06d", i), fmt.Sprintf("e%06d", i), "p1", "thing.happened"), 8, time.Now().UTC().Add(time.Hour))
	}
	again(1)     // read in the last batch; the first had it
	again(n - 1) // twice more in the last batch, which has it too
	again(n - 1)
	var reports []Progress
	failedAgain := false
	p, err := q.Redrive(ctx, Filter{PartnerID: "p1"}, func(p Progress) {
		reports = append(reports, p)
		if d, err := st.GetDelivery(ctx, "e000001", "d000001"); err == nil && d.Status == store.DeliveryPending && !failedAgain {
			// d000001, redriven in the batch just written (which of
			// them depends on the order the partitions are read in),
			// fails for good again while the redrive goes on to read
			// its later record.
			d.Status, failedAgain = store.DeliveryDeadLettered, true
			must(t, st.PutDeliveries(ctx, []store.Delivery{d}))
		}
	})
	if err != nil || p.Redriven != n/2 || p.Total != n/2 || p.Done != n/2 || p.Records != n+3 || p.Scanned != n+3 {
		t.Fatalf("Redrive = %+v, %v; want p1's %d redriven of %d records read", p, err, n/2, n+3)
	}
	early := slices.IndexFunc(reports, func(r Progress) bool { return r.Redriven > 0 && r.Scanned < r.Records })
	if early < 0 || reports[0].Records != n+3 {
		t.Errorf("no batch redriven before the queue was read to its end: %+v", reports)
	}
	// Each delivery once on its egress topic.
	ends, err := kadm.NewClient(q.cl).ListEndOffsets(ctx, topic.Egress("p1", "thing.happened"))
	must(t, err)
	var written int64
	ends.Each(func(o kadm.ListedOffset) { written += o.Offset })
	if written != int64(n/2) {
		t.Errorf("%d records written to p1's egress topic, want %d", written, n/2)
	}
	if p, err := q.Redrive(ctx, Filter{PartnerID: "p1"}, nil); err != nil || p.Redriven != 1 || p.Total != 1 {
		t.Errorf("a second redrive: %+v, %v; want d000001 alone, dead-lettered again", p, err)
	}
}

// TestRedrivePicked: dead letters picked by their event and delivery ids
// (the console's rows) are read where their statuses say they are, not
// found in the whole queue: three among 30,000 read three records and
// the fetches around them, jumping the gaps between; one whose status
// does not say (dead-lettered by a version before) sends the redrive to
// the queue's topics for it; one redriven already is left; one past the
// queue's retention is said to be gone. Bare delivery ids still work,
// from the queue.
func TestRedrivePicked(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	// 1 KiB bodies: each partition 13 MB, many fetches long.
	q := deadLettersOf(t, 30_000, 1024, st)
	for _, id := range []string{"p0#bench#thing.happened#1", "p1#bench#thing.happened#1"} {
		subscribe(t, st, id, store.SubscriptionApproved)
	}
	status := func(i int) store.Delivery {
		d, err := st.GetDelivery(ctx, fmt.Sprintf("e%06d", i), fmt.Sprintf("d%06d", i))
		must(t, err)
		return d
	}
	key := func(i int) string { return fmt.Sprintf("e%06d/d%06d", i, i) }
	// The first and the last dead letters of partition 0, and one of 1:
	// ≈ 10,000 records apart.
	first, last := -1, -1
	for i := range 30_000 {
		if d := status(i); d.Partition == 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	other, gone := 0, 0
	for status(other).Partition != 1 {
		other++
	}
	for d := status(gone); d.Partition != 2 || d.Offset != 0; d = status(gone) {
		gone++
	}
	if status(first).Topic != topic.DLQ("thing.happened") || status(last).Offset < 9_000 {
		t.Fatalf("the statuses do not locate their dead letters: %+v, %+v", status(first), status(last))
	}
	redrive := func(ids ...string) (Progress, int64) {
		t.Helper()
		before := q.read.Load()
		p, err := q.Redrive(ctx, Filter{DeliveryIDs: ids}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p, q.read.Load() - before
	}
	// Listed by them (GET /v1/dlq?delivery_id=…, whp dlq list
	// --delivery-id): read the same way.
	before := q.read.Load()
	es, total, err := q.List(ctx, Filter{DeliveryIDs: []string{key(first), key(last), key(other)}}, 10)
	if read := q.read.Load() - before; err != nil || total != 3 || len(es) != 3 || read > 10_000 {
		t.Errorf("three located, listed: %d of %d, %d records fetched, %v", len(es), total, read, err)
	}
	p, read := redrive(key(first), key(last), key(other))
	if p.Redriven != 3 || p.Total != 3 || p.Records != 3 || p.Scanned != 3 || read > 10_000 {
		t.Errorf("three located: %+v, %d records fetched; want 3 redriven, fewer than the partition's 10,000 fetched", p, read)
	}
	for _, i := range []int{first, last, other} {
		if d := status(i); d.Status != store.DeliveryPending {
			t.Errorf("d%06d after its redrive: %s", i, d.Status)
		}
	}
	// d000011 dead-lettered before statuses said where; gone, the first
	// of partition 2, past the queue's retention (deleted here: the
	// partition starts after it); d000015 as before; first redriven
	// already.
	old := status(11)
	old.Topic, old.Partition, old.Offset = "", 0, 0
	must(t, st.PutDeliveries(ctx, []store.Delivery{old}))
	_, err = kadm.NewClient(q.cl).DeleteRecords(ctx, kadm.Offsets{topic.DLQ("thing.happened"): {2: {Topic: topic.DLQ("thing.happened"), Partition: 2, At: 1}}})
	must(t, err)
	p, read = redrive(key(11), key(gone), key(15), key(first))
	if p.Redriven != 2 || p.Total != 2 || p.Scanned < 29_000 || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "1 of them past the queue's retention") {
		t.Errorf("one old, one gone, one located, one redriven already: %+v, %d fetched", p, read)
	}
	if d := status(gone); d.Status != store.DeliveryDeadLettered {
		t.Errorf("d%06d, gone from the queue: %s", gone, d.Status)
	}
	// Retention removes the last of partition 0 while a read of the
	// picked jumps to it: gone, not waited for.
	for _, i := range []int{first, last} {
		d := status(i)
		d.Status = store.DeliveryDeadLettered
		must(t, st.PutDeliveries(ctx, []store.Delivery{d}))
	}
	bounded, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	calls := 0
	removed, err := q.readAt(bounded, []store.Delivery{status(first), status(last)}, func(*kgo.Record) error {
		if calls++; calls == 1 {
			_, err := kadm.NewClient(q.cl).DeleteRecords(ctx, kadm.Offsets{topic.DLQ("thing.happened"): {0: {Topic: topic.DLQ("thing.happened"), Partition: 0, At: status(last).Offset + 1}}})
			must(t, err)
		}
		return nil
	})
	if err != nil || calls != 1 || removed != 1 {
		t.Errorf("read of two, the second removed meanwhile: %d read, %d gone, %v", calls, removed, err)
	}
	// Bare ids: from the queue's records.
	p, read = redrive("d000017", "d000019")
	if p.Redriven != 2 || read < 10_000 {
		t.Errorf("bare ids: %+v, %d fetched; want 2 redriven from the whole queue", p, read)
	}
}

// TestRedriveKeepsTheKey: a redriven delivery is written to its egress
// topic under the key the processor gave it — its event's partition key,
// or its event's id without one — so it lands in its key's partition.
func TestRedriveKeepsTheKey(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	q := deadLetters(t, 2, st) // d000000, p0's, without a key
	d := testDelivery("d-keyed", "e-keyed", "p0", "thing.happened")
	d.Key = "customer-7"
	putDeadLetter(t, q, d, 8, time.Now().UTC())
	subscribe(t, st, d.SubscriptionID, store.SubscriptionApproved)
	if p, err := q.Redrive(ctx, Filter{PartnerID: "p0"}, nil); err != nil || p.Redriven != 2 {
		t.Fatalf("Redrive = %+v, %v", p, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(q.cl.OptValue(kgo.SeedBrokers).([]string)...), kgo.ConsumeTopics(topic.Egress("p0", "thing.happened")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	must(t, err)
	defer cl.Close()
	keys := map[string]string{}
	bounded, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(keys) < 2 && bounded.Err() == nil {
		cl.PollFetches(bounded).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "whp-delivery-id" {
					keys[string(h.Value)] = string(r.Key)
				}
			}
		})
	}
	if keys["d-keyed"] != "customer-7" || keys["d000000"] != "e000000" {
		t.Errorf("the redriven records' keys: %v; want customer-7 and the event's id", keys)
	}
}

// TestQueuePastRetention: a partition of the queue whose every record
// retention has removed (its start at its end) is not waited on: a list
// and a redrive read the others. They waited for ever for a record of it.
func TestQueuePastRetention(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	q := deadLetters(t, 60, st)
	ends, err := kadm.NewClient(q.cl).ListEndOffsets(ctx, topic.DLQ("thing.happened"))
	must(t, err)
	end, _ := ends.Lookup(topic.DLQ("thing.happened"), 0)
	if end.Offset == 0 {
		t.Fatal("partition 0 holds none of the dead letters")
	}
	_, err = kadm.NewClient(q.cl).DeleteRecords(ctx, kadm.Offsets{topic.DLQ("thing.happened"): {0: {Topic: topic.DLQ("thing.happened"), Partition: 0, At: end.Offset}}})
	must(t, err)
	bounded, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	es, total, err := q.List(bounded, Filter{All: true}, 100)
	if want := 60 - int(end.Offset); err != nil || total != want || len(es) != want {
		t.Errorf("List = %d of %d, %v; want the other partitions' %d", len(es), total, err, want)
	}
	subscribe(t, st, "p0#bench#thing.happened#1", store.SubscriptionApproved)
	// Retention empties partition 1 too, after the redrive has listed
	// the queue and before it reads it: the reader, reset to the
	// partition's new start, has nothing to wait for.
	var in2 int // p0's dead letters in partition 2, the one left
	for i := 0; i < 60; i += 2 {
		if d, err := st.GetDelivery(ctx, fmt.Sprintf("e%06d", i), fmt.Sprintf("d%06d", i)); err == nil && d.Partition == 2 {
			in2++
		}
	}
	emptied := false
	p, err := q.Redrive(bounded, Filter{PartnerID: "p0"}, func(p Progress) {
		if !emptied && p.Records > 0 {
			ends, err := kadm.NewClient(q.cl).ListEndOffsets(ctx, topic.DLQ("thing.happened"))
			must(t, err)
			end, _ := ends.Lookup(topic.DLQ("thing.happened"), 1)
			_, err = kadm.NewClient(q.cl).DeleteRecords(ctx, kadm.Offsets{topic.DLQ("thing.happened"): {1: {Topic: topic.DLQ("thing.happened"), Partition: 1, At: end.Offset}}})
			must(t, err)
			emptied = true
		}
	})
	if err != nil || !emptied || p.Redriven != in2 {
		t.Errorf("Redrive = %+v, %v; want partition 2's %d of p0's", p, err, in2)
	}
}

// TestRedriveReadsThePartnersTopics: a partner's redrive reads the
// dead-letter topics of its subscriptions' events — one that left the
// catalog among them — not every event's.
func TestRedriveReadsThePartnersTopics(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	q := deadLetters(t, 40, st) // thing.happened's: p0's and p1's
	now := time.Now().UTC()
	for i := range 30 {
		putDeadLetter(t, q, testDelivery(fmt.Sprintf("o%06d", i), fmt.Sprintf("eo%06d", i), "p2", "other.happened"), 8, now)
	}
	subscribe(t, st, "p0#bench#thing.happened#1", store.SubscriptionApproved)
	subscribe(t, st, "p2#bench#other.happened#1", store.SubscriptionDisabled) // found, and skipped
	for _, c := range []struct {
		partner     string
		read, found int
	}{
		{"p0", 40, 20},
		{"p2", 30, 30},
		{"p3", 0, 0}, // no subscription: nothing to read
	} {
		before := q.read.Load()
		p, err := q.Redrive(ctx, Filter{PartnerID: c.partner}, nil)
		if read := q.read.Load() - before; err != nil || read != int64(c.read) || p.Records != c.read || p.Total != c.found {
			t.Errorf("redrive of %s: read %d records, %+v, %v; want %d read and %d found", c.partner, read, p, err, c.read, c.found)
		}
	}
	// p1's subscription, Cancelled when it left the catalog: its topic is
	// read, and its entries are skipped, saying why.
	subscribe(t, st, "p1#bench#thing.happened#1", store.SubscriptionCancelled)
	p, err := q.Redrive(ctx, Filter{PartnerID: "p1"}, nil)
	if err != nil || p.Records != 40 || p.Total != 20 || p.Skipped != 20 || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "is Cancelled") {
		t.Errorf("redrive of p1, its subscription cancelled: %+v, %v", p, err)
	}
}

// TestWaiting: the dead letters waiting, from the store's index of them,
// on both stores — every partner's count, most first; the newest across
// partners, or of one partner or subscription; those redriven left out;
// the partners read bounded, and saying so.
func TestWaiting(t *testing.T) {
	for _, s := range teststores.All {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			st := s.Open(t)
			t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
			var ds []store.Delivery
			dead := func(i int, partner, schema string) {
				ds = append(ds, store.Delivery{EventID: fmt.Sprintf("e%04d", i), ID: fmt.Sprintf("d%04d", i), PartnerID: partner, SchemaID: schema,
					SubscriptionID: partner + "#" + schema, Status: store.DeliveryDeadLettered, Reason: "attempts exhausted",
					CreatedAt: t0.Add(time.Duration(i) * time.Second), UpdatedAt: t0.Add(time.Hour + time.Duration(i)*time.Second),
					Attempts: []store.Attempt{{N: 1, StatusCode: 500}, {N: 2, Error: "timed out"}}})
			}
			// acme: 30 of orders, 6 of refunds; beta: 10; gamma: 4.
			for i := range 50 {
				switch {
				case i%5 == 4 && i < 30:
					dead(i, "acme", "shop#refund.issued#1")
				case i < 36:
					dead(i, "acme", "shop#order.created#1")
				case i < 46:
					dead(i, "beta", "shop#order.created#1")
				default:
					dead(i, "gamma", "shop#order.created#1")
				}
			}
			ds[49].Status, ds[49].Reason = store.DeliveryPending, "" // redriven
			must(t, st.PutDeliveries(ctx, ds))
			q := New(nil, st) // no client: Waiting reads the store alone

			w, err := q.Waiting(ctx, Filter{}, 5)
			must(t, err)
			if want := []PartnerCount{{"acme", 36}, {"beta", 10}, {"gamma", 3}}; !slices.Equal(w.ByPartner, want) {
				t.Errorf("ByPartner = %v, want %v", w.ByPartner, want)
			}
			if got := ids(w.Entries); !slices.Equal(got, []string{"d0048", "d0047", "d0046", "d0045", "d0044"}) || w.Total != 49 || !w.Exact || w.Partial {
				t.Errorf("unfiltered: %v, total %d (exact %v, partial %v)", got, w.Total, w.Exact, w.Partial)
			}
			e := w.Entries[0]
			if e.Reason != "attempts exhausted" || e.Attempts != 2 || e.LastError != "timed out" || !e.FailedAt.Equal(ds[48].UpdatedAt) ||
				e.SubscriptionID != "gamma#shop#order.created#1" || e.Status != store.DeliveryDeadLettered {
				t.Errorf("entry: %+v", e)
			}
			w, err = q.Waiting(ctx, Filter{PartnerID: "beta"}, 100)
			must(t, err)
			if len(w.Entries) != 10 || w.Entries[0].DeliveryID != "d0045" || w.Total != 10 || !w.Exact {
				t.Errorf("beta's: %v, total %d", ids(w.Entries), w.Total)
			}
			// A subscription's among its partner's others', read a page
			// (of 4) at a time: all of them within waitingPages...
			w, err = q.Waiting(ctx, Filter{SubscriptionID: "acme#shop#refund.issued#1"}, 4)
			must(t, err)
			if got := ids(w.Entries); !slices.Equal(got, []string{"d0029", "d0024", "d0019", "d0014"}) || w.Total != 6 || !w.Exact {
				t.Errorf("acme's refunds: %v, total %d (exact %v)", got, w.Total, w.Exact)
			}
			// ...or not: pages of 2, ten of them, find 4 of acme's 30 orders' newest 20.
			w, err = q.Waiting(ctx, Filter{SubscriptionID: "acme#shop#order.created#1"}, 2)
			must(t, err)
			if got := ids(w.Entries); !slices.Equal(got, []string{"d0035", "d0034"}) || w.Exact || w.Total < 2 {
				t.Errorf("acme's orders, 2 a page: %v, total %d (exact %v)", got, w.Total, w.Exact)
			}
			if w, err := q.Waiting(ctx, Filter{PartnerID: "beta", SubscriptionID: "acme#shop#refund.issued#1"}, 10); err != nil || len(w.Entries) != 0 || w.Total != 0 {
				t.Errorf("a partner and another's subscription: %+v, %v", w, err)
			}
			if _, err := q.Waiting(ctx, Filter{All: true}, 10); err == nil {
				t.Error("Waiting(all): no error; redriven entries are List's")
			}
			// More partners than it reads a page of: those with the most.
			ds = ds[:0]
			for i := range waitingPartners + 5 {
				dead(1000+i, fmt.Sprintf("wide%02d", i), "shop#order.created#1")
			}
			must(t, st.PutDeliveries(ctx, ds))
			w, err = q.Waiting(ctx, Filter{}, 200)
			must(t, err)
			if len(w.ByPartner) != 28 || !w.Partial || w.Total != 49+waitingPartners+5 || len(w.Entries) != 49+waitingPartners-3 {
				t.Errorf("%d partners: %d entries, total %d, partial %v", len(w.ByPartner), len(w.Entries), w.Total, w.Partial)
			}
		})
	}
}

func ids(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.DeliveryID)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReindex: dead letters whose DynamoDB items were written before the
// status index existed (its keys removed here, as such items lack them)
// are not among those waiting until Reindex adds them; run again, it adds
// none. The embedded store indexes when it opens: nothing to do.
func TestReindex(t *testing.T) {
	ctx := context.Background()
	db := dynalitetest.Start(t)
	if _, err := dynamo.CreateTables(ctx, db, "test"); err != nil {
		t.Fatal(err)
	}
	st := dynamo.New(db, "test")
	q := deadLetters(t, 30, st)
	for i := range 20 {
		// The item layout of store/dynamo: pk the event, sk "DELIVERY#" and
		// the delivery's ID.
		_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(store.TableName("test", store.TableEventDeliveryStatus)),
			Key: map[string]types.AttributeValue{dynamo.AttrPK: &types.AttributeValueMemberS{Value: fmt.Sprintf("e%06d", i)},
				dynamo.AttrSK: &types.AttributeValueMemberS{Value: fmt.Sprintf("DELIVERY#d%06d", i)}},
			UpdateExpression: aws.String("REMOVE partner_status, schema_status"), ConditionExpression: aws.String("attribute_exists(partner_status)")})
		must(t, err)
	}
	waiting := func(want int) {
		t.Helper()
		if w, err := q.Waiting(ctx, Filter{}, 100); err != nil || w.Total != want || len(w.Entries) != want {
			t.Errorf("waiting: %d of %d, %v; want %d", len(w.Entries), w.Total, err, want)
		}
	}
	waiting(10)
	var reports []Progress
	p, err := q.Reindex(ctx, func(p Progress) { reports = append(reports, p) })
	if err != nil || p.Total != 30 || p.Done != 30 || p.Indexed != 20 || len(reports) < 2 {
		t.Fatalf("Reindex = %+v, %v (%d reports); want 20 of 30 indexed", p, err, len(reports))
	}
	waiting(30)
	if p, err := q.Reindex(ctx, nil); err != nil || p.Indexed != 0 || p.Done != 30 {
		t.Errorf("Reindex again = %+v, %v; want none indexed", p, err)
	}
	emb := New(nil, teststores.All[0].Open(t))
	if p, err := emb.Reindex(ctx, nil); err != nil || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "nothing to do") {
		t.Errorf("Reindex on the embedded store = %+v, %v", p, err)
	}
}

// TestRedriveThatFailsPutsBack: a redrive whose records cannot be written
// (here: the partner's egress topic is gone) fails, and leaves each
// delivery as it was — dead-lettered, with its reason, still waiting.
func TestRedriveThatFailsPutsBack(t *testing.T) {
	ctx := context.Background()
	st := teststores.All[0].Open(t)
	q := deadLetters(t, 4, st)
	if _, err := kadm.NewClient(q.cl).DeleteTopics(ctx, topic.Egress("p1", "thing.happened")); err != nil {
		t.Fatal(err)
	}
	subscribe(t, st, "p1#bench#thing.happened#1", store.SubscriptionApproved)
	// The write fails by itself: the client gives up a topic still
	// unknown after a few metadata reads, each no sooner than its
	// MetadataMinAge (5 s by default: up to 20 s; 10 ms here). The
	// deadline only bounds a hang — at 2 s it fired during the queue's
	// read on a busy CI machine, before the write.
	cl, err := kgo.NewClient(kgo.SeedBrokers(q.cl.OptValue(kgo.SeedBrokers).([]string)...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	q.cl = cl
	bounded, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := q.Redrive(bounded, Filter{SubscriptionID: "p1#bench#thing.happened#1"}, nil); err == nil || !strings.HasPrefix(err.Error(), "redrive: ") {
		t.Fatalf("a redrive to a topic that is gone: %v, want its write's error", err)
	}
	for _, id := range []string{"000001", "000003"} {
		if d, err := st.GetDelivery(ctx, "e"+id, "d"+id); err != nil || d.Status != store.DeliveryDeadLettered || d.Reason != "attempts exhausted" {
			t.Errorf("d%s after the failed redrive: %s, reason %q, %v", id, d.Status, d.Reason, err)
		}
	}
	if w, err := q.Waiting(ctx, Filter{PartnerID: "p1"}, 10); err != nil || w.Total != 2 {
		t.Errorf("p1's waiting after the failed redrive: %d, %v", w.Total, err)
	}
}

// statusReads is a store counting the statuses GetDeliveries reads.
type statusReads struct {
	store.Store
	keys atomic.Int64
}

func (s *statusReads) GetDeliveries(ctx context.Context, keys []store.DeliveryKey) ([]store.Delivery, error) {
	s.keys.Add(int64(len(keys)))
	return s.Store.GetDeliveries(ctx, keys)
}

// TestListReadsTheStatusesItSelects: a list — a redrive's — reads the
// statuses of the entries its filter selects by their records alone: a
// few selected dead letters, or a partner's, not the whole queue's.
func TestListReadsTheStatusesItSelects(t *testing.T) {
	ctx := context.Background()
	q := deadLetters(t, 250, teststores.All[0].Open(t))
	reads := &statusReads{Store: q.st.(store.Store)}
	q.st = reads
	for _, c := range []struct {
		f     Filter
		reads int64
	}{
		{Filter{DeliveryIDs: []string{"d000007", "d000100", "d999999"}}, 2},
		{Filter{PartnerID: "p1"}, 125},
		{Filter{}, 250},
	} {
		before := reads.keys.Load()
		es, err := listAll(ctx, q, c.f)
		if n := reads.keys.Load() - before; err != nil || n != c.reads || len(es) != int(c.reads) {
			t.Errorf("List(%+v): %d entries, %d statuses read, %v; want %d of each", c.f, len(es), n, err, c.reads)
		}
	}
}

// BenchmarkRedrive redrives one partner's half of a DLQ of 10,000 and
// 100,000 dead letters of a 1 KiB body each — the "Redrive all of" a
// partner after its outage — and reports what it held: the most the live
// heap grew while it ran (held-MB: the largest live heap a collection
// found, over the one before; the collector runs every few MB the
// redrive allocates) less what it still held after it (kfake's copy of
// the records it wrote to the egress topic, in the same heap here and in
// Kafka in production; kept-MB).
//
//	go test -run '^$' -bench Redrive -benchtime 3x ./runtime/dlq
func BenchmarkRedrive(b *testing.B) {
	for _, st := range teststores.All {
		sizes := []int{10_000}
		if st.Name == teststores.All[0].Name {
			sizes = append(sizes, 100_000)
		}
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", st.Name, n), func(b *testing.B) {
				ctx := context.Background()
				s := st.Open(b)
				q := deadLettersOf(b, n, 1024, s)
				subscribe(b, s, "p0#bench#thing.happened#1", store.SubscriptionApproved)
				var p0 []store.Delivery // dead-lettered
				for cursor := "start"; cursor != ""; {
					page, err := s.DeliveriesByPartner(ctx, "p0", store.Page{Limit: 1000, Cursor: strings.TrimPrefix(cursor, "start")})
					if err != nil {
						b.Fatal(err)
					}
					p0, cursor = append(p0, page.Deliveries...), page.Next
				}
				if len(p0) != n/2 {
					b.Fatalf("p0's deliveries: %d", len(p0))
				}
				var held, kept float64
				for b.Loop() {
					b.StopTimer()
					for i := 0; i < len(p0); i += 1000 { // dead-lettered again
						if err := s.PutDeliveries(ctx, p0[i:min(i+1000, len(p0))]); err != nil {
							b.Fatal(err)
						}
					}
					stop := liveHeap()
					b.StartTimer()
					p, err := q.Redrive(ctx, Filter{PartnerID: "p0"}, nil)
					b.StopTimer()
					peak, after := stop()
					held, kept = max(held, peak-after), max(kept, after)
					if err != nil || p.Redriven != n/2 {
						b.Fatalf("redrove %+v, %v; want %d", p, err, n/2)
					}
					b.StartTimer()
				}
				b.ReportMetric(held/(1<<20), "held-MB")
				b.ReportMetric(kept/(1<<20), "kept-MB")
			})
		}
	}
}

// liveHeap collects garbage, then follows the live heap each collection
// finds until the function it returns is called, which returns the most
// it grew over the start, and how much it had grown once collected again.
func liveHeap() func() (peak, after float64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	read := func() float64 { metrics.Read(sample); return float64(sample[0].Value.Uint64()) }
	base, top := read(), 0.0
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			top = max(top, read()-base)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() (float64, float64) {
		close(done)
		<-stopped
		runtime.GC()
		return top, read() - base
	}
}

// BenchmarkRedrivePicked redrives three dead letters picked in a queue of
// 100,000 of a 1 KiB body, by their event and delivery ids (read where
// their statuses say they are) and by their delivery ids alone (looked
// for in the queue's topics), and reports the records each read.
//
//	go test -run '^$' -bench RedrivePicked -benchtime 3x ./runtime/dlq
func BenchmarkRedrivePicked(b *testing.B) {
	ctx := context.Background()
	st := teststores.All[0].Open(b)
	q := deadLettersOf(b, 100_000, 1024, st)
	subscribe(b, st, "p1#bench#thing.happened#1", store.SubscriptionApproved)
	var picked []store.Delivery
	for _, i := range []int{1, 50_001, 99_999} {
		d, err := st.GetDelivery(ctx, fmt.Sprintf("e%06d", i), fmt.Sprintf("d%06d", i))
		if err != nil {
			b.Fatal(err)
		}
		picked = append(picked, d)
	}
	for _, by := range []string{"event-and-delivery-ids", "delivery-ids"} {
		b.Run(by, func(b *testing.B) {
			var ids []string
			for _, d := range picked {
				if by == "delivery-ids" {
					ids = append(ids, d.ID)
				} else {
					ids = append(ids, d.EventID+"/"+d.ID)
				}
			}
			before := q.read.Load()
			for b.Loop() {
				b.StopTimer()
				if err := st.PutDeliveries(ctx, picked); err != nil { // dead-lettered again
					b.Fatal(err)
				}
				b.StartTimer()
				if p, err := q.Redrive(ctx, Filter{DeliveryIDs: ids}, nil); err != nil || p.Redriven != 3 {
					b.Fatalf("%+v, %v", p, err)
				}
			}
			b.ReportMetric(float64(q.read.Load()-before)/float64(b.N), "records-read/op")
		})
	}
}
