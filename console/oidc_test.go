package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
)

// TestOIDCLogin signs in through an OpenID Connect provider — mockoidc, a
// stand-in for the real identity provider that cannot run here, serving
// discovery, authorization, token and JWKS endpoints over HTTP — with the
// authorization code flow and PKCE: a user of a mapped group gets its
// role, a user of no mapped group is refused, and a callback whose state
// is not the browser's is refused.
func TestOIDCLogin(t *testing.T) {
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Shutdown()
	s := New(Config{Dev: true, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := idp.Config()
	if err := s.UseOIDC(context.Background(), OIDCConfig{Issuer: c.Issuer, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		RedirectURL: srv.URL + "/console/oidc/callback",
		Roles:       map[string]string{"whp-admins": RoleAdmin, "acme-team": PartnerRole("acme"), "whp-viewers": RoleViewer}}); err != nil {
		t.Fatal(err)
	}
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar}
	}
	signIn := func(b *http.Client, groups ...string) (*http.Response, string) {
		idp.QueueUser(&mockoidc.MockUser{Subject: "u1", Email: "ann@example.com", EmailVerified: true, Groups: groups})
		resp, err := b.Get(srv.URL + "/console/oidc/start?next=/console/overview")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	// The strongest role of the user's groups: admin over viewer.
	resp, body := signIn(browser(), "whp-viewers", "whp-admins", "other")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/overview" || !strings.Contains(body, "ann@example.com (admin)") {
		t.Fatalf("admin sign-in: %d at %s:\n%.500s", resp.StatusCode, resp.Request.URL, body)
	}
	// A partner's group: the portal is theirs (its handler needs a store,
	// so the check stops at the redirect).
	b := browser()
	b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == strings.TrimPrefix(srv.URL, "http://") && req.URL.Path == "/console/overview" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	if resp, _ := signIn(b, "acme-team"); resp.StatusCode != http.StatusSeeOther || resp.Request.URL.Path != "/console/oidc/callback" {
		t.Errorf("partner sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
	} else if code, _ := get(t, b, srv.URL+"/console/overview"); code != http.StatusForbidden {
		t.Errorf("a partner on the overview: %d, want 403", code)
	}
	// No mapped group: no role, no session.
	nobody := browser()
	if resp, body := signIn(nobody, "other"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "no role") {
		t.Errorf("no role: %d %.300s", resp.StatusCode, body)
	}
	if _, body := get(t, nobody, srv.URL+"/console/overview"); !strings.Contains(body, "<h1>Sign in</h1>") {
		t.Error("a user without a role got a session")
	}
	// A callback with another state than the browser's cookie.
	if code, body := get(t, browser(), srv.URL+"/console/oidc/callback?state=forged&code=x"); code != http.StatusUnauthorized || !strings.Contains(body, "expired or came from elsewhere") {
		t.Errorf("forged callback: %d %.300s", code, body)
	}
	// The login page offers single sign-on.
	if _, body := get(t, browser(), srv.URL+"/console/login"); !strings.Contains(body, "/console/oidc/start") {
		t.Error("the login page does not offer single sign-on")
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
