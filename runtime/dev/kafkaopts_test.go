package dev

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestEmbeddedKafkaUncompressed: what the platform writes to its embedded
// clusters — an event on ingress, its delivery on egress — is in
// uncompressed batches (embedkafka.ClientOpts: over loopback compression
// only changes what a poll holds).
func TestEmbeddedKafkaUncompressed(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	const n = 5
	// A note that compresses well: kgo sends a batch uncompressed anyway
	// when compressing does not make it smaller.
	note := strings.Repeat("a webhook's body compresses well; ", 30)
	for i := range n {
		accept(t, p, fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"ord_%d","amount":1,"note":%q}}`, i, note))
	}
	eventually(t, "alpha's deliveries", func() bool { got, _, _ := alpha.counts(); return got == n })
	for _, hop := range []struct {
		cluster *kfake.Cluster
		topic   string
	}{
		{p.Kafka().Ingress, "wh.ingress.shop.order.created"},
		{p.Kafka().Egress, "wh.egress.alpha.order.created"},
	} {
		if got := codecs(t, hop.cluster, hop.topic, n); got[0] != n {
			t.Errorf("%s: records by compression codec %v, want %d uncompressed (0)", hop.topic, got, n)
		}
	}
}

// codecs reads the first n records of topic and counts them by their
// batch's compression codec.
func codecs(t *testing.T, c *kfake.Cluster, topic string, n int) map[uint8]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[uint8]int{}
	for read := 0; read < n && ctx.Err() == nil; {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			got[r.Attrs.CompressionType()]++
			read++
		})
	}
	return got
}
