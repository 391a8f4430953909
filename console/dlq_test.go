package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/dlq"
)

// listedDLQ answers List with its entries (what runtime/dlq's Queue
// returns, most recent first; the Queue itself is tested in runtime/dlq
// and, end to end, in runtime/dev).
type listedDLQ []dlq.Entry

func (l listedDLQ) List(context.Context, dlq.Filter) ([]dlq.Entry, error) { return l, nil }
func (l listedDLQ) Redrive(context.Context, dlq.Filter, func(dlq.Progress)) (dlq.Progress, error) {
	return dlq.Progress{}, nil
}

// TestDLQPageRows: a queue of thousands (an outage's) shows its count,
// its most recent dlqRows, and a redrive button for each subscription of
// them all — not a page of megabytes.
func TestDLQPageRows(t *testing.T) {
	var entries listedDLQ
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := range 2500 {
		entries = append(entries, dlq.Entry{DeliveryID: fmt.Sprintf("d-%04d", i), EventID: fmt.Sprintf("ev-%04d", i),
			SubscriptionID: fmt.Sprintf("p%d#orders#order.created#1", i%3), FailedAt: t0.Add(-time.Duration(i) * time.Second), Status: "dead_lettered"})
	}
	s := New(Config{DLQ: entries, Dev: true})
	w := httptest.NewRecorder()
	s.dlqPage(w, httptest.NewRequest("GET", "/console/dlq", nil), session{User: "ann", Role: RoleAdmin})
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, "2500 dead letters") || !strings.Contains(body, fmt.Sprintf("The %d most recent are shown", dlqRows)) {
		t.Fatalf("%d\n%.2000s", w.Code, body)
	}
	if rows := strings.Count(body, `name="delivery_id"`); rows != dlqRows {
		t.Errorf("%d rows, want %d", rows, dlqRows)
	}
	if !strings.Contains(body, `value="d-0000"`) || strings.Contains(body, fmt.Sprintf(`value="d-%04d"`, dlqRows)) {
		t.Errorf("not the most recent %d", dlqRows)
	}
	for i := range 3 {
		if !strings.Contains(body, fmt.Sprintf("Redrive all of p%d#orders#order.created#1", i)) {
			t.Errorf("no redrive of subscription p%d's", i)
		}
	}
	if len(body) > 200_000 {
		t.Errorf("the page is %d bytes", len(body))
	}
}
