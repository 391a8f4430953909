package dev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/store"
)

// orderedBacklog is an ordered subscription of partner alpha whose key A
// holds n deliveries: A0 fails until release is set, and A1…An, accepted
// meanwhile, wait behind it. It returns the platform, the receiver,
// the catalog's directory, and the IDs of A0, A1 and An.
func orderedBacklog(t *testing.T, data string, n int, release *atomic.Bool) (p *Platform, alpha *receiver, dir string, first, second, last string) {
	t.Helper()
	alpha = newReceiver(t, data, "alpha")
	dir = orderedCatalog(t, alpha)
	p = startPlatform(t, data, dir, orderedConfig)
	alpha.failBody = func(body []byte) bool {
		return strings.Contains(string(body), `"order_id":"A0"`) && !release.Load()
	}
	first = accept(t, p, orderedEvent("A", 0))
	eventually(t, "A0 to fail once", func() bool { return deliveryOf(t, p, first, "alpha").Status == store.DeliveryRetrying })
	for i := 1; i <= n; i++ {
		id := accept(t, p, orderedEvent("A", i))
		if i == 1 {
			second = id
		}
		last = id
	}
	eventually(t, fmt.Sprintf("%d deliveries queued behind A0", n), func() bool {
		g := gateOf(t, p)
		return g.Tail-g.Head == int64(n)
	})
	return p, alpha, dir, first, second, last
}

// orderedCatalog writes a catalog whose partner alpha, at alpha,
// subscribes to shop/order.created in mode ordered, and returns its
// directory.
func orderedCatalog(t *testing.T, alpha *receiver) string {
	t.Helper()
	dir := t.TempDir()
	src := `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {order_id: string, amount: number}}
partners: alpha: {name: "A", url: "` + alpha.srv.URL + `", signing_secret: "partners/alpha/signing", contact: "x"}
subscriptions: "alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1", mode: "ordered"}
`
	if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func orderedConfig(c *Config) {
	c.AutoApprove = []string{"alpha"}
	c.Dispatch.Retry = retry.Policy{Schedule: []time.Duration{200 * time.Millisecond}, MaxAttempts: 1000, MaxRetryAfter: time.Second}
	// Only A0 fails, so the breaker opens (its failures are all there
	// are): a short cool-down keeps the test short.
	c.Dispatch.Breaker = breaker.Config{CoolDown: 200 * time.Millisecond}
}

func orderedEvent(key string, i int) string {
	return `{"domain":"shop","event":"order.created","version":"1","key":"` + key + `","data":{"order_id":"` + key + strconv.Itoa(i) + `","amount":1}}`
}

// The ordering gate's keys, as the dispatcher writes them
// (runtime/dispatch/order.go): the gate, and the i-th queued delivery.
const (
	testGateKey = "order#alpha#shop#order.created#1#A"
	testWaitKey = "order-wait#%d#alpha#shop#order.created#1#A"
)

type testGate struct {
	Blocker string `json:"blocker"`
	Head    int64  `json:"head"`
	Tail    int64  `json:"tail"`
	size    int
}

func gateOf(t *testing.T, p *Platform) testGate {
	t.Helper()
	rec, err := p.st.GetIdempotency(context.Background(), testGateKey)
	if errors.Is(err, store.ErrNotFound) {
		return testGate{}
	}
	if err != nil {
		t.Fatal(err)
	}
	var g testGate
	if err := json.Unmarshal(rec.Value, &g); err != nil {
		t.Fatal(err)
	}
	g.size = len(rec.Value)
	return g
}

// arrivalsOf is the order IDs of key's deliveries in the order they
// arrived, and whether any arrived twice.
func arrivalsOf(r *receiver, key string) (got []string, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.arrivals {
		if strings.HasPrefix(o, key) {
			got = append(got, o)
		}
	}
	for _, n := range r.got {
		dups += n - 1
	}
	return got, dups
}

// arriveInOrder waits for A0…An to arrive at alpha, and checks they did
// in that order, once each.
func arriveInOrder(t *testing.T, alpha *receiver, n int) {
	t.Helper()
	eventually(t, "key A's backlog to arrive", func() bool {
		got, _ := arrivalsOf(alpha, "A")
		return len(got) >= n+1
	})
	want := make([]string, n+1)
	for i := range want {
		want[i] = "A" + strconv.Itoa(i)
	}
	if got, dups := arrivalsOf(alpha, "A"); strings.Join(got, ",") != strings.Join(want, ",") || dups != 0 {
		t.Errorf("key A arrived as %v with %d duplicates, want A0…A%d once each", got, dups, n)
	}
}

// TestOrderedBacklog: 300 deliveries of one key wait behind a failing
// one. The gate stays small (the queue is items of their own, not a list
// in the gate: 300 deliveries of this size were ≈ 150 KB of gate, and a
// few hundred of 1 KiB pass DynamoDB's 400 KB item limit). Once the
// failing one is delivered, the queue is drained — over several drains,
// each at most drainBudget long, handing over to the next by a resume
// record — and every delivery arrives once, in order, each in one
// attempt; the gate opens and the queue's items are deleted.
func TestOrderedBacklog(t *testing.T) {
	const n = 300
	var release atomic.Bool
	data := t.TempDir()
	p, alpha, _, _, second, last := orderedBacklog(t, data, n, &release)
	if g := gateOf(t, p); g.size > 512 {
		t.Errorf("the gate holding %d deliveries is %d bytes", n, g.size)
	}
	// Slow answers: the drain outlasts its budget and hands over.
	alpha.mu.Lock()
	alpha.delay = 5 * time.Millisecond
	alpha.mu.Unlock()
	release.Store(true)
	arriveInOrder(t, alpha, n)
	eventually(t, "the gate to open", func() bool {
		g := gateOf(t, p)
		return g.Blocker == "" && g.Head == g.Tail && g.Tail == n
	})
	// Held, then made by the drain (their statuses written before the
	// gate opened): one attempt each, none while A0 failed.
	for _, id := range []string{second, last} {
		if d := deliveryOf(t, p, id, "alpha"); d.Status != store.DeliveryDelivered || len(d.Attempts) != 1 {
			t.Errorf("delivery of %s: %s after %d attempts, want delivered after 1", id, d.Status, len(d.Attempts))
		}
	}
	// The drain deletes what it made after writing the gate.
	eventually(t, "the queue's items to be deleted", func() bool {
		for i := range n {
			if _, err := p.st.GetIdempotency(context.Background(), fmt.Sprintf(testWaitKey, i)); !errors.Is(err, store.ErrNotFound) {
				return false
			}
		}
		return true
	})
	// The gate open, a new delivery of the key goes straight through.
	id := accept(t, p, orderedEvent("A", n+1))
	if ds := mustDelivered(t, p, id, 1); len(ds[0].Attempts) != 1 {
		t.Errorf("A%d after the drain: %d attempts", n+1, len(ds[0].Attempts))
	}
}

// TestOrderedDrainSurvivesRestart: the platform stops while a key's queue
// is being drained; started again on its data, it drains the rest, and
// the key's deliveries arrive once each, in order.
func TestOrderedDrainSurvivesRestart(t *testing.T) {
	const n = 120
	var release atomic.Bool
	data := t.TempDir()
	p, alpha, dir, _, _, _ := orderedBacklog(t, data, n, &release)
	alpha.mu.Lock()
	alpha.delay = 20 * time.Millisecond // ≈ 2.4 s of draining
	alpha.mu.Unlock()
	release.Store(true)
	eventually(t, "the drain to be under way", func() bool {
		got, _ := arrivalsOf(alpha, "A")
		return len(got) >= 20
	})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if got, _ := arrivalsOf(alpha, "A"); len(got) > n {
		t.Fatalf("the drain finished before the stop (%d arrived): make the partner slower", len(got))
	}
	p = startPlatform(t, data, dir, orderedConfig)
	arriveInOrder(t, alpha, n)
	eventually(t, "the gate to open", func() bool {
		g := gateOf(t, p)
		return g.Blocker == "" && g.Head == g.Tail
	})
}

// TestOrderedDrainKeepsTraces: the deliveries a drain makes are made in
// their own events' traces (their queue items keep them), not in the
// blocker's, in which the drain runs: each event's trace holds the POSTs
// of its own delivery and no other's.
func TestOrderedDrainKeepsTraces(t *testing.T) {
	const n = 3
	var release atomic.Bool
	p, alpha, _, first, second, last := orderedBacklog(t, t.TempDir(), n, &release)
	release.Store(true)
	arriveInOrder(t, alpha, n)
	for _, c := range []struct {
		name, id string
		posts    int // at least
	}{{"A0, the blocker", first, 2}, {"A1", second, 1}, {fmt.Sprintf("A%d", n), last, 1}} {
		var posts int
		deliveries := map[string]bool{}
		drained := false
		eventually(t, c.name+"'s POSTs in its trace", func() bool {
			posts, deliveries, drained = 0, map[string]bool{}, false
			for _, s := range traceOf(t, p, c.id) {
				switch s.Name {
				case "POST":
					posts++
					deliveries[s.Attributes["whp.delivery_id"]] = true
				case "ordered queue drain":
					drained = true
				}
			}
			return posts >= c.posts
		})
		if len(deliveries) != 1 {
			t.Errorf("%s's trace holds the POSTs of %d deliveries, want its own alone: %v", c.name, len(deliveries), deliveries)
		}
		if drained != (c.id != first) {
			t.Errorf("%s's trace: drained %v", c.name, drained)
		}
	}
}
