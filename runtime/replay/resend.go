package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/catalog/transform"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/store"
)

// EventStore is what Resend needs beside Store: where the event's ingress
// record is.
type EventStore interface {
	Store
	GetEvent(ctx context.Context, id string) (store.Event, error)
}

// Resend delivers one event to one subscription again, as a new delivery
// with its own id (so the ledger, which remembers the first, does not drop
// it), built from the event's ingress record exactly as the live delivery
// was. It works for events whose data is not kept in the store (schemas
// that contain sensitive data) because it reads Kafka, and it needs the
// record still in the ingress topic (retention). The subscription must be
// Approved.
func (r *Replayer) Resend(ctx context.Context, st EventStore, eventID, subscriptionID string) (string, error) {
	sub, err := st.GetSubscription(ctx, subscriptionID)
	if err != nil {
		return "", err
	}
	if sub.Status != store.SubscriptionApproved {
		return "", fmt.Errorf("%w: subscription %s is %s, not Approved", ErrInvalid, sub.ID, sub.Status)
	}
	stored, err := st.GetEvent(ctx, eventID)
	if err != nil {
		return "", err
	}
	if stored.SchemaID != sub.SchemaID {
		return "", fmt.Errorf("%w: event %s is %s; subscription %s takes %s", ErrInvalid, eventID, stored.SchemaID, sub.ID, sub.SchemaID)
	}
	schema, err := st.GetSchema(ctx, sub.SchemaID)
	if err != nil {
		return "", fmt.Errorf("schema %s: %w", sub.SchemaID, err)
	}
	tr, err := transform.Compile(sub.Transform)
	if err != nil {
		return "", fmt.Errorf("transform of %s: %w", sub.ID, err)
	}
	rec, err := r.readRecord(ctx, stored)
	if err != nil {
		return "", err
	}
	var ev envelope.Event
	if err := json.Unmarshal(rec.Value, &ev); err != nil || ev.ID != eventID {
		return "", fmt.Errorf("the ingress record at %s/%d@%d is not event %s", stored.Topic, stored.Partition, stored.Offset, eventID)
	}
	raw := make([]byte, 6)
	rand.Read(raw)
	out, d, err := build(ev, rec.Key, sub, tr, schema, "resend-"+hex.EncodeToString(raw), r.now().UTC())
	if err != nil {
		return "", err
	}
	if err := st.CreateDeliveries(ctx, []store.Delivery{d}); err != nil {
		return "", err
	}
	if err := r.produce(ctx, out); err != nil {
		return "", fmt.Errorf("produce resend: %w", err)
	}
	return d.ID, nil
}

// resendTimeout bounds Resend's wait for the egress cluster's ack.
const resendTimeout = 15 * time.Second

// produce writes rec to the egress cluster and waits for its ack, for no
// longer than the operator's request lasts and r.timeout: with the
// cluster unreachable, kgo's idempotent producer keeps a record it may
// have sent until the cluster answers, and ProduceSync would wait as
// long. The record stays with the producer, and may still be delivered.
func (r *Replayer) produce(ctx context.Context, rec *kgo.Record) error {
	acked := make(chan error, 1)
	r.out.Produce(context.WithoutCancel(ctx), rec, func(_ *kgo.Record, err error) { acked <- err })
	timeout := r.timeout
	if timeout <= 0 {
		timeout = resendTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-acked:
		return err
	case <-t.C:
		return fmt.Errorf("the egress cluster did not acknowledge within %s; the delivery may still be made", timeout)
	case <-ctx.Done():
		return fmt.Errorf("the request ended before the egress cluster acknowledged; the delivery may still be made: %w", ctx.Err())
	}
}

// ErrGone wraps a resend of an event whose ingress record is no longer
// kept: past its topic's retention (in whp dev, past what the embedded
// Kafka keeps of consumed records, --kafka-keep-mib).
var ErrGone = errors.New("replay: the event's record is no longer kept")

func gone(ev store.Event) error {
	return fmt.Errorf("%w: event %s is no longer in %s (past its retention)", ErrGone, ev.ID, ev.Topic)
}

// readRecord reads the one ingress record of an event.
func (r *Replayer) readRecord(ctx context.Context, ev store.Event) (*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// A record before the partition's start is gone: said at once, rather
	// than after waiting for records an emptied partition never sends.
	starts, err := kadm.NewClient(r.in).ListStartOffsets(ctx, ev.Topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", ev.Topic, err)
	}
	if o, ok := starts.Lookup(ev.Topic, ev.Partition); ok && o.Err == nil && ev.Offset < o.Offset {
		return nil, gone(ev)
	}
	reader, err := kgo.NewClient(kgo.SeedBrokers(r.in.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{ev.Topic: {ev.Partition: kgo.NewOffset().At(ev.Offset)}}))
	if err != nil {
		return nil, err
	}
	defer reader.Close()
	for {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s/%d@%d: %w", ev.Topic, ev.Partition, ev.Offset, err)
		}
		var found *kgo.Record
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("read %s/%d@%d: %w", ev.Topic, ev.Partition, ev.Offset, ferr)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			if found == nil && rec.Offset >= ev.Offset {
				found = rec
			}
		})
		if found != nil {
			if found.Offset != ev.Offset {
				return nil, gone(ev)
			}
			return found, nil
		}
	}
}
