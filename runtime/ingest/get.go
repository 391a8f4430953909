package ingest

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/store"
)

// EventView is the answer of GET /v1/events/{id}.
type EventView struct {
	ID         string          `json:"id"`
	Domain     string          `json:"domain"`
	Event      string          `json:"event"`
	Version    string          `json:"version"`
	Key        string          `json:"key,omitempty"`
	AcceptedAt time.Time       `json:"accepted_at"`
	Topic      string          `json:"topic"`
	Partition  int32           `json:"partition"`
	Offset     int64           `json:"offset"`
	Data       json.RawMessage `json:"data,omitempty"`
	// DataRedacted is true when the schema contains_sensitive: the data
	// was delivered but is not kept for display.
	DataRedacted bool           `json:"data_redacted,omitempty"`
	Deliveries   []DeliveryView `json:"deliveries"`
	// Routing says, for each subscription of the schema, whether it took
	// the event and, if not, why (a filter, or the subscription's status)
	// — every one when the schema has few subscriptions; when it has many
	// (more than 32), those that took it and those it was addressed to
	// (store.Event.Routing).
	Routing []store.Route `json:"routing"`
	// RoutingOmitted counts the subscriptions that did not take the event
	// and are not listed: another tenant's, whose filter's key names
	// another value, and refusals past the first 32.
	RoutingOmitted int `json:"routing_omitted,omitempty"`
}

// DeliveryView is one delivery of the event.
type DeliveryView struct {
	ID             string          `json:"id"`
	SubscriptionID string          `json:"subscription_id"`
	PartnerID      string          `json:"partner_id"`
	Status         string          `json:"status"`
	Reason         string          `json:"reason,omitempty"` // why it is dead-lettered, cancelled or held (or pending, for a paused partner)
	Replay         string          `json:"replay,omitempty"` // the replay that made it, if any
	Attempts       []store.Attempt `json:"attempts"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid_id", "an event id is a UUID", catalog.Violation{Pointer: "", Message: "not a UUID: " + truncate(id, 64)})
		return
	}
	ev, err := a.st.GetEvent(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "not_found", "no event "+id+" has been recorded (an event is recorded within moments of its 202)")
		return
	}
	if err != nil {
		a.log.Error("get event", "event_id", id, "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the status store is unavailable; retry")
		return
	}
	ds, err := a.st.Deliveries(r.Context(), id)
	if err != nil {
		a.log.Error("get deliveries", "event_id", id, "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the status store is unavailable; retry")
		return
	}
	a.cfg.Flags.Current().ExplainPaused(ds)
	writeJSON(w, http.StatusOK, View(ev, ds))
}

// View builds the public view of a stored event and its deliveries.
func View(ev store.Event, ds []store.Delivery) EventView {
	domain, event, version, _ := catalog.SplitSchemaID(ev.SchemaID)
	v := EventView{ID: ev.ID, Domain: domain, Event: event, Version: version, Key: ev.Key, AcceptedAt: ev.AcceptedAt,
		Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset, Data: ev.Data, DataRedacted: ev.Data == nil,
		Deliveries: make([]DeliveryView, 0, len(ds)), Routing: ev.Routing, RoutingOmitted: ev.RoutingOmitted}
	if v.Routing == nil {
		v.Routing = []store.Route{}
	}
	for _, d := range ds {
		dv := DeliveryView{ID: d.ID, SubscriptionID: d.SubscriptionID, PartnerID: d.PartnerID, Status: d.Status, Reason: d.Reason, Replay: d.Replay,
			Attempts: d.Attempts, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
		if dv.Attempts == nil {
			dv.Attempts = []store.Attempt{}
		}
		if !d.NextAttemptAt.IsZero() {
			t := d.NextAttemptAt
			dv.NextAttemptAt = &t
		}
		v.Deliveries = append(v.Deliveries, dv)
	}
	return v
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
