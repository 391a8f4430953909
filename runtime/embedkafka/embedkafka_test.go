package embedkafka

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClientOpts: a client with ClientOpts produces uncompressed batches
// and never asks the cluster for a client-metrics subscription; a client
// with kgo's defaults, beside it, does both (so the test sees the
// difference it checks for).
func TestClientOpts(t *testing.T) {
	ctx := context.Background()
	c, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var subscriptions atomic.Int64
	c.Ingress.ControlKey(int16(kmsg.GetTelemetrySubscriptions), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.Ingress.KeepControl()
		subscriptions.Add(1)
		return nil, nil, false
	})
	if _, err := c.ingressAdm.CreateTopics(ctx, 1, 1, nil, "defaults", "embedded"); err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("a webhook's body compresses well; ", 30))
	produce := func(topic string, opts ...kgo.Opt) {
		t.Helper()
		cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(c.Ingress.ListenAddrs()...))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for range 20 {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Value: value}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	compression := func(topic string) map[uint8]int {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Ingress.ListenAddrs()...), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableClientMetrics())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		got := map[uint8]int{}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for n := 0; n < 20 && pctx.Err() == nil; {
			cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
				got[r.Attrs.CompressionType()]++
				n++
			})
		}
		return got
	}

	produce("embedded", ClientOpts()...)
	if got := compression("embedded"); got[0] != 20 {
		t.Errorf("with ClientOpts: records by compression codec %v, want 20 uncompressed (0)", got)
	}
	if n := subscriptions.Load(); n != 0 {
		t.Errorf("with ClientOpts: %d client-metrics subscription requests, want none", n)
	}

	produce("defaults")
	if got := compression("defaults"); got[0] != 0 {
		t.Errorf("with kgo's defaults: records by compression codec %v, want every batch compressed", got)
	}
	for deadline := time.Now().Add(10 * time.Second); subscriptions.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("with kgo's defaults: no client-metrics subscription request; the test cannot tell")
		}
	}
}
