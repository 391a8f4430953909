package dev

import (
	"encoding/json"
	"net/http"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/dispatch"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

// Status is what GET /v1/status answers and `whp status` prints: the SLOs
// over a window, every partner's circuit breaker and deliveries in flight
// (of its bound), the deliveries needing attention now, and the
// reconciler's status.
type Status struct {
	SLO      telemetry.Report            `json:"slo"`
	Breakers []breaker.Snapshot          `json:"breakers"`
	InFlight []telemetry.PartnerInFlight `json:"in_flight"`
	// Attention counts the deliveries in each of store.AttentionStatuses
	// now, by status and partner, from the store's status index (a walk
	// of its keys: milliseconds for a hundred thousand).
	Attention map[string]map[string]int `json:"attention"`
	Reconcile reconciler.Status         `json:"reconcile"`
}

func (p *Platform) status(w http.ResponseWriter, r *http.Request, disp *dispatch.Dispatcher, rec *reconciler.Reconciler) {
	window, err := telemetry.ParseWindow(r.URL.Query().Get("window"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rs, err := rec.Status.Load(r.Context())
	if err != nil {
		p.log.Warn("reading the reconciler status failed", "error", err)
	}
	attention := map[string]map[string]int{}
	for _, status := range store.AttentionStatuses {
		counts, err := p.st.CountDeliveries(r.Context(), status)
		if err != nil {
			p.log.Warn("counting deliveries failed", "status", status, "error", err)
			continue
		}
		attention[status] = counts
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(Status{SLO: p.tel.SLO.Report(window), Breakers: disp.Breakers(), InFlight: disp.InFlight(), Attention: attention, Reconcile: rs})
}

// trace answers GET /v1/events/{id}/trace: the spans of the event's trace
// still in memory, by start time.
func (p *Platform) trace(w http.ResponseWriter, r *http.Request) {
	ev, err := p.st.GetEvent(r.Context(), r.PathValue("id"))
	if err != nil || ev.TraceID == "" {
		http.Error(w, "no trace for this event (yet): it is recorded once the processor has seen the event", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"trace_id": ev.TraceID, "spans": p.tel.Tracing.Spans.Trace(ev.TraceID)})
}
