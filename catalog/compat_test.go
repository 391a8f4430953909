package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompatibility loads two versions of one event under a mode and checks
// which changes are refused, and that the message names the field.
func TestCompatibility(t *testing.T) {
	const v1 = `{
		id:     =~"^ord_"
		amount: number & >0
		note?:  string & strings.MaxRunes(50)
		kind:   "retail" | "wholesale" | "b2b"
		items: [...{sku: string, qty: int & >=1}]
	}`
	for _, tc := range []struct {
		name string
		mode string
		v2   string
		want []string // substrings of the problems; none means compatible
	}{
		{name: "optional field added", mode: "BACKWARD", v2: `{id: =~"^ord_", amount: number & >0, note?: string & strings.MaxRunes(50), kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1}], coupon?: string}`},
		{name: "bound relaxed, enum widened", mode: "BACKWARD", v2: `{id: =~"^ord_", amount: number & >=0, note?: string & strings.MaxRunes(80), kind: "retail" | "wholesale" | "b2b" | "gov", items: [...{sku: string, qty: int & >=1}]}`},
		{name: "field became required", mode: "BACKWARD", v2: `{id: =~"^ord_", amount: number & >0, note: string & strings.MaxRunes(50), kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1}]}`,
			want: []string{"at data/note, required by version 2, optional in version 1"}},
		{name: "required field in list items", mode: "BACKWARD", v2: `{id: =~"^ord_", amount: number & >0, note?: string & strings.MaxRunes(50), kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1, price: number}]}`,
			want: []string{"at data/items/*/price, required by version 2"}},
		{name: "field removed from a closed payload", mode: "BACKWARD", v2: `{id: =~"^ord_", amount: number & >0, kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1}]}`,
			want: []string{"at data/note, allowed by version 1, unknown to version 2"}},
		{name: "type changed", mode: "BACKWARD", v2: `{id: =~"^ord_", amount: string, note?: string & strings.MaxRunes(50), kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1}]}`,
			want: []string{"at data/amount, version 1 allows number; version 2 allows only string"}},
		{name: "bound tightened and enum narrowed", mode: "BACKWARD", v2: `{id: =~"^ord_", amount: number & >10, note?: string & strings.MaxRunes(20), kind: "retail" | "wholesale", items: [...{sku: string, qty: int & >=1}]}`,
			want: []string{"at data/amount, version 2 requires > 10; version 1 allows > 0", `at data/kind, version 1 allows "b2b"; version 2 does not`, "at data/note, version 2 allows a length of at most 20"}},
		{name: "pattern changed", mode: "BACKWARD", v2: `{id: =~"^order_", amount: number & >0, note?: string & strings.MaxRunes(50), kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1}]}`,
			want: []string{`at data/id, version 2 requires pattern "^order_" and version 1 "^ord_"`}},
		{name: "forward: optional field added is refused by v1", mode: "FORWARD", v2: `{id: =~"^ord_", amount: number & >0, note?: string & strings.MaxRunes(50), kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1}], coupon?: string}`,
			want: []string{"at data/coupon, allowed by version 2, unknown to version 1"}},
		{name: "forward: tightening is fine", mode: "FORWARD", v2: `{id: =~"^ord_", amount: number & >10, note?: string & strings.MaxRunes(50), kind: "retail" | "wholesale", items: [...{sku: string, qty: int & >=1}]}`},
		{name: "full: both directions", mode: "FULL", v2: `{id: =~"^ord_", amount: number & >=0, note?: string & strings.MaxRunes(50), kind: "retail" | "wholesale" | "b2b", items: [...{sku: string, qty: int & >=1}]}`,
			want: []string{"at data/amount, version 1 requires > 0; version 2 allows >= 0"}},
		{name: "none: anything goes", mode: "NONE", v2: `{totally: "different"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := "package whp\n\nimport \"strings\"\n\n" +
				"schemas: shop: \"order.placed\": \"1\": {owner: \"t\", payload: " + v1 + "}\n" +
				"schemas: shop: \"order.placed\": \"2\": {owner: \"t\", compatibility: \"" + tc.mode + "\", payload: " + tc.v2 + "}\n"
			if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			var ps Problems
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("compatible change refused:\n%v", err)
				}
				return
			}
			if !errors.As(err, &ps) {
				t.Fatalf("Load = %v, want problems", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(ps.Error(), w) {
					t.Errorf("problems lack %q:\n%s", w, ps.Error())
				}
			}
			for _, p := range ps {
				if p.Pos.Filename != "c.cue" || !strings.Contains(p.Message, "not "+tc.mode+" compatible with version 1") {
					t.Errorf("problem %q: want it placed in c.cue and naming the mode", p)
				}
			}
		})
	}
}
