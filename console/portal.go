package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/whp-dev/whp/store"
)

// portalModel is a partner's own view.
type portalModel struct {
	Partner       string
	Subscriptions []store.Subscription
	Deliveries    []store.Delivery
	Next          string
	Status        string // the history's filter, "" for every status
	Statuses      []string
}

// portal shows a partner user their subscriptions and delivery history:
// every read is scoped to the partner in their session, never to one in
// the URL.
func (s *Server) portal(w http.ResponseWriter, r *http.Request, ss session) {
	partner, _ := partnerOf(ss.Role)
	m := portalModel{Partner: partner, Status: r.URL.Query().Get("status"), Statuses: store.DeliveryStatuses}
	subs, err := s.cfg.Store.ListSubscriptions(r.Context())
	if err != nil {
		s.unavailable(w, r, "your subscriptions", err)
		return
	}
	for _, sub := range subs {
		if sub.PartnerID == partner {
			m.Subscriptions = append(m.Subscriptions, sub)
		}
	}
	if m.Status != "" && !slices.Contains(store.DeliveryStatuses, m.Status) {
		s.fail(w, r, http.StatusBadRequest, "status: not a delivery status")
		return
	}
	m.Deliveries, m.Next, err = s.history(r, partner, "", store.Page{Status: m.Status, Cursor: r.URL.Query().Get("cursor")}, time.Time{})
	if errors.Is(err, store.ErrInvalidCursor) {
		s.fail(w, r, http.StatusBadRequest, "cursor: not one this history gave")
		return
	}
	if err != nil {
		s.unavailable(w, r, "your delivery history", err)
		return
	}
	s.render(w, r, http.StatusOK, portalPage(s.page(ss, "portal"), m))
}

func (s *Server) portalEvent(w http.ResponseWriter, r *http.Request, ss session) {
	partner, _ := partnerOf(ss.Role)
	m, ok := s.loadEvent(w, r, ss, partner)
	if !ok {
		return
	}
	m.CanResend = s.cfg.Resend != nil
	m.Resent = r.URL.Query().Get("resent")
	m.PortalBase = "/console/portal/deliveries/"
	s.render(w, r, http.StatusOK, eventPage(s.page(ss, "portal"), m))
}

// query is the history's filter as a query string, with a cursor.
func (m portalModel) query(cursor string) string {
	q := url.Values{"cursor": {cursor}}
	if m.Status != "" {
		q.Set("status", m.Status)
	}
	return q.Encode()
}

// portalResend resends one of the partner's own deliveries; a delivery of
// another partner is "not found", as if it did not exist.
func (s *Server) portalResend(w http.ResponseWriter, r *http.Request, ss session) {
	partner, _ := partnerOf(ss.Role)
	s.doResend(w, r, ss, partner, "/console/portal/events/")
}
