package dev

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/whp-dev/whp/console"
)

// consoleUser is a signed-in client of the console.
type consoleUser struct {
	t      *testing.T
	base   string
	client *http.Client
	csrf   string
}

// writeConsoleUsers gives every role a user (password "pw-"+name) before
// the platform starts.
func writeConsoleUsers(t *testing.T, data string, users map[string]string) {
	t.Helper()
	var u console.Users
	for name, role := range users {
		hash, err := console.HashPassword("pw-" + name)
		if err != nil {
			t.Fatal(err)
		}
		u.Users = append(u.Users, console.User{Name: name, Role: role, PasswordHash: hash})
	}
	b, _ := json.Marshal(u)
	if err := os.WriteFile(filepath.Join(data, ConsoleUsersFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([0-9a-f]+)"`)

// signIn logs name in (or, with name "", returns an anonymous client).
func signIn(t *testing.T, p *Platform, name string) *consoleUser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u := &consoleUser{t: t, base: p.URL, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	if name == "" {
		return u
	}
	resp, err := u.client.PostForm(p.URL+"/console/login", url.Values{"user": {name}, "password": {"pw-" + name}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in as %s: %d", name, resp.StatusCode)
	}
	// The CSRF token comes with any page the user may see.
	start := "/console/overview"
	if strings.HasPrefix(resp.Header.Get("Location"), "/console/portal") {
		start = "/console/portal"
	}
	_, body := u.get(start)
	m := csrfInput.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on %s for %s", start, name)
	}
	u.csrf = m[1]
	return u
}

func (u *consoleUser) get(path string) (int, string) {
	u.t.Helper()
	resp, err := u.client.Get(u.base + path)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (u *consoleUser) post(path string, form url.Values) (int, string) {
	u.t.Helper()
	form = cloneForm(form) // never write into the caller's (shared) values
	if u.csrf != "" && form.Get("csrf_token") == "" {
		form.Set("csrf_token", u.csrf)
	}
	resp, err := u.client.PostForm(u.base+path, form)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestConsoleAuthorization walks every route of the console with every
// role, and anonymously: each is admitted exactly where the route table
// says (never a 401/403 there, always one elsewhere), partner users reach
// nothing of another partner by any URL, and a POST without the session's
// CSRF token is refused.
func TestConsoleAuthorization(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	writeConsoleUsers(t, data, map[string]string{"ann": console.RoleAdmin, "april": console.RoleApprover, "vic": console.RoleViewer,
		"pat": console.PartnerRole("alpha"), "bea": console.PartnerRole("beta")})
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	id := accept(t, p, orderEvent(1))
	mustDelivered(t, p, id, 2)
	alphaSub, betaSub, gammaSub := url.PathEscape("alpha#shop#order.created#1"), url.PathEscape("beta#shop#order.created#1"), url.PathEscape("gamma#shop#order.created#1")

	// Every route of the table, with a request that reaches its handler.
	type req struct {
		method, path string
		form         url.Values
	}
	routes := map[string]req{
		"GET /console/login":                                            {"GET", "/console/login", nil},
		"POST /console/login":                                           {"POST", "/console/login", url.Values{"user": {"nobody"}, "password": {"x"}}},
		"POST /console/logout":                                          {"POST", "/console/logout", nil},
		"GET /console/oidc/start":                                       {"GET", "/console/oidc/start", nil},
		"GET /console/oidc/callback":                                    {"GET", "/console/oidc/callback?state=x&code=y", nil},
		"GET /console/{$}":                                              {"GET", "/console/", nil},
		"GET /console/overview":                                         {"GET", "/console/overview", nil},
		"GET /console/events":                                           {"GET", "/console/events?partner=alpha", nil},
		"GET /console/events/{id}":                                      {"GET", "/console/events/" + id, nil},
		"GET /console/partners":                                         {"GET", "/console/partners", nil},
		"GET /console/partners/{id}":                                    {"GET", "/console/partners/alpha", nil},
		"POST /console/deliveries/{event}/{subscription}/resend":        {"POST", "/console/deliveries/" + id + "/" + alphaSub + "/resend", nil},
		"GET /console/approvals":                                        {"GET", "/console/approvals", nil},
		"POST /console/approvals/approve-shown":                         {"POST", "/console/approvals/approve-shown", url.Values{"reason": {"checked"}, "sub": {"gamma#shop#order.created#1"}, "config_hash": {"not-the-reviewed-one"}}},
		"POST /console/approvals/{id}/approve":                          {"POST", "/console/approvals/" + gammaSub + "/approve", url.Values{"reason": {"checked"}}},
		"POST /console/approvals/{id}/reject":                           {"POST", "/console/approvals/" + gammaSub + "/reject", url.Values{"reason": {"checked"}}},
		"GET /console/dlq":                                              {"GET", "/console/dlq", nil},
		"POST /console/dlq/redrive":                                     {"POST", "/console/dlq/redrive", url.Values{"subscription": {"alpha#shop#order.created#1"}}},
		"GET /console/dlq/jobs/{id}":                                    {"GET", "/console/dlq/jobs/nosuchjob", nil},
		"GET /console/catalog":                                          {"GET", "/console/catalog", nil},
		"GET /console/catalog/schemas/{id}":                             {"GET", "/console/catalog/schemas/" + url.PathEscape("shop#order.created#1"), nil},
		"GET /console/portal":                                           {"GET", "/console/portal", nil},
		"GET /console/portal/events/{id}":                               {"GET", "/console/portal/events/" + id, nil},
		"POST /console/portal/deliveries/{event}/{subscription}/resend": {"POST", "/console/portal/deliveries/" + id + "/" + alphaSub + "/resend", nil},
	}
	allowed := map[string][]string{ // route → users admitted; "" is anonymous
		"GET /console/login": {"", "ann", "april", "vic", "pat"}, "POST /console/login": {"", "ann", "april", "vic", "pat"},
		"POST /console/logout": {"ann", "april", "vic", "pat"}, "GET /console/{$}": {"ann", "april", "vic", "pat"},
		"GET /console/oidc/start": {"", "ann", "april", "vic", "pat"}, "GET /console/oidc/callback": {"", "ann", "april", "vic", "pat"},
		"GET /console/overview": {"ann", "april", "vic"}, "GET /console/events": {"ann", "april", "vic"},
		"GET /console/events/{id}": {"ann", "april", "vic"}, "GET /console/partners": {"ann", "april", "vic"},
		"GET /console/partners/{id}": {"ann", "april", "vic"}, "POST /console/deliveries/{event}/{subscription}/resend": {"ann"},
		"GET /console/approvals": {"ann", "april", "vic"}, "POST /console/approvals/{id}/approve": {"ann", "april"},
		"POST /console/approvals/approve-shown": {"ann", "april"},
		"POST /console/approvals/{id}/reject":   {"ann", "april"}, "GET /console/dlq": {"ann", "april", "vic"},
		"POST /console/dlq/redrive": {"ann"}, "GET /console/dlq/jobs/{id}": {"ann"},
		"GET /console/catalog": {"ann", "april", "vic"}, "GET /console/catalog/schemas/{id}": {"ann", "april", "vic"},
		"GET /console/portal": {"pat"}, "GET /console/portal/events/{id}": {"pat"},
		"POST /console/portal/deliveries/{event}/{subscription}/resend": {"pat"},
	}
	table := console.RoutePatterns()
	if len(table) != len(routes) {
		t.Fatalf("the console has %d routes, the test covers %d: cover the new ones", len(table), len(routes))
	}
	for _, pattern := range table {
		rq, ok := routes[pattern]
		if !ok {
			t.Fatalf("route %s is not covered by this test", pattern)
		}
		for _, who := range []string{"", "ann", "april", "vic", "pat"} {
			u := signIn(t, p, who)
			var code int
			var body string
			if rq.method == "GET" {
				code, body = u.get(rq.path)
			} else {
				code, body = u.post(rq.path, rq.form)
			}
			admitted := false
			for _, a := range allowed[pattern] {
				admitted = admitted || a == who
			}
			// Denied: 403, 401 from the guard (not a failed sign-in), or
			// an anonymous page view sent to the login page.
			denied := code == http.StatusForbidden || (code == http.StatusUnauthorized && strings.Contains(body, "sign in first")) ||
				(who == "" && code == http.StatusSeeOther && rq.method == "GET")
			if admitted == denied {
				t.Errorf("%s as %q: %d, admitted=%v: %s", pattern, who, code, admitted, problemOf(body))
			}
		}
	}

	// A partner reaches nothing of another partner: bea (beta) asks for
	// alpha's delivery of the event, and resends alpha's delivery.
	bea := signIn(t, p, "bea")
	if code, body := bea.get("/console/portal/events/" + id); code != http.StatusOK || strings.Contains(body, "alpha") {
		t.Errorf("bea sees the event with %d, mentioning alpha: %v", code, strings.Contains(body, "alpha"))
	}
	if code, _ := bea.post("/console/portal/deliveries/"+id+"/"+alphaSub+"/resend", nil); code != http.StatusNotFound {
		t.Errorf("bea resending alpha's delivery: %d, want 404", code)
	}
	if code, body := bea.get("/console/portal"); code != http.StatusOK || strings.Contains(body, "alpha") || !strings.Contains(body, "beta.created") {
		t.Errorf("bea's portal: %d; shows alpha: %v", code, strings.Contains(body, "alpha"))
	}
	otherEvent := accept(t, p, orderEvent(2))
	mustDelivered(t, p, otherEvent, 2)
	if code, _ := bea.get("/console/events/" + otherEvent); code != http.StatusForbidden {
		t.Errorf("bea on the operators' event page: %d, want 403", code)
	}

	// Without the session's CSRF token, or with another session's, a POST
	// is refused and changes nothing.
	ann, april := signIn(t, p, "ann"), signIn(t, p, "april")
	for _, form := range []url.Values{{"csrf_token": {"0"}, "reason": {"x"}}, {"csrf_token": {april.csrf}, "reason": {"x"}}} {
		if code, _ := ann.post("/console/approvals/"+betaSub+"/reject", form); code != http.StatusForbidden {
			t.Errorf("reject with a wrong CSRF token: %d, want 403", code)
		}
	}
	if s, _ := p.Store().GetSubscription(t.Context(), "beta#shop#order.created#1"); s.Status != "Approved" {
		t.Errorf("beta is %s after refused rejections", s.Status)
	}
}

var problemText = regexp.MustCompile(`role="alert">(.*?)</p>`)

// problemOf is the error a console page shows, if any.
func problemOf(body string) string {
	if m := problemText.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

func cloneForm(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
