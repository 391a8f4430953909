package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/internal/rusage"
	"github.com/whp-dev/whp/runtime/embedkafka"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// BenchmarkPost is the ingest role's own cost per accepted event, as whp
// dev runs it (the server span and metrics of telemetry.Instrument,
// compiled validation, an acks=all produce to the embedded ingress
// cluster persisted on disk, by 64 concurrent producers so that produce
// batches form), without the HTTP server's and client's share, which
// whp bench's baseline measures. "traced" records every event's spans as
// whp dev does; "untraced" samples none.
//
//	go test -run '^$' -bench Post -benchmem -count 6 ./runtime/ingest | benchstat -
func BenchmarkPost(b *testing.B) {
	for _, tc := range []struct {
		name  string
		ratio float64
	}{{"traced", 1}, {"untraced", 1e-12}} {
		b.Run(tc.name, func(b *testing.B) {
			h, _ := benchHandler(b, tc.ratio)
			pad := bytes.Repeat([]byte("lorem ipsum dolor sit amet "), 38)
			var seq atomic.Int64
			b.SetParallelism(32) // 64 producers on 2 cores, as whp bench
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := rusage.CPU().Nanoseconds()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					body := []byte(`{"domain":"bench","event":"thing.happened","version":"1","data":{"id":"` +
						strconv.FormatInt(seq.Add(1), 10) + `","pad":"` + string(pad) + `"}}`)
					// Not httptest.NewRequest: it parses a request from text,
					// work that would be the benchmark's, not ingest's.
					req, _ := http.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
					req.Header["Content-Type"] = contentType
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusAccepted {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
			})
			b.ReportMetric(float64(rusage.CPU().Nanoseconds()-cpu0)/1e3/float64(b.N), "cpu-µs/op")
		})
	}
}

var contentType = []string{"application/json"}

// benchHandler is the ingest API behind whp dev's instrumentation, on an
// embedded ingress cluster and store in a temporary directory, and the
// cluster's addresses.
func benchHandler(b testing.TB, sampleRatio float64) (http.Handler, []string) {
	b.Helper()
	ctx := context.Background()
	c, err := catalog.LoadFiles("bench", map[string][]byte{"bench.cue": []byte(
		"package whp\n\nschemas: bench: \"thing.happened\": \"1\": {owner: \"bench\", payload: {id: string, pad: string}}\n")})
	if err != nil {
		b.Fatal(err)
	}
	s := c.Schema("bench#thing.happened#1")
	ingress := topic.Ingress(s.Domain, s.Event)
	kc, err := embedkafka.Start(b.TempDir(), kfake.SeedTopics(3, ingress))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kc.Close)
	st, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.PutSchema(ctx, store.Schema{ID: s.ID(), Domain: s.Domain, Event: s.Event, Version: s.Version,
		Status: "ACTIVE", JSONSchema: s.JSONSchema}); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := registry.New(st, log)
	if err := reg.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	tel, err := telemetry.New(ctx, telemetry.Options{Service: "whp-bench", Traces: telemetry.TracesMemory, TraceSampleRatio: sampleRatio})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tel.Shutdown(context.Background()) })
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.Ingress.ListenAddrs()...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0)}, tel.Tracing.KafkaOpts()...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	mux := http.NewServeMux()
	New(Config{Metrics: tel.Metrics}, reg, cl, st, log).Register(mux)
	return tel.Instrument(mux), kc.Ingress.ListenAddrs()
}

// Concurrent POSTs of events of many sizes, through the recycled body and
// record buffers, each produce the record of their own event: its data
// is what was posted, byte for byte, under the ID the 202 named.
func TestConcurrentPostsKeepTheirData(t *testing.T) {
	h, addrs := benchHandler(t, 1)
	const producers, each = 16, 25
	var mu sync.Mutex
	posted := map[string]string{} // event ID → data
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				data := fmt.Sprintf(`{"id":"%d-%d","pad":"%s"}`, p, i, strings.Repeat(string(rune('a'+p)), (p*each+i)*37%3000))
				req, _ := http.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(
					`{"domain":"bench","event":"thing.happened","version":"1","data":`+data+`}`))
				if i%2 == 0 {
					req.ContentLength = -1 // read without a declared length too
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				var got struct{ ID string }
				if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
					t.Errorf("%d %s", rec.Code, rec.Body)
					return
				}
				mu.Lock()
				posted[got.ID] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic.Ingress("bench", "thing.happened")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seen := 0
	for seen < len(posted) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var ev envelope.Event
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Fatalf("record %q: %v", r.Value, err)
			}
			if want, ok := posted[ev.ID]; !ok || string(ev.Data) != want {
				t.Errorf("event %s: data %.80s…, posted %.80s…", ev.ID, ev.Data, want)
			}
			seen++
		})
	}
	if seen != producers*each {
		t.Errorf("%d records for %d events posted", seen, producers*each)
	}
}
