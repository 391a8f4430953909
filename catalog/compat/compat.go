// Package compat decides whether one JSON Schema accepts everything
// another accepts, which is what a schema version's compatibility mode
// promises: BACKWARD (every event valid under the previous version is
// valid under the new one), FORWARD (the reverse) and FULL (both).
//
// It works on the JSON Schemas that ingest enforces rather than on CUE
// values: cue.Value.Subsume (v0.17) treats the payload structs as open
// (ingest closes them), does not descend into list element types, and
// fails on builtin validators such as strings.MaxRunes — so it passes
// breaking changes and refuses safe ones. The rules here are structural
// and conservative: where inclusion cannot be proven (a changed regular
// expression, a keyword it does not model), the change is reported as a
// break with the reason, and the schema's owner can choose mode NONE.
package compat

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Break is one way a new schema refuses data the old one accepted.
type Break struct {
	// Path is a JSON pointer into the data; "*" stands for any array item.
	Path   string
	Reason string
}

func (b Break) String() string {
	if b.Path == "" {
		return "(the whole document): " + b.Reason
	}
	return b.Path + ": " + b.Reason
}

// Accepts returns nil when every document valid under oldSchema is valid
// under newSchema, and otherwise the breaks found, sorted by path. The
// names label the two schemas in the reasons ("version 2", "version 1").
func Accepts(newSchema, oldSchema []byte, newName, oldName string) ([]Break, error) {
	var n, o any
	if err := json.Unmarshal(newSchema, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", newName, err)
	}
	if err := json.Unmarshal(oldSchema, &o); err != nil {
		return nil, fmt.Errorf("%s: %w", oldName, err)
	}
	c := &checker{newRoot: n, oldRoot: o, acc: newName, oth: oldName}
	c.accepts("", n, o, 0)
	sort.SliceStable(c.breaks, func(i, j int) bool { return c.breaks[i].Path < c.breaks[j].Path })
	return c.breaks, nil
}

// Mode checks the change from prev to next under a compatibility mode
// (BACKWARD, FORWARD, FULL; NONE checks nothing) and returns the breaks.
func Mode(mode string, prev, next []byte, prevName, nextName string) ([]Break, error) {
	var out []Break
	if mode == "BACKWARD" || mode == "FULL" {
		bs, err := Accepts(next, prev, nextName, prevName)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	if mode == "FORWARD" || mode == "FULL" {
		bs, err := Accepts(prev, next, prevName, nextName)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	return out, nil
}

const maxDepth = 64

// checker proves that the accepting schema (new, named acc) accepts
// everything the other (old, named oth) does.
type checker struct {
	newRoot, oldRoot any
	acc, oth         string
	breaks           []Break
}

func (c *checker) add(path, format string, args ...any) {
	c.breaks = append(c.breaks, Break{Path: path, Reason: fmt.Sprintf(format, args...)})
}

// annotations do not affect validity.
var annotations = map[string]bool{
	"$schema": true, "$id": true, "$defs": true, "definitions": true, "$comment": true, "title": true,
	"description": true, "default": true, "examples": true, "deprecated": true, "readOnly": true, "writeOnly": true,
}

// modelled are the keywords the checker reasons about.
var modelled = map[string]bool{
	"type": true, "enum": true, "const": true, "allOf": true, "anyOf": true, "oneOf": true, "$ref": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
	"minLength": true, "maxLength": true, "pattern": true, "format": true,
	"properties": true, "required": true, "additionalProperties": true, "minProperties": true, "maxProperties": true,
	"items": true, "minItems": true, "maxItems": true, "uniqueItems": true,
}

// node normalises a schema: booleans to objects, local $refs resolved.
func (c *checker) node(s any, root any, depth int) map[string]any {
	switch t := s.(type) {
	case bool:
		if t {
			return map[string]any{}
		}
		return map[string]any{"not": map[string]any{}}
	case map[string]any:
		ref, ok := t["$ref"].(string)
		if !ok || depth > maxDepth {
			return t
		}
		target := resolve(root, ref)
		if target == nil {
			return t
		}
		merged := map[string]any{}
		for k, v := range c.node(target, root, depth+1) {
			merged[k] = v
		}
		for k, v := range t {
			if k != "$ref" {
				merged[k] = v
			}
		}
		return merged
	}
	return map[string]any{}
}

func resolve(root any, ref string) any {
	p, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil
	}
	cur := root
	for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[tok]
	}
	return cur
}

func isFalse(s map[string]any) bool {
	n, ok := s["not"].(map[string]any)
	return ok && len(n) == 0 && len(s) == 1
}

func (c *checker) accepts(path string, newS, oldS any, depth int) {
	if depth > maxDepth {
		c.add(path, "nested too deeply to compare")
		return
	}
	n, o := c.node(newS, c.newRoot, 0), c.node(oldS, c.oldRoot, 0)
	if isFalse(o) || len(significant(n)) == 0 {
		return // nothing was valid before, or anything is valid now
	}
	// Every branch of an allOf in the new schema must accept the old one.
	if all, ok := n["allOf"].([]any); ok {
		for _, m := range all {
			c.accepts(path, m, o, depth+1)
		}
		n = without(n, "allOf")
	}
	// An old allOf: its instances satisfy every member, so fold them in.
	if all, ok := o["allOf"].([]any); ok {
		o = without(o, "allOf")
		for _, m := range all {
			for k, v := range c.node(m, c.oldRoot, 0) {
				if _, clash := o[k]; !clash {
					o[k] = v
				}
			}
		}
	}
	if c.alternatives(path, n, o, depth) {
		return
	}
	for k := range n {
		if !modelled[k] && !annotations[k] && !reflect.DeepEqual(n[k], o[k]) {
			c.add(path, "%s uses keyword %q differently from %s; compatibility cannot be verified", c.acc, k, c.oth)
		}
	}
	if !c.types(path, n, o) {
		return
	}
	if !c.values(path, n, o) {
		return
	}
	c.numbers(path, n, o)
	c.strings(path, n, o)
	c.objects(path, n, o, depth)
	c.arrays(path, n, o, depth)
}

func significant(s map[string]any) []string {
	var ks []string
	for k := range s {
		if !annotations[k] {
			ks = append(ks, k)
		}
	}
	return ks
}

func without(s map[string]any, key string) map[string]any {
	out := make(map[string]any, len(s))
	for k, v := range s {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// alternatives handles anyOf/oneOf. It reports true when it decided.
func (c *checker) alternatives(path string, n, o map[string]any, depth int) bool {
	newAlts := alts(n)
	oldAlts := alts(o)
	switch {
	case newAlts == nil && oldAlts == nil:
		return false
	case oldAlts != nil:
		// Each old alternative must be accepted by the new schema.
		rest := without(without(n, "anyOf"), "oneOf")
		for _, oa := range oldAlts {
			merged := mergeInto(c.node(oa, c.oldRoot, 0), without(without(o, "anyOf"), "oneOf"))
			if newAlts == nil {
				c.accepts(path, rest, merged, depth+1)
				continue
			}
			if !c.someAccepts(path, newAlts, merged, depth) {
				c.add(path, "an alternative %s allows matches none of %s's", c.oth, c.acc)
			}
		}
		return true
	default:
		// Old has none: one new alternative must accept it all.
		if !c.someAccepts(path, newAlts, o, depth) {
			c.add(path, "no alternative of %s accepts everything %s allows", c.acc, c.oth)
		}
		return true
	}
}

func alts(s map[string]any) []any {
	if a, ok := s["anyOf"].([]any); ok {
		return a
	}
	if a, ok := s["oneOf"].([]any); ok {
		return a
	}
	return nil
}

func mergeInto(dst, src map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range src {
		out[k] = v
	}
	for k, v := range dst {
		out[k] = v
	}
	return out
}

func (c *checker) someAccepts(path string, candidates []any, o map[string]any, depth int) bool {
	for _, cand := range candidates {
		sub := &checker{newRoot: c.newRoot, oldRoot: c.oldRoot, acc: c.acc, oth: c.oth}
		sub.accepts(path, cand, o, depth+1)
		if len(sub.breaks) == 0 {
			return true
		}
	}
	return false
}

// typeSet returns the JSON types a schema allows, nil for any.
func typeSet(s map[string]any) map[string]bool {
	switch t := s["type"].(type) {
	case string:
		return map[string]bool{t: true}
	case []any:
		out := map[string]bool{}
		for _, x := range t {
			if s, ok := x.(string); ok {
				out[s] = true
			}
		}
		return out
	}
	return nil
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

func allows(types map[string]bool, t string) bool {
	return types == nil || types[t] || (t == "integer" && types["number"])
}

// types checks the type keyword; false means stop (types already broke).
func (c *checker) types(path string, n, o map[string]any) bool {
	nt := typeSet(n)
	if nt == nil {
		return true
	}
	if vals := enumValues(o); vals != nil {
		for _, v := range vals {
			if !allows(nt, jsonType(v)) {
				c.add(path, "%s allows %s, not of a type %s allows", c.oth, short(v), c.acc)
				return false
			}
		}
		return true
	}
	ot := typeSet(o)
	if ot == nil {
		c.add(path, "%s allows only %s; %s allows any type", c.acc, list(nt), c.oth)
		return false
	}
	for t := range ot {
		if !allows(nt, t) {
			c.add(path, "%s allows %s; %s allows only %s", c.oth, t, c.acc, list(nt))
			return false
		}
	}
	return true
}

func list(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, " or ")
}

func enumValues(s map[string]any) []any {
	if e, ok := s["enum"].([]any); ok {
		return e
	}
	if v, ok := s["const"]; ok {
		return []any{v}
	}
	return nil
}

// values checks enum and const; false means stop.
func (c *checker) values(path string, n, o map[string]any) bool {
	nv := enumValues(n)
	if nv == nil {
		return true
	}
	ov := enumValues(o)
	if ov == nil {
		c.add(path, "%s allows only %d listed values; %s allows others", c.acc, len(nv), c.oth)
		return false
	}
	for _, v := range ov {
		found := false
		for _, w := range nv {
			if reflect.DeepEqual(v, w) {
				found = true
				break
			}
		}
		if !found {
			c.add(path, "%s allows %s; %s does not", c.oth, short(v), c.acc)
		}
	}
	return false // the old values are listed: nothing more to compare
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

func num(s map[string]any, k string) (*big.Rat, bool) {
	f, ok := s[k].(float64)
	if !ok {
		return nil, false
	}
	return new(big.Rat).SetFloat64(f), true
}

// bound is one side of a numeric range.
type bound struct {
	v         *big.Rat
	exclusive bool
}

// lower and upper are a schema's effective numeric bounds: of an
// inclusive and an exclusive bound on one side, the tighter.
func lower(s map[string]any) *bound { return tighter(s, "minimum", "exclusiveMinimum", +1) }

func upper(s map[string]any) *bound { return tighter(s, "maximum", "exclusiveMaximum", -1) }

// tighter picks between the inclusive and exclusive keywords; sign is +1
// when a larger value is tighter (lower bounds), -1 otherwise.
func tighter(s map[string]any, inclusiveKey, exclusiveKey string, sign int) *bound {
	m, hasM := num(s, inclusiveKey)
	e, hasE := num(s, exclusiveKey)
	switch {
	case hasM && hasE:
		if e.Cmp(m)*sign >= 0 {
			return &bound{e, true}
		}
		return &bound{m, false}
	case hasM:
		return &bound{m, false}
	case hasE:
		return &bound{e, true}
	}
	return nil
}

func (b *bound) text(op, exclusiveOp string) string {
	if b.exclusive {
		return exclusiveOp + " " + rat(b.v)
	}
	return op + " " + rat(b.v)
}

// rat prints a number without trailing zeros.
func rat(r *big.Rat) string {
	if r.IsInt() {
		return r.RatString()
	}
	return strings.TrimRight(strings.TrimRight(r.FloatString(12), "0"), ".")
}

// looser reports whether new bound a admits everything old bound b does,
// where sign is -1 for lower bounds and +1 for upper bounds.
func looser(a, b *bound, sign int) bool {
	if a == nil {
		return true
	}
	if b == nil {
		return false
	}
	switch cmp := a.v.Cmp(b.v) * sign; {
	case cmp > 0:
		return true
	case cmp < 0:
		return false
	default:
		return !a.exclusive || b.exclusive
	}
}

func mayBe(s map[string]any, types ...string) bool {
	ts := typeSet(s)
	if vals := enumValues(s); vals != nil {
		for _, v := range vals {
			for _, t := range types {
				if jsonType(v) == t || (t == "number" && jsonType(v) == "integer") {
					return true
				}
			}
		}
		return false
	}
	for _, t := range types {
		if allows(ts, t) {
			return true
		}
	}
	return false
}

func (c *checker) numbers(path string, n, o map[string]any) {
	if !mayBe(o, "number", "integer") {
		return
	}
	if nl, ol := lower(n), lower(o); !looser(nl, ol, -1) {
		if ol == nil {
			c.add(path, "%s requires %s; %s has no lower bound", c.acc, nl.text(">=", ">"), c.oth)
		} else {
			c.add(path, "%s requires %s; %s allows %s", c.acc, nl.text(">=", ">"), c.oth, ol.text(">=", ">"))
		}
	}
	if nu, ou := upper(n), upper(o); !looser(nu, ou, +1) {
		if ou == nil {
			c.add(path, "%s requires %s; %s has no upper bound", c.acc, nu.text("<=", "<"), c.oth)
		} else {
			c.add(path, "%s requires %s; %s allows %s", c.acc, nu.text("<=", "<"), c.oth, ou.text("<=", "<"))
		}
	}
	if nm, ok := num(n, "multipleOf"); ok {
		om, ok := num(o, "multipleOf")
		if !ok || !new(big.Rat).Quo(om, nm).IsInt() {
			c.add(path, "%s requires a multiple of %s; %s does not", c.acc, rat(nm), c.oth)
		}
	}
}

func intKey(s map[string]any, k string) (int64, bool) {
	f, ok := s[k].(float64)
	return int64(f), ok
}

// sizes compares a min/max pair of integer keywords (lengths, counts).
func (c *checker) sizes(path string, n, o map[string]any, minK, maxK, what string) {
	if nm, ok := intKey(n, minK); ok && nm > 0 {
		if om, ok := intKey(o, minK); !ok || om < nm {
			c.add(path, "%s requires a %s of at least %d; %s allows less", c.acc, what, nm, c.oth)
		}
	}
	if nm, ok := intKey(n, maxK); ok {
		if om, ok := intKey(o, maxK); !ok || om > nm {
			c.add(path, "%s allows a %s of at most %d; %s allows more", c.acc, what, nm, c.oth)
		}
	}
}

func (c *checker) strings(path string, n, o map[string]any) {
	if !mayBe(o, "string") {
		return
	}
	c.sizes(path, n, o, "minLength", "maxLength", "length")
	if np, ok := n["pattern"].(string); ok && np != o["pattern"] {
		if vals := enumValues(o); vals != nil {
			if re, err := regexp.Compile(np); err == nil {
				for _, v := range vals {
					if s, ok := v.(string); ok && !re.MatchString(s) {
						c.add(path, "%s allows %s, which does not match %s's pattern", c.oth, short(v), c.acc)
					}
				}
				return
			}
		}
		if op, ok := o["pattern"].(string); ok {
			c.add(path, "%s requires pattern %q and %s %q; compatibility of two patterns cannot be verified", c.acc, np, c.oth, op)
		} else {
			c.add(path, "%s requires pattern %q; %s has none", c.acc, np, c.oth)
		}
	}
	if nf, ok := n["format"].(string); ok && nf != o["format"] {
		c.add(path, "%s requires format %q; %s does not", c.acc, nf, c.oth)
	}
}

func child(path, name string) string {
	return path + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(name)
}

func (c *checker) objects(path string, n, o map[string]any, depth int) {
	if !mayBe(o, "object") {
		return
	}
	c.sizes(path, n, o, "minProperties", "maxProperties", "number of fields")
	oldReq := map[string]bool{}
	if r, ok := o["required"].([]any); ok {
		for _, x := range r {
			if s, ok := x.(string); ok {
				oldReq[s] = true
			}
		}
	}
	np, _ := n["properties"].(map[string]any)
	op, _ := o["properties"].(map[string]any)
	if r, ok := n["required"].([]any); ok {
		for _, x := range r {
			if s, ok := x.(string); ok && !oldReq[s] {
				if _, known := op[s]; known {
					c.add(child(path, s), "required by %s, optional in %s", c.acc, c.oth)
				} else {
					c.add(child(path, s), "required by %s, absent from %s", c.acc, c.oth)
				}
			}
		}
	}
	nAP, hasNAP := n["additionalProperties"]
	oAP, hasOAP := o["additionalProperties"]
	if !hasNAP {
		nAP = true
	}
	if !hasOAP {
		oAP = true
	}
	for _, name := range slices.Sorted(maps.Keys(op)) {
		if ns, ok := np[name]; ok {
			c.accepts(child(path, name), ns, op[name], depth+1)
		} else if b, ok := nAP.(bool); ok && !b {
			c.add(child(path, name), "allowed by %s, unknown to %s (which refuses unknown fields)", c.oth, c.acc)
		} else {
			c.accepts(child(path, name), nAP, op[name], depth+1)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(np)) {
		if _, ok := op[name]; ok {
			continue
		}
		if b, ok := oAP.(bool); ok && !b {
			continue // old events never had this field
		}
		c.accepts(child(path, name), np[name], oAP, depth+1)
	}
	if b, ok := nAP.(bool); ok && !b {
		if ob, ok := oAP.(bool); !ok || ob {
			c.add(path, "%s refuses unknown fields; %s allows them", c.acc, c.oth)
		}
	} else if _, isSchema := nAP.(map[string]any); isSchema {
		c.accepts(child(path, "*"), nAP, oAP, depth+1)
	}
}

func (c *checker) arrays(path string, n, o map[string]any, depth int) {
	if !mayBe(o, "array") {
		return
	}
	c.sizes(path, n, o, "minItems", "maxItems", "number of items")
	if u, _ := n["uniqueItems"].(bool); u {
		if ou, _ := o["uniqueItems"].(bool); !ou {
			c.add(path, "%s requires unique items; %s does not", c.acc, c.oth)
		}
	}
	if ni, ok := n["items"]; ok {
		oi, ok := o["items"]
		if !ok {
			oi = true
		}
		c.accepts(path+"/*", ni, oi, depth+1)
	}
}
