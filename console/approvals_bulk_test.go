package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/whp-dev/whp/store"
)

// TestApproveShown: a catalog that adds a partner per customer brings
// many subscriptions to review. The page shows fifty at a time (searched
// by partner or ID); approving "the ones shown" decides each at the
// settings reviewed, each in the audit log on its own, and leaves one
// changed since the review waiting.
func TestApproveShown(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for i := range 120 {
		id := fmt.Sprintf("t%03d", i)
		if _, err := st.PutSubscription(ctx, store.Subscription{ID: id + "#bench#thing.happened#1", PartnerID: id, SchemaID: "bench#thing.happened#1",
			Status: store.SubscriptionPending, ConfigHash: "h-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Config{Store: st, Dev: true, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	april := session{User: "april", Role: RoleApprover}
	w := httptest.NewRecorder()
	s.approvals(w, httptest.NewRequest("GET", "/console/approvals?q=T0", nil), april)
	body := w.Body.String()
	// t000–t099 match "T0" (any case): fifty shown, fifty more.
	if w.Code != 200 || !strings.Contains(body, "50 shown; 50 more wait") || !strings.Contains(body, "Approve the 50 shown") ||
		strings.Count(body, `name="sub"`) != 50 || strings.Contains(body, `value="t050#`) {
		t.Fatalf("page: %d\n%s", w.Code, body)
	}
	// What the form carries: the fifty shown with their hashes — one of
	// them changed (its hash) since the page was read.
	form := url.Values{"reason": {"tenants onboarded"}, "q": {"T0"}}
	for i := range 50 {
		id := fmt.Sprintf("t%03d", i)
		form.Add("sub", id+"#bench#thing.happened#1")
		form.Add("config_hash", "h-"+id)
	}
	changed, err := st.GetSubscription(ctx, "t007#bench#thing.happened#1")
	if err != nil {
		t.Fatal(err)
	}
	changed.ConfigHash = "h-new"
	if _, err := st.PutSubscription(ctx, changed); err != nil {
		t.Fatal(err)
	}
	post := func(f url.Values) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/console/approvals/approve-shown", strings.NewReader(f.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		s.approveShown(w, r, april)
		return w
	}
	w = post(form)
	if loc := w.Header().Get("Location"); w.Code != 303 || !strings.Contains(loc, url.QueryEscape("49 approved; 1 changed")) {
		t.Fatalf("approve shown: %d %s\n%s", w.Code, loc, w.Body.String())
	}
	subs, err := st.ListSubscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	approved := 0
	for _, sub := range subs {
		if sub.Status == store.SubscriptionApproved {
			approved++
			if sub.DecidedBy != "april" || sub.Reason != "tenants onboarded" {
				t.Errorf("%s decided by %q for %q", sub.ID, sub.DecidedBy, sub.Reason)
			}
		}
	}
	log, err := st.Decisions(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if t7, _ := st.GetSubscription(ctx, changed.ID); approved != 49 || len(log) != 49 || t7.Status != store.SubscriptionPending {
		t.Errorf("%d approved, %d decisions logged, t007 %s", approved, len(log), t7.Status)
	}
	// Refused: no reason; more subscriptions than hashes; more than a page.
	bad := url.Values{"sub": {"t060#bench#thing.happened#1"}, "config_hash": {"h-t060"}}
	if w := post(bad); w.Code != 400 || !strings.Contains(w.Body.String(), "Give a reason") {
		t.Errorf("no reason: %d", w.Code)
	}
	bad.Set("reason", "x")
	bad.Add("sub", "t061#bench#thing.happened#1")
	if w := post(bad); w.Code != 400 || !strings.Contains(w.Body.String(), "names 2 subscriptions and 1 reviewed settings") {
		t.Errorf("a subscription without its hash: %d", w.Code)
	}
	many := url.Values{"reason": {"x"}}
	for i := range 51 {
		many.Add("sub", fmt.Sprintf("t%03d#bench#thing.happened#1", i))
		many.Add("config_hash", "h")
	}
	if w := post(many); w.Code != 400 {
		t.Errorf("51 at once: %d", w.Code)
	}
}
