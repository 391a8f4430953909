// Package registry keeps the ingest path's view of event_schema: every
// schema version with its compiled validator, refreshed from the store so a
// stateless ingest role sees what the reconciler applied. Lookups are
// lock-free reads of an immutable snapshot.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Entry is one schema version ready for ingest.
type Entry struct {
	Schema    store.Schema
	Validator *catalog.Validator
	Topic     string // its ingress topic
}

// Active reports whether ingest accepts events of this version.
func (e *Entry) Active() bool { return e.Schema.Status == catalog.StatusActive }

// SchemaLister is the part of the store the registry reads.
type SchemaLister interface {
	ListSchemas(ctx context.Context) ([]store.Schema, error)
}

// Registry holds the current snapshot.
type Registry struct {
	st   SchemaLister
	log  *slog.Logger
	snap atomic.Pointer[map[string]*Entry]
}

// New returns an empty registry; call Refresh before serving.
func New(st SchemaLister, log *slog.Logger) *Registry {
	r := &Registry{st: st, log: log}
	empty := map[string]*Entry{}
	r.snap.Store(&empty)
	return r
}

// Lookup returns the entry of a schema ID (DOMAIN#EVENT#VERSION).
func (r *Registry) Lookup(id string) (*Entry, bool) {
	e, ok := (*r.snap.Load())[id]
	return e, ok
}

// Refresh reloads event_schema, compiling only schemas whose JSON Schema
// changed since the previous snapshot.
func (r *Registry) Refresh(ctx context.Context) error {
	schemas, err := r.st.ListSchemas(ctx)
	if err != nil {
		return fmt.Errorf("refresh schemas: %w", err)
	}
	old := *r.snap.Load()
	next := make(map[string]*Entry, len(schemas))
	for _, s := range schemas {
		if prev, ok := old[s.ID]; ok && string(prev.Schema.JSONSchema) == string(s.JSONSchema) {
			next[s.ID] = &Entry{Schema: s, Validator: prev.Validator, Topic: prev.Topic}
			continue
		}
		v, err := catalog.NewValidator(s.JSONSchema)
		if err != nil {
			// A stored schema that does not compile is skipped, not fatal:
			// the others keep serving.
			r.log.Error("stored schema does not compile; events of it are refused", "schema_id", s.ID, "error", err)
			continue
		}
		next[s.ID] = &Entry{Schema: s, Validator: v, Topic: topic.Ingress(s.Domain, s.Event)}
	}
	r.snap.Store(&next)
	return nil
}

// Run refreshes every interval until ctx ends. Errors are logged and
// retried at the next tick: the last snapshot keeps serving.
func (r *Registry) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("schema refresh failed; serving the previous snapshot", "error", err)
			}
		}
	}
}
