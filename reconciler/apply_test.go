package reconciler

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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

func cluster(t *testing.T) *kadm.Client {
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
	return kadm.NewClient(cl)
}

func load(t *testing.T, src string) *catalog.Catalog {
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

const base = `package whp
schemas: shop: "order.created": "1": {owner: "team-shop", payload: {id: string}}
schemas: shop: "order.paid": "1": {owner: "team-shop", payload: {id: string}}
partners: acme: {name: "Acme", url: "https://acme.example/hook", signing_secret: "acme/signing", contact: "ops@acme.example"}
subscriptions: "acme.created": {partner: "acme", domain: "shop", event: "order.created", version: "1"}
subscriptions: "acme.paid": {partner: "acme", domain: "shop", event: "order.paid", version: "1"}
`

func TestApply(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in, eg := cluster(t), cluster(t)
	a := &Applier{Store: st, Ingress: in, Egress: eg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}

	res, err := a.Apply(ctx, load(t, base), "r1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"wh.ingress.shop.order.created", "wh.ingress.shop.order.paid",
		"wh.dlq.order.created", "wh.dlq.order.paid", "wh.egress.acme.order.created", "wh.egress.acme.order.paid",
		"wh.retry.order.created", "wh.retry.order.paid"}
	if diff := cmp.Diff(want, res.TopicsCreated); diff != "" {
		t.Errorf("topics created (-want +got):\n%s", diff)
	}
	topics, err := eg.ListTopics(ctx)
	if err != nil || !topics.Has("wh.egress.acme.order.created") {
		t.Fatalf("egress cluster topics = %v, %v", topics.Names(), err)
	}
	if res.SchemasWritten != 2 || res.SubscriptionsPending != 2 {
		t.Errorf("first apply = %+v, want 2 schemas written, 2 subscriptions pending", res)
	}

	// The same revision again writes nothing.
	again, err := a.Apply(ctx, load(t, base), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed() {
		t.Errorf("second apply of the same catalog changed %+v", again)
	}

	// An approval survives reconciles of an unchanged subscription.
	if _, err := Decide(ctx, st, "acme#shop#order.created#1", store.SubscriptionApproved, "alice", "ok", time.Now()); err != nil {
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
	res, err = a.Apply(ctx, load(t, changed), "r3")
	if err != nil {
		t.Fatal(err)
	}
	if res.SubscriptionsPending != 1 || res.SubscriptionsCancel != 1 || res.SchemasDeactivated != 1 {
		t.Errorf("apply of the changed catalog = %+v", res)
	}
	s, _ := st.GetSubscription(ctx, "acme#shop#order.created#1")
	if s.Status != store.SubscriptionPending || s.URL != "https://acme.example/v2/hook" {
		t.Errorf("after URL change: %s %s, want Pending with the new URL", s.Status, s.URL)
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
	if _, err := Decide(ctx, st, "a#s#e.x#1", store.SubscriptionApproved, "bob", "", time.Now()); err == nil {
		t.Error("approving a cancelled subscription succeeded")
	}
	if _, err := Decide(ctx, st, "a#s#e.x#1", "Maybe", "bob", "", time.Now()); err == nil {
		t.Error("an unknown decision was accepted")
	}
}
