package console

import (
	"net/http"

	"github.com/whp-dev/whp/store"
)

// portalModel is a partner's own view.
type portalModel struct {
	Partner       string
	Subscriptions []store.Subscription
	Deliveries    []store.Delivery
	Next          string
}

// portal shows a partner user their subscriptions and delivery history:
// every read is scoped to the partner in their session, never to one in
// the URL.
func (s *Server) portal(w http.ResponseWriter, r *http.Request, ss session) {
	partner, _ := partnerOf(ss.Role)
	m := portalModel{Partner: partner}
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
	p, err := s.cfg.Store.DeliveriesByPartner(r.Context(), partner, store.Page{Limit: historyPage, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		s.unavailable(w, r, "your delivery history", err)
		return
	}
	m.Deliveries, m.Next = p.Deliveries, p.Next
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

// portalResend resends one of the partner's own deliveries; a delivery of
// another partner is "not found", as if it did not exist.
func (s *Server) portalResend(w http.ResponseWriter, r *http.Request, ss session) {
	partner, _ := partnerOf(ss.Role)
	s.doResend(w, r, ss, partner, "/console/portal/events/")
}
