// Package processor turns accepted events into deliveries: it consumes the
// ingress topics in a consumer group, finds the Approved subscriptions of
// each event's schema, and produces one record per subscription to
// wh.egress.{partner}.{event} on the egress cluster, with a delivery ID
// derived from (event ID, subscription ID).
//
// Offsets are committed only after the egress cluster acknowledged every
// delivery of the batch and the batch's history (events, pending
// deliveries) is written (at-least-once); a crash before that re-publishes
// the same delivery IDs, which the dispatcher's ledger drops. The history
// is written in the background (consume.Pipeline) while the next batch is
// fetched and published: it is not on the path to the partner.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/catalog/filter"
	"github.com/whp-dev/whp/catalog/transform"
	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/runtime/consume"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Store is the part of the state the processor uses.
type Store interface {
	SubscriptionsForSchema(ctx context.Context, schemaID string) ([]store.Subscription, error)
	CreateEvents(ctx context.Context, es []store.Event) error
	CreateDeliveries(ctx context.Context, ds []store.Delivery) error
	AddCounts(ctx context.Context, subscriptionID string, c store.Counts) error
}

// Schemas tells whether a schema's data may be kept (contains_sensitive).
type Schemas interface {
	Lookup(id string) (*registry.Entry, bool)
}

// Config configures a Processor.
type Config struct {
	// Group is the consumer group on the ingress cluster. Default "whp-processor".
	Group string
	// StatusTTL is how long event and delivery history is kept. Default 30 days.
	StatusTTL time.Duration
	// MaxPollRecords bounds one batch. Default 1000.
	MaxPollRecords int
	// MaxDeliveries bounds the deliveries one publish makes (an event's
	// are never split): at fan-out 100 a poll of 1,000 events would
	// otherwise be 100,000 records produced and held at once, and one
	// history write of as many items. The history of up to eight
	// publishes waits for the store (consume.Pipeline), so this bounds
	// what a burst holds in memory: at fan-out 100 in `whp bench`, 1,000
	// against 5,000 lowered the peak live heap from 190–210 to 66–100 MB
	// with as many deliveries per second; the store still sees one write
	// per several publishes. Default 1000.
	MaxDeliveries int
	// Flags can switch a partner's transforms off. Default: none.
	Flags flags.Source
	// Tracing continues each event's trace through processing into its
	// deliveries' records (nil: none). Its KafkaOpts belong on the
	// clients, among the options New takes.
	Tracing *telemetry.Tracing
}

// Processor is the processor role.
type Processor struct {
	cfg        Config
	in         *kgo.Client // ingress consumer
	out        *kgo.Client // egress producer
	st         Store
	schemas    Schemas
	log        *slog.Logger
	now        func() time.Time
	filters    map[string]compiledFilter // by subscription id; used by the Run goroutine only
	routers    map[string]*router        // by schema id; likewise
	transforms map[string]compiledTransform
	pipe       *consume.Pipeline[history] // Run's history writes and commits
}

// history is what a published batch leaves to record: its events, its
// pending deliveries and the filtered counts.
type history struct {
	events     []store.Event
	deliveries []store.Delivery
	filtered   map[string]int64
}

type compiledTransform struct {
	raw string
	t   *transform.Transform
}

// compiledFilter is a subscription's filter, compiled once per version of
// its text.
type compiledFilter struct {
	raw string
	f   *filter.Filter
	err error
}

// New creates the processor's clients: a consumer of every ingress topic
// on the ingress cluster and a producer on the egress cluster. Extra kgo
// options (TLS, SASL) are applied to both.
func New(cfg Config, ingress, egress []string, st Store, schemas Schemas, log *slog.Logger, opts ...kgo.Opt) (*Processor, error) {
	p, err := NewBatch(cfg, egress, st, schemas, log, opts...)
	if err != nil {
		return nil, err
	}
	// Partitions that move to another processor have their history
	// written first; the commit may then fail, which only means the new
	// owner publishes the same delivery IDs again.
	p.pipe = consume.NewPipeline(p.record, func(ctx context.Context, recs []*kgo.Record) error {
		return p.in.CommitRecords(ctx, recs...)
	}, log.With("stage", "history"))
	drain := func(ctx context.Context, _ *kgo.Client, _ map[string][]int32) { p.pipe.Drain(ctx) }
	inOpts := append([]kgo.Opt{kgo.SeedBrokers(ingress...), kgo.DisableAutoCommit(),
		kgo.OnPartitionsRevoked(drain), kgo.OnPartitionsLost(drain)}, consume.GroupOptions(p.cfg.Group, topic.IngressPrefix)...)
	if p.in, err = kgo.NewClient(append(inOpts, opts...)...); err != nil {
		p.close()
		return nil, fmt.Errorf("processor ingress client: %w", err)
	}
	return p, nil
}

// NewBatch creates a processor that consumes nothing itself: its caller
// hands it batches through Process (the Lambda handler, fed by an MSK
// event source mapping). It produces to the egress cluster.
func NewBatch(cfg Config, egress []string, st Store, schemas Schemas, log *slog.Logger, opts ...kgo.Opt) (*Processor, error) {
	if cfg.Group == "" {
		cfg.Group = "whp-processor"
	}
	if cfg.StatusTTL <= 0 {
		cfg.StatusTTL = 30 * 24 * time.Hour
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 1000
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = 1000
	}
	if cfg.Flags == nil {
		cfg.Flags = flags.Static{}
	}
	out, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(egress...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("processor egress client: %w", err)
	}
	return &Processor{cfg: cfg, out: out, st: st, schemas: schemas, log: log, now: time.Now,
		filters: map[string]compiledFilter{}, routers: map[string]*router{}, transforms: map[string]compiledTransform{}}, nil
}

// Ping reports whether both clusters answer (a broker of each).
func (p *Processor) Ping(ctx context.Context) error {
	if p.in != nil {
		if err := p.in.Ping(ctx); err != nil {
			return fmt.Errorf("ingress: %w", err)
		}
	}
	if err := p.out.Ping(ctx); err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	return nil
}

// Close closes the clients of a processor that is not Run (Run closes
// its own when it returns).
func (p *Processor) Close() { p.close() }

// Refresh makes the processor look for new ingress topics now, rather
// than at its next metadata refresh (up to 10 s).
func (p *Processor) Refresh() {
	if p.in != nil {
		p.in.ForceMetadataRefresh()
	}
}

// Run consumes until ctx ends, then writes and commits what it finished
// (for up to closeTimeout) and leaves the group.
func (p *Processor) Run(ctx context.Context) error {
	defer p.close()
	for {
		fetches := p.in.PollRecords(ctx, p.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			p.in.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			p.log.Warn("ingress fetch error", "topic", t, "partition", part, "error", err)
		})
		for recs := fetches.Records(); len(recs) > 0; {
			h, n, err := p.publish(ctx, recs)
			if err != nil {
				// What was not published is not committed: it is
				// processed again after a pause (delivery IDs make a
				// second publish harmless).
				p.log.Error("processing batch failed; will retry", "records", len(recs), "error", err)
				p.in.AllowRebalance()
				if !consume.Pause(ctx, time.Second) {
					return nil
				}
				consume.Rewind(p.in, recs) // the records not published yet
				break
			}
			p.pipe.Submit(h, recs[:n])
			recs = recs[n:]
		}
		p.in.AllowRebalance()
	}
}

// closeTimeout bounds how long a stopping processor keeps writing the
// history of what it published (within the pods' 45 s grace).
const closeTimeout = 15 * time.Second

func (p *Processor) close() {
	if p.pipe != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		p.pipe.Close(ctx)
		cancel()
	}
	if p.in != nil {
		p.in.Close()
	}
	p.out.Close()
}

// Process handles one batch of ingress records: it publishes its
// deliveries, then records every event and the deliveries as pending. An
// error means the batch must be processed again, whole; doing so is
// harmless (the same delivery IDs are published, and the dispatcher's
// ledger delivers each once). Batches of one Processor must not run
// concurrently.
func (p *Processor) Process(ctx context.Context, recs []*kgo.Record) error {
	for len(recs) > 0 {
		h, n, err := p.publish(ctx, recs)
		if err != nil {
			return err
		}
		if err := p.record(ctx, []history{h}); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

// publish routes the events of recs, in order, and publishes their
// deliveries, stopping once MaxDeliveries are made; it returns what is
// left to record and how many records it took (at least one).
func (p *Processor) publish(ctx context.Context, recs []*kgo.Record) (_ history, taken int, err error) {
	now := p.now().UTC()
	var spans []trace.Span
	defer func() {
		for _, s := range spans {
			if err != nil {
				telemetry.Fail(s, err)
			}
			s.End()
		}
	}()
	routers := map[string]*router{} // this batch's, by schema id
	filtered := map[string]int64{}
	var events []store.Event
	var out []*kgo.Record
	var deliveries []store.Delivery
	for _, r := range recs {
		if len(out) >= p.cfg.MaxDeliveries {
			break
		}
		taken++
		var ev envelope.Event
		if err := fastjson.Unmarshal(r.Value, &ev); err != nil || ev.ID == "" {
			// Only ingest writes here, so this is a bug or a foreign
			// producer; skipping it must not block the partition.
			p.log.Error("skipping malformed ingress record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "error", err)
			continue
		}
		schemaID := catalog.SchemaID(ev.Domain, ev.Event, ev.Version)
		rctx, span := p.cfg.Tracing.Process(ctx, r, attribute.String("whp.event_id", ev.ID), attribute.String("whp.schema_id", schemaID))
		spans = append(spans, span)
		rt, ok := routers[schemaID]
		if !ok {
			all, err := p.st.SubscriptionsForSchema(ctx, schemaID)
			if err != nil {
				return history{}, 0, fmt.Errorf("subscriptions of %s: %w", schemaID, err)
			}
			rt = p.router(schemaID, all)
			routers[schemaID] = rt
		}
		subs, routing, omitted := p.route(ev, rt)
		for _, d := range routing {
			if !d.Matched && d.filtered {
				filtered[d.SubscriptionID]++
			}
		}
		stored := store.Event{ID: ev.ID, SchemaID: schemaID, Key: ev.Key, IdempotencyKey: ev.IdempotencyKey,
			AcceptedAt: ev.AcceptedAt, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, TraceID: telemetry.TraceID(rctx),
			Data: ev.Data, ExpiresAt: now.Add(p.cfg.StatusTTL), Routing: routes(routing), RoutingOmitted: omitted}
		entry, known := p.schemas.Lookup(schemaID)
		if !known || entry.Schema.ContainsSensitive {
			stored.Data = nil // never keep what may be sensitive
		}
		events = append(events, stored)
		if len(subs) == 0 {
			continue
		}
		var sensitive []string
		if known {
			sensitive = entry.Schema.SensitivePaths
		}
		key := r.Key
		var decoded any // the data, decoded once if a subscription reshapes it
		for _, s := range subs {
			body, err := p.body(ev, s, sensitive, &decoded)
			if err != nil {
				return history{}, 0, fmt.Errorf("payload of %s for %s: %w", ev.ID, s.ID, err)
			}
			d := envelope.Delivery{ID: envelope.DeliveryID(ev.ID, s.ID), EventID: ev.ID, SubscriptionID: s.ID, PartnerID: s.PartnerID,
				SchemaID: schemaID, Event: ev.Event, Key: string(key), AcceptedAt: ev.AcceptedAt, CreatedAt: now, Body: body}
			out = append(out, &kgo.Record{Topic: topic.Egress(s.PartnerID, ev.Event), Key: key, Value: d.JSON(), Context: rctx,
				Headers: []kgo.RecordHeader{{Key: "whp-delivery-id", Value: []byte(d.ID)}}})
			deliveries = append(deliveries, store.Delivery{EventID: ev.ID, ID: d.ID, SubscriptionID: s.ID, PartnerID: s.PartnerID,
				SchemaID: schemaID, Status: store.DeliveryPending, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(p.cfg.StatusTTL)})
		}
	}
	// The deliveries go out first: the store writes below are history, and
	// kept off the path from acceptance to the partner. A batch that fails
	// after producing is processed again, which publishes the same
	// delivery IDs (the ledger drops the second) and writes history then.
	if len(out) > 0 {
		results := p.out.ProduceSync(ctx, out...)
		if err := results.FirstErr(); err != nil {
			return history{}, 0, fmt.Errorf("produce deliveries: %w", err)
		}
		// Results may come back in another order than the records went out.
		index := make(map[*kgo.Record]int, len(out))
		for i, r := range out {
			index[r] = i
		}
		for _, res := range results {
			d := &deliveries[index[res.Record]]
			d.Topic, d.Partition, d.Offset = res.Record.Topic, res.Record.Partition, res.Record.Offset
		}
	}
	p.log.Debug("published batch", "events", len(events), "deliveries", len(deliveries))
	return history{events: events, deliveries: deliveries, filtered: filtered}, taken, nil
}

// record writes the history of one or more published batches: events,
// pending deliveries and filtered counts at once (the embedded store
// commits concurrent writes in one transaction, DynamoDB takes them in
// parallel). An error means it must be written again; writing events and
// deliveries twice is harmless (both are create-if-absent). The counts
// are taken out of hs as they are sent, so a write again does not count
// them twice (a replayed batch does: the counter is a rate, not a
// ledger).
func (p *Processor) record(ctx context.Context, hs []history) error {
	var events []store.Event
	var deliveries []store.Delivery
	filtered := map[string]int64{}
	for i, h := range hs {
		events = append(events, h.events...)
		deliveries = append(deliveries, h.deliveries...)
		for id, n := range h.filtered {
			filtered[id] += n
		}
		hs[i].filtered = nil
	}
	var wg sync.WaitGroup
	var eventsErr error
	if len(events) > 0 {
		wg.Go(func() { eventsErr = p.st.CreateEvents(ctx, events) })
	}
	if len(deliveries) > 0 {
		wg.Go(func() {
			if err := p.st.CreateDeliveries(ctx, deliveries); err != nil && !errors.Is(err, context.Canceled) {
				// The dispatcher writes their status in full; a missing
				// pending row only delays what GET shows.
				p.log.Warn("recording pending deliveries failed", "deliveries", len(deliveries), "error", err)
			}
		})
	}
	for id, n := range filtered {
		wg.Go(func() {
			if err := p.st.AddCounts(ctx, id, store.Counts{Filtered: n}); err != nil {
				p.log.Warn("counting filtered events failed", "subscription_id", id, "error", err)
			}
		})
	}
	wg.Wait()
	if eventsErr != nil {
		return fmt.Errorf("record events: %w", eventsErr)
	}
	return nil
}

// body is the JSON a subscription receives for an event.
func (p *Processor) body(ev envelope.Event, s store.Subscription, sensitive []string, decoded *any) ([]byte, error) {
	t := p.transform(s)
	if p.cfg.Flags.Current().TransformOff(s.PartnerID) {
		t = identity
	}
	return Body(ev, s, t, sensitive, decoded)
}

// Body is the JSON a subscription receives for an event: the data
// reshaped by t, sensitive fields dropped unless the subscription allows
// them, and beside it the partner and subscription with their metadata.
// decoded caches the decoded data between subscriptions of one event.
// Replays build bodies with it too, so they match live deliveries.
func Body(ev envelope.Event, s store.Subscription, t *transform.Transform, sensitive []string, decoded *any) ([]byte, error) {
	data := ev.Data
	if !s.AllowSensitive && len(sensitive) > 0 || !t.Identity() {
		if *decoded == nil {
			d, err := fastjson.Decode(ev.Data)
			if err != nil {
				return nil, err
			}
			*decoded = d
		}
		drop := sensitive
		if s.AllowSensitive {
			drop = nil
		}
		b, err := json.Marshal(t.Apply(*decoded, drop))
		if err != nil {
			return nil, err
		}
		data = b
	}
	return envelope.Payload{ID: ev.ID, Type: ev.Event, Domain: ev.Domain, Version: ev.Version, Timestamp: ev.AcceptedAt, Data: data,
		Partner:      envelope.Party{ID: s.PartnerID, Metadata: s.PartnerMetadata},
		Subscription: envelope.Party{ID: s.ID, Name: s.Name, Metadata: s.Metadata}}.JSON(), nil
}

// identity is the transform that changes nothing.
var identity, _ = transform.Compile(nil)

// transform returns a subscription's compiled transform, compiled once per
// text; one that does not compile (the catalog checks them) is no transform.
func (p *Processor) transform(s store.Subscription) *transform.Transform {
	if c, ok := p.transforms[s.ID]; ok && c.raw == string(s.Transform) {
		return c.t
	}
	t, err := transform.Compile(s.Transform)
	if err != nil {
		p.log.Error("subscription transform does not compile; data is sent as it is", "subscription_id", s.ID, "error", err)
		t = identity
	}
	p.transforms[s.ID] = compiledTransform{raw: string(s.Transform), t: t}
	return t
}
