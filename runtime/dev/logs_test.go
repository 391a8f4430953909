package dev

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/whp-dev/whp/store"
)

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogsCarryNoSecrets runs deliveries with every kind of credential —
// signing secrets, a static auth header, OAuth2 client credentials and the
// bearer token they buy — through retries, a final failure and the DLQ,
// logging at debug level as JSON, then scans everything an operator sees
// (the log, /metrics, the event's API view and its trace) for any secret,
// signing key or Authorization value. It also checks that every log line
// about a delivery names its event, delivery, partner and trace.
func TestLogsCarryNoSecrets(t *testing.T) {
	const (
		headerSecret = "hdr-s3cret-value-9f2c"
		clientSecret = "oauth-s3cret-client-77ab"
		token        = "tok-s3cret-bearer-41d0"
	)
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, secret, _ := r.BasicAuth(); secret != clientSecret {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"` + token + `","token_type":"bearer","expires_in":3600}`))
	}))
	defer tokenSrv.Close()
	var mu sync.Mutex
	seen := map[string]int{}
	partner := func(check func(*http.Request) bool) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if !check(r) {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			mu.Lock()
			seen[string(body)]++
			n := seen[string(body)]
			mu.Unlock()
			switch {
			case strings.Contains(string(body), "ord_bad"):
				w.WriteHeader(http.StatusBadRequest) // final: dead-lettered
			case n == 1:
				w.WriteHeader(http.StatusServiceUnavailable) // retried
			default:
				w.WriteHeader(http.StatusNoContent)
			}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	alpha := partner(func(r *http.Request) bool { return r.Header.Get("X-Partner-Key") == headerSecret })
	beta := partner(func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token })
	data, cat := t.TempDir(), t.TempDir()
	writeSecrets(t, data, map[string][]string{"partners/alpha/key": {headerSecret}, "partners/beta/client-secret": {clientSecret}})
	src := `package whp
schemas: shop: "order.created": "1": {owner: "t", payload: {order_id: string, amount: number}}
partners: alpha: {name: "A", url: "` + alpha.URL + `", signing_secret: "partners/alpha/signing", contact: "x",
	auth: {kind: "header", header: "X-Partner-Key", secret: "partners/alpha/key"}}
partners: beta: {name: "B", url: "` + beta.URL + `", signing_secret: "partners/beta/signing", contact: "x",
	auth: {kind: "oauth2", token_url: "` + tokenSrv.URL + `/token", client_id: "whp", secret: "partners/beta/client-secret"}}
subscriptions: "a": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
subscriptions: "b": {partner: "beta", domain: "shop", event: "order.created", version: "1"}
`
	os.WriteFile(filepath.Join(cat, "c.cue"), []byte(src), 0o644)
	logs := &lockedBuffer{}
	p := startPlatform(t, data, cat, func(c *Config) {
		c.AutoApprove = []string{"alpha", "beta"}
		c.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	var ids []string
	for _, order := range []string{"ord_1", "ord_2", "ord_bad"} {
		ids = append(ids, accept(t, p, `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"`+order+`","amount":1}}`))
	}
	for _, id := range ids {
		eventually(t, "both deliveries of "+id+" to finish", func() bool {
			v, _ := getEvent(t, p, id)
			done := 0
			for _, d := range v.Deliveries {
				if d.Status == store.DeliveryDelivered || d.Status == store.DeliveryDeadLettered {
					done++
				}
			}
			return done == 2
		})
	}

	// Everything an operator can read.
	seenText := logs.String()
	for _, path := range append([]string{"/metrics"}, "/v1/events/"+ids[0], "/v1/events/"+ids[0]+"/trace", "/v1/events/"+ids[2]) {
		resp, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seenText += string(b)
	}
	var secrets map[string][]string
	b, _ := os.ReadFile(filepath.Join(data, "secrets.json"))
	json.Unmarshal(b, &secrets)
	forbidden := []string{headerSecret, clientSecret, token, "Bearer "}
	for _, ref := range []string{"partners/alpha/signing", "partners/beta/signing"} {
		for _, s := range secrets[ref] {
			key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
			forbidden = append(forbidden, s, strings.TrimPrefix(s, "whsec_"), base64.RawStdEncoding.EncodeToString(key))
		}
	}
	if len(forbidden) < 8 {
		t.Fatalf("only %d secrets to look for: the signing secrets were not read", len(forbidden))
	}
	for _, f := range forbidden {
		if strings.Contains(seenText, f) {
			t.Errorf("a secret (%.6s…) is in what operators read", f)
		}
	}

	// Every line about a delivery names the event, the delivery, the
	// partner and the trace.
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			t.Fatalf("not a JSON log line: %s", sc.Text())
		}
		if _, ok := l["delivery_id"]; !ok {
			continue
		}
		lines++
		for _, k := range []string{"event_id", "delivery_id", "partner_id", "trace_id"} {
			if v, _ := l[k].(string); v == "" {
				t.Errorf("log line %q has no %s: %s", l["msg"], k, sc.Text())
			}
		}
	}
	// 6 deliveries: each has a failed first attempt and a success or a
	// dead letter, each logged.
	if lines < 12 {
		t.Errorf("%d log lines about deliveries, want at least 12", lines)
	}
}
