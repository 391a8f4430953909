package dev

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestContentFilters: alpha takes only large euro orders, beta takes all,
// gamma is Pending. Each event shows every subscription's decision and
// why; alpha's filtered events are counted — those addressed to it (its
// filter's key, currency EUR, matched) that the rest of its filter
// refused: the small euro order, not the dollar one.
func TestContentFilters(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	dir := t.TempDir()
	src := `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {order_id: string, amount: number, currency?: string}}
partners: alpha: {name: "A", url: "` + alpha.srv.URL + `", signing_secret: "partners/alpha/signing", contact: "x"}
partners: beta: {name: "B", url: "` + beta.srv.URL + `", signing_secret: "partners/beta/signing", contact: "x"}
partners: gamma: {name: "G", url: "` + gamma.srv.URL + `", signing_secret: "partners/gamma/signing", contact: "x"}
subscriptions: {
	"alpha.big-eur": {partner: "alpha", domain: "shop", event: "order.created", version: "1",
		filter: and: [{path: "data.currency", eq: "EUR"}, {path: "data.amount", gte: 100}]}
	"beta.all": {partner: "beta", domain: "shop", event: "order.created", version: "1"}
	"gamma.all": {partner: "gamma", domain: "shop", event: "order.created", version: "1"}
}
`
	if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPlatform(t, data, dir)
	big := accept(t, p, `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"o1","amount":150,"currency":"EUR"}}`)
	small := accept(t, p, `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"o2","amount":50,"currency":"EUR"}}`)
	usd := accept(t, p, `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"o3","amount":500,"currency":"USD"}}`)
	mustDelivered(t, p, big, 2)
	mustDelivered(t, p, small, 1)
	mustDelivered(t, p, usd, 1)
	reasons := func(id string) map[string]string {
		v, _ := getEvent(t, p, id)
		out := map[string]string{}
		for _, r := range v.Routing {
			if r.Matched {
				out[r.PartnerID] = "matched"
			} else {
				out[r.PartnerID] = r.Reason
			}
		}
		return out
	}
	for id, want := range map[string]map[string]string{
		big:   {"alpha": "matched", "beta": "matched", "gamma": "the subscription is Pending"},
		small: {"alpha": "filtered out: data.amount is 50, not >= 100", "beta": "matched", "gamma": "the subscription is Pending"},
		usd:   {"alpha": `filtered out: data.currency is "USD", not "EUR"`, "beta": "matched", "gamma": "the subscription is Pending"},
	} {
		got := reasons(id)
		for partner, w := range want {
			if got[partner] != w {
				t.Errorf("event %s, %s: %q, want %q", id, partner, got[partner], w)
			}
		}
	}
	if n, _, _ := alpha.counts(); n != 1 {
		t.Errorf("alpha received %d webhooks, want the one big euro order", n)
	}
	eventually(t, "alpha's filtered counter", func() bool {
		k, err := p.Store().GetSubscriptionKafka(context.Background(), "alpha#shop#order.created#1")
		return err == nil && k.Filtered == 1 && k.Delivered == 1
	})
}
