package console

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A session cookie is refused when its payload or signature is altered,
// when it has expired, or when it was signed with another key.
func TestSessions(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	s := &sessions{key: []byte("k1"), ttl: time.Hour, now: func() time.Time { return now }}
	rec := httptest.NewRecorder()
	issued := s.issue(rec, "ann", RoleViewer)
	cookie := rec.Result().Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/console/" {
		t.Errorf("cookie attributes: %+v", cookie)
	}
	read := func(value string, s *sessions) (session, bool) {
		r := httptest.NewRequest("GET", "/console/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: value})
		return s.read(r)
	}
	if ss, ok := read(cookie.Value, s); !ok || ss.User != "ann" || ss.Role != RoleViewer || ss.CSRF != issued.CSRF || len(ss.CSRF) != 64 {
		t.Fatalf("read back: %+v, %v", ss, ok)
	}
	payload, sig, _ := strings.Cut(cookie.Value, ".")
	// Another payload (a role raised to admin) under the same signature.
	forged := strings.Replace(payload, payload[:4], "eyJ1", 1) + "x"
	for name, v := range map[string]string{"payload": forged + "." + sig, "signature": payload + "." + sig[:len(sig)-2] + "AA", "unsigned": payload} {
		if _, ok := read(v, s); ok {
			t.Errorf("%s altered: accepted", name)
		}
	}
	if _, ok := read(cookie.Value, &sessions{key: []byte("k2"), ttl: time.Hour, now: s.now}); ok {
		t.Error("accepted under another key")
	}
	now = now.Add(time.Hour)
	if _, ok := read(cookie.Value, s); ok {
		t.Error("accepted after it expired")
	}
}

// The users file is checked at load: every entry needs a known role and a
// bcrypt hash; a login takes the right password only.
func TestUsers(t *testing.T) {
	hash, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"users":[{"name":"ann","role":"admin","password_hash":"`+hash+`"},{"name":"pat","role":"partner:acme","password_hash":"`+hash+`"}]}`), 0o600)
	u, err := LoadUsers(good)
	if err != nil {
		t.Fatal(err)
	}
	if x, err := u.check("pat", "s3cret"); err != nil || x.Role != "partner:acme" {
		t.Errorf("pat: %+v, %v", x, err)
	}
	for name, pw := range map[string]string{"ann": "wrong", "nobody": "s3cret"} {
		if _, err := u.check(name, pw); err != errBadLogin {
			t.Errorf("%s/%s: %v", name, pw, err)
		}
	}
	for name, body := range map[string]string{
		"role":     `{"users":[{"name":"x","role":"root","password_hash":"` + hash + `"}]}`,
		"partner":  `{"users":[{"name":"x","role":"partner:","password_hash":"` + hash + `"}]}`,
		"hash":     `{"users":[{"name":"x","role":"admin","password_hash":"plain"}]}`,
		"unnamed":  `{"users":[{"role":"admin","password_hash":"` + hash + `"}]}`,
		"not json": `users: []`,
	} {
		path := filepath.Join(dir, name+".json")
		os.WriteFile(path, []byte(body), 0o600)
		if _, err := LoadUsers(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// After sign-in the console only ever redirects inside itself.
func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/console/events?x=1":    "/console/events?x=1",
		"https://evil.example/":  "/console/",
		"//evil.example/console": "/console/",
		"/other":                 "/console/",
		"":                       "/console/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

// The vendored htmx is byte for byte the npm package's pinned in
// package-lock.json (go tool task vendor copies it).
func TestVendoredHTMX(t *testing.T) {
	npm, err := os.ReadFile(filepath.Join("..", "node_modules", "htmx.org", "dist", "htmx.min.js"))
	if err != nil {
		t.Fatalf("htmx is not installed: run `npm ci` in the repository root (%v)", err)
	}
	vendored, err := static.ReadFile("static/htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(npm, vendored) {
		t.Error("console/static/htmx.min.js is not the npm package's: run go tool task vendor")
	}
}
