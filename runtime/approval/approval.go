// Package approval is the API approvers use (the console builds on it):
// list subscriptions and approve or reject one, recording who, when and
// why. Nothing is delivered to a subscription that is not Approved.
//
// Every route needs the admin token (Authorization: Bearer …). The token
// is shared by automation and operators, so "by" is declared by the
// caller; the console's per-user login records the signed-in approver.
package approval

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/adminauth"
	"github.com/whp-dev/whp/runtime/jsonhttp"
	"github.com/whp-dev/whp/store"
)

// Store is the part of the state the API uses.
type Store interface {
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	ListSubscriptions(ctx context.Context) ([]store.Subscription, error)
	PutSubscription(ctx context.Context, s store.Subscription) (store.Subscription, error)
	AppendDecision(ctx context.Context, d store.Decision) error
}

var _ reconciler.SubscriptionStore = Store(nil)

// Backfiller replays a subscription's events from a time, when an
// approval asks for it.
type Backfiller interface {
	Backfill(subscriptionID string, from time.Time) (jobID string)
}

// API serves /v1/subscriptions.
type API struct {
	st       Store
	token    string
	log      *slog.Logger
	now      func() time.Time
	backfill Backfiller
}

// WithBackfill lets approvals start a backfill (backfill_from).
func (a *API) WithBackfill(b Backfiller) *API {
	a.backfill = b
	return a
}

// New returns the API; token must not be empty.
func New(st Store, token string, log *slog.Logger) *API {
	return &API{st: st, token: token, log: log, now: time.Now}
}

// Register adds the routes to mux. Subscription ids contain '#', which a
// client writes as %23 in the path.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/subscriptions", a.auth(a.list))
	mux.HandleFunc("GET /v1/subscriptions/{id}", a.auth(a.get))
	mux.HandleFunc("POST /v1/subscriptions/{id}/approve", a.auth(a.decide(store.SubscriptionApproved)))
	mux.HandleFunc("POST /v1/subscriptions/{id}/reject", a.auth(a.decide(store.SubscriptionRejected)))
}

func (a *API) auth(next http.HandlerFunc) http.HandlerFunc { return adminauth.Require(a.token, next) }

// View is a subscription as approvers see it (no secret references).
type View struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	PartnerID  string    `json:"partner_id"`
	SchemaID   string    `json:"schema_id"`
	URL        string    `json:"url"`
	AuthKind   string    `json:"auth_kind"`
	Mode       string    `json:"mode,omitempty"`
	Filter     any       `json:"filter,omitempty"`
	Status     string    `json:"status"`
	DecidedBy  string    `json:"decided_by,omitempty"`
	DecidedAt  time.Time `json:"decided_at,omitzero"`
	Reason     string    `json:"reason,omitempty"`
	ConfigHash string    `json:"config_hash"`
	Revision   string    `json:"revision"`
	// BackfillJob is the replay an approval started (GET /v1/replays/{id}).
	BackfillJob string `json:"backfill_job,omitempty"`
}

func view(s store.Subscription) View {
	v := View{ID: s.ID, Name: s.Name, PartnerID: s.PartnerID, SchemaID: s.SchemaID, URL: s.URL, AuthKind: s.AuthKind,
		Mode: s.Mode, Status: s.Status, DecidedBy: s.DecidedBy, DecidedAt: s.DecidedAt, Reason: s.Reason,
		ConfigHash: s.ConfigHash, Revision: s.Revision}
	if len(s.Filter) > 0 {
		v.Filter = json.RawMessage(s.Filter)
	}
	return v
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	subs, err := a.st.ListSubscriptions(r.Context())
	if err != nil {
		a.log.Error("list subscriptions", "error", err)
		jsonhttp.Problem(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry")
		return
	}
	status := r.URL.Query().Get("status")
	out := []View{}
	for _, s := range subs {
		if status == "" || strings.EqualFold(s.Status, status) {
			out = append(out, view(s))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	jsonhttp.Write(w, http.StatusOK, map[string]any{"subscriptions": out})
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	s, err := a.st.GetSubscription(r.Context(), r.PathValue("id"))
	if a.storeError(w, err) {
		return
	}
	jsonhttp.Write(w, http.StatusOK, view(s))
}

func (a *API) storeError(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		jsonhttp.Problem(w, http.StatusNotFound, "not_found", "no such subscription (ids look like partner#domain#event#version, with # written %23)")
	default:
		a.log.Error("subscription store", "error", err)
		jsonhttp.Problem(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry")
	}
	return true
}

type decision struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
	// ConfigHash, when given, must be the subscription's current one: the
	// decision then applies only to the settings that were reviewed.
	ConfigHash string `json:"config_hash"`
	// BackfillFrom, with an approval, replays the subscription's events
	// accepted since then (RFC 3339).
	BackfillFrom time.Time `json:"backfill_from,omitzero"`
}

func (a *API) decide(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var d decision
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", `the body is {"by": "<who>", "reason": "<why>", "config_hash": "<optional>"}`)
			return
		}
		if !d.BackfillFrom.IsZero() && (status != store.SubscriptionApproved || a.backfill == nil || !d.BackfillFrom.Before(a.now())) {
			jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", "backfill_from goes with an approval, and is a time in the past")
			return
		}
		if strings.TrimSpace(d.By) == "" || strings.TrimSpace(d.Reason) == "" {
			jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", "a decision needs who made it (by) and why (reason)")
			return
		}
		s, err := reconciler.Decide(r.Context(), a.st, reconciler.Decision{SubscriptionID: r.PathValue("id"), Status: status,
			By: d.By, Reason: d.Reason, ConfigHash: d.ConfigHash, At: a.now()})
		switch {
		case errors.Is(err, reconciler.ErrCancelled):
			jsonhttp.Problem(w, http.StatusConflict, "cancelled", err.Error())
			return
		case errors.Is(err, reconciler.ErrChangedSinceReview):
			jsonhttp.Problem(w, http.StatusConflict, "changed", err.Error()+"; review it again")
			return
		case errors.Is(err, store.ErrConflict):
			jsonhttp.Problem(w, http.StatusConflict, "changed", "the subscription changed while deciding; review it again")
			return
		case a.storeError(w, err):
			return
		}
		a.log.Info("subscription decided", "subscription_id", s.ID, "status", status, "by", d.By, "reason", d.Reason)
		v := view(s)
		if !d.BackfillFrom.IsZero() && status == store.SubscriptionApproved && a.backfill != nil {
			v.BackfillJob = a.backfill.Backfill(s.ID, d.BackfillFrom)
		}
		jsonhttp.Write(w, http.StatusOK, v)
	}
}
