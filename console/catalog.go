package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/store"
)

// catalogModel is the catalog page.
type catalogModel struct {
	Schemas       []store.Schema
	Subscriptions []store.Subscription
	Reconcile     *reconciler.Status
}

func (s *Server) catalog(w http.ResponseWriter, r *http.Request, ss session) {
	var m catalogModel
	var err error
	if m.Schemas, err = s.cfg.Store.ListSchemas(r.Context()); err != nil {
		s.unavailable(w, r, "the schemas", err)
		return
	}
	if m.Subscriptions, err = s.cfg.Store.ListSubscriptions(r.Context()); err != nil {
		s.unavailable(w, r, "the subscriptions", err)
		return
	}
	if s.cfg.ReconcileStatus != nil {
		if st, err := s.cfg.ReconcileStatus(r.Context()); err == nil {
			m.Reconcile = &st
		} else {
			s.cfg.Log.Warn("console: reconciler status unavailable", "error", err)
		}
	}
	s.render(w, r, http.StatusOK, catalogPage(s.page(ss, "catalog"), m))
}

func (s *Server) schema(w http.ResponseWriter, r *http.Request, ss session) {
	sc, err := s.cfg.Store.GetSchema(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "no such schema")
		return
	}
	if err != nil {
		s.unavailable(w, r, "the schema", err)
		return
	}
	s.render(w, r, http.StatusOK, schemaPage(s.page(ss, "catalog"), sc, indentJSON(sc.JSONSchema)))
}

func indentJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}
