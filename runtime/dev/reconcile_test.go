package dev

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/reconciler"
)

func reconcileStatus(t *testing.T, p *Platform) reconciler.Status {
	t.Helper()
	resp, err := http.Get(p.URL + "/v1/reconcile/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st reconciler.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCatalogChangesWhileRunning: whp dev applies catalog edits as they
// are made; an invalid edit is Stalled, reported with its place, and the
// last good catalog keeps delivering; the fix applies again.
func TestCatalogChangesWhileRunning(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)
	p := startPlatform(t, data, cat, func(c *Config) {
		c.ReconcileInterval = 50 * time.Millisecond
		c.AutoApprove = []string{"alpha", "beta", "delta"}
	})
	first := reconcileStatus(t, p)
	if c, _ := first.Condition(reconciler.ConditionReady); c.Status != "True" {
		t.Fatalf("ready after start = %+v", first.Conditions)
	}

	// A new partner and subscription, added while running.
	delta := newReceiver(t, data, "delta")
	extra := `package whp
partners: delta: {name: "Delta", url: "` + delta.srv.URL + `", signing_secret: "partners/delta/signing", contact: "ops@delta.example"}
subscriptions: "delta.created": {partner: "delta", domain: "shop", event: "order.created", version: "1"}
`
	editCatalog(t, cat, "delta.cue", extra)
	eventually(t, "the new revision to be applied", func() bool {
		st := reconcileStatus(t, p)
		return st.LastAppliedRevision != first.LastAppliedRevision && len(st.LastChanges) > 0
	})
	id := accept(t, p, orderEvent(21))
	mustDelivered(t, p, id, 3)
	if n, _, _ := delta.counts(); n != 1 {
		t.Errorf("delta received %d webhooks, want 1", n)
	}

	// An invalid edit: Stalled with the problem's place; delivery goes on.
	good := reconcileStatus(t, p).LastAppliedRevision
	editCatalog(t, cat, "broken.cue", "package whp\nschemas: shop: \"order.created\": \"1\": owner: 42\n")
	var stalled reconciler.Status
	eventually(t, "the invalid revision to be reported", func() bool {
		stalled = reconcileStatus(t, p)
		c, ok := stalled.Condition(reconciler.ConditionStalled)
		return ok && c.Status == "True"
	})
	if stalled.LastAppliedRevision != good || len(stalled.Problems) == 0 || !strings.HasPrefix(stalled.Problems[0], "broken.cue:2:") {
		t.Errorf("stalled status: applied %s (want %s), problems %q", stalled.LastAppliedRevision, good, stalled.Problems)
	}
	id = accept(t, p, orderEvent(22))
	mustDelivered(t, p, id, 3)

	// The fix is applied again.
	if err := os.Remove(filepath.Join(cat, "broken.cue")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stall to clear", func() bool {
		_, ok := reconcileStatus(t, p).Condition(reconciler.ConditionStalled)
		return !ok
	})
}

// TestRestartWithInvalidCatalog: after a good start, an invalid catalog
// does not keep whp dev from starting: it serves what was applied.
func TestRestartWithInvalidCatalog(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)
	p := startPlatform(t, data, cat)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cat, "broken.cue"), []byte("package whp\nnonsense: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p = startPlatform(t, data, cat)
	id := accept(t, p, orderEvent(31))
	mustDelivered(t, p, id, 2)
	if c, _ := reconcileStatus(t, p).Condition(reconciler.ConditionStalled); c.Status != "True" {
		t.Errorf("stalled condition = %+v", c)
	}
}

// TestSchemaArtifacts: whp dev publishes each version's JSON Schema and
// serves it under /schemas/.
func TestSchemaArtifacts(t *testing.T) {
	data := t.TempDir()
	r := newReceiver(t, data, "alpha")
	p := startPlatform(t, data, testCatalog(t, r.srv.URL, r.srv.URL, r.srv.URL))
	resp, err := http.Get(p.URL + "/schemas/shop/order.created/1.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET schema artifact: %d %v", resp.StatusCode, err)
	}
	if doc["$id"] != p.URL+"/schemas/shop/order.created/1.json" || doc["type"] != "object" {
		t.Errorf("artifact = %v", doc)
	}
}
