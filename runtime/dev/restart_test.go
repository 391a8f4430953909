package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/ingest"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// TestRestartMidStreamLosesNothing: events accepted before a stop that
// lands in the middle of processing, and events accepted after the
// platform starts again on the same data dir, are all delivered to every
// approved partner, each exactly once; history survives the restart.
func TestRestartMidStreamLosesNothing(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)

	const perRun = 40
	// A slow partner and few deliveries in flight, so that the stop
	// lands while deliveries are being made.
	alpha.delay, beta.delay = 5*time.Millisecond, 5*time.Millisecond
	slow := func(c *Config) { c.Dispatch.Concurrency = 2 }
	p := startPlatform(t, data, cat, slow)
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range perRun {
		wg.Go(func() {
			id := accept(t, p, orderEvent(i))
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		})
	}
	wg.Wait()
	eventually(t, "the first deliveries", func() bool { n, _, _ := alpha.counts(); return n > 0 })
	// Stop now: most deliveries of those events are still to be made.
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Stopped, the store was closed: the next start does not read its
	// files whole (docs/benchmarks.md, "A restart with history").
	if n, err := embedded.Unclosed(filepath.Join(data, "store")); n != 0 || err != nil {
		t.Errorf("after Stop, %d bytes of the store left unclosed (%v); want 0", n, err)
	}
	before, _, _ := alpha.counts()
	t.Logf("alpha had %d of %d deliveries when the platform stopped", before, perRun)

	p = startPlatform(t, data, cat, slow)
	if _, code := getEvent(t, p, ids[0]); code != http.StatusOK && code != http.StatusNotFound {
		t.Fatalf("GET after restart = %d", code)
	}
	for i := range perRun {
		ids = append(ids, accept(t, p, orderEvent(perRun+i)))
	}
	deliveredOnceEach(t, 2*perRun, alpha, beta)
	for _, id := range ids {
		mustDelivered(t, p, id, 2)
	}
	// And once more: a restart after everything settled keeps the history.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	p = startPlatform(t, data, cat)
	v, code := getEvent(t, p, ids[0])
	if code != http.StatusOK || len(v.Deliveries) != 2 {
		t.Errorf("history after second restart: %d, %d deliveries", code, len(v.Deliveries))
	}
}

// TestIngestOnly: a platform started IngestOnly (the bench's ingest-alone
// phase) accepts events durably and routes none; the same data dir started
// whole then delivers each of them once.
func TestIngestOnly(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)

	const n = 20
	p := startPlatform(t, data, cat, func(c *Config) { c.IngestOnly = true })
	for i := range n {
		accept(t, p, orderEvent(i))
	}
	time.Sleep(500 * time.Millisecond) // what a processor would need to deliver some
	if got, _, _ := alpha.counts(); got != 0 {
		t.Fatalf("an ingest-only platform delivered %d events", got)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	startPlatform(t, data, cat)
	eventually(t, "the held events to reach both partners", func() bool {
		a, _, _ := alpha.counts()
		b, _, _ := beta.counts()
		return a == n && b == n
	})
	for _, r := range []*receiver{alpha, beta} {
		if got, dups, bad := r.counts(); got != n || dups != 0 || bad != 0 {
			t.Errorf("delivered %d of %d, %d duplicated, %d badly signed", got, n, dups, bad)
		}
	}
}

// TestKafkaSync: a platform whose embedded Kafka fsyncs each batch before
// acknowledging it (--kafka-sync) says what its 202 promises, delivers
// every event once, and loses none across a restart on its data dir.
// The fsync itself is kfake's (SyncWrites) and cannot be seen from here;
// whp bench --kafka-sync measures what it costs (docs/benchmarks.md).
func TestKafkaSync(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)
	var cfg Config
	synced := func(c *Config) { c.KafkaSync = true; cfg = *c }
	p := startPlatform(t, data, cat, synced)
	if b := p.Banner(cfg); !strings.Contains(b, "an event answered 202 is on disk first (--kafka-sync)") {
		t.Errorf("banner with --kafka-sync:\n%s", b)
	}
	cfg.KafkaSync = false
	if b := p.Banner(cfg); !strings.Contains(b, "it survives a crash of whp, not of the machine") {
		t.Errorf("banner without --kafka-sync:\n%s", b)
	}

	const perRun = 10
	var ids []string
	for i := range perRun {
		ids = append(ids, accept(t, p, orderEvent(i)))
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	p = startPlatform(t, data, cat, synced)
	for i := range perRun {
		ids = append(ids, accept(t, p, orderEvent(perRun+i)))
	}
	deliveredOnceEach(t, 2*perRun, alpha, beta)
	for _, id := range ids {
		mustDelivered(t, p, id, 2)
	}
}

// TestStopRecordsKeyedAnswers: whp dev answers a keyed POST before it
// records the key's outcome (ingest.Config.RecordAfterAnswer). A stop
// while those writes are held waits for them, so that each key, retried
// after a restart, gets its event's 202 again — not 409 "in progress" for
// the claim's lease, nor, after it, a second event.
func TestStopRecordsKeyedAnswers(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	cat := testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL)
	release := make(chan struct{})
	var held atomic.Int32
	p := startPlatform(t, data, cat, func(c *Config) {
		c.ingestStore = func(st ingest.Store) ingest.Store { return heldOutcomes{st, release, &held} }
	})
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i] = accept(t, p, orderEvent(i), "Idempotency-Key", fmt.Sprintf("stop-%d", i)) })
	}
	wg.Wait() // every 202 given, with the outcomes held
	eventually(t, "every outcome write held", func() bool { return held.Load() == n })
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("stopped (%v) with the keys' outcomes unwritten", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	p = startPlatform(t, data, cat)
	for i := range n {
		a := post(t, p, orderEvent(i), "Idempotency-Key", fmt.Sprintf("stop-%d", i))
		var r struct{ ID string }
		json.Unmarshal(a.body, &r)
		if a.status != http.StatusAccepted || r.ID != ids[i] || a.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("key stop-%d after the restart = %d %s (replayed %q), want 202 with %s replayed", i, a.status, a.body, a.header.Get("Idempotent-Replayed"), ids[i])
		}
	}
}

// heldOutcomes holds each write of a key's outcome (its record marked
// done) until release is closed, counting them in held.
type heldOutcomes struct {
	ingest.Store
	release chan struct{}
	held    *atomic.Int32
}

func (s heldOutcomes) PutIdempotency(ctx context.Context, rec store.Idempotency) error {
	if bytes.Contains(rec.Value, []byte(`"done":true`)) {
		s.held.Add(1)
		<-s.release
	}
	return s.Store.PutIdempotency(ctx, rec)
}

// deliveredOnceEach waits until each of rs has want deliveries, and
// checks that none came twice or with a bad signature.
func deliveredOnceEach(t *testing.T, want int, rs ...*receiver) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d deliveries at each partner", want), func() bool {
		for _, r := range rs {
			if n, _, _ := r.counts(); n != want {
				return false
			}
		}
		return true
	})
	for _, r := range rs {
		n, dups, bad := r.counts()
		t.Logf("sent %d, delivered %d, lost %d, duplicated %d", want, n, want-n, dups)
		if n != want || dups != 0 || bad != 0 {
			t.Errorf("receiver: %d distinct, %d duplicates, %d bad signatures; want %d, 0, 0", n, dups, bad, want)
		}
	}
}
