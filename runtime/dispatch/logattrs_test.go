package dispatch

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A logger made by withAttrs writes what Logger.With's would, attribute
// for attribute and in the same order, also after With and WithGroup; and
// below its level it writes nothing.
func TestWithAttrs(t *testing.T) {
	var got, want bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	base, ref := slog.New(slog.NewTextHandler(&got, opts)), slog.New(slog.NewTextHandler(&want, opts))
	attrs := []any{slog.String("event_id", "e1"), slog.String("delivery_id", "d1"), slog.Int("attempt", 2)}
	l := withAttrs(base, slog.String("event_id", "e1"), slog.String("delivery_id", "d1"), slog.Int("attempt", 2))
	r := ref.With(attrs...)
	l.Info("attempt failed", "status_code", 503)
	r.Info("attempt failed", "status_code", 503)
	l.Debug("delivered", "status_code", 204)
	r.Debug("delivered", "status_code", 204)
	l.With("stage", "x").Warn("with")
	r.With("stage", "x").Warn("with")
	l.WithGroup("g").Error("grouped", "k", "v")
	r.WithGroup("g").Error("grouped", "k", "v")
	if got.String() != want.String() {
		t.Errorf("got\n%s\nwant\n%s", got.String(), want.String())
	}
	if lines := strings.Count(got.String(), "\n"); lines != 3 || strings.Contains(got.String(), "delivered") {
		t.Errorf("%d lines, want 3 and no debug line:\n%s", lines, got.String())
	}
	if !strings.Contains(got.String(), `level=INFO msg="attempt failed" event_id=e1 delivery_id=d1 attempt=2 status_code=503`) {
		t.Errorf("attributes not in front of the line's own:\n%s", got.String())
	}
}
