package dev

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestKafkaTrimmedLosesNothing: with the embedded Kafka trimming every
// record its consumers are done with (a budget of one byte, every 20 ms),
// every event still reaches every approved partner exactly once — while a
// partner is slow and owes a backlog, and across a restart on the trimmed
// data — and the consumed records do go.
func TestKafkaTrimmedLosesNothing(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)
	trimHard := func(c *Config) {
		c.KafkaKeep, c.KafkaTrimInterval = 1, 20*time.Millisecond
		c.Dispatch.Concurrency = 2
	}
	beta.delay = 100 * time.Millisecond // beta owes while alpha is done

	const perRun = 30
	p := startPlatform(t, data, cat, trimHard)
	for i := range perRun {
		accept(t, p, orderEvent(i))
	}
	eventually(t, "alpha's deliveries", func() bool { n, _, _ := alpha.counts(); return n == perRun })
	eventually(t, "alpha's egress records trimmed", func() bool {
		return trimmed(p.Kafka().Egress, "wh.egress.alpha.order.created") > 0
	})
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	owed, _, _ := beta.counts()
	t.Logf("beta had %d of %d deliveries when the platform stopped", owed, perRun)

	p = startPlatform(t, data, cat, trimHard)
	for i := range perRun {
		accept(t, p, orderEvent(perRun+i))
	}
	eventually(t, "every event at both partners", func() bool {
		a, _, _ := alpha.counts()
		b, _, _ := beta.counts()
		return a == 2*perRun && b == 2*perRun
	})
	for name, r := range map[string]*receiver{"alpha": alpha, "beta": beta} {
		if n, dups, bad := r.counts(); n != 2*perRun || dups != 0 || bad != 0 {
			t.Errorf("%s: %d distinct, %d duplicated, %d bad of %d", name, n, dups, bad, 2*perRun)
		}
	}
	const ingress = "wh.ingress.shop.order.created"
	trimmedToLast := func() bool {
		for _, pi := range p.Kafka().Ingress.PartitionInfos(ingress) {
			if pi.HighWatermark > 0 && pi.LogStartOffset != pi.HighWatermark-1 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(60 * time.Second); !trimmedToLast(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			for _, pi := range p.Kafka().Ingress.PartitionInfos(ingress) {
				t.Logf("%s[%d]: start %d, end %d, %d bytes", ingress, pi.Partition, pi.LogStartOffset, pi.HighWatermark, pi.NumBytes)
			}
			t.Logf("the processor's commits: %+v", p.Kafka().Ingress.GroupInfo("whp-processor"))
			t.Fatal("the ingress records were not trimmed to each partition's last")
		}
	}
}

// trimmed is how many records of topic are gone: the sum of its
// partitions' start offsets.
func trimmed(c *kfake.Cluster, topic string) int64 {
	var n int64
	for _, pi := range c.PartitionInfos(topic) {
		n += pi.LogStartOffset
	}
	return n
}
