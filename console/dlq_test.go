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
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
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

// countingDeadLetters is the embedded store, counting its counts.
type countingDeadLetters struct {
	*embedded.Store
	counts atomic.Int32
}

func (c *countingDeadLetters) CountDeliveries(ctx context.Context, status string) (int, error) {
	c.counts.Add(1)
	return c.Store.CountDeliveries(ctx, status)
}

// TestOverviewDLQDepth: the overview counts the dead letters waiting
// from the store's status index — the deliveries dead-lettered, not those
// redriven or retrying — without listing the queue, and keeps the count
// dlqDepthTTL (on DynamoDB a count is billed as reading the dead letters),
// while the DLQ page lists the queue fresh.
func TestOverviewDLQDepth(t *testing.T) {
	st := openStore(t)
	var ds []store.Delivery
	for i := range 1300 {
		d := store.Delivery{EventID: fmt.Sprintf("e%04d", i), ID: "d", PartnerID: fmt.Sprintf("p%d", i%7), SchemaID: fmt.Sprintf("s#e#%d", i%3),
			Status: store.DeliveryDeadLettered}
		switch {
		case i >= 1250:
			d.Status = store.DeliveryDelivered // redriven
		case i >= 1234:
			d.Status = store.DeliveryRetrying
		}
		ds = append(ds, d)
	}
	if err := st.PutDeliveries(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	cs := &countingDeadLetters{Store: st}
	q := &countedDLQ{listedDLQ: make(listedDLQ, 5)}
	s := New(Config{DLQ: q, Store: cs, Dev: true})
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
	if n := cs.counts.Load(); n != 1 {
		t.Errorf("three loads counted %d times, want once", n)
	}
	now = now.Add(dlqDepthTTL)
	load()
	if n := cs.counts.Load(); n != 2 {
		t.Errorf("a load after %s counted %d times in all, want twice", dlqDepthTTL, n)
	}
	if n := q.lists.Load(); n != 0 {
		t.Errorf("the overview listed the queue %d times", n)
	}
	w := httptest.NewRecorder()
	s.dlqPage(w, httptest.NewRequest("GET", "/console/dlq", nil), session{User: "ann", Role: RoleAdmin})
	if n := q.lists.Load(); n != 1 {
		t.Errorf("the DLQ page did not list the queue (%d lists)", n)
	}
}
