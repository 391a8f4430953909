package compat

import (
	"strings"
	"testing"
)

func TestAccepts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		new, old string
		want     []string // substrings, one per expected break; none: compatible
	}{
		{name: "anything accepts nothing", new: `{"type":"string"}`, old: `false`},
		{name: "true accepts everything", new: `true`, old: `{"type":"string"}`},
		{name: "same schema", new: `{"type":"object","properties":{"a":{"type":"integer","minimum":1}},"required":["a"]}`,
			old: `{"type":"object","properties":{"a":{"type":"integer","minimum":1}},"required":["a"]}`},
		{name: "integer within number", new: `{"type":"number"}`, old: `{"type":"integer"}`},
		{name: "number not within integer", new: `{"type":"integer"}`, old: `{"type":"number"}`, want: []string{"old allows number; new allows only integer"}},
		{name: "local refs resolved", new: `{"$ref":"#/$defs/p","$defs":{"p":{"type":"object","properties":{"q":{"type":"integer"}}}}}`,
			old: `{"type":"object","properties":{"q":{"type":"string"}}}`, want: []string{"/q:"}},
		{name: "anyOf widened", new: `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, old: `{"type":"string"}`},
		{name: "anyOf narrowed", new: `{"type":"string"}`, old: `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, want: []string{"allows integer"}},
		{name: "array bounds and items", new: `{"type":"array","items":{"type":"string","maxLength":3},"maxItems":2}`,
			old: `{"type":"array","items":{"type":"string"},"maxItems":5}`, want: []string{"number of items of at most 2", "/*:"}},
		{name: "additionalProperties schema", new: `{"type":"object","additionalProperties":{"type":"string"}}`,
			old: `{"type":"object","properties":{"x":{"type":"integer"}},"additionalProperties":false}`, want: []string{"/x:"}},
		{name: "closing an open object", new: `{"type":"object","additionalProperties":false}`, old: `{"type":"object"}`, want: []string{"refuses unknown fields"}},
		{name: "unmodelled keyword", new: `{"type":"object","propertyNames":{"maxLength":3}}`, old: `{"type":"object"}`, want: []string{`"propertyNames"`}},
		{name: "enum values checked against pattern", new: `{"type":"string","pattern":"^a"}`, old: `{"enum":["ab","ac"]}`},
		{name: "enum value fails pattern", new: `{"type":"string","pattern":"^a"}`, old: `{"enum":["ab","b"]}`, want: []string{`"b"`}},
		{name: "multipleOf implied", new: `{"type":"number","multipleOf":0.5}`, old: `{"type":"number","multipleOf":1.5}`},
		{name: "multipleOf not implied", new: `{"type":"number","multipleOf":2}`, old: `{"type":"number","multipleOf":3}`, want: []string{"multiple of 2"}},
		{name: "exclusive bound equal is tighter", new: `{"type":"number","exclusiveMinimum":0}`, old: `{"type":"number","minimum":0}`, want: []string{"requires > 0; old allows >= 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := Accepts([]byte(tc.new), []byte(tc.old), "new", "old")
			if err != nil {
				t.Fatal(err)
			}
			if len(bs) != len(tc.want) {
				t.Fatalf("got %d breaks %v, want %d", len(bs), bs, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(bs[i].String(), w) {
					t.Errorf("break %q lacks %q", bs[i], w)
				}
			}
		})
	}
}

func TestModeRejectsBadJSON(t *testing.T) {
	if _, err := Mode("BACKWARD", []byte(`{`), []byte(`{}`), "v1", "v2"); err == nil {
		t.Error("a malformed schema was compared")
	}
}
