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

// resendFixture is an event accepted into a one-partition ingress topic
// and recorded in the store, alpha's Approved subscription to it, and a
// Replayer over both clusters.
type resendFixture struct {
	in, eg *kfake.Cluster
	st     *embedded.Store
	ev     envelope.Event
	rec    *kgo.Record
	r      *Replayer
}

const alphaSub = "alpha#shop#order.created#1"

func newResendFixture(t *testing.T) *resendFixture {
	t.Helper()
	ctx := context.Background()
	const ingress, egress = "wh.ingress.shop.order.created", "wh.egress.alpha.order.created"
	in, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, ingress))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	eg, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, egress))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eg.Close)
	inCl, err := kgo.NewClient(kgo.SeedBrokers(in.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inCl.Close)
	egCl, err := kgo.NewClient(kgo.SeedBrokers(eg.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(egCl.Close)
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

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
	return &resendFixture{in: in, eg: eg, st: st, ev: ev, rec: rec, r: r}
}

// A resend answers once the egress cluster acknowledged it, and with an
// error, not never, while the egress cluster refuses every produce.
func TestResendEgressUnavailable(t *testing.T) {
	ctx := context.Background()
	f := newResendFixture(t)
	r, st, ev, eg := f.r, f.st, f.ev, f.eg
	if id, err := r.Resend(ctx, st, ev.ID, alphaSub); err != nil || id == "" {
		t.Fatalf("with the egress cluster up: %q, %v", id, err)
	}
	eg.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		eg.KeepControl()
		return nil, errors.New("unreachable"), true // the broker drops the connection
	})
	start := time.Now()
	_, err := r.Resend(ctx, st, ev.ID, alphaSub)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "did not acknowledge within 1s") {
		t.Errorf("with the egress cluster refusing: %v", err)
	}
	if took < time.Second || took > 10*time.Second {
		t.Errorf("answered after %s, want the timeout of 1s", took)
	}
}

// TestResendGone: an event whose ingress record was trimmed away (past
// its retention; in whp dev, past --kafka-keep-mib) is ErrGone — whether
// newer records remain or the partition is empty — and a resend of it says
// so at once rather than waiting out its timeout.
func TestResendGone(t *testing.T) {
	ctx := context.Background()
	f := newResendFixture(t)
	inCl, err := kgo.NewClient(kgo.SeedBrokers(f.in.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer inCl.Close()
	newer := &kgo.Record{Topic: f.rec.Topic, Value: []byte(`{}`)}
	if err := inCl.ProduceSync(ctx, newer).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, to := range []int64{newer.Offset, newer.Offset + 1} { // a newer record left; none
		if err := f.in.DeleteRecords(f.rec.Topic, 0, to); err != nil {
			t.Fatal(err)
		}
		_, err := f.r.Resend(ctx, f.st, f.ev.ID, alphaSub)
		if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), "past its retention") {
			t.Errorf("trimmed to %d: %v, want ErrGone", to, err)
		}
	}
}
