package telemetry

import (
	"cmp"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metrics records what the data path does. Names follow OpenTelemetry's
// conventions (dotted, unit in the instrument); the Prometheus exporter
// turns them into whp_deliveries_total, whp_delivery_attempt_duration_seconds
// and so on. Labels are bounded: schema IDs the catalog knows (else
// "unknown"), partner IDs from the catalog, outcomes from a fixed set;
// never event or delivery IDs.
//
// A nil *Metrics records nothing, so a component built without telemetry
// (most unit tests) needs no setup.
type Metrics struct {
	meter metric.Meter
	slo   *SLO

	httpDuration    metric.Float64Histogram
	deliveries      metric.Int64Counter
	attemptDuration metric.Float64Histogram
	retries         metric.Int64Counter
	endToEnd        metric.Float64Histogram
	ledgerLag       metric.Float64Histogram
	reconciles      metric.Int64Counter

	// Attribute sets of the measurements made for every event, built
	// once per distinct set of label values (building one sorts and
	// copies its attributes); the values are bounded, so are these.
	httpSets  attrSets[httpLabels]
	labelSets attrSets[[4]string]

	// validations are whp.ingest.validations by schema and result, kept
	// in atomics that the SDK reads at each collection: every event adds
	// one, and an atomic add costs a fraction of a synchronous counter's
	// (which looks its attribute set up per measurement).
	validations sync.Map // [2]string{schema, result} → *atomic.Int64
}

type httpLabels struct {
	route, method string
	code          int
}

// attrSets caches measurement options by their label values.
type attrSets[K comparable] struct{ m sync.Map }

func (c *attrSets[K]) get(k K, attrs func() []attribute.KeyValue) metric.MeasurementOption {
	if o, ok := c.m.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(attrs()...))
	c.m.Store(k, o)
	return o
}

// labels is the attribute set of string labels given as key, value pairs
// (at most two pairs), cached.
func (m *Metrics) labels(kv ...string) metric.MeasurementOption {
	var k [4]string
	copy(k[:], kv)
	return m.labelSets.get(k, func() []attribute.KeyValue {
		attrs := make([]attribute.KeyValue, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			attrs = append(attrs, attribute.String(kv[i], kv[i+1]))
		}
		return attrs
	})
}

// standardMethods are the methods whose HTTP attribute sets are cached; a
// client can send any method, and an unbounded cache would be its to grow.
var standardMethods = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true}

// Delivery outcomes (label "outcome" of whp.deliveries).
const (
	OutcomeDelivered      = "delivered"
	OutcomeDeadLettered   = "dead_lettered"
	OutcomeCancelled      = "cancelled"
	OutcomeRetryScheduled = "retry_scheduled"
	OutcomeHeld           = "held"
	OutcomeDuplicate      = "duplicate_dropped"
)

// Attempt outcomes (label "outcome" of whp.delivery.attempt.duration).
const (
	AttemptSuccess   = "success"
	AttemptRetryable = "retryable"
	AttemptFinal     = "final"
)

// secondsBuckets suit latencies from a millisecond to the 15 s attempt
// timeout (and end-to-end latencies of retried deliveries, up to hours).
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 300, 1800, 3600, 21600, 86400}

func newMetrics(meter metric.Meter, slo *SLO) (*Metrics, error) {
	m := &Metrics{meter: meter, slo: slo}
	var err error
	if m.httpDuration, err = meter.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP requests served."), metric.WithExplicitBucketBoundaries(secondsBuckets...)); err != nil {
		return nil, err
	}
	if _, err = meter.Int64ObservableCounter("whp.ingest.validations", metric.WithUnit("{event}"),
		metric.WithDescription("Events checked against their schema, by schema and result (valid, invalid)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			m.validations.Range(func(k, n any) bool {
				key := k.([2]string)
				o.Observe(n.(*atomic.Int64).Load(), m.labels("schema", key[0], "result", key[1]))
				return true
			})
			return nil
		})); err != nil {
		return nil, err
	}
	if m.deliveries, err = meter.Int64Counter("whp.deliveries", metric.WithUnit("{delivery}"),
		metric.WithDescription("What became of deliveries, by partner and outcome.")); err != nil {
		return nil, err
	}
	if m.attemptDuration, err = meter.Float64Histogram("whp.delivery.attempt.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of delivery attempts, by partner and outcome (success, retryable, final)."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...)); err != nil {
		return nil, err
	}
	if m.retries, err = meter.Int64Counter("whp.delivery.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Retries scheduled, by partner.")); err != nil {
		return nil, err
	}
	if m.endToEnd, err = meter.Float64Histogram("whp.delivery.end_to_end.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from ingest accepting an event to the partner's 2xx, by partner."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...)); err != nil {
		return nil, err
	}
	if m.ledgerLag, err = meter.Float64Histogram("whp.delivery.ledger.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from a partner's 2xx to the delivery's ledger entry being written: the window in which a crash has the delivery made again."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...)); err != nil {
		return nil, err
	}
	if m.reconciles, err = meter.Int64Counter("whp.reconcile.runs", metric.WithUnit("{run}"),
		metric.WithDescription("Reconcile runs, by result (applied, invalid, failed).")); err != nil {
		return nil, err
	}
	return m, nil
}

// HTTP records one request served on route (the mux pattern, never the
// raw path).
func (m *Metrics) HTTP(ctx context.Context, route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	attrs := func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("http.route", route),
			attribute.String("http.request.method", method), attribute.Int("http.response.status_code", code)}
	}
	if !standardMethods[method] {
		m.httpDuration.Record(ctx, d.Seconds(), metric.WithAttributes(attrs()...))
		return
	}
	m.httpDuration.Record(ctx, d.Seconds(), m.httpSets.get(httpLabels{route, method, code}, attrs))
}

// Validation records an event checked against a known schema; schemaID
// must be one the catalog declares (the caller passes "unknown" else).
func (m *Metrics) Validation(ctx context.Context, schemaID string, ok bool) {
	if m == nil {
		return
	}
	result := "valid"
	if !ok {
		result = "invalid"
	}
	k := [2]string{schemaID, result}
	n, seen := m.validations.Load(k)
	if !seen {
		n, _ = m.validations.LoadOrStore(k, new(atomic.Int64))
	}
	n.(*atomic.Int64).Add(1)
	m.slo.Validated(ok)
}

// Attempt records one delivery attempt.
func (m *Metrics) Attempt(ctx context.Context, partner, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.attemptDuration.Record(ctx, d.Seconds(), m.labels("partner", partner, "outcome", outcome))
}

// Delivery records what became of a delivery after a pass (an Outcome*).
// A delivered one also records its end-to-end latency from acceptedAt.
func (m *Metrics) Delivery(ctx context.Context, partner, outcome string, acceptedAt, now time.Time) {
	if m == nil {
		return
	}
	m.deliveries.Add(ctx, 1, m.labels("partner", partner, "outcome", outcome))
	switch outcome {
	case OutcomeRetryScheduled:
		m.retries.Add(ctx, 1, m.labels("partner", partner))
	case OutcomeDelivered:
		e2e := max(now.Sub(acceptedAt), 0)
		m.endToEnd.Record(ctx, e2e.Seconds(), m.labels("partner", partner))
		m.slo.Finished(true, e2e)
	case OutcomeDeadLettered:
		m.slo.Finished(false, 0)
	}
}

// LedgerLag records how long a delivered delivery's ledger entry took to
// be written after the partner's answer.
func (m *Metrics) LedgerLag(ctx context.Context, d time.Duration) {
	if m == nil {
		return
	}
	m.ledgerLag.Record(ctx, max(d, 0).Seconds())
}

// Reconcile records a reconcile run's result.
func (m *Metrics) Reconcile(ctx context.Context, result string) {
	if m == nil {
		return
	}
	m.reconciles.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// BreakerState is one partner's circuit breaker for whp.breaker.state.
type BreakerState struct {
	Partner string
	State   string // closed, half-open or open
}

// breakerValue maps a breaker state to the gauge's value.
func breakerValue(state string) int64 {
	switch state {
	case "open":
		return 2
	case "half-open":
		return 1
	}
	return 0
}

// ObserveBreakers reports each partner's breaker (0 closed, 1 half-open,
// 2 open) from states, read at each collection.
func (m *Metrics) ObserveBreakers(states func() []BreakerState) error {
	if m == nil {
		return nil
	}
	_, err := m.meter.Int64ObservableGauge("whp.breaker.state", metric.WithUnit("{state}"),
		metric.WithDescription("Circuit breaker per partner: 0 closed, 1 half-open, 2 open."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for _, s := range states() {
				o.Observe(breakerValue(s.State), metric.WithAttributes(attribute.String("partner", s.Partner)))
			}
			return nil
		}))
	return err
}

// PartnerInFlight is one partner's deliveries in flight in a dispatcher,
// the most it may have now (Limit: its bound as its answers have set it,
// runtime/dispatch's pace.go) and ever (Ceiling: its max_in_flight, or
// the dispatcher's --partner-concurrency), for ObserveInFlight; and what
// waits: its deliveries the dispatcher has read and not started (Waiting;
// past a few hundred the rest waits in Kafka), and, when they wait for
// something besides a free place under Limit, what (WaitsFor:
// WaitsForRateLimit or WaitsForResume).
type PartnerInFlight struct {
	Partner  string `json:"partner"`
	InFlight int    `json:"in_flight"`
	Limit    int    `json:"limit"`
	Ceiling  int    `json:"ceiling"`
	Waiting  int    `json:"waiting"`
	WaitsFor string `json:"waits_for,omitempty"`
}

// What a partner's waiting deliveries wait for (PartnerInFlight.WaitsFor).
const (
	WaitsForRateLimit = "rate_limit" // its rate limit's next token
	WaitsForResume    = "resume"     // an operator to resume it
)

// ObserveInFlight reports, at each collection, each partner's deliveries
// in flight (whp.deliveries.in_flight) and its bound
// (whp.deliveries.in_flight_limit), from read: a partner at its bound
// while its deliveries fall behind is held back by it, not by failures
// (docs/runbook.md: raise its max_in_flight).
func (m *Metrics) ObserveInFlight(read func() []PartnerInFlight) error {
	if m == nil {
		return nil
	}
	inFlight, err := m.meter.Int64ObservableGauge("whp.deliveries.in_flight", metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries in flight to each partner in this dispatcher."))
	if err != nil {
		return err
	}
	limit, err := m.meter.Int64ObservableGauge("whp.deliveries.in_flight_limit", metric.WithUnit("{delivery}"),
		metric.WithDescription("The most deliveries in flight each partner may have now in this dispatcher: its bound as its answers have set it (cut by 429s, 503s and timeouts), at most its max_in_flight or the dispatcher's --partner-concurrency."))
	if err != nil {
		return err
	}
	waiting, err := m.meter.Int64ObservableGauge("whp.deliveries.waiting", metric.WithUnit("{delivery}"),
		metric.WithDescription("Each partner's deliveries this dispatcher has read and not started, by what they wait for: a place under the bound (\"turn\"), the partner's rate limit, or an operator's resume; past a few hundred the rest waits in Kafka (whp_consumer_lag)."))
	if err != nil {
		return err
	}
	_, err = m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, p := range read() {
			attrs := metric.WithAttributes(attribute.String("partner", p.Partner))
			o.ObserveInt64(inFlight, int64(p.InFlight), attrs)
			o.ObserveInt64(limit, int64(p.Limit), attrs)
			o.ObserveInt64(waiting, int64(p.Waiting), metric.WithAttributes(attribute.String("partner", p.Partner), attribute.String("for", cmp.Or(p.WaitsFor, "turn"))))
		}
		return nil
	}, inFlight, limit, waiting)
	return err
}

// ObserveKafka reports, at each collection, the consumer lag of groups
// per topic and partition (whp.consumer.lag) and the dead letters kept in
// the topics named dlqPrefix* of the cluster adm reaches (whp.dlq.records;
// none when dlqPrefix is empty).
// Either is skipped for a collection when the cluster does not answer
// within timeout.
func (m *Metrics) ObserveKafka(adm *kadm.Client, groups []string, dlqPrefix string, timeout time.Duration) error {
	if m == nil {
		return nil
	}
	lag, err := m.meter.Int64ObservableGauge("whp.consumer.lag", metric.WithUnit("{record}"),
		metric.WithDescription("Records not yet consumed, by consumer group, topic and partition."))
	if err != nil {
		return err
	}
	dlq, err := m.meter.Int64ObservableGauge("whp.dlq.records", metric.WithUnit("{record}"),
		metric.WithDescription("Dead letters kept in wh.dlq.{event}, redriven or not (alert on growth), by topic."))
	if err != nil {
		return err
	}
	_, err = m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if lags, err := adm.Lag(ctx, groups...); err == nil {
			lags.Each(func(l kadm.DescribedGroupLag) {
				for t, ps := range l.Lag {
					for p, ml := range ps {
						if ml.Err != nil {
							continue
						}
						o.ObserveInt64(lag, ml.Lag, metric.WithAttributes(attribute.String("group", l.Group),
							attribute.String("topic", t), attribute.String("partition", strconv.Itoa(int(p)))))
					}
				}
			})
		}
		if dlqPrefix == "" {
			return nil
		}
		ends, err := adm.ListEndOffsets(ctx)
		if err != nil {
			return nil
		}
		starts, err := adm.ListStartOffsets(ctx)
		if err != nil {
			return nil
		}
		depth := map[string]int64{}
		ends.Each(func(e kadm.ListedOffset) {
			if !strings.HasPrefix(e.Topic, dlqPrefix) || e.Err != nil {
				return
			}
			if s, ok := starts.Lookup(e.Topic, e.Partition); ok && s.Err == nil {
				depth[e.Topic] += e.Offset - s.Offset
			}
		})
		for t, n := range depth {
			o.ObserveInt64(dlq, n, metric.WithAttributes(attribute.String("topic", t)))
		}
		return nil
	}, lag, dlq)
	return err
}
