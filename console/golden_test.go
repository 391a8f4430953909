package console

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/a-h/templ"
	"github.com/google/go-cmp/cmp"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/runtime/jobs"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func fptr(v float64) *float64 { return &v }

var admin = page{User: "ann", Role: RoleAdmin, CSRF: "tok", Active: "events"}

var delivered = store.Delivery{EventID: "ev-1", ID: "d-1", SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme",
	SchemaID: "orders#order.created#1", Status: store.DeliveryDelivered, CreatedAt: t0, UpdatedAt: t0.Add(2 * time.Second),
	Attempts: []store.Attempt{
		{N: 1, At: t0, URL: "https://acme.example/hooks", StatusCode: 503, Latency: store.Duration(12 * time.Millisecond), ResponseExcerpt: "busy",
			RequestHeaders: map[string]string{"webhook-id": "d-1", "authorization": "[redacted]"}},
		{N: 2, At: t0.Add(2 * time.Second), URL: "https://acme.example/hooks", StatusCode: 204, Latency: store.Duration(8 * time.Millisecond)},
	}}

// pages are the components under golden test, with fixed models.
func pages() map[string]templ.Component {
	series := []telemetry.Point{{At: t0, Accepted: 10, Delivered: 9, P95MS: fptr(4)}, {At: t0.Add(time.Minute), Accepted: 20, Delivered: 20, Failed: 1},
		{At: t0.Add(2 * time.Minute), Accepted: 5, Delivered: 6, P95MS: fptr(8)}}
	rep := telemetry.Report{Window: "1h0m0s", Validated: 35, ValidationSuccess: fptr(100), ValidationTarget: 99, Finished: 36,
		DeliverySuccess: fptr(97.22), DeliveryTarget: 99.5, P95EndToEndMS: fptr(7.5), P95TargetMS: 1000, Breaches: []string{"delivery_success"}}
	status := reconciler.Status{LastAppliedRevision: "main@sha1:abc", LastAttemptedRevision: "main@sha1:def", LastAppliedAt: t0,
		Conditions: []reconciler.Condition{{Type: "Ready", Status: "False", Reason: "ValidationFailed", Message: "revision def is invalid", LastTransitionTime: t0}},
		Problems:   []string{"catalog/x.cue:1:1: unknown field"}}
	pending := store.Subscription{ID: "acme#orders#order.created#1", Name: "acme.created", PartnerID: "acme", SchemaID: "orders#order.created#1",
		URL: "https://acme.example/hooks", AuthKind: "oauth2", Revision: "main@sha1:abc", ConfigHash: "h1", Status: store.SubscriptionPending,
		AllowSensitive: true, Filter: json.RawMessage(`{"all":[{"path":"data.amount","gt":10}]}`)}
	return map[string]templ.Component{
		"login":    loginPage("/console/events", "Unknown user or wrong password.", true, true),
		"error":    errorPage(admin, 403, "your role does not allow this page"),
		"overview": overviewPage(page{User: "ann", Role: RoleAdmin, CSRF: "tok", Active: "overview"}, overviewModel{Window: "1h", SLO: &rep, Series: series, Now: map[string]int{store.DeliveryDeadLettered: 3, store.DeliveryRetrying: 12, store.DeliveryHeld: 4}, Breakers: 2, Open: []breaker.Snapshot{{Partner: "acme", State: breaker.Open, OpenedAt: t0, Reason: "10 failures in a row", ProbeAt: t0.Add(30 * time.Second)}}, Reconcile: &status}),
		"events": eventsPage(admin, eventsModel{Form: searchForm{Partner: "acme", Status: "delivered"}, Partners: []string{"acme", "demo"},
			Schemas: []string{"orders#order.created#1"}, Statuses: store.DeliveryStatuses, Deliveries: []store.Delivery{delivered}, Next: "c2", Searched: true}),
		"event": eventPage(admin, eventModel{Event: store.Event{ID: "ev-1", SchemaID: "orders#order.created#1", Key: "ord_1", IdempotencyKey: "k-1", AcceptedAt: t0, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			Routing: []store.Route{{SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme", Matched: true}, {SubscriptionID: "beta#orders#order.created#1", Reason: "the subscription is Pending"}}},
			Deliveries: []store.Delivery{delivered}, CanResend: true, Resent: "d-9",
			Spans: []telemetry.Span{{Name: "POST /v1/events", Start: t0, DurationMS: 1.5}, {Name: "POST", Start: t0.Add(time.Millisecond), DurationMS: 8, Status: "error: 503 Service Unavailable"}}}),
		"approvals": approvalsPage(page{User: "april", Role: RoleApprover, CSRF: "tok", Active: "approvals"}, approvalsModel{Pending: []store.Subscription{pending}, CanDecide: true,
			Changes: map[string][]string{pending.ID: {"URL: https://old.acme.example/hooks → https://acme.example/hooks", "auth: none → oauth2"}},
			Log:     []store.Decision{{SubscriptionID: "demo#orders#order.created#1", PartnerID: "demo", Status: "Approved", By: "whp dev", Reason: "dev", At: t0}}}),
		"dlq": dlqPage(page{User: "ann", Role: RoleAdmin, CSRF: "tok", Active: "dlq"}, dlqModel{CanRedrive: true, Total: 3, Exact: true, ByPartner: []dlq.PartnerCount{{PartnerID: "acme", Count: 3}}, Subscriptions: []string{"acme#orders#order.created#1"},
			Entries: []dlq.Entry{{DeliveryID: "d-2", EventID: "ev-2", SubscriptionID: "acme#orders#order.created#1", PartnerID: "acme", Reason: "final failure: HTTP 400", Attempts: 1, LastStatusCode: 400, FailedAt: t0, Status: "dead_lettered"}}}),
		"partners": partnersPage(page{User: "ann", Role: RoleAdmin, CSRF: "tok", Active: "partners"}, partnersView{Query: "ac", Sort: "attention", Page: 2, Pages: 3, Total: 250, First: 101, Last: 101,
			Rows: []partnerRow{{ID: "acme", Subscriptions: []store.Subscription{pending}, Breaker: "open", Delivered: 41, Failed: 20,
				Now: map[string]int{store.DeliveryRetrying: 12, store.DeliveryDeadLettered: 3}}}}),
		"partner": partnerPage(page{User: "ann", Role: RoleAdmin, CSRF: "tok", Active: "partners"}, partnerModel{
			Row: partnerRow{ID: "acme", Breaker: "closed", Delivered: 41, Failed: 2, Now: map[string]int{store.DeliveryRetrying: 1},
				Subscriptions: []store.Subscription{{ID: pending.ID, Name: pending.Name, PartnerID: "acme", SchemaID: pending.SchemaID, Status: store.SubscriptionApproved, URL: pending.URL, MaxInFlight: 8, RateLimitPerSecond: 50}}},
			Failures: []store.Delivery{delivered}, Recent: []store.Delivery{delivered}, InFlight: &telemetry.PartnerInFlight{Partner: "acme", InFlight: 3, Limit: 8}}),
		"redrive": redriveProgress(jobs.Job[dlq.Progress]{ID: "j1", State: "running", Progress: dlq.Progress{Records: 10, Scanned: 6, Total: 4, Done: 1, Redriven: 1}}),
		"portal": portalPage(page{User: "pat", Role: PartnerRole("acme"), CSRF: "tok", Active: "portal", Partner: "acme"}, portalModel{Partner: "acme",
			Subscriptions: []store.Subscription{pending}, Deliveries: []store.Delivery{delivered}, Status: "delivered", Statuses: store.DeliveryStatuses, Next: "c2"}),
	}
}

// TestGolden renders every page from a fixed model and compares it with
// testdata/*.html (go test ./console -run TestGolden -update rewrites
// them). It also holds every page to the CSP: no inline script, no event
// handler attributes, no style attributes.
func TestGolden(t *testing.T) {
	script := regexp.MustCompile(`<script([^>]*)>(.*?)</script>`)
	handler := regexp.MustCompile(`\son[a-z]+=`)
	for name, c := range pages() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := c.Render(context.Background(), &buf); err != nil {
				t.Fatal(err)
			}
			for _, m := range script.FindAllSubmatch(buf.Bytes(), -1) {
				if !bytes.Contains(m[1], []byte(" src=")) || len(m[2]) > 0 {
					t.Errorf("%s has an inline script: %s", name, m[0])
				}
			}
			if handler.Match(buf.Bytes()) || bytes.Contains(buf.Bytes(), []byte(" style=")) {
				t.Errorf("%s has an event handler attribute or a style attribute", name)
			}
			// One tag per line, so a diff reads.
			got := bytes.ReplaceAll(buf.Bytes(), []byte("><"), []byte(">\n<"))
			path := filepath.Join("testdata", name+".html")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs from %s (-want +got):\n%s", name, path, diff)
			}
		})
	}
}
