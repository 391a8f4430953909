package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// TestPartnerList: with a partner per customer the list is searched and
// paged — a hundred at a time, the search kept across pages — with each
// partner's counters read in one scan; a bad page number is a 400.
func TestPartnerList(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range 250 {
		id := fmt.Sprintf("p%03d", i)
		if _, err := st.PutSubscription(ctx, store.Subscription{ID: id + "#bench#thing.happened#1", PartnerID: id, SchemaID: "bench#thing.happened#1", Status: store.SubscriptionApproved}); err != nil {
			t.Fatal(err)
		}
		if err := st.AddCounts(ctx, id+"#bench#thing.happened#1", store.Counts{Delivered: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Config{Store: st, Dev: true})
	get := func(target string) (int, string) {
		w := httptest.NewRecorder()
		s.partners(w, httptest.NewRequest("GET", target, nil), session{User: "ann", Role: RoleAdmin})
		return w.Code, w.Body.String()
	}
	code, body := get("/console/partners")
	if code != 200 || !strings.Contains(body, "Partners 1–100 of 250") || !strings.Contains(body, ">p099<") || strings.Contains(body, ">p100<") ||
		!strings.Contains(body, `href="/console/partners?page=2"`) {
		t.Errorf("first page: %d\n%s", code, body)
	}
	code, body = get("/console/partners?page=3")
	if code != 200 || !strings.Contains(body, "Partners 201–250 of 250") || !strings.Contains(body, ">p249<") || strings.Contains(body, "Next →") {
		t.Errorf("last page: %d", code)
	}
	// 133 partners have a 1 in their ID; the second page keeps the
	// search, and its links too.
	code, body = get("/console/partners?q=1&page=2")
	if code != 200 || !strings.Contains(body, "Partners 101–133 of 133") || !strings.Contains(body, `href="/console/partners?q=1"`) ||
		!strings.Contains(body, ">p241<") || strings.Contains(body, ">p180<") || strings.Contains(body, ">p200<") {
		t.Errorf("search, second page: %d\n%s", code, body)
	}
	if !strings.Contains(body, "<td>199</td>") { // p199's counter, read in the scan
		t.Errorf("p199's delivered counter missing")
	}
	// Any case.
	if _, body = get("/console/partners?q=P24"); !strings.Contains(body, "Partners 1–10 of 10") {
		t.Errorf("search in another case")
	}
	if code, body = get("/console/partners?q=nobody"); code != 200 || !strings.Contains(body, "No partner matches.") {
		t.Errorf("no match: %d", code)
	}
	if code, body = get("/console/partners?page=9"); code != 200 || !strings.Contains(body, "Page 9 is past the last (3).") {
		t.Errorf("past the last page: %d", code)
	}
	// The events search asks for the partner's id instead of listing 250.
	w := httptest.NewRecorder()
	s.events(w, httptest.NewRequest("GET", "/console/events?partner=p007", nil), session{User: "ann", Role: RoleAdmin})
	if b := w.Body.String(); w.Code != 200 || !strings.Contains(b, `<input name="partner" value="p007"`) || strings.Contains(b, `<select name="partner"`) {
		t.Errorf("events search with 250 partners: %d", w.Code)
	}
	for _, bad := range []string{"0", "-1", "two"} {
		if code, body = get("/console/partners?page=" + bad); code != 400 || !strings.Contains(body, "page: a page number") {
			t.Errorf("page=%s: %d", bad, code)
		}
	}
}
