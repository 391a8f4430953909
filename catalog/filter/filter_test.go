package filter_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/whp-dev/whp/catalog"
	. "github.com/whp-dev/whp/catalog/filter"
)

func event(t *testing.T, data string) Event {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader([]byte(data)))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		t.Fatal(err)
	}
	return Event{Domain: "orders", Event: "order.created", Version: "2", Key: "ord_1", Data: x}
}

func TestMatch(t *testing.T) {
	data := `{"amount":129.5,"currency":"EUR","customer":{"tier":"gold","id":"cus_42"},"tags":["a"],"n":3}`
	for _, tc := range []struct {
		name, filter string
		want         bool
		why          string // part of the reason for a miss
	}{
		{"eq string", `{"path":"data.currency","eq":"EUR"}`, true, ""},
		{"eq miss", `{"path":"data.currency","eq":"USD"}`, false, `data.currency is "EUR", not "USD"`},
		{"eq number by value", `{"path":"data.n","eq":3.0}`, true, ""},
		{"ne", `{"path":"data.currency","ne":"USD"}`, true, ""},
		{"gte", `{"path":"data.amount","gte":100}`, true, ""},
		{"lt miss", `{"path":"data.amount","lt":100}`, false, "data.amount is 129.5, not < 100"},
		{"compare a string", `{"path":"data.currency","gt":1}`, false, "not a number"},
		{"in", `{"path":"data.customer.tier","in":["gold","platinum"]}`, true, ""},
		{"in miss", `{"path":"data.customer.tier","in":["silver"]}`, false, `not one of ["silver"]`},
		{"exists", `{"path":"data.customer.id","exists":true}`, true, ""},
		{"absent", `{"path":"data.coupon","exists":false}`, true, ""},
		{"absent field fails others", `{"path":"data.coupon","eq":"X"}`, false, "data.coupon is absent"},
		{"prefix", `{"path":"data.customer.id","prefix":"cus_"}`, true, ""},
		{"regex", `{"path":"data.customer.id","regex":"^cus_[0-9]+$"}`, true, ""},
		{"regex miss", `{"path":"data.customer.id","regex":"^vip_"}`, false, "does not match"},
		{"envelope", `{"path":"version","eq":"2"}`, true, ""},
		{"envelope key", `{"path":"key","prefix":"ord_"}`, true, ""},
		{"and", `{"and":[{"path":"data.currency","eq":"EUR"},{"path":"data.amount","gte":200}]}`, false, "not >= 200"},
		{"or", `{"or":[{"path":"data.currency","eq":"USD"},{"path":"data.amount","gte":100}]}`, true, ""},
		{"or miss", `{"or":[{"path":"data.currency","eq":"USD"},{"path":"data.n","gt":5}]}`, false, "none of:"},
		{"not", `{"not":{"path":"data.currency","eq":"USD"}}`, true, ""},
		{"not miss", `{"not":{"path":"data.currency","eq":"EUR"}}`, false, "not:"},
		{"nested path through a list", `{"path":"data.tags.0","exists":true}`, false, "is absent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Compile([]byte(tc.filter))
			if err != nil {
				t.Fatal(err)
			}
			ok, why := f.Match(event(t, data))
			if ok != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("Match = %v %q, want %v with %q", ok, why, tc.want, tc.why)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for filter, want := range map[string]string{
		`{"path":"data.x","regex":"(unclosed"}`:            `filter.regex: "(unclosed" does not compile`,
		`{"and":[{"path":"data.x","eq":1},{"path":"x"}]}`:  "filter.and[1].path",
		`{"path":"data.x","eq":1,"ne":2}`:                  "exactly one of",
		`{"path":"data.x","gt":"ten"}`:                     "filter.gt: a number",
		`{"or":{"path":"data.x","eq":1}}`:                  "filter.or: a list",
		`{"not":{"path":"data.x","regex":"["},"path":"x"}`: "filter.not: alone",
	} {
		if _, err := Compile([]byte(filter)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%s) = %v, want an error with %q", filter, err, want)
		}
	}
}

// TestExampleCatalogFilter runs the example catalog's acme filter (large
// euro orders) over events it must take and leave.
func TestExampleCatalogFilter(t *testing.T) {
	c, err := catalog.Load("..")
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, s := range c.Subscriptions {
		if s.Name == "acme.order-created" {
			raw = s.Filter
		}
	}
	f, err := Compile(raw)
	if err != nil {
		t.Fatal(err)
	}
	for data, want := range map[string]bool{
		`{"amount":129.5,"currency":"EUR"}`: true,
		`{"amount":100,"currency":"EUR"}`:   true,
		`{"amount":99.99,"currency":"EUR"}`: false,
		`{"amount":500,"currency":"GBP"}`:   false,
	} {
		if ok, why := f.Match(event(t, data)); ok != want {
			t.Errorf("%s: %v (%s), want %v", data, ok, why, want)
		}
	}
}

// A filter's key is the eq or in every event it passes meets; Key.Of
// reads an event's value in the same canonical form, so that a router's
// lookup agrees with Match: an event whose value is not among the key's
// values is one Match refuses.
func TestKey(t *testing.T) {
	ev := event(t, `{"amount":129.5,"currency":"EUR","tenant":"t7","n":3,"ok":true,"none":null,"customer":{"tier":"gold"},"code":"3"}`)
	for _, tc := range []struct {
		name, filter string
		path         string // "" for no key
		values       int
		of           bool // the event's value is among the key's
	}{
		{"eq", `{"path":"data.tenant","eq":"t7"}`, "data.tenant", 1, true},
		{"eq another", `{"path":"data.tenant","eq":"t8"}`, "data.tenant", 1, false},
		{"eq number by value", `{"path":"data.n","eq":3.0}`, "data.n", 1, true},
		{"a string is not a number", `{"path":"data.code","eq":3}`, "data.code", 1, false},
		{"eq bool", `{"path":"data.ok","eq":true}`, "data.ok", 1, true},
		{"eq null", `{"path":"data.none","eq":null}`, "data.none", 1, true},
		{"in", `{"path":"data.customer.tier","in":["silver","gold"]}`, "data.customer.tier", 2, true},
		{"and: its first eq", `{"and":[{"path":"data.amount","gte":100},{"path":"data.currency","eq":"EUR"},{"path":"data.tenant","eq":"t7"}]}`, "data.currency", 1, true},
		{"envelope", `{"path":"version","eq":"2"}`, "version", 1, true},
		{"or has none", `{"or":[{"path":"data.tenant","eq":"t7"},{"path":"data.tenant","eq":"t8"}]}`, "", 0, false},
		{"not has none", `{"not":{"path":"data.tenant","eq":"t8"}}`, "", 0, false},
		{"a range has none", `{"path":"data.amount","gte":100}`, "", 0, false},
		{"an object value has none", `{"path":"data.customer","eq":{"tier":"gold"}}`, "", 0, false},
		{"an absent field", `{"path":"data.region","eq":"eu"}`, "data.region", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Compile([]byte(tc.filter))
			if err != nil {
				t.Fatal(err)
			}
			k, ok := f.Key()
			if ok != (tc.path != "") || k.Path != tc.path || len(k.Values) != tc.values {
				t.Fatalf("key %+v, %v; want path %q with %d values", k, ok, tc.path, tc.values)
			}
			if !ok {
				return
			}
			v, present := k.Of(ev)
			among := present && slices.Contains(k.Values, v)
			if among != tc.of {
				t.Errorf("event's value %q (present %v) among %q: %v, want %v", v, present, k.Values, among, tc.of)
			}
			if matched, _ := f.Match(ev); matched && !among {
				t.Errorf("Match passes an event the key would not look up")
			}
		})
	}
}
