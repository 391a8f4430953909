package console

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// listedDLQ answers List with its entries (what runtime/dlq's Queue
// returns, most recent first; the Queue itself is tested in runtime/dlq
// and, end to end, in runtime/dev), and Waiting with none.
type listedDLQ []dlq.Entry

func (l listedDLQ) List(_ context.Context, _ dlq.Filter, limit int) ([]dlq.Entry, int, error) {
	return l[:min(len(l), limit)], len(l), nil
}
func (l listedDLQ) Waiting(context.Context, dlq.Filter, int) (dlq.Waiting, error) {
	return dlq.Waiting{Exact: true}, nil
}
func (l listedDLQ) Redrive(context.Context, dlq.Filter, func(dlq.Progress)) (dlq.Progress, error) {
	return dlq.Progress{}, nil
}

// TestDLQPageRows: a queue of thousands (an outage's) shows its count,
// every partner's, its newest dlqRows, and a redrive button for each
// subscription of them — not a page of megabytes; filtered by a partner,
// that partner's newest and a button to redrive all of them. The rows
// come from the store's index of dead letters (dlq.Queue.Waiting, whose
// queue of records is not read: it has no client here); with "include
// redriven", from the queue's records (List).
func TestDLQPageRows(t *testing.T) {
	st := openStore(t)
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var ds []store.Delivery
	for i := range 2500 {
		p := fmt.Sprintf("p%d", i%3)
		ds = append(ds, store.Delivery{EventID: fmt.Sprintf("ev-%04d", i), ID: fmt.Sprintf("d-%04d", i), PartnerID: p, SchemaID: "orders#order.created#1",
			SubscriptionID: p + "#orders#order.created#1", Status: store.DeliveryDeadLettered, Reason: "attempts exhausted after 8 (last: HTTP 503)",
			CreatedAt: t0.Add(-time.Duration(i) * time.Second), UpdatedAt: t0.Add(time.Hour - time.Duration(i)*time.Second),
			Attempts: []store.Attempt{{N: 8, StatusCode: 503}}})
	}
	ds[1].Status = store.DeliveryPending // redriven: not waiting
	if err := st.PutDeliveries(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	s := New(Config{DLQ: dlq.New(nil, st), Dev: true})
	load := func(target string) string {
		t.Helper()
		w := httptest.NewRecorder()
		s.dlqPage(w, httptest.NewRequest("GET", target, nil), session{User: "ann", Role: RoleAdmin})
		if w.Code != 200 {
			t.Fatalf("%s: %d\n%.2000s", target, w.Code, w.Body)
		}
		if n := w.Body.Len(); n > 200_000 {
			t.Errorf("%s: the page is %d bytes", target, n)
		}
		return w.Body.String()
	}
	body := load("/console/dlq")
	if !strings.Contains(body, "2499 dead letters") || !strings.Contains(body, fmt.Sprintf("The %d newest are shown", dlqRows)) {
		t.Fatalf("%.3000s", body)
	}
	if rows := strings.Count(body, `name="delivery_id"`); rows != dlqRows {
		t.Errorf("%d rows, want %d", rows, dlqRows)
	}
	if !strings.Contains(body, `/d-0000"`) || strings.Contains(body, `/d-0001"`) || strings.Contains(body, fmt.Sprintf(`/d-%04d"`, dlqRows+1)) {
		t.Errorf("not the newest %d waiting", dlqRows)
	}
	for i, n := range []int{834, 832, 833} { // p1 lost its redriven one
		if !strings.Contains(body, fmt.Sprintf(`<a href="/console/dlq?partner=p%d">p%d</a></td><td>%d</td>`, i, i, n)) {
			t.Errorf("no count of %d for partner p%d", n, i)
		}
		if !strings.Contains(body, fmt.Sprintf("Redrive all of p%d#orders#order.created#1", i)) {
			t.Errorf("no redrive of subscription p%d's", i)
		}
	}
	if !strings.Contains(body, "attempts exhausted after 8") || !strings.Contains(body, "HTTP 503") {
		t.Error("the rows do not say why")
	}
	body = load("/console/dlq?partner=p2")
	if !strings.Contains(body, "833 dead letters") || !strings.Contains(body, "Redrive all of partner p2") ||
		strings.Count(body, `name="delivery_id"`) != dlqRows || !strings.Contains(body, `/d-0002"`) || strings.Contains(body, `/d-0003"`) {
		t.Errorf("filtered by partner:\n%.3000s", body)
	}
	body = load("/console/dlq?subscription=p0%23orders%23order.created%231")
	if !strings.Contains(body, "834 dead letters") || strings.Count(body, `name="delivery_id"`) != dlqRows || strings.Contains(body, `/d-0002"`) {
		t.Errorf("filtered by subscription:\n%.3000s", body)
	}
	s.cfg.DLQ = listedDLQ{{DeliveryID: "d-archived", SubscriptionID: "p0#orders#order.created#1", Status: store.DeliveryDelivered}}
	if body := load("/console/dlq?all=true"); !strings.Contains(body, `value="d-archived"`) || !strings.Contains(body, "<p>1 dead letter</p>") {
		t.Errorf("include redriven: not the queue's records\n%.3000s", body)
	}
}

// countedDLQ counts its lists.
type countedDLQ struct {
	listedDLQ
	lists atomic.Int32
}

func (c *countedDLQ) List(ctx context.Context, f dlq.Filter, limit int) ([]dlq.Entry, int, error) {
	c.lists.Add(1)
	return c.listedDLQ.List(ctx, f, limit)
}

func (c *countedDLQ) Waiting(ctx context.Context, f dlq.Filter, limit int) (dlq.Waiting, error) {
	c.lists.Add(1)
	return c.listedDLQ.Waiting(ctx, f, limit)
}

// countingCounts is the embedded store, counting its counts by status.
type countingCounts struct {
	*embedded.Store
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingCounts) CountDeliveries(ctx context.Context, status string) (map[string]int, error) {
	c.mu.Lock()
	c.counts[status]++
	c.mu.Unlock()
	return c.Store.CountDeliveries(ctx, status)
}

// TestOverviewCounts: the overview counts the dead letters waiting, and
// the deliveries retrying and held, from the store's status index —
// without listing the queue — and keeps each count countsTTL (on DynamoDB
// a count is billed as reading what it counts); the Partners page shares
// the counts, by partner, and orders by them; the DLQ page reads afresh.
func TestOverviewCounts(t *testing.T) {
	st := openStore(t)
	var ds []store.Delivery
	for i := range 1300 {
		d := store.Delivery{EventID: fmt.Sprintf("e%04d", i), ID: "d", PartnerID: fmt.Sprintf("p%d", i%7), SchemaID: fmt.Sprintf("s#e#%d", i%3),
			SubscriptionID: fmt.Sprintf("p%d#s#e#%d", i%7, i%3), Status: store.DeliveryDeadLettered}
		switch {
		case i >= 1250:
			d.Status = store.DeliveryDelivered // redriven
		case i >= 1240:
			d.Status = store.DeliveryHeld
		case i >= 1234:
			d.Status = store.DeliveryRetrying
		}
		ds = append(ds, d)
	}
	if err := st.PutDeliveries(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	for p := range 7 {
		if _, err := st.PutSubscription(context.Background(), store.Subscription{ID: fmt.Sprintf("p%d#s#e#0", p), PartnerID: fmt.Sprintf("p%d", p),
			SchemaID: "s#e#0", Status: store.SubscriptionApproved}); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingCounts{Store: st, counts: map[string]int{}}
	q := &countedDLQ{listedDLQ: make(listedDLQ, 5)}
	s := New(Config{DLQ: q, Store: cs, Dev: true})
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s.counts.now = func() time.Time { return now }
	load := func(target string, h func(http.ResponseWriter, *http.Request, session)) (int, string) {
		t.Helper()
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest("GET", target, nil), session{User: "ann", Role: RoleAdmin})
		return w.Code, w.Body.String()
	}
	for range 3 {
		code, body := load("/console/", s.overview)
		if code != 200 || !strings.Contains(body, `<a href="/console/dlq">1234</a>`) || !strings.Contains(body, `<a href="/console/partners?sort=attention">6</a>`) ||
			!strings.Contains(body, "10 held") {
			t.Fatalf("%d: no counts of 1234 dead letters, 6 retrying, 10 held in\n%.3000s", code, body)
		}
	}
	code, body := load("/console/partners?sort=attention", s.partners)
	want := map[int][3]int{} // by partner: retrying, held, dead-lettered
	for _, d := range ds {
		c := want[int(d.PartnerID[1]-'0')]
		switch d.Status {
		case store.DeliveryRetrying:
			c[0]++
		case store.DeliveryHeld:
			c[1]++
		case store.DeliveryDeadLettered:
			c[2]++
		}
		want[int(d.PartnerID[1]-'0')] = c
	}
	for p, c := range want {
		for i, link := range []string{"/console/events?partner=p%d&amp;status=retrying", "/console/events?partner=p%d&amp;status=held", "/console/dlq?partner=p%d"} {
			cell := fmt.Sprintf(`<a href="`+link+`">%d</a>`, p, c[i])
			if c[i] == 0 {
				continue
			}
			if code != 200 || !strings.Contains(body, cell) {
				t.Errorf("partner p%d: no %s", p, cell)
			}
		}
	}
	// Needing attention first: the partners in order of their sums.
	order := slices.Sorted(maps.Keys(want))
	slices.SortStableFunc(order, func(a, b int) int {
		return (want[b][0] + want[b][1] + want[b][2]) - (want[a][0] + want[a][1] + want[a][2])
	})
	at := -1
	for _, p := range order {
		i := strings.Index(body, fmt.Sprintf(">p%d</a>", p))
		if i < at {
			t.Errorf("p%d out of order (by attention: %v)", p, order)
		}
		at = i
	}
	if want := map[string]int{store.DeliveryDeadLettered: 1, store.DeliveryRetrying: 1, store.DeliveryHeld: 1}; !maps.Equal(cs.counts, want) {
		t.Errorf("three overviews and a partner list counted %v, want each status once", cs.counts)
	}
	now = now.Add(countsTTL)
	load("/console/", s.overview)
	if n := cs.counts[store.DeliveryDeadLettered]; n != 2 {
		t.Errorf("a load after %s counted the dead letters %d times in all, want twice", countsTTL, n)
	}
	if n := q.lists.Load(); n != 0 {
		t.Errorf("the overview and partner list read the queue %d times", n)
	}
	load("/console/dlq", s.dlqPage)
	if n := q.lists.Load(); n != 1 {
		t.Errorf("the DLQ page did not read the queue (%d reads)", n)
	}
	if code, body := load("/console/partners?sort=loudest", s.partners); code != 400 || !strings.Contains(body, "sort: attention") {
		t.Errorf("an unknown order: %d", code)
	}
}

// redrivenDLQ records the filters it is asked to redrive.
type redrivenDLQ struct {
	listedDLQ
	filters chan dlq.Filter
}

func (r redrivenDLQ) Redrive(_ context.Context, f dlq.Filter, _ func(dlq.Progress)) (dlq.Progress, error) {
	r.filters <- f
	return dlq.Progress{}, nil
}

// TestRedriveForm: the DLQ page's forms redrive what they name — the
// entries selected, a subscription's, a partner's — and a form naming
// none is a 400 that says what to choose.
func TestRedriveForm(t *testing.T) {
	q := redrivenDLQ{filters: make(chan dlq.Filter, 1)}
	s := New(Config{DLQ: q, Dev: true})
	for _, c := range []struct {
		form string
		want dlq.Filter
	}{
		{"partner=p2", dlq.Filter{PartnerID: "p2"}},
		{"subscription=p0%23orders%23order.created%231", dlq.Filter{SubscriptionID: "p0#orders#order.created#1"}},
		{"delivery_id=d-1&delivery_id=d-2", dlq.Filter{DeliveryIDs: []string{"d-1", "d-2"}}},
	} {
		r := httptest.NewRequest("POST", "/console/dlq/redrive", strings.NewReader(c.form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		s.redrive(w, r, session{User: "ann", Role: RoleAdmin})
		if w.Code != 303 {
			t.Fatalf("%s: %d %s", c.form, w.Code, w.Body)
		}
		select {
		case f := <-q.filters:
			if !slices.Equal(f.DeliveryIDs, c.want.DeliveryIDs) || f.PartnerID != c.want.PartnerID || f.SubscriptionID != c.want.SubscriptionID {
				t.Errorf("%s: redrove %+v, want %+v", c.form, f, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no redrive", c.form)
		}
	}
	r := httptest.NewRequest("POST", "/console/dlq/redrive", strings.NewReader(""))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.redrive(w, r, session{User: "ann", Role: RoleAdmin})
	if w.Code != 400 || !strings.Contains(w.Body.String(), "a subscription or partner") {
		t.Errorf("an empty form: %d %.500s", w.Code, w.Body)
	}
}
