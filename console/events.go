package console

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/whp-dev/whp/runtime/ingest"
	"github.com/whp-dev/whp/runtime/replay"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

// searchForm is the events search; every field optional.
type searchForm struct {
	EventID, IdempotencyKey, Partner, Schema, Status, From, To, Cursor string
}

func readSearch(q url.Values) searchForm {
	return searchForm{EventID: q.Get("event_id"), IdempotencyKey: q.Get("idempotency_key"), Partner: q.Get("partner"),
		Schema: q.Get("schema"), Status: q.Get("status"), From: q.Get("from"), To: q.Get("to"), Cursor: q.Get("cursor")}
}

// query is the form as a query string, with a cursor.
func (f searchForm) query(cursor string) string {
	q := url.Values{}
	for k, v := range map[string]string{"partner": f.Partner, "schema": f.Schema, "status": f.Status, "from": f.From, "to": f.To, "cursor": cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// eventsModel is the events page.
type eventsModel struct {
	Form       searchForm
	Partners   []string // listed to choose from up to partnerChoices; past that, typed
	Schemas    []string
	Statuses   []string
	Deliveries []store.Delivery
	Next       string
	Problem    string
	Searched   bool
}

// historyPage is how many deliveries a page of history shows.
const historyPage = 50

// partnerChoices is the most partners the search offers in a list: with
// a partner per customer, a field to type the partner's id in instead.
const partnerChoices = 100

func (s *Server) events(w http.ResponseWriter, r *http.Request, ss session) {
	f := readSearch(r.URL.Query())
	m := eventsModel{Form: f, Statuses: store.DeliveryStatuses}
	subs, err := s.cfg.Store.ListSubscriptions(r.Context())
	if err != nil {
		s.unavailable(w, r, "the subscription list", err)
		return
	}
	partners, schemas := map[string]bool{}, map[string]bool{}
	for _, sub := range subs {
		partners[sub.PartnerID], schemas[sub.SchemaID] = true, true
	}
	m.Partners, m.Schemas = slices.Sorted(maps.Keys(partners)), slices.Sorted(maps.Keys(schemas))
	// An event id or idempotency key names one event: go to it.
	if f.EventID != "" {
		http.Redirect(w, r, "/console/events/"+url.PathEscape(f.EventID), http.StatusSeeOther)
		return
	}
	if f.IdempotencyKey != "" {
		id, err := ingest.AcceptedEventID(r.Context(), s.cfg.Store, f.IdempotencyKey)
		if err == nil {
			http.Redirect(w, r, "/console/events/"+url.PathEscape(id), http.StatusSeeOther)
			return
		}
		if !errors.Is(err, store.ErrNotFound) {
			s.unavailable(w, r, "the idempotency ledger", err)
			return
		}
		m.Problem = "No event was accepted with that Idempotency-Key (keys are kept 24 hours)."
		s.render(w, r, http.StatusNotFound, eventsPage(s.page(ss, "events"), m))
		return
	}
	if f.Partner == "" && f.Schema == "" {
		if len(m.Partners) > 0 {
			f.Partner, m.Form.Partner = m.Partners[0], m.Partners[0]
		} else {
			s.render(w, r, http.StatusOK, eventsPage(s.page(ss, "events"), m))
			return
		}
	}
	if f.Status != "" && !slices.Contains(store.DeliveryStatuses, f.Status) {
		m.Problem = "Status: not a delivery status."
		s.render(w, r, http.StatusBadRequest, eventsPage(s.page(ss, "events"), m))
		return
	}
	from, to, problem := timeRange(f.From, f.To)
	if problem != "" {
		m.Problem = problem
		s.render(w, r, http.StatusBadRequest, eventsPage(s.page(ss, "events"), m))
		return
	}
	m.Searched = true
	m.Deliveries, m.Next, err = s.history(r, f.Partner, f.Schema, store.Page{Status: f.Status, Before: to, Cursor: f.Cursor}, from)
	if errors.Is(err, store.ErrInvalidCursor) {
		m.Problem, m.Searched = "cursor: not one this search gave; search again.", false
		s.render(w, r, http.StatusBadRequest, eventsPage(s.page(ss, "events"), m))
		return
	}
	if err != nil {
		s.unavailable(w, r, "delivery history", err)
		return
	}
	s.render(w, r, http.StatusOK, eventsPage(s.page(ss, "events"), m))
}

// history reads pages of a partner's (or else a schema's) history of
// p's status, newest created first from p.Before or p.Cursor, until it has
// a page's worth of deliveries (of schema too, when both are given), or
// the history ends, or it reaches deliveries created before from (if
// set): everything after them is older still.
//
// The store finds what it indexes — a partner's or a schema's history, a
// status an operator searches for (store.StatusIndexed), a start in time —
// without reading what is not asked for; what it filters instead, the
// statuses every delivery passes through and a schema within a partner's
// history, is read here twenty pages at most before the page is shown
// with a link to go on.
func (s *Server) history(r *http.Request, partner, schema string, p store.Page, from time.Time) ([]store.Delivery, string, error) {
	p.Limit = historyPage
	var out []store.Delivery
	for range 20 {
		var page store.DeliveryPage
		var err error
		if partner != "" {
			page, err = s.cfg.Store.DeliveriesByPartner(r.Context(), partner, p)
		} else {
			page, err = s.cfg.Store.DeliveriesBySchema(r.Context(), schema, p)
		}
		if err != nil {
			return nil, "", err
		}
		for _, d := range page.Deliveries {
			if !from.IsZero() && d.CreatedAt.Before(from) {
				return out, "", nil
			}
			if schema == "" || d.SchemaID == schema {
				out = append(out, d)
			}
		}
		p.Cursor = page.Next
		if p.Cursor == "" || len(out) >= historyPage {
			break
		}
	}
	return out, p.Cursor, nil
}

// timeRange reads the optional RFC 3339 bounds of a search.
func timeRange(from, to string) (f, t time.Time, problem string) {
	var err error
	if from != "" {
		if f, err = time.Parse(time.RFC3339, from); err != nil {
			return f, t, "From: use a time like 2026-11-29T10:00:00Z."
		}
	}
	if to != "" {
		if t, err = time.Parse(time.RFC3339, to); err != nil {
			return f, t, "To: use a time like 2026-11-29T10:00:00Z."
		}
	}
	return f, t, ""
}

// eventModel is an event's page.
type eventModel struct {
	Event      store.Event
	Deliveries []store.Delivery
	Spans      []telemetry.Span
	CanResend  bool
	Resent     string
	PortalBase string // the portal's routes for a partner user
}

func (s *Server) event(w http.ResponseWriter, r *http.Request, ss session) {
	m, ok := s.loadEvent(w, r, ss, "")
	if !ok {
		return
	}
	m.CanResend = s.cfg.Resend != nil && ss.Role == RoleAdmin
	m.Resent = r.URL.Query().Get("resent")
	s.render(w, r, http.StatusOK, eventPage(s.page(ss, "events"), m))
}

// loadEvent reads an event and its deliveries; partner, if set, keeps the
// deliveries of that partner only, and answers 404 if there are none (a
// partner user must not learn that another partner's event exists).
func (s *Server) loadEvent(w http.ResponseWriter, r *http.Request, ss session, partner string) (eventModel, bool) {
	id := r.PathValue("id")
	ev, err := s.cfg.Store.GetEvent(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "no such event (history is kept 30 days)")
		return eventModel{}, false
	}
	if err != nil {
		s.unavailable(w, r, "the event", err)
		return eventModel{}, false
	}
	ds, err := s.cfg.Store.Deliveries(r.Context(), id)
	if err != nil {
		s.unavailable(w, r, "the event's deliveries", err)
		return eventModel{}, false
	}
	if s.cfg.Flags != nil {
		s.cfg.Flags.Current().ExplainPaused(ds)
	}
	if partner != "" {
		ds = slices.DeleteFunc(ds, func(d store.Delivery) bool { return d.PartnerID != partner })
		if len(ds) == 0 {
			s.fail(w, r, http.StatusNotFound, "no such event (history is kept 30 days)")
			return eventModel{}, false
		}
		// A partner sees its own deliveries, not whom else the event went to.
		ev.Routing, ev.RoutingOmitted = nil, 0
		ev.Data = nil
	}
	m := eventModel{Event: ev, Deliveries: ds}
	if s.cfg.Spans != nil && ev.TraceID != "" && partner == "" {
		m.Spans = s.cfg.Spans.Trace(ev.TraceID)
	}
	return m, true
}

// resend makes a new delivery of an event to a subscription.
func (s *Server) resend(w http.ResponseWriter, r *http.Request, ss session) {
	s.doResend(w, r, ss, "", "/console/events/")
}

func (s *Server) doResend(w http.ResponseWriter, r *http.Request, ss session, partner, back string) {
	if s.cfg.Resend == nil {
		s.fail(w, r, http.StatusNotFound, "resending is not available here")
		return
	}
	eventID, subID := r.PathValue("event"), r.PathValue("subscription")
	if partner != "" {
		sub, err := s.cfg.Store.GetSubscription(r.Context(), subID)
		if err != nil || sub.PartnerID != partner {
			s.fail(w, r, http.StatusNotFound, "no such delivery")
			return
		}
	}
	id, err := s.cfg.Resend.Resend(r.Context(), eventID, subID)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "no such event or subscription")
		return
	}
	if errors.Is(err, replay.ErrInvalid) {
		s.fail(w, r, http.StatusConflict, "this delivery cannot be resent: its subscription is not Approved")
		return
	}
	if errors.Is(err, replay.ErrGone) {
		s.fail(w, r, http.StatusGone, "this event cannot be resent: its record is past its topic's retention (in whp dev, past what --kafka-keep-mib keeps)")
		return
	}
	if err != nil {
		s.unavailable(w, r, "resending", err)
		return
	}
	s.cfg.Log.Info("console resend", "user", ss.User, "event_id", eventID, "subscription_id", subID, "delivery_id", id)
	http.Redirect(w, r, back+url.PathEscape(eventID)+"?resent="+url.QueryEscape(id), http.StatusSeeOther)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ReplayResender resends through a replayer, reading events from the
// store: what whp dev and whp console plug into Config.Resend.
type ReplayResender struct {
	Replayer *replay.Replayer
	Store    replay.EventStore
}

// Resend implements Resender.
func (x ReplayResender) Resend(ctx context.Context, eventID, subscriptionID string) (string, error) {
	return x.Replayer.Resend(ctx, x.Store, eventID, subscriptionID)
}
