package processor

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/whp-dev/whp/catalog/filter"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/store"
)

func routingProcessor() *Processor {
	return &Processor{log: slog.New(slog.NewTextHandler(io.Discard, nil)), filters: map[string]compiledFilter{}, routers: map[string]*router{}}
}

func sub(id, status, filter string) store.Subscription {
	s := store.Subscription{ID: id, PartnerID: id, Status: status, Rev: 1}
	if filter != "" {
		s.Filter = json.RawMessage(filter)
	}
	return s
}

func tenantEvent(data string) envelope.Event {
	return envelope.Event{ID: "e", Domain: "bench", Event: "thing.happened", Version: "1", Data: json.RawMessage(data)}
}

// naive is what routing must decide, subscription by subscription: the
// Approved ones whose filter (if any) passes.
func naive(t *testing.T, subs []store.Subscription, ev envelope.Event) []string {
	t.Helper()
	var fev filter.Event
	fev.Domain, fev.Event, fev.Version = ev.Domain, ev.Event, ev.Version
	dec := json.NewDecoder(bytes.NewReader(ev.Data))
	dec.UseNumber()
	dec.Decode(&fev.Data)
	var out []string
	for _, s := range subs {
		if s.Status != store.SubscriptionApproved {
			continue
		}
		if len(s.Filter) > 0 {
			f, err := filter.Compile(s.Filter)
			if err != nil {
				continue
			}
			if ok, _ := f.Match(fev); !ok {
				continue
			}
		}
		out = append(out, s.ID)
	}
	return out
}

func ids(subs []store.Subscription) []string {
	var out []string
	for _, s := range subs {
		out = append(out, s.ID)
	}
	return out
}

// tenantSubs is a schema with a subscription per tenant (keyed by
// data.tenant, some with more conditions, one an in over two tenants), and
// beside them ones every event is addressed to: no filter, a filter
// without a key, a Pending one, one whose filter does not compile.
func tenantSubs(tenants int) []store.Subscription {
	var subs []store.Subscription
	for i := range tenants {
		f := fmt.Sprintf(`{"path":"data.tenant","eq":"t%d"}`, i)
		switch i % 5 {
		case 1:
			f = fmt.Sprintf(`{"and":[{"path":"data.amount","gte":100},{"path":"data.tenant","eq":"t%d"}]}`, i)
		case 2:
			f = fmt.Sprintf(`{"path":"data.tenant","in":["t%d","t%d"]}`, i, i+1)
		}
		status := store.SubscriptionApproved
		if i%7 == 3 {
			status = store.SubscriptionPending
		}
		subs = append(subs, sub(fmt.Sprintf("p%04d", i), status, f))
	}
	subs = append(subs, sub("x-all", store.SubscriptionApproved, ""), sub("x-big", store.SubscriptionApproved, `{"path":"data.amount","gte":500}`),
		sub("x-pending", store.SubscriptionPending, ""), sub("x-broken", store.SubscriptionApproved, `{"path":"data.amount","lt":"a"}`),
		sub("x-number", store.SubscriptionApproved, `{"path":"data.code","eq":7}`))
	slices.SortFunc(subs, func(a, b store.Subscription) int { return cmp.Compare(a.ID, b.ID) })
	return subs
}

// TestRouteAgreesWithEveryFilter: the router takes, for any event, what
// evaluating every subscription would — with many subscriptions (looked
// up by key) and with few (each decided) — over events of every tenant,
// of none, of a tenant no one has, with a number for a key and a key of
// another kind.
func TestRouteAgreesWithEveryFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tenants := range []int{5, 200} {
		subs := tenantSubs(tenants)
		p := routingProcessor()
		r := p.router("bench#thing.happened#1", subs)
		for range 500 {
			data := fmt.Sprintf(`{"tenant":"t%d","amount":%d,"code":%s}`, rng.IntN(tenants+3), rng.IntN(1000),
				[]string{"7", "7.0", `"7"`, "8"}[rng.IntN(4)])
			if rng.IntN(10) == 0 {
				data = `{"amount":600}`
			}
			ev := tenantEvent(data)
			take, ds, omitted := p.route(ev, r)
			if got, want := ids(take), naive(t, subs, ev); !slices.Equal(got, want) {
				t.Fatalf("%d tenants, %s: took %v, want %v", tenants, data, got, want)
			}
			listed := len(routes(ds))
			if tenants <= routingListed && (listed != len(subs) || omitted != 0) {
				t.Errorf("%d tenants: %d routes listed, %d omitted; want all %d listed", tenants, listed, omitted, len(subs))
			}
			if listed+omitted != len(subs) {
				t.Errorf("%d tenants, %s: %d listed + %d omitted, not the %d subscriptions", tenants, data, listed, omitted, len(subs))
			}
		}
	}
}

// TestRouteByTenant: with a subscription per tenant, an event's routing
// lists the subscriptions it was addressed to — its tenant's and the
// unkeyed ones — and counts the others; a refusal is counted (filtered)
// only where the event was addressed.
func TestRouteByTenant(t *testing.T) {
	subs := tenantSubs(200)
	p := routingProcessor()
	r := p.router("s", subs)
	// t8's event: p0008 (eq t8), p0007 (in t7, t8) and the unkeyed ones.
	take, _, _ := p.route(tenantEvent(`{"tenant":"t8","amount":50,"code":8}`), r)
	if got := ids(take); !slices.Equal(got, []string{"p0007", "p0008", "x-all"}) {
		t.Errorf("t8's event took %v", got)
	}
	// t6's event: p0006 wants amount ≥ 100 as well; x-number's key (code
	// 7) matches this one.
	take, ds, omitted := p.route(tenantEvent(`{"tenant":"t6","amount":50,"code":7}`), r)
	if got := ids(take); !slices.Equal(got, []string{"x-all", "x-number"}) {
		t.Errorf("t6's event took %v", got)
	}
	reasons := map[string]string{}
	var filtered []string
	for _, d := range ds {
		reasons[d.SubscriptionID] = d.Reason
		if d.filtered {
			filtered = append(filtered, d.SubscriptionID)
		}
	}
	want := map[string]string{"p0006": "filtered out: data.amount is 50, not >= 100", "x-all": "", "x-number": "",
		"x-big": "filtered out: data.amount is 50, not >= 500", "x-pending": "the subscription is Pending",
		"x-broken": `the subscription's filter does not compile: filter.lt: a number`}
	if len(reasons) != len(want) {
		t.Errorf("routing %v, want %v", reasons, want)
	}
	for id, w := range want {
		if got, ok := reasons[id]; !ok || got != w {
			t.Errorf("%s: %q (listed %v), want %q", id, got, ok, w)
		}
	}
	if omitted != len(subs)-len(want) {
		t.Errorf("omitted %d, want %d", omitted, len(subs)-len(want))
	}
	slices.Sort(filtered)
	if !slices.Equal(filtered, []string{"p0006", "x-big"}) {
		t.Errorf("counted as filtered: %v", filtered)
	}
}

// TestRouteListsFewRefusals: past routingListed refusals of addressed
// subscriptions, the rest are counted, not listed — but still counted as
// filtered.
func TestRouteListsFewRefusals(t *testing.T) {
	var subs []store.Subscription
	for i := range 50 {
		subs = append(subs, sub(fmt.Sprintf("f%02d", i), store.SubscriptionApproved, `{"path":"data.amount","gte":100}`))
	}
	subs = append(subs, sub("z-all", store.SubscriptionApproved, ""))
	p := routingProcessor()
	take, ds, omitted := p.route(tenantEvent(`{"amount":5}`), p.router("s", subs))
	n := 0
	for _, d := range ds {
		if d.filtered {
			n++
		}
	}
	if got := ids(take); !slices.Equal(got, []string{"z-all"}) || len(routes(ds)) != routingListed+1 || omitted != 50-routingListed || n != 50 {
		t.Errorf("took %v, listed %d, omitted %d, counted %d filtered", got, len(routes(ds)), omitted, n)
	}
}

// TestRouterRebuiltOnChange: the router of unchanged subscriptions is
// reused across batches; a change of one (its Rev) builds it again.
func TestRouterRebuiltOnChange(t *testing.T) {
	subs := tenantSubs(40)
	p := routingProcessor()
	r := p.router("s", subs)
	if p.router("s", slices.Clone(subs)) != r {
		t.Error("unchanged subscriptions: router built again")
	}
	changed := slices.Clone(subs)
	i := slices.IndexFunc(changed, func(s store.Subscription) bool { return s.ID == "p0007" })
	changed[i].Filter, changed[i].Rev = json.RawMessage(`{"path":"data.tenant","eq":"t99"}`), 2
	r2 := p.router("s", changed)
	if r2 == r {
		t.Fatal("changed subscription: router reused")
	}
	take, _, _ := p.route(tenantEvent(`{"tenant":"t99","amount":500}`), r2)
	if got := ids(take); !slices.Contains(got, "p0007") {
		t.Errorf("after the change, t99's event took %v", got)
	}
	// A subscription removed: its compiled filter is forgotten.
	removed := slices.DeleteFunc(slices.Clone(changed), func(s store.Subscription) bool { return s.ID == "p0008" })
	if _, ok := p.filters["p0008"]; !ok {
		t.Fatal("p0008's filter was never compiled")
	}
	p.router("s", removed)
	if _, ok := p.filters["p0008"]; ok || len(p.filters) != len(removed)-2 { // x-all and x-pending have none
		t.Errorf("after p0008 left: %d compiled filters, p0008's kept %v", len(p.filters), ok)
	}
}
