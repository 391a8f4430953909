package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConfigDocsCurrent fails when docs/configuration.md is not what the
// flags say: run go tool task generate.
func TestConfigDocsCurrent(t *testing.T) {
	var b bytes.Buffer
	if err := configDocs(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatalf("%v (run go tool task generate)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("docs/configuration.md is stale; run go tool task generate (-file +flags):\n%s", diff)
	}
}
