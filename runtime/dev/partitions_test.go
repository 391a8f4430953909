package dev

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestEgressPartitions: whp dev --egress-partitions reaches the
// reconciler — each partner's egress topic has that many partitions —
// and deliveries flow through them.
func TestEgressPartitions(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) { c.EgressPartitions = 1 })
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Kafka().Egress.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(context.Background(), "wh.egress.alpha.order.created", "wh.egress.beta.order.created", "wh.dlq.order.created")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"wh.egress.alpha.order.created": 1, "wh.egress.beta.order.created": 1, "wh.dlq.order.created": 3} {
		if got := len(details[name].Partitions); got != want {
			t.Errorf("%s: %d partitions, want %d", name, got, want)
		}
	}
	id := accept(t, p, orderEvent(1))
	mustDelivered(t, p, id, 2)
}
