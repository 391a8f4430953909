// Package lambdakafka serves the consumer roles as AWS Lambda functions fed
// by an Amazon MSK (or self-managed Kafka) event source mapping: it turns
// the mapping's event into the kgo records the roles already consume, and
// the records a role could not handle into a partial batch response.
//
// # Partial batch failures
//
// The mapping must have ReportBatchItemFailures on. The response names, for
// each partition with a failure, the lowest failed offset; Lambda commits
// the partition up to it and hands the rest of the partition again from
// there. Records after it that had succeeded come back too, which is
// harmless: the processor republishes the same delivery IDs and the
// dispatcher's ledger drops what was delivered. A record that can never
// succeed (malformed) is logged and skipped, never reported, so it cannot
// wedge its partition.
//
// No handler sleeps for a retry: retryable deliveries go to the retry
// tiers (package retry), which the dispatcher function drains on a
// schedule (see Scheduled).
package lambdakafka

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Response is a Kafka event source mapping's partial batch response.
type Response struct {
	BatchItemFailures []Failure `json:"batchItemFailures"`
}

// Failure names the first record of a partition to hand again.
type Failure struct {
	ItemIdentifier Item `json:"itemIdentifier"`
}

// Item identifies a Kafka record to the event source mapping.
type Item struct {
	TopicPartition string `json:"topic-partition"` // "{topic}-{partition}", as the event's records are keyed
	Offset         int64  `json:"offset"`
}

// Records converts the event's records to kgo records, partition by
// partition in offset order (the mapping's order). Records whose key or
// value is not base64 are left out and reported in the error; the others
// are returned with it.
func Records(ev events.KafkaEvent) ([]*kgo.Record, error) {
	keys := make([]string, 0, len(ev.Records))
	for k := range ev.Records {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []*kgo.Record
	var errs []error
	for _, k := range keys {
		for _, r := range ev.Records[k] {
			rec, err := record(r)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s-%d at offset %d: %w", r.Topic, r.Partition, r.Offset, err))
				continue
			}
			out = append(out, rec)
		}
	}
	return out, errors.Join(errs...)
}

func record(r events.KafkaRecord) (*kgo.Record, error) {
	key, err := base64.StdEncoding.DecodeString(r.Key)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	value, err := base64.StdEncoding.DecodeString(r.Value)
	if err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	rec := &kgo.Record{Topic: r.Topic, Partition: int32(r.Partition), Offset: r.Offset, Timestamp: r.Timestamp.Time, Value: value}
	if len(key) > 0 {
		rec.Key = key
	}
	for _, h := range r.Headers {
		// Each element holds one header; sorted for a stable order.
		names := make([]string, 0, len(h))
		for name := range h {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: name, Value: h[name]})
		}
	}
	return rec, nil
}

// Failures is the response reporting failed: the lowest offset of each
// partition among them. No failures is the empty response (all done).
func Failures(failed []*kgo.Record) Response {
	lowest := map[string]int64{}
	for _, r := range failed {
		tp := r.Topic + "-" + strconv.Itoa(int(r.Partition))
		if o, ok := lowest[tp]; !ok || r.Offset < o {
			lowest[tp] = r.Offset
		}
	}
	resp := Response{BatchItemFailures: []Failure{}}
	for tp, o := range lowest {
		resp.BatchItemFailures = append(resp.BatchItemFailures, Failure{Item{TopicPartition: tp, Offset: o}})
	}
	slices.SortFunc(resp.BatchItemFailures, func(a, b Failure) int {
		return cmp.Compare(a.ItemIdentifier.TopicPartition, b.ItemIdentifier.TopicPartition)
	})
	return resp
}

// Batch handles the records of one invocation and returns those to hand
// again.
type Batch func(ctx context.Context, recs []*kgo.Record) (failed []*kgo.Record)

// Handle runs b on the event's records and reports what failed.
func Handle(ctx context.Context, ev events.KafkaEvent, b Batch, log *slog.Logger) Response {
	recs, err := Records(ev)
	if err != nil {
		log.Error("skipping undecodable records of the event source mapping", "error", err)
	}
	if len(recs) == 0 {
		return Failures(nil)
	}
	resp := Failures(b(ctx, recs))
	if n := len(resp.BatchItemFailures); n > 0 {
		log.Warn("batch partly failed; the event source mapping hands those partitions again", "records", len(recs), "partitions_failed", n)
	}
	return resp
}

// Kind tells which kind of event an invocation carries.
type Kind int

const (
	Unknown   Kind = iota
	Kafka          // an MSK or self-managed Kafka event source mapping
	Scheduled      // an EventBridge (Scheduler or rule) schedule
)

// KindOf reads the kind of an invocation's event.
func KindOf(raw json.RawMessage) Kind {
	var probe struct {
		EventSource string `json:"eventSource"`
		Source      string `json:"source"`
		DetailType  string `json:"detail-type"`
	}
	if json.Unmarshal(raw, &probe) != nil {
		return Unknown
	}
	switch {
	case probe.EventSource == "aws:kafka" || probe.EventSource == "SelfManagedKafka" || probe.EventSource == "aws:SelfManagedKafka":
		return Kafka
	case probe.Source == "aws.events" || probe.Source == "aws.scheduler" || probe.DetailType == "Scheduled Event":
		return Scheduled
	}
	return Unknown
}

// Window is how long a scheduled invocation may work: up to want, and
// ending margin before the invocation's deadline, so that what is in
// flight finishes before Lambda stops the function. It fails when the
// function's timeout leaves no time at all.
func Window(ctx context.Context, want, margin time.Duration, now time.Time) (time.Duration, error) {
	w := want
	if dl, ok := ctx.Deadline(); ok {
		left := dl.Sub(now) - margin
		if left <= 0 {
			return 0, fmt.Errorf("the function's timeout leaves no time to work: it must exceed %s (in-flight margin) by the window wanted", margin)
		}
		w = min(w, left)
	}
	return w, nil
}
