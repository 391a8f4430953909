package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/console"
	"github.com/whp-dev/whp/internal/proctest"
	"github.com/whp-dev/whp/runtime/embedkafka"
)

// `whp console` runs the console as its own role, on the store and both
// clusters: a local user signs in and reads the catalog; it refuses to
// start with no way to sign in.
func TestConsoleCommand(t *testing.T) {
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"console", "--ingress-brokers", "x:1", "--egress-brokers", "x:1"}, io.Discard, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "nobody could sign in") {
		t.Fatalf("no users, no OIDC: exit %d, %s", code, errOut.String())
	}
	dir := t.TempDir()
	clusters, err := embedkafka.Start(filepath.Join(dir, "kafka"))
	if err != nil {
		t.Fatal(err)
	}
	defer clusters.Close()
	hash, _ := console.HashPassword("pw")
	users := filepath.Join(dir, "users.json")
	b, _ := json.Marshal(console.Users{Users: []console.User{{Name: "ann", Role: console.RoleViewer, PasswordHash: hash}}})
	os.WriteFile(users, b, 0o600)
	addr := proctest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"console", "--addr", addr, "--metrics-addr", proctest.FreeAddr(t), "--data-dir", dir,
			"--ingress-brokers", strings.Join(clusters.Ingress.ListenAddrs(), ","), "--egress-brokers", strings.Join(clusters.Egress.ListenAddrs(), ","),
			"--users-file", users}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("whp console exited %d", code)
		}
	}()
	proctest.WaitOK(t, "http://"+addr+"/readyz", "")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.PostForm("http://"+addr+"/console/login", url.Values{"user": {"ann"}, "password": {"pw"}, "next": {"/console/catalog"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<h1>Catalog</h1>") || !strings.Contains(string(body), "ann (viewer)") {
		t.Fatalf("after sign-in: %d %.400s", resp.StatusCode, body)
	}
}
