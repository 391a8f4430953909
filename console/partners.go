package console

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

// partnerRow is a partner's health at a glance.
type partnerRow struct {
	ID            string
	Subscriptions []store.Subscription
	Breaker       string
	// BreakerNote, when its breaker is not closed, says why it opened and
	// when it probes next (breaker.Snapshot.Describe).
	BreakerNote string
	Delivered   int64
	Failed      int64
	// Now counts its deliveries in each status of attention (dead-lettered,
	// retrying, held), from the console's counts (countsCache).
	Now map[string]int
}

// Attention is how many of its deliveries need attention now.
func (p partnerRow) Attention() int { return sum(p.Now) }

// SuccessRate is delivered over delivered and failed, in percent; nil
// when nothing finished yet.
func (p partnerRow) SuccessRate() *float64 {
	if p.Delivered+p.Failed == 0 {
		return nil
	}
	v := 100 * float64(p.Delivered) / float64(p.Delivered+p.Failed)
	return &v
}

// partnerRows groups the subscriptions by partner, with their counters and
// breakers.
func (s *Server) partnerRows(r *http.Request) ([]partnerRow, error) {
	subs, err := s.cfg.Store.ListSubscriptions(r.Context())
	if err != nil {
		return nil, err
	}
	// The counters in one read, not one a subscription: against
	// DynamoDB, a thousand partners were a thousand round trips a page.
	ks, err := s.cfg.Store.ListSubscriptionKafka(r.Context())
	if err != nil {
		return nil, err
	}
	counters := make(map[string]store.SubscriptionKafka, len(ks))
	for _, k := range ks {
		counters[k.SubscriptionID] = k
	}
	states := map[string]string{}
	notes := map[string]string{}
	if s.cfg.Breakers != nil {
		for _, b := range s.cfg.Breakers() {
			states[b.Partner], notes[b.Partner] = string(b.State), b.Describe()
		}
	}
	// Each status's counts by partner, kept countsTTL: one walk (a scan
	// on DynamoDB) a status, not one a partner.
	// Without them the list still serves, its counts blank.
	now := map[string]map[string]int{}
	for _, status := range store.AttentionStatuses {
		counts, _, err := s.counts.get(r.Context(), s.cfg.Store, status)
		if err != nil {
			s.cfg.Log.Warn("console: counts unavailable", "status", status, "error", err)
		}
		now[status] = counts
	}
	index := map[string]int{}
	var rows []partnerRow
	for _, sub := range subs {
		i, ok := index[sub.PartnerID]
		if !ok {
			i = len(rows)
			index[sub.PartnerID] = i
			state := states[sub.PartnerID]
			if state == "" {
				state = string(breaker.Closed)
			}
			row := partnerRow{ID: sub.PartnerID, Breaker: state, BreakerNote: notes[sub.PartnerID], Now: map[string]int{}}
			for _, status := range store.AttentionStatuses {
				if n := now[status][sub.PartnerID]; n > 0 {
					row.Now[status] = n
				}
			}
			rows = append(rows, row)
		}
		rows[i].Subscriptions = append(rows[i].Subscriptions, sub)
		k := counters[sub.ID]
		rows[i].Delivered += k.Delivered
		rows[i].Failed += k.Failed
	}
	slices.SortFunc(rows, func(a, b partnerRow) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return rows, nil
}

// partnersPerPage is how many partners the list shows at a time: a
// platform with a partner per customer has thousands.
const partnersPerPage = 100

// partnersView is a page of the partner list: those whose ID contains
// Query (any case), partnersPerPage at a time, by ID or, with Sort
// "attention", those with the most deliveries needing attention first.
type partnersView struct {
	Rows               []partnerRow
	Query              string
	Sort               string
	Page, Pages, Total int // Total: the partners matching Query
	First, Last        int // the positions shown, from 1 (0, 0: none)
}

// sortAttention is partnersView.Sort for the partners with the most
// deliveries needing attention first.
const sortAttention = "attention"

// listPartners is page pageNo (from 1) of rows whose ID contains query,
// sorted by ID (rows' order) or by sortBy.
func listPartners(rows []partnerRow, query, sortBy string, pageNo int) partnersView {
	v := partnersView{Query: query, Sort: sortBy, Page: pageNo}
	q := strings.ToLower(query)
	var match []partnerRow
	for _, r := range rows {
		if strings.Contains(strings.ToLower(r.ID), q) {
			match = append(match, r)
		}
	}
	if sortBy == sortAttention {
		slices.SortStableFunc(match, func(a, b partnerRow) int { return cmp.Compare(b.Attention(), a.Attention()) })
	}
	v.Total = len(match)
	v.Pages = max((len(match)+partnersPerPage-1)/partnersPerPage, 1)
	start := (pageNo - 1) * partnersPerPage
	if start < len(match) {
		v.Rows = match[start:min(start+partnersPerPage, len(match))]
		v.First, v.Last = start+1, start+len(v.Rows)
	}
	return v
}

// query is the list's URL for page n of the same search.
func (v partnersView) query(n int) string {
	q := url.Values{}
	if v.Query != "" {
		q.Set("q", v.Query)
	}
	if v.Sort != "" {
		q.Set("sort", v.Sort)
	}
	if n > 1 {
		q.Set("page", strconv.Itoa(n))
	}
	if len(q) == 0 {
		return "/console/partners"
	}
	return "/console/partners?" + q.Encode()
}

func (s *Server) partners(w http.ResponseWriter, r *http.Request, ss session) {
	pageNo := 1
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			if len(p) > 20 {
				p = p[:20] + "…"
			}
			s.fail(w, r, http.StatusBadRequest, "page: a page number, from 1 (got "+strconv.Quote(p)+")")
			return
		}
		pageNo = n
	}
	query := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(query) > 200 {
		s.fail(w, r, http.StatusBadRequest, "q: at most 200 characters")
		return
	}
	sortBy := r.URL.Query().Get("sort")
	if sortBy != "" && sortBy != sortAttention {
		s.fail(w, r, http.StatusBadRequest, "sort: attention, or none for by partner id")
		return
	}
	rows, err := s.partnerRows(r)
	if err != nil {
		s.unavailable(w, r, "the partner list", err)
		return
	}
	s.render(w, r, http.StatusOK, partnersPage(s.page(ss, "partners"), listPartners(rows, query, sortBy, pageNo)))
}

// failureStatuses are the statuses a partner's page lists as failures,
// each with a link to the search of all of them.
var failureStatuses = []string{store.DeliveryRetrying, store.DeliveryDeadLettered}

// partnerModel is a partner's page.
type partnerModel struct {
	Row      partnerRow
	Failures []store.Delivery
	Recent   []store.Delivery
	// InFlight is the partner's deliveries in flight in this process's
	// dispatcher and their bound, nil if it has none or has had none.
	InFlight *telemetry.PartnerInFlight
}

// Delivery is how the partner's deliveries are paced: its catalog's
// max_in_flight and rate_limit (carried on each of its subscriptions),
// and what is in flight now.
func (m partnerModel) Delivery() string {
	var sub store.Subscription
	if len(m.Row.Subscriptions) > 0 {
		sub = m.Row.Subscriptions[0]
	}
	var b strings.Builder
	if sub.MaxInFlight > 0 {
		fmt.Fprintf(&b, "at most %d in flight from each dispatcher (its max_in_flight)", sub.MaxInFlight)
	} else {
		b.WriteString("at most the dispatcher's --partner-concurrency in flight")
	}
	switch {
	case sub.RateLimitPerSecond > 0 && sub.RateLimitBurst > 0:
		fmt.Fprintf(&b, "; rate limit %v a second, bursts of %d", sub.RateLimitPerSecond, sub.RateLimitBurst)
	case sub.RateLimitPerSecond > 0:
		fmt.Fprintf(&b, "; rate limit %v a second", sub.RateLimitPerSecond)
	default:
		b.WriteString("; no rate limit")
	}
	if f := m.InFlight; f != nil {
		fmt.Fprintf(&b, "; now %d in flight of %d", f.InFlight, f.Limit)
		if f.Limit < f.Ceiling {
			b.WriteString(", the bound its answers have set (429s, 503s and timeouts cut it)")
		}
		if f.Waiting > 0 {
			fmt.Fprintf(&b, "; %d read and waiting their turn", f.Waiting)
		}
		switch f.WaitsFor {
		case telemetry.WaitsForRateLimit:
			b.WriteString(", for its rate limit's next token")
		case telemetry.WaitsForResume:
			b.WriteString(", for an operator to resume it")
		}
	}
	return b.String()
}

func (s *Server) partner(w http.ResponseWriter, r *http.Request, ss session) {
	rows, err := s.partnerRows(r)
	if err != nil {
		s.unavailable(w, r, "the partner", err)
		return
	}
	id := r.PathValue("id")
	i := slices.IndexFunc(rows, func(p partnerRow) bool { return p.ID == id })
	if i < 0 {
		s.fail(w, r, http.StatusNotFound, "no partner "+id+" in the catalog")
		return
	}
	m := partnerModel{Row: rows[i]}
	if s.cfg.InFlight != nil {
		for _, f := range s.cfg.InFlight() {
			if f.Partner == id {
				m.InFlight = &f
			}
		}
	}
	p, err := s.cfg.Store.DeliveriesByPartner(r.Context(), id, store.Page{Limit: historyPage})
	if err != nil {
		s.unavailable(w, r, "the partner's history", err)
		return
	}
	m.Recent = p.Deliveries
	// The failures are the newest retrying and dead-lettered deliveries,
	// from the status index: among the newest deliveries of a busy partner
	// there may be none, however many failed a minute before.
	for _, status := range failureStatuses {
		f, err := s.cfg.Store.DeliveriesByPartner(r.Context(), id, store.Page{Limit: historyPage, Status: status})
		if err != nil {
			s.unavailable(w, r, "the partner's failures", err)
			return
		}
		m.Failures = append(m.Failures, f.Deliveries...)
	}
	slices.SortStableFunc(m.Failures, func(a, b store.Delivery) int { return b.CreatedAt.Compare(a.CreatedAt) })
	m.Failures = m.Failures[:min(len(m.Failures), historyPage)]
	s.render(w, r, http.StatusOK, partnerPage(s.page(ss, "partners"), m))
}
