package lambdakafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/twmb/franz-go/pkg/kgo"
)

func readEvent(t *testing.T) events.KafkaEvent {
	t.Helper()
	b, err := os.ReadFile("testdata/msk-event.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.KafkaEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// Records decodes what the event source mapping sends — base64 keys and
// values, headers as arrays of signed bytes — partition by partition in
// offset order, and leaves out (naming it) a record it cannot decode.
func TestRecords(t *testing.T) {
	recs, err := Records(readEvent(t))
	if err == nil || !strings.Contains(err.Error(), "wh.egress.alpha.order.created-0 at offset 4: key") {
		t.Errorf("error = %v, want one naming partition 0, offset 4 and its key", err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s/%d@%d %s", r.Topic, r.Partition, r.Offset, r.Value))
	}
	want := []string{
		`wh.egress.alpha.order.created/0@3 {"id":"d1"}`,
		`wh.egress.alpha.order.created/0@5 {"id":"d4"}`,
		`wh.egress.alpha.order.created/1@7 {"id":"d2"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if recs[0].Key != nil {
		t.Errorf("a record without a key got key %q", recs[0].Key)
	}
	if string(recs[1].Key) != "key" || string(recs[2].Key) != "cust-42" {
		t.Errorf("keys %q, %q", recs[1].Key, recs[2].Key)
	}
	if !recs[2].Timestamp.Equal(time.UnixMilli(1795910400500)) {
		t.Errorf("timestamp %v", recs[2].Timestamp)
	}
	h := recs[2].Headers
	if len(h) != 2 || h[0].Key != "whp-delivery-id" || string(h[0].Value) != "d2" ||
		h[1].Key != "bin" || !bytes.Equal(h[1].Value, []byte{0xff, 0x00, 0x7f, 0x80}) {
		t.Errorf("headers %+v", h)
	}
}

// The response names the lowest failed offset of each partition, in the
// shape Lambda reads; nothing failed is an empty list (the whole batch is
// done).
func TestFailures(t *testing.T) {
	failed := []*kgo.Record{
		{Topic: "wh.egress.a.e", Partition: 2, Offset: 9},
		{Topic: "wh.egress.a.e", Partition: 2, Offset: 4},
		{Topic: "wh.egress.a.e", Partition: 0, Offset: 11},
		{Topic: "wh.egress.b-c.e", Partition: 2, Offset: 5},
	}
	b, err := json.Marshal(Failures(failed))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"batchItemFailures":[` +
		`{"itemIdentifier":{"topic-partition":"wh.egress.a.e-0","offset":11}},` +
		`{"itemIdentifier":{"topic-partition":"wh.egress.a.e-2","offset":4}},` +
		`{"itemIdentifier":{"topic-partition":"wh.egress.b-c.e-2","offset":5}}]}`
	if string(b) != want {
		t.Errorf("response\n%s\nwant\n%s", b, want)
	}
	if b, _ := json.Marshal(Failures(nil)); string(b) != `{"batchItemFailures":[]}` {
		t.Errorf("no failures: %s", b)
	}
}

// Handle hands the decodable records to the batch and reports what it
// returned; the undecodable record is neither handed on nor reported.
func TestHandle(t *testing.T) {
	var handed []int64
	resp := Handle(context.Background(), readEvent(t), func(_ context.Context, recs []*kgo.Record) []*kgo.Record {
		var failed []*kgo.Record
		for _, r := range recs {
			handed = append(handed, r.Offset)
			if r.Offset == 5 {
				failed = append(failed, r)
			}
		}
		return failed
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(handed) != 3 || handed[0] != 3 || handed[1] != 5 || handed[2] != 7 {
		t.Errorf("handed offsets %v, want [3 5 7]", handed)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != (Item{"wh.egress.alpha.order.created-0", 5}) {
		t.Errorf("response %+v", resp)
	}
}

func TestKindOf(t *testing.T) {
	for raw, want := range map[string]Kind{
		`{"eventSource":"aws:kafka","records":{}}`:                       Kafka,
		`{"eventSource":"SelfManagedKafka","records":{}}`:                Kafka,
		`{"source":"aws.events","detail-type":"Scheduled Event"}`:        Scheduled,
		`{"source":"aws.scheduler","detail-type":"Scheduled Event"}`:     Scheduled,
		`{"eventSource":"aws:sqs"}`:                                      Unknown,
		`{"version":"2.0","routeKey":"POST /v1/events","rawPath":"/v1"}`: Unknown,
		`not json`: Unknown,
	} {
		if got := KindOf(json.RawMessage(raw)); got != want {
			t.Errorf("KindOf(%s) = %d, want %d", raw, got, want)
		}
	}
}

// A scheduled invocation works for the window wanted, cut short so that
// what is in flight ends before the function's deadline; a timeout that
// leaves nothing is an error that says what the timeout must be.
func TestWindow(t *testing.T) {
	now := time.Now()
	if w, err := Window(context.Background(), 50*time.Second, 20*time.Second, now); err != nil || w != 50*time.Second {
		t.Errorf("no deadline: %v, %v", w, err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(60*time.Second))
	defer cancel()
	if w, err := Window(ctx, 50*time.Second, 20*time.Second, now); err != nil || w != 40*time.Second {
		t.Errorf("60 s left: %v, %v; want 40s", w, err)
	}
	if w, err := Window(ctx, 10*time.Second, 20*time.Second, now); err != nil || w != 10*time.Second {
		t.Errorf("short window: %v, %v", w, err)
	}
	if _, err := Window(ctx, 50*time.Second, 70*time.Second, now); err == nil || !strings.Contains(err.Error(), "must exceed 1m10s") {
		t.Errorf("too short a timeout: %v", err)
	}
}
