// Package replay re-delivers events from the ingress log to one
// subscription: every event of its schema version accepted in a time
// range, read again from the ingress topic at the offsets for those times.
// Each gets a new delivery id, marked as a replay, and goes through the
// same filter, transform and enrichment as a live delivery, at a bounded
// rate so live traffic keeps flowing. A backfill is a replay of a newly
// approved subscription.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/catalog/filter"
	"github.com/whp-dev/whp/catalog/transform"
	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/processor"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Store is the part of the state a replay uses.
type Store interface {
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	GetSchema(ctx context.Context, id string) (store.Schema, error)
	CreateDeliveries(ctx context.Context, ds []store.Delivery) error
}

// Request is a replay.
type Request struct {
	SubscriptionID string    `json:"subscription"`
	From           time.Time `json:"from"`
	To             time.Time `json:"to,omitzero"` // default: when the replay starts
	// RatePerSecond bounds the deliveries produced. Default 100.
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
}

// Progress of a replay.
type Progress struct {
	// Scanned counts ingress records read; Total is how many the offsets
	// for the time range span (every version and time of the topic).
	Scanned  int64 `json:"scanned"`
	Total    int64 `json:"total"`
	Replayed int64 `json:"replayed"`
	Filtered int64 `json:"filtered"`
}

// replayStep bounds the deliveries a replay writes and produces at once.
const replayStep = 500

// produceMargin is how long after acceptance an event may be written.
const produceMargin = 10 * time.Second

// ErrInvalid wraps requests that cannot run.
var ErrInvalid = errors.New("replay: invalid request")

// Replayer runs replays.
type Replayer struct {
	in  *kgo.Client // ingress cluster: offsets and records
	out *kgo.Client // egress cluster: deliveries
	st  Store
	now func() time.Time
	// timeout bounds Resend's wait for the egress ack (0: resendTimeout).
	timeout time.Duration
}

// New returns a Replayer over clients of both clusters.
func New(in, out *kgo.Client, st Store) *Replayer {
	return &Replayer{in: in, out: out, st: st, now: time.Now}
}

// ID names a replay's deliveries: a replay of an event to a subscription
// gets the delivery id derived from the subscription and this id, so a
// replay never collides with the live delivery or another replay.
func ID(eventID, subscriptionID, replayID string) string {
	return envelope.DeliveryID(eventID, subscriptionID+"#replay#"+replayID)
}

// Run replays req under the job id replayID, reporting progress.
func (r *Replayer) Run(ctx context.Context, replayID string, req Request, progress func(Progress)) (Progress, error) {
	var p Progress
	sub, err := r.st.GetSubscription(ctx, req.SubscriptionID)
	if err != nil {
		return p, fmt.Errorf("%w: subscription %s: %v", ErrInvalid, req.SubscriptionID, err)
	}
	if sub.Status != store.SubscriptionApproved {
		return p, fmt.Errorf("%w: subscription %s is %s, not Approved", ErrInvalid, sub.ID, sub.Status)
	}
	to := req.To
	if to.IsZero() {
		to = r.now()
	}
	if !req.From.Before(to) {
		return p, fmt.Errorf("%w: from must be before to", ErrInvalid)
	}
	schema, err := r.st.GetSchema(ctx, sub.SchemaID)
	if err != nil {
		return p, fmt.Errorf("schema %s: %w", sub.SchemaID, err)
	}
	var f *filter.Filter
	if len(sub.Filter) > 0 {
		if f, err = filter.Compile(sub.Filter); err != nil {
			return p, fmt.Errorf("filter of %s: %w", sub.ID, err)
		}
	}
	tr, err := transform.Compile(sub.Transform)
	if err != nil {
		return p, fmt.Errorf("transform of %s: %w", sub.ID, err)
	}
	domain, event, version, _ := catalog.SplitSchemaID(sub.SchemaID)
	name := topic.Ingress(domain, event)

	adm := kadm.NewClient(r.in)
	starts, err := adm.ListOffsetsAfterMilli(ctx, req.From.UnixMilli(), name)
	if err != nil {
		return p, fmt.Errorf("offsets of %s at %s: %w", name, req.From, err)
	}
	// An event accepted just before `to` is written a moment later: read
	// a margin past it (the produce timeout) and keep what was accepted
	// in range; past the newest record, the end offset.
	ends, err := adm.ListOffsetsAfterMilli(ctx, to.Add(produceMargin).UnixMilli(), name)
	if err != nil {
		return p, fmt.Errorf("offsets of %s at %s: %w", name, to, err)
	}
	latest, err := adm.ListEndOffsets(ctx, name)
	if err != nil {
		return p, fmt.Errorf("end offsets of %s: %w", name, err)
	}
	assign := map[int32]kgo.Offset{}
	stop := map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		end, ok := ends.Lookup(name, o.Partition)
		if hw, hok := latest.Lookup(name, o.Partition); hok && hw.Err == nil && (!ok || end.Err != nil || end.Offset < 0 || end.Offset > hw.Offset) {
			end, ok = hw, true
		}
		if o.Err != nil || !ok || end.Err != nil || o.Offset < 0 || end.Offset <= o.Offset {
			return
		}
		assign[o.Partition] = kgo.NewOffset().At(o.Offset)
		stop[o.Partition] = end.Offset
		p.Total += end.Offset - o.Offset
	})
	progress(p)
	if len(assign) == 0 {
		return p, nil
	}
	reader, err := kgo.NewClient(kgo.SeedBrokers(r.in.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{name: assign}))
	if err != nil {
		return p, err
	}
	defer reader.Close()
	perSecond := req.RatePerSecond
	if perSecond <= 0 {
		perSecond = 100
	}
	// Deliveries go out in steps of a tenth of a second's worth (at most
	// replayStep), each step's statuses in one store write and its
	// records in one produce: one of each per delivery held a replay to
	// their round trips, ≈ 570 a second on the embedded store and ≈ 940
	// on dynalite here, well under 100 on DynamoDB and MSK, whatever rate
	// was asked for (BenchmarkReplay).
	step := max(1, min(int(perSecond/10), replayStep))
	limit := rate.NewLimiter(rate.Limit(perSecond), step)
	for len(stop) > 0 {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return p, err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return p, fmt.Errorf("read %s: %w", name, ferr)
		}
		var recs []*kgo.Record
		var ds []store.Delivery
		var perr error
		fetches.EachRecord(func(rec *kgo.Record) {
			end, ok := stop[rec.Partition]
			if !ok || rec.Offset >= end || perr != nil {
				return
			}
			if rec.Offset >= end-1 {
				delete(stop, rec.Partition)
			}
			p.Scanned++
			var ev envelope.Event
			if json.Unmarshal(rec.Value, &ev) != nil || ev.Version != version || ev.AcceptedAt.Before(req.From) || !ev.AcceptedAt.Before(to) {
				return
			}
			if f != nil {
				fev := filter.Event{Domain: ev.Domain, Event: ev.Event, Version: ev.Version, Key: ev.Key}
				fev.Data, _ = fastjson.Decode(ev.Data)
				if ok, _ := f.Match(fev); !ok {
					p.Filtered++
					return
				}
			}
			rec, d, err := build(ev, rec.Key, sub, tr, schema, replayID, r.now().UTC())
			if err != nil {
				perr = err
				return
			}
			recs = append(recs, rec)
			ds = append(ds, d)
		})
		if perr != nil {
			return p, perr
		}
		for i := 0; i < len(recs); i += step {
			n := min(step, len(recs)-i)
			if err := limit.WaitN(ctx, n); err != nil {
				return p, err
			}
			if err := r.st.CreateDeliveries(ctx, ds[i:i+n]); err != nil {
				return p, err
			}
			if err := r.out.ProduceSync(ctx, recs[i:i+n]...).FirstErr(); err != nil {
				return p, fmt.Errorf("produce replay: %w", err)
			}
			p.Replayed += int64(n)
			progress(p)
		}
		progress(p)
	}
	return p, nil
}

// build makes the egress record and pending status of an event's delivery
// to sub under replayID, with the body a live delivery would have.
func build(ev envelope.Event, key []byte, sub store.Subscription, tr *transform.Transform, schema store.Schema, replayID string, now time.Time) (*kgo.Record, store.Delivery, error) {
	var decoded any
	body, err := processor.Body(ev, sub, tr, schema.SensitivePaths, &decoded)
	if err != nil {
		return nil, store.Delivery{}, err
	}
	d := envelope.Delivery{ID: ID(ev.ID, sub.ID, replayID), EventID: ev.ID, SubscriptionID: sub.ID, PartnerID: sub.PartnerID,
		SchemaID: sub.SchemaID, Event: ev.Event, Key: string(key), Replay: replayID, AcceptedAt: ev.AcceptedAt, CreatedAt: now, Body: body}
	rec := &kgo.Record{Topic: topic.Egress(sub.PartnerID, ev.Event), Key: key, Value: d.JSON(),
		Headers: []kgo.RecordHeader{{Key: "whp-delivery-id", Value: []byte(d.ID)}, {Key: "whp-replay", Value: []byte(replayID)}}}
	return rec, store.Delivery{EventID: ev.ID, ID: d.ID, SubscriptionID: sub.ID, PartnerID: sub.PartnerID, SchemaID: sub.SchemaID,
		Status: store.DeliveryPending, Replay: replayID, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}, nil
}
