package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/whp-dev/whp/internal/dynalitetest"
)

func TestTablesCreate(t *testing.T) {
	db := dynalitetest.Start(t)
	// dynalite checks a signature's form only; these are no one's keys.
	t.Setenv("AWS_ACCESS_KEY_ID", "dynalite")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "dynalite")
	endpoint := *db.Options().BaseEndpoint
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"tables", "create", "--env", "ci", "--endpoint", endpoint}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "created webhooks-ci-event_delivery_status") || !strings.Contains(out.String(), "5 tables created") {
		t.Errorf("output:\n%s", out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"tables", "create", "--env", "ci", "--endpoint", endpoint}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "0 tables created; 5 already existed") {
		t.Errorf("second run: exit %d\n%s", code, out.String())
	}
}
