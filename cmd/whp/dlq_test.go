package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/dev"
)

// TestDLQCommands: a delivery refused with 400 is listed by `whp dlq
// list` and redriven by `whp dlq redrive`, with progress, once the
// partner accepts again.
func TestDLQCommands(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	var got atomic.Int32
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if refuse.Load() {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer partner.Close()
	cat := t.TempDir()
	src := `package whp
schemas: shop: "order.created": "1": {owner: "t", payload: {id: string}}
partners: alpha: {name: "A", url: "` + partner.URL + `", signing_secret: "partners/alpha/signing", contact: "x"}
subscriptions: "a": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
`
	if err := os.WriteFile(filepath.Join(cat, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p, err := dev.Start(context.Background(), dev.Config{DataDir: data, CatalogDir: cat, Addr: "127.0.0.1:0", AutoApprove: []string{"alpha"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	resp, err := http.Post(p.URL+"/v1/events", "application/json", strings.NewReader(`{"domain":"shop","event":"order.created","version":"1","data":{"id":"x"}}`))
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("post: %v %v", err, resp)
	}
	var acc struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()

	cmd := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(args, "--url", p.URL, "--token-file", filepath.Join(data, dev.AdminTokenFile)), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	deadline := time.Now().Add(30 * time.Second)
	var ref string // EVENT_ID/DELIVERY_ID, as the list prints it
	for {
		code, out := cmd("dlq", "list")
		if code == 0 && strings.Contains(out, "1 dead-lettered deliveries") {
			ref = regexp.MustCompile(`[0-9a-f-]{36}/[0-9a-f-]{36}`).FindString(out)
			if !strings.Contains(out, "alpha#shop#order.created#1") || !strings.Contains(out, "HTTP 400") || !strings.Contains(out, "by partner:\n  alpha\t1\n") {
				t.Errorf("list output:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never listed: exit %d\n%s", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// whp status counts what needs attention now: alpha's dead letter.
	if code, out := cmd("status"); code != 0 || !regexp.MustCompile(`(?m)^alpha +0 +0 +1$`).MatchString(out) {
		t.Errorf("status with a dead letter waiting: exit %d\n%s", code, out)
	}
	refuse.Store(false)
	// The dead letter, by what the list printed: its status says where
	// it is in the queue, the one record read.
	code, out := cmd("dlq", "redrive", "--delivery-id", ref)
	if code != 0 || !strings.Contains(out, "1/1 of the queue read: 1 selected (redriven 1, skipped 0)") || !strings.Contains(out, "[####################]") {
		t.Fatalf("redrive: exit %d\n%s", code, out)
	}
	for got.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the redriven delivery was not delivered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out := cmd("dlq", "list"); code != 0 || !strings.Contains(out, "0 dead-lettered deliveries") {
		t.Errorf("after redrive: exit %d\n%s", code, out)
	}
	// whp dev's store indexes its dead letters when it opens; a reindex
	// (an upgrade's step on DynamoDB) says so.
	if code, out := cmd("dlq", "reindex"); code != 0 || !strings.Contains(out, "dlq reindex") || !strings.Contains(out, "nothing to do") {
		t.Errorf("reindex: exit %d\n%s", code, out)
	}
	if code, out := cmd("dlq", "redrive", "--from", "yesterday"); code != 2 || !strings.Contains(out, "RFC 3339") {
		t.Errorf("bad time: exit %d\n%s", code, out)
	}
	// Replay everything since before the event: one more delivery, with progress.
	before := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	code, out = cmd("replay", "--subscription", "alpha#shop#order.created#1", "--from", before)
	if code != 0 || !strings.Contains(out, "scanned 1/1, replayed 1, filtered 0") {
		t.Fatalf("replay: exit %d\n%s", code, out)
	}
	for got.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the replayed delivery was not delivered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out := cmd("replay", "--subscription", "alpha#shop#order.created#1"); code != 2 || !strings.Contains(out, "--from are required") {
		t.Errorf("replay without --from: exit %d\n%s", code, out)
	}

	// whp status: of the three finished deliveries (the dead letter, its
	// redrive, the replay) two reached the partner; the one valid event
	// is 100 % validation; alpha's breaker is closed, nothing in flight
	// of the 16 a partner starts at (its bound, learnt from its answers:
	// one at a time does not grow it), at most 64.
	code, out = cmd("status", "--window", "1h")
	for _, want := range []string{"SLOs over the last 1h0m0s", "validation success  100.00%", "1 events",
		"delivery success    66.67%", "3 finished deliveries", "BREACHED: delivery_success", "alpha    closed", "IN FLIGHT", " 0 of 16 (max 64)\n",
		"Deliveries needing attention: none retrying, held or dead-lettered", "Ready"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, no %q in\n%s", code, want, out)
		}
	}
	if code, out := cmd("status", "--window", "2d"); code == 0 || !strings.Contains(out, "window") {
		t.Errorf("status --window 2d: exit %d\n%s", code, out)
	}
}
