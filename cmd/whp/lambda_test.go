package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// The roles without a Lambda handler yet refuse to start, naming the way
// they do run; none starts half-built. (Ingest on Lambda is tested end to
// end in runtime/lambdahttp.)
func TestLambdaRoleSelection(t *testing.T) {
	for role, want := range map[string]string{
		"":           "WHP_ROLE must name",
		"dispatcher": "run dispatcher on EKS",
		"processor":  "run processor on EKS",
	} {
		err := runLambda(context.Background(), role, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("WHP_ROLE=%q: %v, want an error with %q", role, err, want)
		}
	}
}
