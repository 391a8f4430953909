package dev

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafkaFaults: while a third of produce requests to either cluster and
// of fetch requests from the egress cluster fail (kfake fault injection),
// every event is still delivered, once.
func TestKafkaFaults(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) { c.AutoApprove = []string{"alpha"} })
	// Every third request fails, for the first 30 faults: each costs the
	// client a reconnection, and the test stays short.
	var seen, faults atomic.Int64
	fail := func(kmsg.Request) (kmsg.Response, error, bool) {
		if seen.Add(1)%3 == 0 && faults.Load() < 30 {
			faults.Add(1)
			return nil, errors.New("injected fault"), true // the broker drops the connection
		}
		return nil, nil, false
	}
	k := p.Kafka()
	for _, c := range []interface {
		ControlKey(int16, func(kmsg.Request) (kmsg.Response, error, bool))
		KeepControl()
	}{k.Ingress, k.Egress} {
		c.ControlKey(kmsg.Produce.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) { c.KeepControl(); return fail(r) })
	}
	k.Egress.ControlKey(kmsg.Fetch.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) { k.Egress.KeepControl(); return fail(r) })

	const n = 40
	var ids []string
	for i := range n {
		ids = append(ids, accept(t, p, orderEvent(200+i)))
	}
	for _, id := range ids {
		mustDelivered(t, p, id, 1)
	}
	got, dups, bad := alpha.counts()
	t.Logf("kafka faults: %d faults injected; sent %d, delivered %d, lost %d, duplicated %d", faults.Load(), n, got, n-got, dups)
	if got != n || dups != 0 || bad != 0 {
		t.Errorf("delivered %d of %d, %d duplicates, %d bad signatures", got, n, dups, bad)
	}
	if faults.Load() == 0 {
		t.Errorf("no fault was injected (%d requests seen)", seen.Load())
	}
}
