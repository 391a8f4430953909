package dev

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafkaFaults: while a third of produce requests to either cluster and
// of fetch requests from the egress cluster fail (kfake fault injection),
// every event is still delivered, once, to a producer that retries a 503
// with the same Idempotency-Key as the API asks.
func TestKafkaFaults(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) {
		c.AutoApprove = []string{"alpha"}
		// Shorter than kgo's recovery from some faults, so POSTs time out
		// and the producer's retries under the same key are exercised.
		c.Ingest.ProduceTimeout = 2 * time.Second
	})
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
	retried := 0
	for i := range n {
		id, r := acceptAsProducer(t, p, orderEvent(200+i), fmt.Sprint("fault-", i))
		ids = append(ids, id)
		retried += r
	}
	for _, id := range ids {
		mustDelivered(t, p, id, 1)
	}
	got, dups, bad := alpha.counts()
	t.Logf("kafka faults: %d faults injected; sent %d (%d POSTs retried), delivered %d, lost %d, duplicated %d", faults.Load(), n, retried, got, n-got, dups)
	if got != n || dups != 0 || bad != 0 {
		t.Errorf("delivered %d of %d, %d duplicates, %d bad signatures", got, n, dups, bad)
	}
	if faults.Load() == 0 {
		t.Errorf("no fault was injected (%d requests seen)", seen.Load())
	}
}

// acceptAsProducer posts body under an Idempotency-Key as a producer
// following the API's contract does: a 503 (the event log did not
// acknowledge in time — kgo may take longer than the POST's 10 s to get
// past injected faults, its reconnections backing off) or a 409 (the same
// key still in flight) is tried again with the same key until the 202,
// which names one event however many tries it took. It returns the
// event's id and how many tries were retries.
func acceptAsProducer(t *testing.T, p *Platform, body, key string) (string, int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for retries := 0; ; retries++ {
		a := post(t, p, body, "Idempotency-Key", key)
		var r struct{ ID, Code string }
		json.Unmarshal(a.body, &r)
		switch {
		case a.status == http.StatusAccepted && r.ID != "":
			return r.ID, retries
		case (a.status == http.StatusServiceUnavailable || a.status == http.StatusConflict && r.Code == "idempotency_in_progress") && time.Now().Before(deadline):
			time.Sleep(200 * time.Millisecond)
		default:
			t.Fatalf("POST %s (try %d) = %d %s, want 202 (or 503/409 while faults last)", body, retries+1, a.status, a.body)
		}
	}
}
