package transform

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGolden runs each testdata/*.json case — a transform, the sensitive
// paths, and an input — and compares the output with the .golden file.
func TestGolden(t *testing.T) {
	cases, _ := filepath.Glob("testdata/*.json")
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	for _, file := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Transform json.RawMessage `json:"transform"`
				Sensitive []string        `json:"sensitive"`
				In        json.RawMessage `json:"in"`
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			tr, err := Compile(c.Transform)
			if err != nil {
				t.Fatal(err)
			}
			d := json.NewDecoder(bytes.NewReader(c.In))
			d.UseNumber()
			var in any
			d.Decode(&in)
			before, _ := json.Marshal(in)
			out, _ := json.MarshalIndent(tr.Apply(in, c.Sensitive), "", "  ")
			out = append(out, '\n')
			if after, _ := json.Marshal(in); !bytes.Equal(before, after) {
				t.Error("Apply changed its input")
			}
			golden := strings.TrimSuffix(file, ".json") + ".golden"
			if *update {
				os.WriteFile(golden, out, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), string(out)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
