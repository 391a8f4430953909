package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestReconcileCommand: a dry run plans everything, --once applies it, a
// second dry run finds nothing to do, and status reports Ready.
func TestReconcileCommand(t *testing.T) {
	data := t.TempDir()
	cmd := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := cmd("reconcile", "--dry-run", "--catalog", "../../catalog", "--data-dir", data)
	if code != 0 || !strings.Contains(out, "+ subscription acme → orders/order.created v2 (create)") || !strings.Contains(out, "Plan: 21 to create") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = cmd("reconcile", "--once", "--catalog", "../../catalog", "--data-dir", data); code != 0 || !strings.Contains(out, "Ready       True") {
		t.Fatalf("once: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ = cmd("reconcile", "--dry-run", "--catalog", "../../catalog", "--data-dir", data); code != 0 || !strings.Contains(out, "No changes") {
		t.Fatalf("dry run after apply: exit %d\n%s", code, out)
	}
	if code, out, _ = cmd("reconcile", "status", "--data-dir", data); code != 0 || !strings.Contains(out, "inventory: 21 objects") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	if code, _, errOut = cmd("reconcile", "--dry-run", "--catalog", "../../catalog/testdata/invalid/dangling-refs", "--data-dir", data); code != 1 || !strings.Contains(errOut, "nothing would be applied") {
		t.Fatalf("invalid dry run: exit %d\n%s", code, errOut)
	}
	if code, _, errOut = cmd("reconcile", "--once", "--ingress-brokers", "127.0.0.1:1"); code != 2 || !strings.Contains(errOut, "or neither") {
		t.Fatalf("half the brokers: exit %d\n%s", code, errOut)
	}
}
