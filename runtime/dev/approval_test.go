package dev

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/approval"
)

func adminRequest(t *testing.T, p *Platform, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestApprovalFlow: a Pending subscription receives nothing; approved
// through the API (admin token, who and why), it receives what follows.
func TestApprovalFlow(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	b, err := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))
	if fi, _ := os.Stat(filepath.Join(data, AdminTokenFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v, want 0600", fi.Mode().Perm())
	}
	const gammaPath = "/v1/subscriptions/gamma%23shop%23order.created%231"

	before := accept(t, p, orderEvent(40))
	mustDelivered(t, p, before, 2)

	for _, tc := range []struct {
		name, token, method, path, body string
		want                            int
	}{
		{"no token", "", http.MethodGet, "/v1/subscriptions", "", http.StatusUnauthorized},
		{"wrong token", "nope", http.MethodPost, gammaPath + "/approve", `{"by":"x","reason":"y"}`, http.StatusUnauthorized},
		{"no reason", token, http.MethodPost, gammaPath + "/approve", `{"by":"carol"}`, http.StatusBadRequest},
		{"unknown field", token, http.MethodPost, gammaPath + "/approve", `{"by":"carol","reason":"r","extra":1}`, http.StatusBadRequest},
		{"stale review", token, http.MethodPost, gammaPath + "/approve", `{"by":"carol","reason":"r","config_hash":"old"}`, http.StatusConflict},
		{"unknown subscription", token, http.MethodPost, "/v1/subscriptions/nope/approve", `{"by":"carol","reason":"r"}`, http.StatusNotFound},
	} {
		if code, body := adminRequest(t, p, tc.token, tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}

	code, body := adminRequest(t, p, token, http.MethodGet, "/v1/subscriptions?status=Pending", "")
	var list struct{ Subscriptions []approval.View }
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.Subscriptions) != 1 || list.Subscriptions[0].PartnerID != "gamma" {
		t.Fatalf("pending list = %d %s", code, body)
	}
	review := list.Subscriptions[0].ConfigHash
	code, body = adminRequest(t, p, token, http.MethodPost, gammaPath+"/approve", `{"by":"carol","reason":"contract signed","config_hash":"`+review+`"}`)
	var v approval.View
	if err := json.Unmarshal(body, &v); code != 200 || err != nil || v.Status != "Approved" || v.DecidedBy != "carol" || v.Reason != "contract signed" || v.DecidedAt.IsZero() {
		t.Fatalf("approve = %d %s", code, body)
	}
	if strings.Contains(string(body), "signing") {
		t.Errorf("the view shows secret references: %s", body)
	}

	after := accept(t, p, orderEvent(41))
	mustDelivered(t, p, after, 3)
	time.Sleep(100 * time.Millisecond)
	if n, _, _ := gamma.counts(); n != 1 {
		t.Errorf("gamma received %d webhooks, want exactly the one after approval", n)
	}
	// The decision survives reconciles and restarts.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	p = startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	code, body = adminRequest(t, p, token, http.MethodGet, gammaPath, "")
	if err := json.Unmarshal(body, &v); code != 200 || err != nil || v.Status != "Approved" || v.DecidedBy != "carol" {
		t.Errorf("after restart = %d %s", code, body)
	}
}
