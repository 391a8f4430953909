package replay

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// A resend answers once the egress cluster acknowledged it, and with an
// error, not never, while the egress cluster refuses every produce.
func TestResendEgressUnavailable(t *testing.T) {
	ctx := context.Background()
	const ingress, egress = "wh.ingress.shop.order.created", "wh.egress.alpha.order.created"
	in, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, ingress))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	eg, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, egress))
	if err != nil {
		t.Fatal(err)
	}
	defer eg.Close()
	inCl, err := kgo.NewClient(kgo.SeedBrokers(in.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer inCl.Close()
	egCl, err := kgo.NewClient(kgo.SeedBrokers(eg.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer egCl.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	ev := envelope.Event{ID: "0190f1e2-aaaa-7bbb-8ccc-123456789abc", Domain: "shop", Event: "order.created", Version: "1",
		AcceptedAt: time.Now().UTC(), Data: []byte(`{"id":1}`)}
	rec := &kgo.Record{Topic: ingress, Key: []byte(ev.ID), Value: ev.JSON()}
	if err := inCl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := st.PutSchema(ctx, store.Schema{ID: "shop#order.created#1", Domain: "shop", Event: "order.created", Version: "1",
		Status: "ACTIVE", JSONSchema: []byte(`{"type":"object"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutSubscription(ctx, store.Subscription{ID: "alpha#shop#order.created#1", PartnerID: "alpha",
		SchemaID: "shop#order.created#1", URL: "https://alpha.example/hooks", Status: store.SubscriptionApproved}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateEvents(ctx, []store.Event{{ID: ev.ID, SchemaID: "shop#order.created#1", AcceptedAt: ev.AcceptedAt,
		Topic: ingress, Partition: rec.Partition, Offset: rec.Offset}}); err != nil {
		t.Fatal(err)
	}
	r := New(inCl, egCl, st)
	r.timeout = time.Second

	if id, err := r.Resend(ctx, st, ev.ID, "alpha#shop#order.created#1"); err != nil || id == "" {
		t.Fatalf("with the egress cluster up: %q, %v", id, err)
	}
	eg.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		eg.KeepControl()
		return nil, errors.New("unreachable"), true // the broker drops the connection
	})
	start := time.Now()
	_, err = r.Resend(ctx, st, ev.ID, "alpha#shop#order.created#1")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "did not acknowledge within 1s") {
		t.Errorf("with the egress cluster refusing: %v", err)
	}
	if took < time.Second || took > 10*time.Second {
		t.Errorf("answered after %s, want the timeout of 1s", took)
	}
}
