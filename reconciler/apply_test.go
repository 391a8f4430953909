package reconciler

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

var update = flag.Bool("update", false, "rewrite golden files")

func cluster(t testing.TB) *kgo.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func load(t testing.TB, src string) *catalog.Catalog {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newApplier(t testing.TB) (*Applier, store.Store) {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Applier{Store: st, Ingress: cluster(t), Egress: cluster(t), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}, st
}

const base = `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {id: string}}
schemas: shop: "order.paid": "1": {owner: "team-shop", payload: {id: string}}
partners: acme: {name: "Acme", url: "https://acme.example/hook", signing_secret: "acme/signing", contact: "ops@acme.example"}
subscriptions: "acme.created": {partner: "acme", domain: "shop", event: "order.created", version: "1"}
subscriptions: "acme.paid": {partner: "acme", domain: "shop", event: "order.paid", version: "1"}
`

func TestApply(t *testing.T) {
	ctx := context.Background()
	a, st := newApplier(t)

	res, err := a.Apply(ctx, load(t, base), "r1")
	if err != nil {
		t.Fatal(err)
	}
	var created []string
	for _, c := range res.Plan.Changes {
		if c.Kind == KindTopic && c.Action == Create {
			created = append(created, c.ID)
		}
	}
	want := []string{"wh.dlq.order.created", "wh.dlq.order.paid", "wh.egress.acme.order.created", "wh.egress.acme.order.paid",
		"wh.ingress.shop.order.created", "wh.ingress.shop.order.paid", "wh.retry.order.created", "wh.retry.order.paid"}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("topics created (-want +got):\n%s", diff)
	}
	act, err := a.ReadActual(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := act.Topics["wh.egress.acme.order.created"]; got.Cluster != ClusterEgress || got.Partitions != 3 || got.Configs["retention.ms"] != "604800000" {
		t.Errorf("egress topic = %+v", got)
	}
	if got := act.Topics["wh.ingress.shop.order.created"]; got.Cluster != ClusterIngress {
		t.Errorf("ingress topic = %+v", got)
	}

	// The same revision again: an empty plan, nothing written.
	again, err := a.Apply(ctx, load(t, base), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Plan.Empty() || again.Applied != 0 {
		var b bytes.Buffer
		again.Plan.Render(&b)
		t.Errorf("second apply of the same catalog is not a no-op:\n%s", b.String())
	}

	// An approval survives reconciles of an unchanged subscription.
	if _, err := Decide(ctx, st, Decision{SubscriptionID: "acme#shop#order.created#1", Status: store.SubscriptionApproved, By: "alice", Reason: "ok", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, load(t, base), "r2"); err != nil {
		t.Fatal(err)
	}
	if s, _ := st.GetSubscription(ctx, "acme#shop#order.created#1"); s.Status != store.SubscriptionApproved || s.DecidedBy != "alice" {
		t.Errorf("after reconcile: %s by %q, want Approved by alice", s.Status, s.DecidedBy)
	}

	// A new URL sends it back to Pending; removing a subscription cancels
	// it and removing a schema makes it INACTIVE.
	changed := strings.Replace(base, "https://acme.example/hook", "https://acme.example/v2/hook", 1)
	changed = strings.Replace(changed, `schemas: shop: "order.paid": "1": {owner: "team-shop", payload: {id: string}}`+"\n", "", 1)
	changed = strings.Replace(changed, `subscriptions: "acme.paid": {partner: "acme", domain: "shop", event: "order.paid", version: "1"}`+"\n", "", 1)
	if _, err := a.Apply(ctx, load(t, changed), "r3"); err != nil {
		t.Fatal(err)
	}
	s, _ := st.GetSubscription(ctx, "acme#shop#order.created#1")
	if s.Status != store.SubscriptionPending || s.URL != "https://acme.example/v2/hook" || s.Revision != "r3" {
		t.Errorf("after URL change: %s %s %s, want Pending with the new URL at r3", s.Status, s.URL, s.Revision)
	}
	if s, _ := st.GetSubscription(ctx, "acme#shop#order.paid#1"); s.Status != store.SubscriptionCancelled {
		t.Errorf("removed subscription is %s, want Cancelled", s.Status)
	}
	if sc, _ := st.GetSchema(ctx, "shop#order.paid#1"); sc.Status != catalog.StatusInactive {
		t.Errorf("removed schema is %s, want INACTIVE", sc.Status)
	}
	k, err := st.GetSubscriptionKafka(ctx, "acme#shop#order.created#1")
	if err != nil || k.EgressTopic != "wh.egress.acme.order.created" || k.DLQTopic != "wh.dlq.order.created" {
		t.Errorf("subscription kafka = %+v, %v", k, err)
	}
	// Topics stay (pruning is off) and the plan says so.
	p, err := a.Plan(ctx, load(t, changed), "r3")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() || len(p.Kept) != 4 {
		t.Errorf("plan after r3 = %d changes, kept %v; want none and the 4 order.paid topics kept", len(p.Changes), p.Kept)
	}
}

// TestPlanRender applies a catalog, changes it in every way a plan shows,
// and compares the rendered plan with testdata/plan.golden.
func TestPlanRender(t *testing.T) {
	ctx := context.Background()
	a, st := newApplier(t)
	if _, err := a.Apply(ctx, load(t, base), "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := Decide(ctx, st, Decision{SubscriptionID: "acme#shop#order.created#1", Status: store.SubscriptionApproved, By: "alice", Reason: "ok", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	next := `package whp
schemas: shop: "order.created": "1": {owner: "team-orders", description: "An order was created.", topic: {partitions: 6, retention_hours: 72}, payload: {id: string}}
schemas: shop: "order.created": "2": {owner: "team-orders", topic: partitions: 6, payload: {id: string, note?: string}}
schemas: shop: "order.refunded": "1": {owner: "team-shop", payload: {id: string}}
partners: acme: {name: "Acme", url: "https://acme.example/v2/hook", signing_secret: "acme/signing", contact: "ops@acme.example", rate_limit: per_second: 10, max_in_flight: 32}
subscriptions: "acme.created": {partner: "acme", domain: "shop", event: "order.created", version: "1", mode: "ordered"}
subscriptions: "acme.refunded": {partner: "acme", domain: "shop", event: "order.refunded", version: "1", filter: {path: "data.id", prefix: "r"}}
`
	p, err := a.Plan(ctx, load(t, next), "r2")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	p.Render(&b)
	golden := "testdata/plan.golden"
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./reconciler -update)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	// What the plan shows is what apply does: afterwards the plan is empty.
	if _, err := a.Apply(ctx, load(t, next), "r2"); err != nil {
		t.Fatal(err)
	}
	after, err := a.Plan(ctx, load(t, next), "r2")
	if err != nil || !after.Empty() {
		t.Errorf("plan after applying it: %d changes, %v", len(after.Changes), err)
	}
	act, err := a.ReadActual(ctx)
	if got := act.Topics["wh.ingress.shop.order.created"]; err != nil || got.Partitions != 6 || got.Configs["retention.ms"] != "604800000" {
		t.Errorf("ingress topic after apply = %+v, %v; want 6 partitions, 7 days", got, err)
	}
}

func TestDecideRefusesCancelled(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.PutSubscription(ctx, store.Subscription{ID: "a#s#e.x#1", Status: store.SubscriptionCancelled}); err != nil {
		t.Fatal(err)
	}
	if _, err := Decide(ctx, st, Decision{SubscriptionID: "a#s#e.x#1", Status: store.SubscriptionApproved, By: "bob", Reason: "", At: time.Now()}); err == nil {
		t.Error("approving a cancelled subscription succeeded")
	}
	if _, err := Decide(ctx, st, Decision{SubscriptionID: "a#s#e.x#1", Status: "Maybe", By: "bob", Reason: "", At: time.Now()}); err == nil {
		t.Error("an unknown decision was accepted")
	}
}

// TestDriftRepair: a deleted topic, a hand-changed retention and a
// hand-edited store item are all put back by the next apply of the same
// revision; an approval is not drift.
func TestDriftRepair(t *testing.T) {
	ctx := context.Background()
	a, st := newApplier(t)
	cat := load(t, base)
	if _, err := a.Apply(ctx, cat, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := Decide(ctx, st, Decision{SubscriptionID: "acme#shop#order.paid#1", Status: store.SubscriptionApproved, By: "alice", Reason: "ok", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	eg := kadm.NewClient(a.Egress)
	if _, err := eg.DeleteTopic(ctx, "wh.egress.acme.order.created"); err != nil {
		t.Fatal(err)
	}
	week := "1000"
	if _, err := eg.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &week}}, "wh.dlq.order.paid"); err != nil {
		t.Fatal(err)
	}
	sc, _ := st.GetSchema(ctx, "shop#order.created#1")
	sc.Description = "edited by hand"
	if err := st.PutSchema(ctx, sc); err != nil {
		t.Fatal(err)
	}
	p, err := a.Plan(ctx, cat, "r1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Action{}
	for _, c := range p.Changes {
		got[c.ID] = c.Action
	}
	want := map[string]Action{"wh.egress.acme.order.created": Create, "wh.dlq.order.paid": AlterConfig, "shop#order.created#1": Update}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("drift plan (-want +got):\n%s", diff)
	}
	if _, err := a.Apply(ctx, cat, "r1"); err != nil {
		t.Fatal(err)
	}
	if after, err := a.Plan(ctx, cat, "r1"); err != nil || !after.Empty() {
		t.Errorf("drift left after repair: %+v, %v", after.Changes, err)
	}
	if s, _ := st.GetSubscription(ctx, "acme#shop#order.paid#1"); s.Status != store.SubscriptionApproved {
		t.Errorf("approval undone by drift repair: %s", s.Status)
	}
}

// TestConfigHashStable pins the approval hash of a partner without oauth2:
// changing it would send every approved subscription back to Pending.
func TestConfigHashStable(t *testing.T) {
	c := load(t, base)
	if got, want := ConfigHash(c.Partner("acme"), false), "b031b8f9c606225d035e833f5d55f308"; got != want {
		t.Errorf("ConfigHash(acme) = %s, want %s", got, want)
	}
}

// failingSubscription fails the first write of one subscription.
type failingSubscription struct {
	store.Store
	id     string
	failed atomic.Bool
}

func (f *failingSubscription) PutSubscription(ctx context.Context, s store.Subscription) (store.Subscription, error) {
	if s.ID == f.id && f.failed.CompareAndSwap(false, true) {
		return store.Subscription{}, errors.New("store refused the write")
	}
	return f.Store.PutSubscription(ctx, s)
}

// TestApplyManyConcurrently: a catalog of many partners is applied several
// changes at a time, kind after kind; a failing change fails the apply,
// naming it, with the changes before it counted, and the next apply
// plans and applies what is left — to the same state as one apply.
func TestApplyManyConcurrently(t *testing.T) {
	ctx := context.Background()
	var src strings.Builder
	src.WriteString("package whp\nschemas: shop: \"order.created\": \"1\": {owner: \"team-shop\", payload: {id: string}}\n")
	const n = 60
	for i := range n {
		fmt.Fprintf(&src, "partners: p%d: {name: \"P\", url: \"https://p%d.example/hook\", signing_secret: \"p/signing\", contact: \"x\"}\n", i, i)
		fmt.Fprintf(&src, "subscriptions: \"p%d.created\": {partner: \"p%d\", domain: \"shop\", event: \"order.created\", version: \"1\"}\n", i, i)
	}
	c := load(t, src.String())
	a, st := newApplier(t)
	a.Store = &failingSubscription{Store: st, id: "p37#shop#order.created#1"}
	res, err := a.Apply(ctx, c, "r1")
	if err == nil || !strings.Contains(err.Error(), "p37#shop#order.created#1") || !strings.Contains(err.Error(), "store refused the write") {
		t.Fatalf("apply with a failing write: %v", err)
	}
	total := len(res.Plan.Changes)
	if total != 1+n+n+3 || res.Applied < 1 || res.Applied >= total {
		t.Errorf("applied %d of %d changes", res.Applied, total)
	}
	again, err := a.Apply(ctx, c, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if again.Applied != total-res.Applied || again.Applied != len(again.Plan.Changes) {
		t.Errorf("second apply: %d of %d changes, after %d of %d", again.Applied, len(again.Plan.Changes), res.Applied, total)
	}
	if p, err := a.Plan(ctx, c, "r1"); err != nil || !p.Empty() {
		t.Errorf("after both: plan %+v, %v", p.Changes, err)
	}
	subs, err := st.SubscriptionsForSchema(ctx, "shop#order.created#1")
	if err != nil || len(subs) != n {
		t.Errorf("%d subscriptions stored, %v", len(subs), err)
	}
	for _, s := range subs { // and each its topics' row, which no plan would repair
		if k, err := st.GetSubscriptionKafka(ctx, s.ID); err != nil || k.EgressTopic == "" {
			t.Errorf("%s: topics row %+v, %v", s.ID, k, err)
		}
	}
}

// TestEgressPartitions: EgressPartitions sets each subscription's egress
// topic's partitions (not the retry or DLQ topics'); raised, the plan
// adds partitions to the existing egress topics; lowered, it leaves them
// (partitions only grow).
func TestEgressPartitions(t *testing.T) {
	ctx := context.Background()
	a, _ := newApplier(t)
	a.EgressPartitions = 1
	c := load(t, base)
	if _, err := a.Apply(ctx, c, "r1"); err != nil {
		t.Fatal(err)
	}
	act, err := a.ReadActual(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int32{"wh.egress.acme.order.created": 1, "wh.egress.acme.order.paid": 1, "wh.dlq.order.created": DefaultEgressPartitions} {
		if got := act.Topics[name].Partitions; got != want {
			t.Errorf("%s: %d partitions, want %d", name, got, want)
		}
	}
	a.EgressPartitions = 2
	p, err := a.Plan(ctx, c, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var grown []string
	for _, ch := range p.Changes {
		if ch.Action != AddPartitions {
			t.Errorf("raised: unexpected change %s %s", ch.Action, ch.ID)
		}
		grown = append(grown, ch.ID)
	}
	if want := []string{"wh.egress.acme.order.created", "wh.egress.acme.order.paid"}; !slices.Equal(grown, want) {
		t.Errorf("raised to 2: grows %v, want %v", grown, want)
	}
	if _, err := a.Apply(ctx, c, "r1"); err != nil {
		t.Fatal(err)
	}
	a.EgressPartitions = 1
	if p, err := a.Plan(ctx, c, "r1"); err != nil || !p.Empty() {
		t.Errorf("lowered again: plan %+v, %v; want none (partitions only grow)", p.Changes, err)
	}
}
