// Package console is the web console of whp: delivery status and history,
// partners and their breakers, approvals with their audit trail, the DLQ,
// the catalog and the reconciler, and a portal where a partner sees only
// its own deliveries. Pages are templ components rendered on the server;
// htmx (vendored, no CDN) refreshes fragments, and every page reads
// without JavaScript.
//
// Security: every route declares the roles it admits (routes), checked on
// the server before the handler runs, and handlers that take an object ID
// check that a partner user owns it. Every POST carries the session's CSRF
// token and passes http.CrossOriginProtection. Sessions are HMAC-signed,
// HttpOnly, SameSite=Lax cookies (Secure outside dev). The CSP allows
// scripts and styles from the console itself only: no inline script.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/a-h/templ"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

//go:embed static
var static embed.FS

// Store is the part of the state the console reads and writes.
type Store interface {
	ListSchemas(ctx context.Context) ([]store.Schema, error)
	GetSchema(ctx context.Context, id string) (store.Schema, error)
	ListSubscriptions(ctx context.Context) ([]store.Subscription, error)
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	PutSubscription(ctx context.Context, s store.Subscription) (store.Subscription, error)
	ListSubscriptionKafka(ctx context.Context) ([]store.SubscriptionKafka, error)
	GetEvent(ctx context.Context, id string) (store.Event, error)
	Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error)
	DeliveriesByPartner(ctx context.Context, partnerID string, p store.Page) (store.DeliveryPage, error)
	DeliveriesBySchema(ctx context.Context, schemaID string, p store.Page) (store.DeliveryPage, error)
	CountDeliveries(ctx context.Context, status string) (map[string]int, error)
	GetIdempotency(ctx context.Context, key string) (store.Idempotency, error)
	AppendDecision(ctx context.Context, d store.Decision) error
	Decisions(ctx context.Context, limit int) ([]store.Decision, error)
}

// DLQ lists and redrives dead letters.
type DLQ interface {
	Waiting(ctx context.Context, f dlq.Filter, limit int) (dlq.Waiting, error)
	List(ctx context.Context, f dlq.Filter, limit int) ([]dlq.Entry, int, error)
	Redrive(ctx context.Context, f dlq.Filter, progress func(dlq.Progress)) (dlq.Progress, error)
}

// Resender delivers an event to a subscription again, as a new delivery.
type Resender interface {
	Resend(ctx context.Context, eventID, subscriptionID string) (deliveryID string, err error)
}

// Config is what the console shows and acts on. Nil optional parts hide
// their section.
type Config struct {
	Store Store
	DLQ   DLQ
	// Resend, if set, offers "resend" on deliveries.
	Resend Resender
	// Breakers reports the partners' circuit breakers.
	Breakers func() []breaker.Snapshot
	// InFlight reports each partner's deliveries in flight and their
	// bound, in the dispatcher of this process (nil: not shown).
	InFlight func() []telemetry.PartnerInFlight
	// Flags, if set, are the operators' flags: the event page says a
	// pending delivery to a partner they pause waits for the resume, as
	// the API's view of the event does (flags.Snapshot.ExplainPaused).
	Flags flags.Source
	// SLO and Spans come from the process's telemetry.
	SLO   *telemetry.SLO
	Spans *telemetry.SpanStore
	// ReconcileStatus reads the reconciler's status.
	ReconcileStatus func(ctx context.Context) (reconciler.Status, error)
	// Users are the local users (dev, or installations without OIDC).
	Users Users
	// SessionKey signs session cookies; empty: a random key (sessions end
	// with the process).
	SessionKey []byte
	// SessionTTL: how long a login lasts. Default 8 h.
	SessionTTL time.Duration
	// Dev allows session cookies over plain http on loopback.
	Dev bool
	// Log: nil discards.
	Log *slog.Logger
}

// Server is the console.
type Server struct {
	cfg      Config
	sessions *sessions
	redrives *redriveJobs
	counts   *countsCache
	oidc     *oidcLogin // set by UseOIDC
	mux      *http.ServeMux
	now      func() time.Time
}

// New builds the console; Handler serves it under /console/.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	key := cfg.SessionKey
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	s := &Server{cfg: cfg, now: time.Now, redrives: newRedriveJobs(cfg.Log), counts: &countsCache{now: time.Now},
		sessions: &sessions{key: key, ttl: cfg.SessionTTL, secure: !cfg.Dev, now: time.Now}}
	s.mux = http.NewServeMux()
	for _, rt := range s.routes() {
		s.mux.Handle(rt.pattern, s.guard(rt))
	}
	sub, _ := fs.Sub(static, "static")
	s.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", staticFiles(sub)))
	return s
}

// Handler serves the console, with its security headers on every answer.
func (s *Server) Handler() http.Handler {
	cop := http.NewCrossOriginProtection()
	return securityHeaders(cop.Handler(s.mux))
}

// access says who may use a route.
type access int

const (
	public    access = iota // the login page and static assets
	anyone                  // any signed-in user
	operators               // admin, approver, viewer
	approvers               // admin, approver
	admins                  // admin
	partners                // partner users only (the portal)
)

// allows reports whether role may use a route of access a.
func (a access) allows(role string) bool {
	_, partner := partnerOf(role)
	switch a {
	case public, anyone:
		return true
	case operators:
		return role == RoleAdmin || role == RoleApprover || role == RoleViewer
	case approvers:
		return role == RoleAdmin || role == RoleApprover
	case admins:
		return role == RoleAdmin
	case partners:
		return partner
	}
	return false
}

// route is one page or action of the console.
type route struct {
	pattern string
	access  access
	handle  func(w http.ResponseWriter, r *http.Request, ss session)
}

// routes is every route and who may use it: the authorization matrix test
// walks this table.
func (s *Server) routes() []route {
	return []route{
		{"GET /console/login", public, s.loginPage},
		{"POST /console/login", public, s.login},
		{"POST /console/logout", anyone, s.logout},
		{"GET /console/oidc/start", public, s.oidcStart},
		{"GET /console/oidc/callback", public, s.oidcCallback},
		{"GET /console/{$}", anyone, s.home},
		{"GET /console/overview", operators, s.overview},
		{"GET /console/events", operators, s.events},
		{"GET /console/events/{id}", operators, s.event},
		{"GET /console/partners", operators, s.partners},
		{"GET /console/partners/{id}", operators, s.partner},
		{"POST /console/deliveries/{event}/{subscription}/resend", admins, s.resend},
		{"GET /console/approvals", operators, s.approvals},
		{"POST /console/approvals/approve-shown", approvers, s.approveShown},
		{"POST /console/approvals/{id}/approve", approvers, s.decide(store.SubscriptionApproved)},
		{"POST /console/approvals/{id}/reject", approvers, s.decide(store.SubscriptionRejected)},
		{"GET /console/dlq", operators, s.dlqPage},
		{"POST /console/dlq/redrive", admins, s.redrive},
		{"GET /console/dlq/jobs/{id}", admins, s.redriveJob},
		{"GET /console/catalog", operators, s.catalog},
		{"GET /console/catalog/schemas/{id}", operators, s.schema},
		{"GET /console/portal", partners, s.portal},
		{"GET /console/portal/events/{id}", partners, s.portalEvent},
		{"POST /console/portal/deliveries/{event}/{subscription}/resend", partners, s.portalResend},
	}
}

// RoutePatterns lists every route of the console, for tests that must
// cover them all.
func RoutePatterns() []string {
	var out []string
	for _, rt := range (*Server)(nil).routes() {
		out = append(out, rt.pattern)
	}
	return out
}

// guard checks the session, the role and, on POST, the CSRF token before
// the handler runs.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.access == public {
			ss, _ := s.sessions.read(r)
			rt.handle(w, r, ss)
			return
		}
		ss, ok := s.sessions.read(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, http.StatusUnauthorized, "sign in first")
			return
		}
		if !rt.access.allows(ss.Role) {
			s.fail(w, r, http.StatusForbidden, "your role does not allow this page")
			return
		}
		if r.Method == http.MethodPost && !validCSRF(r, ss) {
			s.fail(w, r, http.StatusForbidden, "the form has expired; reload the page and try again")
			return
		}
		rt.handle(w, r, ss)
	})
}

// render writes a component, or a plain 500 if rendering fails (logged,
// never shown).
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.Render(r.Context(), w); err != nil {
		s.cfg.Log.Error("console render failed", "path", r.URL.Path, "error", err)
	}
}

// fail answers an error page with a message meant for the user (never an
// internal error's text).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	ss, _ := s.sessions.read(r)
	s.render(w, r, status, errorPage(s.page(ss, ""), status, msg))
}

// unavailable logs err and answers 503 without its text.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.cfg.Log.Error("console: "+what+" failed", "path", r.URL.Path, "error", err)
	s.fail(w, r, http.StatusServiceUnavailable, what+" is unavailable right now; try again shortly")
}
