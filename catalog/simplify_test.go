package catalog

import "testing"

func TestSimplify(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"int with bound", `{"allOf":[{"type":"number"},{"type":"integer","minimum":1}]}`, `{"minimum":1,"type":"integer"}`},
		{"nested in properties", `{"properties":{"q":{"allOf":[{"type":"number"},{"maximum":9}]}}}`, `{"properties":{"q":{"maximum":9,"type":"number"}}}`},
		{"clashing keyword kept", `{"allOf":[{"minimum":1},{"minimum":2}]}`, `{"allOf":[{"minimum":1},{"minimum":2}]}`},
		{"non-foldable keyword kept", `{"allOf":[{"type":"object"},{"properties":{"a":{}}}]}`, `{"allOf":[{"type":"object"},{"properties":{"a":{}}}]}`},
		{"disjoint types kept", `{"allOf":[{"type":"string"},{"type":"number"}]}`, `{"allOf":[{"type":"string"},{"type":"number"}]}`},
		{"outer keyword clash kept", `{"minimum":0,"allOf":[{"minimum":1}]}`, `{"allOf":[{"minimum":1}],"minimum":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := simplify([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("simplify(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}
