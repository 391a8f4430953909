// Package filter compiles and evaluates the content filters subscriptions
// declare in the catalog: predicates on the event's data and envelope
// (eq, ne, lt, lte, gt, gte, in, exists, prefix, regex) combined with
// and, or and not. A filter is compiled once; Match explains a miss.
package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

// Event is what a filter sees: the envelope fields and the decoded data.
type Event struct {
	Domain, Event, Version, Key string
	// Data is the event's data decoded with json.Decoder.UseNumber.
	Data any
}

// Filter is a compiled filter. It is safe for concurrent use.
type Filter struct {
	root node
}

type node interface {
	match(ev Event) (bool, string)
}

// Compile parses a filter's JSON (as the catalog stores it). The error
// names the offending part with a path such as "and[1].regex".
func Compile(raw []byte) (*Filter, error) {
	var x any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&x); err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	n, err := compile(x, "filter")
	if err != nil {
		return nil, err
	}
	return &Filter{root: n}, nil
}

// Match reports whether ev passes, and when it does not, why.
func (f *Filter) Match(ev Event) (bool, string) { return f.root.match(ev) }

// Key is a condition every event a filter passes meets: its field at Path
// equals one of Values. A router looks a subscription up by the event's
// value at Path (Key.Of) instead of evaluating its filter on every event:
// with a subscription per tenant, each event is one lookup, not a filter
// per tenant. Values are canonical: equal values (1 and 1.0) are one
// string, unequal ones differ.
type Key struct {
	Path   string
	Values []string
	at     predicate
}

// Key returns the filter's key, if it has one: its eq or in predicate on
// a scalar (a string, number, boolean or null), or the first such among
// the members of its top-level and. An or or not has none: the events it
// passes share no one value.
func (f *Filter) Key() (Key, bool) {
	nodes := []node{f.root}
	if a, ok := f.root.(and); ok {
		nodes = a
	}
	for _, n := range nodes {
		if k, ok := keyOf(n); ok {
			return k, true
		}
	}
	return Key{}, false
}

func keyOf(n node) (Key, bool) {
	p, ok := n.(predicate)
	if !ok {
		return Key{}, false
	}
	var values []any
	switch p.op {
	case "eq":
		values = []any{p.value}
	case "in":
		values = p.value.([]any)
	default:
		return Key{}, false
	}
	k := Key{Path: p.path, at: p}
	for _, v := range values {
		c, ok := canonical(v)
		if !ok {
			return Key{}, false
		}
		k.Values = append(k.Values, c)
	}
	return k, true
}

// Of is ev's value at the key's path, canonical as Values are; false if
// the field is absent or not a scalar (no key value can equal it).
func (k Key) Of(ev Event) (string, bool) {
	v, ok := k.at.field(ev)
	if !ok {
		return "", false
	}
	return canonical(v)
}

// canonical is a scalar JSON value as a string that equal values share
// (numbers by value), with its kind first so that "1" and 1 differ.
func canonical(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return "s" + x, true
	case bool:
		if x {
			return "t", true
		}
		return "f", true
	case nil:
		return "z", true
	}
	if r, ok := rat(v); ok {
		return "n" + r.RatString(), true
	}
	return "", false
}

func compile(x any, at string) (node, error) {
	m, ok := x.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: a filter is an object", at)
	}
	for _, comb := range []string{"and", "or"} {
		if v, ok := m[comb]; ok {
			list, ok := v.([]any)
			if !ok || len(m) != 1 {
				return nil, fmt.Errorf("%s.%s: a list of filters, alone in its object", at, comb)
			}
			var kids []node
			for i, k := range list {
				n, err := compile(k, fmt.Sprintf("%s.%s[%d]", at, comb, i))
				if err != nil {
					return nil, err
				}
				kids = append(kids, n)
			}
			if comb == "and" {
				return and(kids), nil
			}
			return or(kids), nil
		}
	}
	if v, ok := m["not"]; ok {
		if len(m) != 1 {
			return nil, fmt.Errorf("%s.not: alone in its object", at)
		}
		n, err := compile(v, at+".not")
		if err != nil {
			return nil, err
		}
		return not{n}, nil
	}
	return compilePredicate(m, at)
}

var operators = []string{"eq", "ne", "lt", "lte", "gt", "gte", "in", "exists", "prefix", "regex"}

func compilePredicate(m map[string]any, at string) (node, error) {
	path, ok := m["path"].(string)
	if !ok || path == "" {
		return nil, fmt.Errorf("%s.path: a predicate names the field it tests", at)
	}
	var p predicate
	p.path = path
	switch {
	case strings.HasPrefix(path, "data."):
		p.data = strings.Split(strings.TrimPrefix(path, "data."), ".")
	case path == "domain" || path == "event" || path == "version" || path == "key":
	default:
		return nil, fmt.Errorf("%s.path: %q is neither data.<field> nor domain, event, version or key", at, path)
	}
	n := 0
	for _, op := range operators {
		v, ok := m[op]
		if !ok {
			continue
		}
		n++
		p.op, p.value = op, v
		switch op {
		case "lt", "lte", "gt", "gte":
			num, ok := v.(json.Number)
			if !ok {
				return nil, fmt.Errorf("%s.%s: a number", at, op)
			}
			r, ok := new(big.Rat).SetString(num.String())
			if !ok {
				return nil, fmt.Errorf("%s.%s: a number", at, op)
			}
			p.num = r
		case "in":
			if _, ok := v.([]any); !ok {
				return nil, fmt.Errorf("%s.in: a list", at)
			}
		case "exists":
			if _, ok := v.(bool); !ok {
				return nil, fmt.Errorf("%s.exists: true or false", at)
			}
		case "prefix":
			if _, ok := v.(string); !ok {
				return nil, fmt.Errorf("%s.prefix: a string", at)
			}
		case "regex":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%s.regex: a string", at)
			}
			re, err := regexp.Compile(s)
			if err != nil {
				return nil, fmt.Errorf("%s.regex: %q does not compile: %v", at, s, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
			p.re = re
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%s: a predicate has exactly one of %s", at, strings.Join(operators, ", "))
	}
	return p, nil
}

type and []node

func (a and) match(ev Event) (bool, string) {
	for _, n := range a {
		if ok, why := n.match(ev); !ok {
			return false, why
		}
	}
	return true, ""
}

type or []node

func (o or) match(ev Event) (bool, string) {
	var whys []string
	for _, n := range o {
		ok, why := n.match(ev)
		if ok {
			return true, ""
		}
		whys = append(whys, why)
	}
	return false, "none of: " + strings.Join(whys, "; ")
}

type not struct{ n node }

func (x not) match(ev Event) (bool, string) {
	if ok, _ := x.n.match(ev); ok {
		return false, "not: the inner filter matched"
	}
	return true, ""
}

type predicate struct {
	path  string
	data  []string // the path inside data, or nil for an envelope field
	op    string
	value any
	num   *big.Rat
	re    *regexp.Regexp
}

func (p predicate) field(ev Event) (any, bool) {
	if p.data == nil {
		switch p.path {
		case "domain":
			return ev.Domain, true
		case "event":
			return ev.Event, true
		case "version":
			return ev.Version, true
		default:
			return ev.Key, ev.Key != ""
		}
	}
	cur := ev.Data
	for _, k := range p.data {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (p predicate) match(ev Event) (bool, string) {
	v, present := p.field(ev)
	miss := func(format string, args ...any) (bool, string) {
		return false, p.path + " " + fmt.Sprintf(format, args...)
	}
	if p.op == "exists" {
		want := p.value.(bool)
		if present == want {
			return true, ""
		}
		if want {
			return miss("is absent")
		}
		return miss("is present")
	}
	if !present {
		return miss("is absent")
	}
	switch p.op {
	case "eq":
		if equal(v, p.value) {
			return true, ""
		}
		return miss("is %s, not %s", show(v), show(p.value))
	case "ne":
		if !equal(v, p.value) {
			return true, ""
		}
		return miss("is %s", show(v))
	case "in":
		for _, c := range p.value.([]any) {
			if equal(v, c) {
				return true, ""
			}
		}
		return miss("is %s, not one of %s", show(v), show(p.value))
	case "prefix":
		if s, ok := v.(string); ok && strings.HasPrefix(s, p.value.(string)) {
			return true, ""
		}
		return miss("is %s, which does not start with %s", show(v), show(p.value))
	case "regex":
		if s, ok := v.(string); ok && p.re.MatchString(s) {
			return true, ""
		}
		return miss("is %s, which does not match %s", show(v), show(p.value))
	}
	r, ok := rat(v)
	if !ok {
		return miss("is %s, not a number", show(v))
	}
	c := r.Cmp(p.num)
	var pass bool
	symbol := map[string]string{"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[p.op]
	switch p.op {
	case "lt":
		pass = c < 0
	case "lte":
		pass = c <= 0
	case "gt":
		pass = c > 0
	case "gte":
		pass = c >= 0
	}
	if pass {
		return true, ""
	}
	return miss("is %s, not %s %s", show(v), symbol, p.num.RatString())
}

func rat(v any) (*big.Rat, bool) {
	switch x := v.(type) {
	case json.Number:
		return new(big.Rat).SetString(x.String())
	case float64:
		return new(big.Rat).SetFloat64(x), true
	}
	return nil, false
}

// equal compares JSON values; numbers by value (1 equals 1.0).
func equal(a, b any) bool {
	if sa, ok := a.(string); ok {
		sb, ok := b.(string)
		return ok && sa == sb
	}
	if ra, ok := rat(a); ok {
		rb, ok := rat(b)
		return ok && ra.Cmp(rb) == 0
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}
