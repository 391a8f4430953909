package dev

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/opevents"
	"github.com/whp-dev/whp/runtime/secret"
	"github.com/whp-dev/whp/runtime/signature"
)

// TestOperationalEvents: the operator's webhook is told, each event signed
// with the dev secret ops/webhook/signing, when a delivery is failing and
// when its attempts are exhausted, when a partner's breaker opens and
// closes, when a partner's 410 disables a subscription, and when a catalog
// revision is invalid.
func TestOperationalEvents(t *testing.T) {
	data := t.TempDir()
	var mu sync.Mutex
	got := map[string][]opevents.Event{}
	secrets := secret.OpenFile(filepath.Join(data, "secrets.json"))
	ops := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		keys, err := secrets.Secrets(r.Context(), OpsSigningRef)
		if err == nil {
			err = signature.Verify(r.Header, body, time.Now(), signature.DefaultTolerance, keys...)
		}
		if err != nil {
			t.Errorf("operational event with a bad signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev opevents.Event
		json.Unmarshal(body, &ev)
		mu.Lock()
		got[ev.Type] = append(got[ev.Type], ev)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ops.Close()
	have := func(typ string) []opevents.Event {
		mu.Lock()
		defer mu.Unlock()
		return got[typ]
	}

	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	alpha.answer(503, 503, 503)
	beta.answer(http.StatusGone)
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)
	p := startPlatform(t, data, cat, func(c *Config) {
		c.OpsWebhookURL = ops.URL
		c.ReconcileInterval = 100 * time.Millisecond
		c.Dispatch.FailingAfter = 2
		c.Dispatch.Breaker = breaker.Config{MinRequests: 2, CoolDown: 300 * time.Millisecond}
	})
	accept(t, p, orderEvent(1))
	eventually(t, "the first delivery to alpha to be exhausted", func() bool { return len(have(opevents.AttemptExhausted)) == 1 })
	// alpha answers again; the next delivery's probe closes its breaker.
	accept(t, p, orderEvent(2))
	eventually(t, "alpha's breaker to close", func() bool { return len(have(opevents.BreakerClosed)) == 1 })
	editCatalog(t, cat, "broken.cue", "package whp\nnonsense: true\n")
	eventually(t, "the invalid revision to be announced", func() bool { return len(have(opevents.ReconcileStalled)) == 1 })
	time.Sleep(300 * time.Millisecond) // reconciles of the same revision announce nothing more

	for typ, want := range map[string]map[string]any{
		opevents.AttemptFailing:       {"partner_id": "alpha", "attempts": 2.0, "last": "HTTP 503"},
		opevents.AttemptExhausted:     {"partner_id": "alpha", "attempts": 3.0, "subscription_id": "alpha#shop#order.created#1"},
		opevents.BreakerOpened:        {"partner_id": "alpha", "reason": "2 of the last 2 attempts failed", "partner_asked": false},
		opevents.BreakerClosed:        {"partner_id": "alpha", "from": "half-open"},
		opevents.SubscriptionDisabled: {"partner_id": "beta", "subscription_id": "beta#shop#order.created#1"},
	} {
		evs := have(typ)
		if len(evs) == 0 {
			t.Errorf("no %s event", typ)
			continue
		}
		for k, v := range want {
			if evs[0].Data[k] != v {
				t.Errorf("%s: %s = %v, want %v (%v)", typ, k, evs[0].Data[k], v, evs[0].Data)
			}
		}
		if evs[0].ID == "" || evs[0].Timestamp.IsZero() {
			t.Errorf("%s: no id or timestamp: %+v", typ, evs[0])
		}
	}
	// alpha's second 503 opens its breaker and its third fails the probe:
	// the breaker opens again, and that is not announced again.
	if n := len(have(opevents.BreakerOpened)); n != 1 {
		t.Errorf("%d breaker-opened events for one outage, want 1", n)
	}
	if n := len(have(opevents.AttemptFailing)); n != 1 {
		t.Errorf("%d failing events for one delivery, want 1", n)
	}
	if n := len(have(opevents.ReconcileStalled)); n != 1 {
		t.Errorf("%d stalled events for one invalid revision, want 1", n)
	}
	if ev := have(opevents.ReconcileStalled)[0]; ev.Data["revision"] == ev.Data["serving"] || ev.Data["problems"] == nil {
		t.Errorf("stalled event: %v", ev.Data)
	}
}
