package telemetry

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Trace exporters (Options.Traces).
const (
	TracesNone   = "none"   // no spans are recorded
	TracesMemory = "memory" // kept in the process, shown per event (whp dev)
	TracesOTLP   = "otlp"   // OTLP over HTTP, configured by OTEL_EXPORTER_OTLP_* variables
)

// Tracing follows an event across the Kafka hops: spans for ingest's
// request, each produce and fetch (franz-go's kotel hooks, which carry the
// W3C traceparent in record headers), the processing of each record, and
// each delivery attempt — one trace from the producer's POST to the
// partner's answer. A nil *Tracing records nothing.
type Tracing struct {
	tracer   trace.Tracer
	kotel    *kotel.Tracer
	prop     propagation.TextMapPropagator
	provider *sdktrace.TracerProvider // nil when none
	// Spans holds finished spans when the exporter is TracesMemory.
	Spans *SpanStore
}

func newTracing(ctx context.Context, exporter string, sampleRatio float64, res *resource.Resource) (*Tracing, error) {
	prop := propagation.TraceContext{}
	var tp trace.TracerProvider = noop.NewTracerProvider()
	t := &Tracing{prop: prop}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(sampleRatio)))}
	switch exporter {
	case "", TracesNone:
	case TracesMemory:
		t.Spans = NewSpanStore(2000)
		// A processor of its own, synchronous: a span is findable the
		// moment it ends.
		t.provider = sdktrace.NewTracerProvider(append(opts, sdktrace.WithSpanProcessor(t.Spans))...)
	case TracesOTLP:
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		t.provider = sdktrace.NewTracerProvider(append(opts, sdktrace.WithBatcher(exp))...)
	default:
		return nil, fmt.Errorf("telemetry: traces %q: want none, memory or otlp", exporter)
	}
	if t.provider != nil {
		tp = t.provider
	}
	t.tracer = tp.Tracer("github.com/whp-dev/whp")
	t.kotel = kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(prop))
	return t, nil
}

// KafkaOpts are the client options that trace a Kafka client's produces
// ("… publish" spans) and carry the trace in record headers.
//
// Fetches are not traced: kotel's "… receive" span of a fetched record
// would last from its fetch to its poll, one more span per record per hop
// held in memory while the record waits in the client's buffer (about
// 30 MB of them at the fan-out 16 burst's peak). A record's wait shows as
// the gap between its publish span and its process span (Process), which
// continues the trace from the record's headers.
func (t *Tracing) KafkaOpts() []kgo.Opt {
	if t == nil {
		return nil
	}
	return []kgo.Opt{kgo.WithHooks(&publishHooks{tracer: t.tracer, prop: t.prop})}
}

// publishHooks trace each produced record with a "{topic} publish" span
// from its buffering to its acknowledgement, a child of the record's
// context, and put the span's traceparent in the record's headers — what
// kotel's produce hooks do, for about half their cost on the ingest path
// (BenchmarkPost in runtime/ingest): a topic's span name and start options
// are built once, and the traceparent is written without a propagator.
// The record's key is not an attribute (kotel's
// messaging.kafka.message.key): it is the event ID or the producer's
// ordering key, and whp's own spans carry the event ID.
type publishHooks struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	topics sync.Map // topic → *publishTopic
}

// publishTopic is what every publish span of a topic starts with.
type publishTopic struct {
	name string
	opts []trace.SpanStartOption
}

func (h *publishHooks) topic(name string) *publishTopic {
	if pt, ok := h.topics.Load(name); ok {
		return pt.(*publishTopic)
	}
	pt, _ := h.topics.LoadOrStore(name, &publishTopic{name: name + " publish", opts: []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", name),
			attribute.String("messaging.operation.type", "send")),
	}})
	return pt.(*publishTopic)
}

// traceparentHeader is the W3C Trace Context header, as the TraceContext
// propagator names it.
const traceparentHeader = "traceparent"

// OnProduceRecordBuffered implements kgo.HookProduceRecordBuffered.
func (h *publishHooks) OnProduceRecordBuffered(r *kgo.Record) {
	parent := r.Context
	if parent == nil {
		parent = context.Background()
	}
	pt := h.topic(r.Topic)
	ctx, span := h.tracer.Start(parent, pt.name, pt.opts...)
	r.Context = ctx
	sc := span.SpanContext()
	if !sc.IsValid() {
		return
	}
	if sc.TraceState().Len() > 0 { // rare: a producer's tracestate travels on
		h.prop.Inject(ctx, kotel.NewRecordCarrier(r))
		return
	}
	setHeader(r, traceparentHeader, traceparent(sc))
}

// OnProduceRecordUnbuffered implements kgo.HookProduceRecordUnbuffered.
func (h *publishHooks) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	span := trace.SpanFromContext(r.Context)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("messaging.destination.partition.id", int(r.Partition)), attribute.Int64("messaging.kafka.offset", r.Offset))
	if err != nil {
		Fail(span, err)
	}
	span.End()
}

// traceparent is sc as a W3C traceparent header value:
// 00-{trace id}-{span id}-{flags}.
func traceparent(sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:])
	b = append(b, '-')
	return hex.AppendEncode(b, []byte{byte(sc.TraceFlags() & trace.FlagsSampled)})
}

// setHeader sets a record header, replacing one of the same key (a
// record produced again keeps its other headers).
func setHeader(r *kgo.Record, key string, value []byte) {
	for i := range r.Headers {
		if r.Headers[i].Key == key {
			r.Headers[i].Value = value
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: value})
}

// Process starts the span of processing record r, a child of the trace the
// record carries (its context's span if it has one, else its headers'
// traceparent: its publish span), in ctx so that cancellation still
// follows the caller. Records produced with the returned context carry the
// trace on. The span has the messaging attributes and attrs.
func (t *Tracing) Process(ctx context.Context, r *kgo.Record, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(nil)
	}
	parent := r.Context
	if parent == nil || !trace.SpanContextFromContext(parent).IsValid() {
		parent = t.prop.Extract(context.Background(), kotel.NewRecordCarrier(r))
	}
	// One slice for all, given at start: set after it, they grow the
	// span's own — two allocations more a span.
	all := append(make([]attribute.KeyValue, 0, 4+len(attrs)), attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.destination.name", r.Topic), attribute.Int("messaging.destination.partition.id", int(r.Partition)),
		attribute.Int64("messaging.kafka.offset", r.Offset))
	_, span := t.tracer.Start(parent, r.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(append(all, attrs...)...))
	return trace.ContextWithSpan(ctx, span), span
}

// Start starts a span in ctx (nil-safe).
func (t *Tracing) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(nil)
	}
	return t.tracer.Start(ctx, name, opts...)
}

// Detached is a context that carries ctx's span and nothing else: no
// deadline, no cancellation, no other value. It is what work that must
// outlive its caller's cancellation (a produce already started, a POST to
// a partner) runs in, in place of context.WithoutCancel(ctx), whose every
// value lookup allocates (its Value boxes the wrapper) — and the tracer
// and net/http look values up several times per record or request.
func Detached(ctx context.Context) context.Context {
	return trace.ContextWithSpan(context.Background(), trace.SpanFromContext(ctx))
}

// Extract reads a traceparent from carrier (an incoming request's
// headers), so a producer's trace continues into whp.
func (t *Tracing) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if t == nil {
		return ctx
	}
	return t.prop.Extract(ctx, carrier)
}

// Flush exports what is buffered (on Lambda, before the sandbox freezes).
func (t *Tracing) Flush(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

func (t *Tracing) shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// TraceID is the trace ctx belongs to, "" if none.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// Traceparent is ctx's span context as a W3C traceparent value, "" if
// it has none: what work that waits in a store, not in a Kafka record's
// headers, keeps to continue its trace when it is taken up (Resume).
func Traceparent(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return string(traceparent(sc))
	}
	return ""
}

// Resume starts a span named name for work that waited in a store: a
// child of the span in traceparent (saved by Traceparent when the work
// was set aside), linked to ctx's span (the work that takes it up), in
// ctx. Without a valid traceparent (work saved by a build before it kept
// one) the span is a child of ctx's.
func (t *Tracing) Resume(ctx context.Context, traceparent, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(nil)
	}
	parent := ctx
	if traceparent != "" {
		if saved := t.prop.Extract(context.Background(), propagation.MapCarrier{traceparentHeader: traceparent}); trace.SpanContextFromContext(saved).IsValid() {
			parent = saved
		}
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if parent != ctx {
		opts = append(opts, trace.WithLinks(trace.LinkFromContext(ctx)))
	}
	_, span := t.tracer.Start(parent, name, opts...)
	return trace.ContextWithSpan(ctx, span), span
}

// Fail marks span failed with err's text.
func Fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// Span is a finished span as whp shows it.
type Span struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_span_id,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Start      time.Time         `json:"start"`
	DurationMS float64           `json:"duration_ms"`
	Status     string            `json:"status,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// SpanStore keeps the spans of the most recent traces in memory, up to a
// bound on spans, forgetting whole traces oldest first. It is the dev
// exporter: the console and GET /v1/events/{id}/trace read it. It is a
// span processor itself rather than an exporter behind the SDK's
// synchronous processor, which would allocate a batch of one and take a
// lock of its own for every span. Spans are kept as the SDK hands them
// over and turned into Spans only when a trace is read: every event ends
// several spans, few traces are ever looked at.
type SpanStore struct {
	mu     sync.Mutex
	max    int
	n      int
	order  []trace.TraceID // oldest first
	traces map[trace.TraceID][]sdktrace.ReadOnlySpan
}

// spansPerTrace is the room a new trace's span list starts with: an
// event's trace at fan-out 1 has about six spans.
const spansPerTrace = 8

// NewSpanStore keeps up to max spans.
func NewSpanStore(max int) *SpanStore {
	return &SpanStore{max: max, traces: map[trace.TraceID][]sdktrace.ReadOnlySpan{}}
}

// OnEnd implements sdktrace.SpanProcessor: it keeps the ended span.
func (s *SpanStore) OnEnd(sp sdktrace.ReadOnlySpan) {
	id := sp.SpanContext().TraceID()
	s.mu.Lock()
	defer s.mu.Unlock()
	kept, ok := s.traces[id]
	if !ok {
		s.order = append(s.order, id)
		kept = make([]sdktrace.ReadOnlySpan, 0, spansPerTrace)
	}
	s.traces[id] = append(kept, sp)
	s.n++
	for s.n > s.max && len(s.order) > 1 {
		old := s.order[0]
		s.order = s.order[1:]
		s.n -= len(s.traces[old])
		delete(s.traces, old)
	}
}

// OnStart implements sdktrace.SpanProcessor.
func (s *SpanStore) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// ForceFlush implements sdktrace.SpanProcessor: nothing is buffered.
func (s *SpanStore) ForceFlush(context.Context) error { return nil }

// span is sp as whp shows it.
func span(sp sdktrace.ReadOnlySpan) Span {
	sc := sp.SpanContext()
	out := Span{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), Name: sp.Name(), Kind: sp.SpanKind().String(),
		Start: sp.StartTime(), DurationMS: float64(sp.EndTime().Sub(sp.StartTime())) / float64(time.Millisecond)}
	if p := sp.Parent(); p.IsValid() {
		out.ParentID = p.SpanID().String()
	}
	if st := sp.Status(); st.Code == codes.Error {
		out.Status = "error: " + st.Description
	}
	if attrs := sp.Attributes(); len(attrs) > 0 {
		out.Attributes = make(map[string]string, len(attrs))
		for _, a := range attrs {
			out.Attributes[string(a.Key)] = a.Value.Emit()
		}
	}
	return out
}

// Shutdown implements sdktrace.SpanProcessor.
func (s *SpanStore) Shutdown(context.Context) error { return nil }

// Trace returns a trace's spans, by start time.
func (s *SpanStore) Trace(traceID string) []Span {
	id, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	kept := slices.Clone(s.traces[id])
	s.mu.Unlock()
	if len(kept) == 0 {
		return nil
	}
	out := make([]Span, len(kept))
	for i, sp := range kept {
		out[i] = span(sp)
	}
	slices.SortFunc(out, func(a, b Span) int { return a.Start.Compare(b.Start) })
	return out
}
