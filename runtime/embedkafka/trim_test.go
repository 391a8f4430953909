package embedkafka

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produce writes n records of size random bytes (snappy leaves them
// their size) to topic's partition p.
func produce(t *testing.T, c *kfake.Cluster, topic string, p int32, n, size int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range n {
		value := make([]byte, size)
		rand.Read(value)
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Partition: p, Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func commit(t *testing.T, adm *kadm.Client, group, topic string, at map[int32]int64) {
	t.Helper()
	var os kadm.Offsets
	for p, o := range at {
		os.AddOffset(topic, p, o, -1)
	}
	resp, err := adm.CommitOffsets(context.Background(), group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func startOf(c *kfake.Cluster, topic string, p int32) int64 {
	return c.PartitionInfo(topic, p).LogStartOffset
}

func TestTrimKeepsWhatIsOwed(t *testing.T) {
	ctx := context.Background()
	c, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tp := range []struct {
		c     *kfake.Cluster
		topic string
	}{{c.Ingress, "wh.ingress.a.b"}, {c.Egress, "wh.egress.p.b"}, {c.Egress, "wh.dlq.p.b"}} {
		if err := tp.c.CreateTopic(tp.topic, 2, nil); err != nil {
			t.Fatal(err)
		}
	}
	for p := range int32(2) {
		produce(t, c.Ingress, "wh.ingress.a.b", p, 1000, 100)
		produce(t, c.Egress, "wh.egress.p.b", p, 1000, 100)
	}
	produce(t, c.Egress, "wh.dlq.p.b", 0, 100, 100)
	// The processor is done with partition 0 and half of 1; an auditing
	// group with 800 of partition 0 and nothing of 1 yet.
	commit(t, c.ingressAdm, "whp-processor", "wh.ingress.a.b", map[int32]int64{0: 1000, 1: 500})
	commit(t, c.ingressAdm, "audit", "wh.ingress.a.b", map[int32]int64{0: 800})
	// The dispatcher is done with all of partition 0, none of 1.
	commit(t, c.egressAdm, "whp-dispatcher", "wh.egress.p.b", map[int32]int64{0: 1000})

	// Within the budget: nothing goes.
	tr, err := c.Trim(ctx, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Records != 0 {
		t.Fatalf("within the budget, %d records trimmed", tr.Records)
	}

	// A budget, in each cluster, of a quarter of the 800 ingress records
	// every group is done with — a fifth of the 1000 egress ones, the
	// records being of one size: each partition keeps its newest share.
	keep := c.Ingress.PartitionInfo("wh.ingress.a.b", 0).NumBytes * 800 / 1000 / 4
	if tr, err = c.Trim(ctx, keep); err != nil {
		t.Fatal(err)
	}
	if got := startOf(c.Ingress, "wh.ingress.a.b", 0); got < 595 || got > 605 {
		t.Errorf("ingress partition 0 starts at %d, want the newest quarter of the 800 every group is done with kept (600)", got)
	}
	if got := startOf(c.Egress, "wh.egress.p.b", 0); got < 795 || got > 805 {
		t.Errorf("egress partition 0 starts at %d, want the newest fifth of 1000 kept (800)", got)
	}
	if tr.Records < 1390 || tr.Records > 1410 {
		t.Errorf("trimmed %d records, want 1400", tr.Records)
	}
	// What a group has not read stays: the audit group has nothing of
	// ingress partition 1, no group anything of egress partition 1, and
	// no group reads the dead letters.
	for _, tp := range []struct {
		c     *kfake.Cluster
		topic string
		p     int32
	}{{c.Ingress, "wh.ingress.a.b", 1}, {c.Egress, "wh.egress.p.b", 1}, {c.Egress, "wh.dlq.p.b", 0}} {
		if got := startOf(tp.c, tp.topic, tp.p); got != 0 {
			t.Errorf("%s[%d] starts at %d, want 0: a group still owes it", tp.topic, tp.p, got)
		}
	}

	// A budget of nothing: up to the slowest group's commit, never past
	// it, and never the partition's last record.
	if _, err = c.Trim(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := startOf(c.Ingress, "wh.ingress.a.b", 0); got != 800 {
		t.Errorf("ingress partition 0 starts at %d, want 800 (the audit group's commit)", got)
	}
	if got := startOf(c.Egress, "wh.egress.p.b", 0); got != 999 {
		t.Errorf("egress partition 0 starts at %d, want 999: its last record stays", got)
	}
	// The records past the commit are all there to read.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Ingress.ListenAddrs()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"wh.ingress.a.b": {0: kgo.NewOffset().At(800)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := int64(800)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for want < 1000 && rctx.Err() == nil {
		cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			if r.Offset != want {
				t.Fatalf("read offset %d, want %d", r.Offset, want)
			}
			want++
		})
	}
	if want != 1000 {
		t.Fatalf("read up to %d of the untrimmed records, want 1000", want)
	}
}

// TestTrimFreesDisk: a partition's trimmed records leave the disk with
// their segment (segmentBytes, not kfake's 100 MiB); the last segment
// stays with the partition's last record.
func TestTrimFreesDisk(t *testing.T) {
	dir := t.TempDir()
	c, err := Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic = "wh.egress.p.b"
	if err := c.Egress.CreateTopic(topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, c.Egress, topic, 0, 3*segmentBytes/(4<<10), 4<<10) // three segments' worth
	before := dirBytes(t, filepath.Join(dir, "egress"))
	commit(t, c.egressAdm, "whp-dispatcher", topic, map[int32]int64{0: c.Egress.PartitionInfo(topic, 0).HighWatermark})
	if _, err := c.Trim(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	after := dirBytes(t, filepath.Join(dir, "egress"))
	if before < 3*segmentBytes || after > before-2*segmentBytes {
		t.Fatalf("egress data %d bytes before the trim, %d after: want the segments before the last gone", before, after)
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTrimSurvivesRestart: a partition trimmed down to its last record
// keeps its offsets when the clusters start again on their data — kfake
// rebuilds them from the segment files, and a partition trimmed empty
// would start again at 0, below every commit.
func TestTrimSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c, err := Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "wh.egress.p.b"
	if err := c.Egress.CreateTopic(topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, c.Egress, topic, 0, 100, 100)
	commit(t, c.egressAdm, "whp-dispatcher", topic, map[int32]int64{0: 100})
	if _, err := c.Trim(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	c.Close()

	if c, err = Start(dir); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if pi := c.Egress.PartitionInfo(topic, 0); pi.HighWatermark != 100 {
		t.Fatalf("after a restart the partition ends at %d, want 100", pi.HighWatermark)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Egress.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r := &kgo.Record{Value: []byte("next")}
	if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if r.Offset != 100 {
		t.Fatalf("the next record went to offset %d, want 100", r.Offset)
	}
}

// TestPlanWithoutByteCounts: a partition whose byte count kfake got wrong
// (not positive, as after a restart on trimmed segments) is weighed by the
// others' average record, or a KiB, and still trimmed to its share —
// before, its consumed bytes counted as nothing and a budget the count
// never passed trimmed nothing at all.
func TestPlanWithoutByteCounts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []consumed
		keep  int64
		want  []int64
	}{
		{"all counted", []consumed{{start: 0, upTo: 100, end: 100, partBytes: 100 << 10}}, 25 << 10, []int64{75}},
		{"within the budget", []consumed{{start: 0, upTo: 100, end: 100, partBytes: 100 << 10}}, 200 << 10, []int64{0}},
		{"one miscounted, weighed as the other", []consumed{
			{start: 0, upTo: 100, end: 100, partBytes: 100 << 10},
			{start: 10, upTo: 110, end: 111, partBytes: -1725},
		}, 50 << 10, []int64{75, 85}},
		{"none counted: a KiB a record", []consumed{{start: 12, upTo: 14, end: 15, partBytes: -1725}, {start: 17, upTo: 21, end: 22}}, 1, []int64{14, 21}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := plan(tc.parts, tc.keep)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("plan = %v, want %v", got, tc.want)
			}
		})
	}
}
