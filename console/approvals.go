package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/store"
)

// approvalsModel is the approvals page: the queue, and the audit log.
type approvalsModel struct {
	// Pending are the subscriptions waiting whose partner or ID contains
	// Query (any case), the first approvalsShown of them; More counts the
	// rest.
	Pending   []store.Subscription
	Query     string
	More      int
	Changes   map[string][]string // by subscription: what differs from its last approval
	Log       []store.Decision
	CanDecide bool
	Notice    string
	Problem   string
}

func (s *Server) approvals(w http.ResponseWriter, r *http.Request, ss session) {
	s.renderApprovals(w, r, ss, http.StatusOK, r.URL.Query().Get("done"), "")
}

func (s *Server) renderApprovals(w http.ResponseWriter, r *http.Request, ss session, status int, notice, problem string) {
	subs, err := s.cfg.Store.ListSubscriptions(r.Context())
	if err != nil {
		s.unavailable(w, r, "the approval queue", err)
		return
	}
	m := approvalsModel{CanDecide: approvers.allows(ss.Role), Notice: notice, Problem: problem, Query: strings.TrimSpace(r.FormValue("q"))}
	q := strings.ToLower(m.Query)
	for _, sub := range subs {
		if sub.Status != store.SubscriptionPending || !strings.Contains(strings.ToLower(sub.ID), q) {
			continue
		}
		if len(m.Pending) == approvalsShown {
			m.More++
			continue
		}
		m.Pending = append(m.Pending, sub)
	}
	if m.Log, err = s.cfg.Store.Decisions(r.Context(), 1000); err != nil {
		s.unavailable(w, r, "the audit log", err)
		return
	}
	m.Changes = map[string][]string{}
	for _, sub := range m.Pending {
		m.Changes[sub.ID] = changes(sub, m.Log)
	}
	if len(m.Log) > 200 {
		m.Log = m.Log[:200]
	}
	s.render(w, r, status, approvalsPage(s.page(ss, "approvals"), m))
}

// approvalsShown is how many waiting subscriptions the page shows, and
// approves at once: a catalog that adds a partner per customer brings
// hundreds to review.
const approvalsShown = 50

// approveShown approves the subscriptions the approver was shown, each
// at the settings reviewed (its config hash, from the form) and recorded
// in the audit log on its own, with the one reason given. One changed
// since the review is left waiting, and counted.
func (s *Server) approveShown(w http.ResponseWriter, r *http.Request, ss session) {
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		s.renderApprovals(w, r, ss, http.StatusBadRequest, "", "Give a reason: it goes into the audit log.")
		return
	}
	ids, hashes := r.PostForm["sub"], r.PostForm["config_hash"]
	if len(ids) == 0 || len(ids) != len(hashes) || len(ids) > approvalsShown {
		s.renderApprovals(w, r, ss, http.StatusBadRequest, "", fmt.Sprintf("The form names %d subscriptions and %d reviewed settings: at most %d, each with its own.", len(ids), len(hashes), approvalsShown))
		return
	}
	approved, changed := 0, 0
	for i, id := range ids {
		_, err := reconciler.Decide(r.Context(), s.cfg.Store, reconciler.Decision{SubscriptionID: id, Status: store.SubscriptionApproved,
			By: ss.User, Reason: reason, ConfigHash: hashes[i], At: s.now()})
		switch {
		case errors.Is(err, store.ErrNotFound), changedSinceReview(err):
			changed++
			continue
		case err != nil:
			s.unavailable(w, r, fmt.Sprintf("recording the decisions (%d of %d recorded)", approved, len(ids)), err)
			return
		}
		approved++
		s.cfg.Log.Info("subscription decided in the console", "subscription_id", id, "status", store.SubscriptionApproved, "by", ss.User, "bulk", true)
	}
	notice := fmt.Sprintf("%d approved", approved)
	if changed > 0 {
		notice += fmt.Sprintf("; %d changed while you were reviewing them and wait for another review", changed)
	}
	http.Redirect(w, r, "/console/approvals?done="+urlQueryEscape(notice), http.StatusSeeOther)
}

// decide approves or rejects a Pending subscription, recording the signed
// in user as the approver. The form carries the config hash the approver
// reviewed: if the subscription changed since, nothing is decided.
func (s *Server) decide(status string) func(http.ResponseWriter, *http.Request, session) {
	return func(w http.ResponseWriter, r *http.Request, ss session) {
		id := r.PathValue("id")
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		if reason == "" {
			s.renderApprovals(w, r, ss, http.StatusBadRequest, "", "Give a reason: it goes into the audit log.")
			return
		}
		_, err := reconciler.Decide(r.Context(), s.cfg.Store, reconciler.Decision{SubscriptionID: id, Status: status,
			By: ss.User, Reason: reason, ConfigHash: r.PostFormValue("config_hash"), At: s.now()})
		switch {
		case errors.Is(err, store.ErrNotFound):
			s.renderApprovals(w, r, ss, http.StatusNotFound, "", "No subscription "+id+".")
			return
		case changedSinceReview(err):
			s.renderApprovals(w, r, ss, http.StatusConflict, "", "The subscription changed while you were reviewing it; review it again.")
			return
		case err != nil:
			s.unavailable(w, r, "recording the decision", err)
			return
		}
		s.cfg.Log.Info("subscription decided in the console", "subscription_id", id, "status", status, "by", ss.User)
		http.Redirect(w, r, "/console/approvals?done="+urlQueryEscape(id+" "+strings.ToLower(status)), http.StatusSeeOther)
	}
}

// changedSinceReview reports whether Decide refused because the
// subscription is not what the approver reviewed any more: removed from
// the catalog, its settings changed, or written meanwhile.
func changedSinceReview(err error) bool {
	return errors.Is(err, reconciler.ErrCancelled) || errors.Is(err, reconciler.ErrChangedSinceReview) || errors.Is(err, store.ErrConflict)
}

// changes says what a pending subscription's review is about: what differs
// from the settings last approved (the audit log keeps them), or that it
// was never approved.
func changes(sub store.Subscription, log []store.Decision) []string {
	for _, d := range log { // newest first
		if d.SubscriptionID != sub.ID || d.Status != store.SubscriptionApproved {
			continue
		}
		var out []string
		if d.URL != sub.URL {
			out = append(out, "URL: "+d.URL+" → "+sub.URL)
		}
		if d.AuthKind != sub.AuthKind {
			out = append(out, "auth: "+orNone(d.AuthKind)+" → "+orNone(sub.AuthKind))
		}
		if len(out) == 0 && d.ConfigHash != sub.ConfigHash {
			out = append(out, "the delivery settings (filter, transform, sensitive fields or credentials) changed since "+d.By+" approved them")
		}
		if len(out) == 0 {
			out = append(out, "approved before by "+d.By+"; nothing under review changed since")
		}
		return out
	}
	return []string{"new: never approved"}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
