package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// A produced record gets a "{topic} publish" span, child of the record's
// context, with its partition and offset, and exactly one traceparent
// header naming that span — the same value the W3C propagator writes,
// replacing one the record already carried. The consumer's process span
// continues the trace from the header, with the messaging attributes and
// the caller's. A record whose trace is not sampled carries the unsampled
// traceparent and records no span.
func TestPublishSpan(t *testing.T) {
	ctx := context.Background()
	const topic = "wh.ingress.shop.order.created"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tel, err := New(ctx, Options{Service: "test", Traces: TracesMemory})
	if err != nil {
		t.Fatal(err)
	}
	tr := tel.Tracing
	prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, tr.KafkaOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	reqCtx, req := tr.Start(ctx, "POST /v1/events")
	rec := &kgo.Record{Topic: topic, Value: []byte("{}"), Context: reqCtx,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}, {Key: "other", Value: []byte("kept")}}}
	if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	req.End()
	publish := trace.SpanFromContext(rec.Context).SpanContext()
	want := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(rec.Context, want)
	var parents []string
	for _, h := range rec.Headers {
		if h.Key == "traceparent" {
			parents = append(parents, string(h.Value))
		}
	}
	if len(parents) != 1 || parents[0] != want["traceparent"] || len(rec.Headers) != 2 || string(rec.Headers[1].Value) != "kept" {
		t.Fatalf("headers %q, want one traceparent %s and the other header kept", rec.Headers, want["traceparent"])
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pollCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fs := cons.PollFetches(pollCtx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	got := fs.Records()[0]
	got.Context = nil // as fetched in another process
	_, process := tr.Process(ctx, got, attribute.String("whp.event_id", "e1"))
	process.End()

	spans := tr.Spans.Trace(publish.TraceID().String())
	byName := map[string]Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	pub, proc := byName[topic+" publish"], byName[topic+" process"]
	if pub.SpanID != publish.SpanID().String() || pub.ParentID != req.SpanContext().SpanID().String() || pub.Kind != "producer" {
		t.Errorf("publish span %+v, want span %s, child of the request's %s", pub, publish.SpanID(), req.SpanContext().SpanID())
	}
	for k, v := range map[string]string{"messaging.system": "kafka", "messaging.destination.name": topic,
		"messaging.destination.partition.id": "0", "messaging.kafka.offset": "0"} {
		if pub.Attributes[k] != v {
			t.Errorf("publish span %s = %q, want %q", k, pub.Attributes[k], v)
		}
	}
	if proc.ParentID != pub.SpanID {
		t.Errorf("process span %+v is not a child of the publish span %s", proc, pub.SpanID)
	}
	for k, v := range map[string]string{"messaging.system": "kafka", "messaging.destination.name": topic,
		"messaging.destination.partition.id": "0", "messaging.kafka.offset": "0", "whp.event_id": "e1"} {
		if proc.Attributes[k] != v {
			t.Errorf("process span %s = %q, want %q", k, proc.Attributes[k], v)
		}
	}

	// Not sampled: the decision travels, nothing is recorded.
	unsampled := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true}))
	rec = &kgo.Record{Topic: topic, Value: []byte("{}"), Context: unsampled}
	if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if h := rec.Headers; len(h) != 1 || !strings.HasPrefix(string(h[0].Value), "00-01000000000000000000000000000000-") ||
		!strings.HasSuffix(string(h[0].Value), "-00") || len(h[0].Value) != 55 {
		t.Errorf("unsampled record's headers %q", rec.Headers)
	}
	if spans := tr.Spans.Trace("01000000000000000000000000000000"); len(spans) != 0 {
		t.Errorf("an unsampled trace recorded %d spans", len(spans))
	}
}

// Work set aside with its Traceparent and taken up later by other work
// resumes in its own trace, its span a child of the saved one and linked
// to the work that takes it up; without a valid saved traceparent it is a
// child of the taking work's span. A nil Tracing records nothing.
func TestResume(t *testing.T) {
	ctx := context.Background()
	tel, err := New(ctx, Options{Service: "test", Traces: TracesMemory})
	if err != nil {
		t.Fatal(err)
	}
	tr := tel.Tracing
	savedCtx, saved := tr.Start(ctx, "set aside")
	parent := Traceparent(savedCtx)
	saved.End()
	if want := "00-" + saved.SpanContext().TraceID().String() + "-" + saved.SpanContext().SpanID().String() + "-01"; parent != want {
		t.Fatalf("Traceparent %q, want %q", parent, want)
	}
	if Traceparent(ctx) != "" {
		t.Errorf("Traceparent of a context without a span: %q", Traceparent(ctx))
	}
	takerCtx, taker := tr.Start(ctx, "taker")
	defer taker.End()
	for _, c := range []struct {
		name, traceparent string
		parent            trace.SpanContext
	}{
		{"saved", parent, saved.SpanContext()},
		{"none saved", "", taker.SpanContext()},
		{"not a traceparent", "00-zz", taker.SpanContext()},
	} {
		rctx, span := tr.Resume(takerCtx, c.traceparent, "resumed", attribute.String("whp.delivery_id", "d1"))
		span.End()
		got := span.(interface{ Parent() trace.SpanContext }).Parent()
		if got.SpanID() != c.parent.SpanID() || span.SpanContext().TraceID() != c.parent.TraceID() || trace.SpanFromContext(rctx) != span {
			t.Errorf("%s: parent %s in trace %s, want %s in %s", c.name, got.SpanID(), span.SpanContext().TraceID(), c.parent.SpanID(), c.parent.TraceID())
		}
		links := span.(interface{ Links() []sdktrace.Link }).Links()
		if linked := len(links) == 1 && links[0].SpanContext.SpanID() == taker.SpanContext().SpanID(); linked != (c.name == "saved") {
			t.Errorf("%s: links %v", c.name, links)
		}
	}
	var none *Tracing
	if rctx, span := none.Resume(takerCtx, parent, "resumed"); rctx != takerCtx || span.IsRecording() {
		t.Errorf("a nil Tracing recorded a span")
	}
}
