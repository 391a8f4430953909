package console

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig signs users in with an OpenID Connect provider (production):
// the authorization code flow with PKCE, a nonce and a state bound to the
// browser. A user's role comes from their groups: Roles maps a group to
// admin, approver, viewer or partner:<id>; a user in several groups gets
// the strongest role (admin, approver, viewer, then a partner role); a
// user in none is refused.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is this console's callback, …/console/oidc/callback.
	RedirectURL string
	// GroupsClaim names the ID token claim listing the user's groups.
	// Default "groups".
	GroupsClaim string
	Roles       map[string]string
}

type oidcLogin struct {
	cfg      OIDCConfig
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// UseOIDC discovers the provider and offers single sign-on on the login
// page.
func (s *Server) UseOIDC(ctx context.Context, cfg OIDCConfig) error {
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	for group, role := range cfg.Roles {
		if !validRole(role) {
			return fmt.Errorf("console OIDC: group %q maps to %q: want admin, approver, viewer or partner:<id>", group, role)
		}
	}
	p, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return fmt.Errorf("console OIDC: discover %s: %w", cfg.Issuer, err)
	}
	s.oidc = &oidcLogin{cfg: cfg, verifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: cfg.RedirectURL,
			Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email", "groups"}}}
	return nil
}

// oidcState is what the browser carries between the redirect to the
// provider and the callback, signed like a session.
type oidcState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
	Expires  int64  `json:"e"`
}

const oidcCookie = "whp_oidc"

func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request, _ session) {
	if s.oidc == nil {
		s.fail(w, r, http.StatusNotFound, "single sign-on is not configured here")
		return
	}
	st := oidcState{State: newToken(), Nonce: newToken(), Verifier: oauth2.GenerateVerifier(),
		Next: safeNext(r.URL.Query().Get("next")), Expires: s.now().Add(10 * time.Minute).Unix()}
	b, _ := json.Marshal(st)
	payload := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: payload + "." + s.sessions.sign(payload), Path: "/console/oidc/",
		HttpOnly: true, Secure: s.sessions.secure, SameSite: http.SameSiteLaxMode, MaxAge: 600})
	http.Redirect(w, r, s.oidc.oauth.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
}

func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request, _ session) {
	if s.oidc == nil {
		s.fail(w, r, http.StatusNotFound, "single sign-on is not configured here")
		return
	}
	refuse := func(why string, err error) {
		s.cfg.Log.Warn("console single sign-on refused", "why", why, "error", err)
		s.render(w, r, http.StatusUnauthorized, loginPage("/console/", "Single sign-on failed: "+why+".", true, len(s.cfg.Users.Users) > 0))
	}
	st, ok := s.readOIDCState(r)
	if !ok || r.URL.Query().Get("state") != st.State {
		refuse("the sign-in expired or came from elsewhere; start again", nil)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/console/oidc/", MaxAge: -1, HttpOnly: true, Secure: s.sessions.secure})
	if e := r.URL.Query().Get("error"); e != "" {
		refuse("the identity provider said "+e, nil)
		return
	}
	tok, err := s.oidc.oauth.Exchange(r.Context(), r.URL.Query().Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		refuse("the identity provider did not accept the code", err)
		return
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		refuse("no ID token came back", nil)
		return
	}
	idt, err := s.oidc.verifier.Verify(r.Context(), raw)
	if err != nil {
		refuse("the ID token did not verify", err)
		return
	}
	if idt.Nonce != st.Nonce {
		refuse("the ID token is not for this sign-in", nil)
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		refuse("the ID token's claims are unreadable", err)
		return
	}
	name := firstString(claims, "email", "preferred_username", "sub")
	role := s.oidc.role(claims)
	if role == "" {
		s.cfg.Log.Warn("console single sign-on: no role for the user's groups", "user", name)
		s.fail(w, r, http.StatusForbidden, "your account has no role in this console; ask an administrator")
		return
	}
	s.sessions.issue(w, name, role)
	s.cfg.Log.Info("console sign-in", "user", name, "role", role, "via", "oidc")
	next := st.Next
	if _, partner := partnerOf(role); partner && next == "/console/" {
		next = "/console/portal"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) readOIDCState(r *http.Request) (oidcState, bool) {
	c, err := r.Cookie(oidcCookie)
	if err != nil {
		return oidcState{}, false
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sessions.sign(payload))) {
		return oidcState{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	var st oidcState
	if err != nil || json.Unmarshal(b, &st) != nil || s.now().Unix() > st.Expires {
		return oidcState{}, false
	}
	return st, true
}

// role is the strongest role the user's groups map to, "" if none.
func (o *oidcLogin) role(claims map[string]any) string {
	var groups []string
	switch g := claims[o.cfg.GroupsClaim].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				groups = append(groups, s)
			}
		}
	case string:
		groups = strings.Fields(g)
	}
	best, rank := "", 0
	for _, g := range groups {
		role, ok := o.cfg.Roles[g]
		if !ok {
			continue
		}
		r := map[string]int{RoleAdmin: 4, RoleApprover: 3, RoleViewer: 2}[role]
		if _, partner := partnerOf(role); partner {
			r = 1
		}
		if r > rank {
			best, rank = role, r
		}
	}
	return best
}

func firstString(claims map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := claims[k].(string); ok && s != "" {
			return s
		}
	}
	return "unknown"
}
