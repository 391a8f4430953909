// Package transform reshapes an event's data for one subscription before
// it is signed and sent: fields marked sensitive are dropped (unless the
// subscription is allowed them), then select keeps only the fields named,
// then rename moves fields to new paths. Data is decoded JSON
// (map[string]any); Apply never changes its input.
package transform

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Transform is a compiled transform. Safe for concurrent use.
type Transform struct {
	selects [][]string
	renames []rename // sorted by source path, for a stable result
}

type rename struct{ from, to []string }

// spec is the transform as the catalog stores it.
type spec struct {
	Select []string          `json:"select"`
	Rename map[string]string `json:"rename"`
}

func split(p string) []string { return strings.Split(p, ".") }

// Compile reads a transform's JSON; nil or empty means no transform.
func Compile(raw []byte) (*Transform, error) {
	t := &Transform{}
	if len(raw) == 0 {
		return t, nil
	}
	var s spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("transform: %w", err)
	}
	for _, p := range s.Select {
		t.selects = append(t.selects, split(p))
	}
	froms := make([]string, 0, len(s.Rename))
	for f := range s.Rename {
		froms = append(froms, f)
	}
	sort.Strings(froms)
	for _, f := range froms {
		t.renames = append(t.renames, rename{from: split(f), to: split(s.Rename[f])})
	}
	return t, nil
}

// Paths returns every data path the transform reads, so the catalog can
// check them against the schema.
func (t *Transform) Paths() []string {
	var out []string
	for _, p := range t.selects {
		out = append(out, strings.Join(p, "."))
	}
	for _, r := range t.renames {
		out = append(out, strings.Join(r.from, "."))
	}
	return out
}

// Apply returns data reshaped: sensitive paths dropped, then select, then
// rename. data is not modified.
func (t *Transform) Apply(data any, sensitive []string) any {
	out := clone(data)
	for _, p := range sensitive {
		del(out, split(p))
	}
	if len(t.selects) > 0 {
		kept := map[string]any{}
		for _, p := range t.selects {
			if v, ok := get(out, p); ok {
				set(kept, p, v)
			}
		}
		out = kept
	}
	for _, r := range t.renames {
		if v, ok := get(out, r.from); ok {
			del(out, r.from)
			prune(out, r.from[:len(r.from)-1])
			if m, ok := out.(map[string]any); ok {
				set(m, r.to, v)
			}
		}
	}
	return out
}

// Identity reports whether Apply with no sensitive paths returns its input.
func (t *Transform) Identity() bool { return len(t.selects) == 0 && len(t.renames) == 0 }

func clone(x any) any {
	switch v := x.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = clone(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = clone(e)
		}
		return l
	default:
		return v
	}
}

func get(x any, path []string) (any, bool) {
	for _, k := range path {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, false
		}
		if x, ok = m[k]; !ok {
			return nil, false
		}
	}
	return x, true
}

func set(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// del removes a path; a path through a list applies to every item, so a
// sensitive field inside list items is dropped from all of them.
func del(x any, path []string) {
	switch v := x.(type) {
	case map[string]any:
		if len(path) == 1 {
			delete(v, path[0])
			return
		}
		del(v[path[0]], path[1:])
	case []any:
		for _, e := range v {
			del(e, path)
		}
	}
}

// prune removes the objects along path that a move left empty, deepest
// first.
func prune(x any, path []string) {
	for i := len(path); i > 0; i-- {
		if v, ok := get(x, path[:i]); ok {
			if m, ok := v.(map[string]any); ok && len(m) == 0 {
				del(x, path[:i])
				continue
			}
		}
		return
	}
}
