package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The store answers a trace with its spans in start order, parents and
// attributes kept, and forgets whole traces, oldest first, past its bound.
func TestSpanStore(t *testing.T) {
	store := NewSpanStore(4)
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(store)).Tracer("test")
	trace := func(children int) string {
		ctx, root := tracer.Start(context.Background(), "root")
		for range children {
			_, c := tracer.Start(ctx, "child")
			c.SetAttributes(attribute.String("whp.event_id", "e1"))
			c.End()
		}
		root.End()
		return root.SpanContext().TraceID().String()
	}
	first, second, third := trace(1), trace(1), trace(1)
	if got := store.Trace(first); got != nil {
		t.Errorf("the oldest trace was kept past the bound: %d spans", len(got))
	}
	for _, id := range []string{second, third} {
		spans := store.Trace(id)
		if len(spans) != 2 || spans[0].Name != "root" || spans[1].ParentID != spans[0].SpanID || spans[1].TraceID != id ||
			spans[1].Attributes["whp.event_id"] != "e1" {
			t.Errorf("trace %s: %+v", id, spans)
		}
	}
	if store.Trace("not hex") != nil || store.Trace("00000000000000000000000000000001") != nil {
		t.Error("an unknown trace has spans")
	}
}
