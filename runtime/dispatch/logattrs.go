package dispatch

import (
	"context"
	"log/slog"
)

// deferredAttrs is a handler that adds its attributes to each record it
// handles, in front of the record's own — what Logger.With does, but
// without formatting them when the logger is made. The standard handlers'
// WithAttrs formats at once (the work, and a dozen allocations, of half a
// log line), which pays off for a logger used many times; the dispatcher
// makes one per delivery (its IDs and trace on every line about it), and
// a delivery that succeeds logs nothing at the default level, so the
// formatting was thrown away for nearly every delivery (4 % of the CPU a
// delivery costs in BenchmarkDeliver, receiver included).
type deferredAttrs struct {
	next  slog.Handler
	attrs []slog.Attr
}

// withAttrs is l with attrs on every line, formatted only when one is
// written.
func withAttrs(l *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	return slog.New(&deferredAttrs{next: l.Handler(), attrs: attrs})
}

func (h *deferredAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *deferredAttrs) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *deferredAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &deferredAttrs{next: h.next, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

// WithGroup formats what it has: the attributes before a group are not
// in it.
func (h *deferredAttrs) WithGroup(name string) slog.Handler {
	return h.next.WithAttrs(h.attrs).WithGroup(name)
}
