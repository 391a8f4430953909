package processor

import (
	"bytes"
	"slices"

	"github.com/whp-dev/whp/catalog/filter"
	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/store"
)

// Routing an event costs what the subscriptions it is addressed to cost,
// not what its schema's subscriptions do. A platform with an endpoint per
// customer has a subscription per customer on the same schema, each with
// a filter such as {path: "data.tenant", eq: "t42"}; evaluating every
// filter on every event, and recording every refusal, made each event
// cost — in CPU, in the store's row, in counter writes — in proportion to
// the customers: at 1,000 tenants the platform delivered 700 events a
// second against 5,000 with one, and an event's row held 1,000 decisions
// (DynamoDB refuses an item past 400 KB). So a subscription whose filter
// has a key (filter.Key: an eq or in that every event it passes meets) is
// looked up by the event's value at the key's path, and the event is
// addressed to those found and to every subscription without a key; the
// others are refused without being evaluated.
//
// What is recorded follows. An event's routing lists every subscription
// that took it, and those that did not up to routingListed: when the
// schema has at most routingListed subscriptions, every one, with why, as
// before; when it has more, those it was addressed to, and the rest are
// counted (store.Event.RoutingOmitted). A subscription's filtered counter
// counts the events addressed to it that its filter refused: another
// tenant's events are not its events, and counting them was a write per
// subscription per batch.

// routingListed bounds the subscriptions that did not take an event that
// its routing lists: a schema with this many subscriptions or fewer has
// all of them listed.
const routingListed = 32

// router is one schema's subscriptions arranged for routing, built when
// they change (Rev, status or filter) and reused across batches.
type router struct {
	subs    []store.Subscription
	filters []compiledFilter // subs[i]'s; zero when it has no filter
	open    []int            // the subscriptions every event is addressed to
	keys    []keyIndex       // the others, by their filter's key
}

// keyIndex is the subscriptions whose filters' keys test one path, by the
// canonical value each requires.
type keyIndex struct {
	key filter.Key // for Key.Of
	by  map[string][]int
}

// router returns the router of subs (one schema's, sorted by ID), the
// one built before if they have not changed.
func (p *Processor) router(schemaID string, subs []store.Subscription) *router {
	if r, ok := p.routers[schemaID]; ok && r.same(subs) {
		r.subs = subs
		return r
	}
	r := &router{subs: subs, filters: make([]compiledFilter, len(subs))}
	paths := map[string]int{} // path → index in r.keys
	for i, s := range subs {
		if len(s.Filter) == 0 {
			r.open = append(r.open, i)
			continue
		}
		r.filters[i] = p.filter(s)
		var k filter.Key
		ok := false
		if r.filters[i].err == nil {
			k, ok = r.filters[i].f.Key()
		}
		if !ok {
			r.open = append(r.open, i)
			continue
		}
		j, seen := paths[k.Path]
		if !seen {
			j = len(r.keys)
			paths[k.Path] = j
			r.keys = append(r.keys, keyIndex{key: k, by: map[string][]int{}})
		}
		for _, v := range k.Values {
			if at := r.keys[j].by[v]; len(at) == 0 || at[len(at)-1] != i { // an in may name a value twice
				r.keys[j].by[v] = append(at, i)
			}
		}
	}
	p.routers[schemaID] = r
	p.forgetRemoved()
	return r
}

// forgetRemoved drops the compiled filters and transforms of
// subscriptions no router holds any more: a catalog whose tenants come
// and go would otherwise keep every one it ever compiled. It runs when a
// router is built — when subscriptions change — over every router's.
func (p *Processor) forgetRemoved() {
	live := map[string]bool{}
	for _, r := range p.routers {
		for i := range r.subs {
			live[r.subs[i].ID] = true
		}
	}
	for id := range p.filters {
		if !live[id] {
			delete(p.filters, id)
		}
	}
	for id := range p.transforms {
		if !live[id] {
			delete(p.transforms, id)
		}
	}
}

// same reports whether subs are the subscriptions r was built from: the
// same IDs in the same order, none changed since (a change increments
// Rev; status and filter are compared too, for a store that does not).
func (r *router) same(subs []store.Subscription) bool {
	if len(subs) != len(r.subs) {
		return false
	}
	if len(subs) == 0 || &subs[0] == &r.subs[0] {
		return true // the store's answer, kept until a subscription is written
	}
	for i := range subs {
		a, b := &subs[i], &r.subs[i]
		if a.ID != b.ID || a.Rev != b.Rev || a.Status != b.Status || !bytes.Equal(a.Filter, b.Filter) {
			return false
		}
	}
	return true
}

// addressed returns, in ascending order, the subscriptions ev is
// addressed to: every open one, and the keyed ones whose key names ev's
// value.
func (r *router) addressed(ev func() *filter.Event) []int {
	if len(r.keys) == 0 {
		return r.open
	}
	out := slices.Clone(r.open)
	for _, k := range r.keys {
		if v, ok := k.key.Of(*ev()); ok {
			out = append(out, k.by[v]...)
		}
	}
	slices.Sort(out)
	return out
}

// route decides which subscriptions of the event's schema take it: the
// Approved ones it is addressed to whose filter passes. It returns them,
// the decisions to record (routingListed), and how many it left out.
func (p *Processor) route(ev envelope.Event, r *router) (take []store.Subscription, ds []decision, omitted int) {
	var fev *filter.Event
	event := func() *filter.Event {
		if fev == nil {
			fev = &filter.Event{Domain: ev.Domain, Event: ev.Event, Version: ev.Version, Key: ev.Key}
			fev.Data, _ = fastjson.Decode(ev.Data) // validated at ingest; a filter sees nil otherwise
		}
		return fev
	}
	addressed := r.addressed(event)
	if len(r.subs) <= routingListed {
		// Every decision, with why; a refusal counted only where the
		// event was addressed.
		next := 0
		for i := range r.subs {
			to := next < len(addressed) && addressed[next] == i
			if to {
				next++
			}
			d := r.decide(i, event)
			d.filtered = d.filtered && to
			if d.Matched {
				take = append(take, r.subs[i])
			}
			ds = append(ds, d)
		}
		return take, ds, 0
	}
	refused := 0
	for _, i := range addressed {
		d := r.decide(i, event)
		switch {
		case d.Matched:
			take = append(take, r.subs[i])
		case refused == routingListed:
			omitted++
			if d.filtered { // counted, though not listed
				ds = append(ds, decision{Route: store.Route{SubscriptionID: d.SubscriptionID}, filtered: true, unlisted: true})
			}
			continue
		default:
			refused++
		}
		ds = append(ds, d)
	}
	return take, ds, omitted + len(r.subs) - len(addressed)
}

// decide is subs[i]'s decision on the event: taken, or why not.
func (r *router) decide(i int, event func() *filter.Event) decision {
	s := &r.subs[i]
	d := decision{Route: store.Route{SubscriptionID: s.ID, PartnerID: s.PartnerID}}
	switch f := r.filters[i]; {
	case s.Status != store.SubscriptionApproved:
		d.Reason = "the subscription is " + s.Status
	case f.err != nil:
		d.Reason = "the subscription's filter does not compile: " + f.err.Error()
	case f.f != nil:
		ok, why := f.f.Match(*event())
		d.Matched, d.filtered = ok, !ok
		if !ok {
			d.Reason = "filtered out: " + why
		}
	default:
		d.Matched = true
	}
	return d
}

// filter returns a subscription's compiled filter, compiling it only when
// its text changed.
func (p *Processor) filter(s store.Subscription) compiledFilter {
	if c, ok := p.filters[s.ID]; ok && c.raw == string(s.Filter) {
		return c
	}
	f, err := filter.Compile(s.Filter)
	c := compiledFilter{raw: string(s.Filter), f: f, err: err}
	if err != nil {
		p.log.Error("subscription filter does not compile; events are not delivered to it", "subscription_id", s.ID, "error", err)
	}
	p.filters[s.ID] = c
	return c
}

// decision is one subscription's routing of an event.
type decision struct {
	store.Route
	filtered bool // refused by the subscription's filter (counted)
	unlisted bool // counted, but not one of the routes recorded
}

// routes are the decisions to record.
func routes(ds []decision) []store.Route {
	out := make([]store.Route, 0, len(ds))
	for _, d := range ds {
		if !d.unlisted {
			out = append(out, d.Route)
		}
	}
	return out
}
