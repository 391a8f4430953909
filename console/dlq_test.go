package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// countedDLQ counts its lists.
type countedDLQ struct {
	listedDLQ
	lists atomic.Int32
}

func (c *countedDLQ) List(ctx context.Context, f dlq.Filter) ([]dlq.Entry, error) {
	c.lists.Add(1)
	return c.listedDLQ.List(ctx, f)
}

// TestOverviewDLQDepth: the overview counts the dead letters waiting,
// and keeps the count dlqDepthTTL — reading the whole queue on every
// load of every operator's overview is what the count costs otherwise —
// while the DLQ page lists it fresh.
func TestOverviewDLQDepth(t *testing.T) {
	q := &countedDLQ{listedDLQ: make(listedDLQ, 1234)}
	s := New(Config{DLQ: q, Dev: true})
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s.dlqDepth.now = func() time.Time { return now }
	load := func() string {
		w := httptest.NewRecorder()
		s.overview(w, httptest.NewRequest("GET", "/console/", nil), session{User: "ann", Role: RoleAdmin})
		if w.Code != 200 {
			t.Fatalf("overview: %d", w.Code)
		}
		return w.Body.String()
	}
	for range 3 {
		if body := load(); !strings.Contains(body, `<a href="/console/dlq">1234</a>`) {
			t.Fatalf("no count of 1234 in\n%.3000s", body)
		}
	}
	if n := q.lists.Load(); n != 1 {
		t.Errorf("three loads listed the queue %d times, want once", n)
	}
	now = now.Add(dlqDepthTTL)
	load()
	if n := q.lists.Load(); n != 2 {
		t.Errorf("a load after %s listed the queue %d times in all, want twice", dlqDepthTTL, n)
	}
	w := httptest.NewRecorder()
	s.dlqPage(w, httptest.NewRequest("GET", "/console/dlq", nil), session{User: "ann", Role: RoleAdmin})
	if n := q.lists.Load(); n != 3 {
		t.Errorf("the DLQ page did not list afresh (%d lists)", n)
	}
}
