package dev

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/whp-dev/whp/console"
	"github.com/whp-dev/whp/store"
)

// chromium finds the browser .ci/run installs (Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: install it (apt-get install chromium; .ci/run does)")
	return ""
}

// TestConsoleInBrowser drives the console in headless Chromium as an
// operator would: sign in, approve a pending subscription, post an event
// and watch its delivery appear, and redrive a dead letter while htmx
// follows the redrive's progress — under the console's CSP, so a blocked
// script or style would show. Screenshots of each step go to the test's
// artifact directory (go test -artifacts keeps them).
func TestConsoleInBrowser(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	beta.answer(http.StatusBadRequest) // beta's first delivery fails for good: a dead letter
	writeConsoleUsers(t, data, map[string]string{"ann": console.RoleAdmin})
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// What the browser reports: a script or style the CSP blocked, a
	// failed request, an exception.
	var mu sync.Mutex
	var browserErrors []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				browserErrors = append(browserErrors, ev.Entry.Text+" "+ev.Entry.URL)
			}
		case *cdpruntime.EventExceptionThrown:
			browserErrors = append(browserErrors, ev.ExceptionDetails.Text)
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, enable := range []cdp.Command[cdp.Empty, cdp.Empty]{cdplog.Enable, cdpruntime.Enable} {
		if _, err := chromedp.Call(ctx, enable, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	shots := t.ArtifactDir()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	// waitText reloads path until the element sel shows want.
	waitText := func(path, sel, want string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			do("open "+path, chromedp.Navigate(p.URL+path))
			if s := text(sel); strings.Contains(s, want) {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("%s never showed %q in %s; last: %q", path, want, sel, s)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Sign in: the console sends an anonymous visitor to the login page.
	do("sign in",
		chromedp.Navigate(p.URL+"/console/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=user]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=user]`), "ann"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "pw-ann"),
		shot("1-login"),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`#slo`)),
		shot("2-overview"))
	if h := text("h1"); h != "Overview" {
		t.Fatalf("after sign-in: %q", h)
	}

	// Approve gamma's pending subscription, with a reason.
	do("approve",
		chromedp.Navigate(p.URL+"/console/approvals"),
		chromedp.WaitVisible(chromedp.CSS(`#pending-gamma\.created input[name=reason]`)),
		chromedp.SendKeys(chromedp.CSS(`#pending-gamma\.created input[name=reason]`), "contract signed"),
		chromedp.Click(chromedp.CSS(`#pending-gamma\.created button:not(.danger)`)),
		chromedp.WaitVisible(chromedp.CSS(`p.ok`)),
		shot("3-approved"))
	if s, err := p.Store().GetSubscription(ctx, "gamma#shop#order.created#1"); err != nil || s.Status != store.SubscriptionApproved || s.DecidedBy != "ann" {
		t.Fatalf("gamma after approval: %+v, %v", s, err)
	}
	if log := text("table.audit"); !strings.Contains(log, "contract signed") || !strings.Contains(log, "ann") {
		t.Errorf("the audit log does not show the decision: %q", log)
	}

	// Post an event and watch its deliveries appear.
	id := accept(t, p, orderEvent(7))
	// Its page exists once the processor has recorded it (a 404 before
	// would be a browser error, rightly).
	eventually(t, "the event to be recorded", func() bool { _, err := p.Store().GetEvent(ctx, id); return err == nil })
	// Each delivery's status is written as it ends, so wait for all three.
	waitText("/console/events/"+id, "main", "gamma · delivered")
	waitText("/console/events/"+id, "main", "alpha · delivered")
	waitText("/console/events/"+id, "main", "HTTP 400")
	do("event page", shot("4-event"))
	if page := text("main"); !strings.Contains(page, "alpha · delivered") || !strings.Contains(page, "HTTP 400") ||
		!strings.Contains(page, "final failure: HTTP 400") {
		t.Errorf("event page (beta's delivery saying why it is dead-lettered): %q", page)
	}

	// beta answered 400: a dead letter. An operator finds it with the
	// events search's form — beta's dead-lettered deliveries, from the
	// status index — and on beta's page among its recent failures.
	do("search beta's dead letters",
		chromedp.Navigate(p.URL+"/console/events"),
		chromedp.WaitVisible(chromedp.CSS(`form.search select[name=status]`)),
		chromedp.SetValue(chromedp.CSS(`form.search select[name=partner]`), "beta"),
		chromedp.SetValue(chromedp.CSS(`form.search select[name=status]`), store.DeliveryDeadLettered),
		chromedp.Submit(chromedp.CSS(`form.search`)),
		chromedp.WaitVisible(chromedp.CSS(`table.deliveries`)),
		shot("5-dead-lettered"))
	if found := text("table.deliveries"); !strings.Contains(found, id) || strings.Contains(found, "alpha") {
		t.Errorf("beta's dead-lettered deliveries: %q", found)
	}
	waitText("/console/partners/beta", "main", id)

	// Redrive it and watch htmx follow the redrive to its end. The DLQ
	// page, from the index of dead letters, counts them by partner.
	waitText("/console/dlq", "table.dlq", id)
	do("dead letters", shot("6-dead-letters"))
	if byPartner, row := text("table.by-partner"), text("table.dlq"); !strings.Contains(byPartner, "beta\t1") && !strings.Contains(byPartner, "beta 1") ||
		!strings.Contains(row, "final failure: HTTP 400") {
		t.Errorf("the DLQ page: by partner %q, rows %q", byPartner, row)
	}
	do("redrive",
		chromedp.Click(chromedp.CSS(`input[name=delivery_id]`)),
		chromedp.Click(chromedp.CSS(`form[action="/console/dlq/redrive"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#redrive`)))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#redrive .state") !== null && document.querySelector("#redrive .state").textContent == "done"`,
		chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("the redrive's progress never showed done: %v", err)
	}
	do("redriven", shot("7-redriven"))
	if counts := text("#redrive .counts"); !strings.Contains(counts, "redriven 1") {
		t.Errorf("redrive progress: %q", counts)
	}
	eventually(t, "beta to get the redriven delivery", func() bool { n, _, _ := beta.counts(); return n == 1 })
	mu.Lock()
	defer mu.Unlock()
	for _, e := range browserErrors {
		t.Errorf("the browser reported: %s", e)
	}
	t.Logf("screenshots in %s", shots)
}
