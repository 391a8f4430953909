package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/dev"
	"github.com/whp-dev/whp/runtime/envelope"
)

// TestMain lets the test binary serve the bench's processes: run with the
// argument bench-process, it is one (see command).
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "bench-process" {
		if err := ServeProcess(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// command runs the platform and the baseline in processes of the test
// binary, as whp bench runs them in its own.
var command = []string{os.Args[0], "bench-process"}

// phaseLog records the phases a run's progress names, each once in turn.
type phaseLog []string

func (l *phaseLog) record(phase string, _ float64) {
	if len(*l) == 0 || (*l)[len(*l)-1] != phase {
		*l = append(*l, phase)
	}
}

// A short run measures every figure (it asserts what was measured, not
// how fast: the machine is shared): the baseline and the platform's
// throughput are positive, every accepted event reached every
// subscription once, latencies are ordered, the process's resources read.
func TestRun(t *testing.T) {
	var phases phaseLog
	var cpu, heap bytes.Buffer
	// 16 in flight to each partner at most (max_in_flight): a short run's
	// few hundred requests then tell connections reused from one a
	// request (below), however slow the machine.
	r, err := Run(context.Background(), Config{Command: command, Connections: 4, Duration: time.Second, Rate: 50, LatencyDuration: time.Second,
		PayloadBytes: 512, Fanout: 2, CPUProfile: &cpu, HeapProfile: &heap, Relay: true, KafkaRelay: true, MaxInFlight: 16, Progress: phases.record})
	if err != nil {
		t.Fatal(err)
	}
	if r.BaselinePerSec <= 0 || r.IngestPerSec <= 0 || r.IngestRatio <= 0 || r.AcceptedPerSec <= 0 || r.DeliveredPerSec <= 0 || r.AcceptedRatio <= 0 {
		t.Errorf("throughput not measured: %+v", r)
	}
	if r.Lost != 0 || r.Duplicates != 0 || r.Rejected != 0 {
		t.Errorf("lost %d, duplicated %d, rejected %d", r.Lost, r.Duplicates, r.Rejected)
	}
	if !(r.LatencyP50MS > 0 && r.LatencyP50MS <= r.LatencyP95MS && r.LatencyP95MS <= r.LatencyP99MS) {
		t.Errorf("latencies %v %v %v", r.LatencyP50MS, r.LatencyP95MS, r.LatencyP99MS)
	}
	if !(r.AcceptP50MS > 0 && r.AcceptP50MS <= r.AcceptP95MS && r.AcceptP95MS <= r.AcceptP99MS) {
		t.Errorf("producer's waits %v %v %v", r.AcceptP50MS, r.AcceptP95MS, r.AcceptP99MS)
	}
	if r.CPUSeconds <= 0 || r.PeakRSSMiB <= 0 || r.CPUPerEventMS <= 0 || r.CPUPerEventBaselines <= 0 {
		t.Errorf("resources %v s (%v ms, %v baselines per event), %v MiB", r.CPUSeconds, r.CPUPerEventMS, r.CPUPerEventBaselines, r.PeakRSSMiB)
	}
	if runtime.GOOS == "linux" && !(r.PeakAnonMiB > 0 && r.PeakAnonMiB <= r.PeakRSSMiB) {
		t.Errorf("peak anonymous memory %v MiB, peak RSS %v MiB", r.PeakAnonMiB, r.PeakRSSMiB)
	}
	if n := r.PartnerRequestsHTTP1; r.PartnerConnections < 1 || n < 4*r.PartnerConnections || r.PartnerRequestsHTTP2 != 0 {
		t.Errorf("partners over plain HTTP: %d connections for %d requests (%d over HTTP/2)", r.PartnerConnections, n, r.PartnerRequestsHTTP2)
	}
	// The relay measured, its deliveries not counted as the platform's:
	// the partners got no more requests than the platform's events owed
	// them (the latency phase's, at most twice its rate × its length).
	if r.RelayPerSec <= 0 || r.RelayRatio <= 0 || r.DeliveredOfRelay <= 0 || r.RelayCPUPerEventMS <= 0 {
		t.Errorf("relay %v delivered/s, %v× the baseline, %v CPU ms/event; the platform %v× the relay", r.RelayPerSec, r.RelayRatio, r.RelayCPUPerEventMS, r.DeliveredOfRelay)
	}
	if r.KafkaRelayPerSec <= 0 || r.KafkaRelayRatio <= 0 || r.DeliveredOfKafkaRelay <= 0 || r.KafkaRelayCPUPerEventMS <= 0 {
		t.Errorf("kafka relay %v delivered/s, %v× the baseline, %v CPU ms/event; the platform %v× it", r.KafkaRelayPerSec, r.KafkaRelayRatio, r.KafkaRelayCPUPerEventMS, r.DeliveredOfKafkaRelay)
	}
	if owed := (int64(r.AcceptedPerSec) + 2*50) * 2; r.PartnerRequestsHTTP1 > owed {
		t.Errorf("the partners got %d requests, the platform owed them at most %d: the relay's counted too", r.PartnerRequestsHTTP1, owed)
	}
	// At the peak, the files the platform maps: its executable (the test
	// binary) and the embedded store's files, within the whole.
	if runtime.GOOS == "linux" {
		sum := 0.0
		for _, mib := range r.PeakFilesMiB {
			sum += mib
		}
		if exe := filepath.Base(os.Args[0]); r.PeakFilesMiB[exe] <= 0 || r.PeakFilesMiB["store.db"] <= 0 || sum > r.PeakRSSMiB {
			t.Errorf("peak RSS %v MiB, of it files %v (%v MiB), want %s and store.db", r.PeakRSSMiB, r.PeakFilesMiB, sum, exe)
		}
	}
	// Both profiles are pprof's (gzipped protocol buffers).
	for name, b := range map[string][]byte{"cpu": cpu.Bytes(), "heap": heap.Bytes()} {
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s profile: %d bytes, not a gzipped pprof profile", name, len(b))
		}
	}
	if got := strings.Join(phases, ","); !strings.HasPrefix(got, "baseline,relay,relay drain,kafka relay,") || !strings.Contains(got, ",throughput,") || !strings.HasSuffix(got, "latency,ingest alone") {
		t.Errorf("progress phases %s", got)
	}
}

// The Kafka relay delivers every event it answered 202 to each of its
// partners once, through both embedded clusters.
func TestKafkaRelay(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{} // path and event → deliveries
	ids := map[string]bool{}
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path+" "+string(body)]++
		ids[r.Header.Get("webhook-id")] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer partner.Close()
	url, stop, err := serveKafkaRelay(processSpec{Relay: true, RelayKafka: true, ReceiverURL: partner.URL, Fanout: 2, Tenants: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const events = 200
	for i := range events {
		body := fmt.Sprintf(`{"data":{"id":"e%d","tenant":"t%d"}}`, i, i%2)
		resp, err := http.Post(url+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("event %d: %s", i, resp.Status)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(ids)
		mu.Unlock()
		if n >= 2*events || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range events {
		body := fmt.Sprintf(`{"data":{"id":"e%d","tenant":"t%d"}}`, i, i%2)
		for p := range 2 { // tenant t's partners are p(2t) and p(2t+1)
			if k := fmt.Sprintf("/p%d %s", 2*(i%2)+p, body); got[k] != 1 {
				t.Errorf("%s: delivered %d times, want once", k, got[k])
			}
		}
	}
	if len(got) != 2*events || len(ids) != 2*events {
		t.Errorf("%d deliveries with %d webhook-ids, want %d of each", len(got), len(ids), 2*events)
	}
}

// With the partners over HTTPS, every event arrives once, over the
// protocol asked for (HTTP/2 where the partner offers it), and the
// platform keeps its connections: a few dozen at most carry every
// delivery. Plain HTTP's connections are counted the same way.
func TestRunPartnerTLS(t *testing.T) {
	for _, mode := range []string{PartnerTLSHTTP2, PartnerTLSHTTP1} {
		t.Run(mode, func(t *testing.T) {
			// 16 in flight to the partner at most (its max_in_flight), so
			// over HTTP/1.1 at most 16 connections carry them, and a
			// connection per request would show.
			r, err := Run(context.Background(), Config{Command: command, Connections: 4, Duration: time.Second, Rate: 50, LatencyDuration: time.Second,
				PayloadBytes: 256, PartnerTLS: mode, Relay: true, MaxInFlight: 16})
			if err != nil {
				t.Fatal(err)
			}
			if r.Lost != 0 || r.Duplicates != 0 || r.DeliveredPerSec <= 0 || r.PartnerTLS != mode || r.RelayPerSec <= 0 {
				t.Errorf("lost %d, duplicated %d, %v delivered/s, partner TLS %q, the relay (trusting the certificate) %v/s", r.Lost, r.Duplicates, r.DeliveredPerSec, r.PartnerTLS, r.RelayPerSec)
			}
			requests := r.PartnerRequestsHTTP1 + r.PartnerRequestsHTTP2
			if want := int64(r.AcceptedPerSec * time.Second.Seconds()); requests < want {
				t.Errorf("%d requests reached the partner, want at least the throughput phase's %d", requests, want)
			}
			if mode == PartnerTLSHTTP2 && r.PartnerRequestsHTTP1 != 0 || mode == PartnerTLSHTTP1 && r.PartnerRequestsHTTP2 != 0 {
				t.Errorf("requests over HTTP/1.1 %d, over HTTP/2 %d", r.PartnerRequestsHTTP1, r.PartnerRequestsHTTP2)
			}
			if r.PartnerConnections < 1 || r.PartnerConnections > 64 || requests < 4*r.PartnerConnections {
				t.Errorf("%d connections for %d requests: not reused", r.PartnerConnections, requests)
			}
			// HTTP/2 carries every delivery on one connection (it
			// multiplexes; the client closes the others it dialed unused).
			if used := r.PartnerConnectionsUsed; used < 1 || used > r.PartnerConnections || mode == PartnerTLSHTTP2 && used != 1 {
				t.Errorf("%d connections used of %d opened", used, r.PartnerConnections)
			}
		})
	}
	if _, err := Run(context.Background(), Config{Command: command, PartnerTLS: "tls1.3"}); err == nil || !strings.Contains(err.Error(), `"tls1.3"`) {
		t.Errorf("an unknown PartnerTLS: %v", err)
	}
	if _, err := Run(context.Background(), Config{Command: command, PartnerTLS: PartnerTLSHTTP2, Target: "http://127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "embedded platform") {
		t.Errorf("PartnerTLS with a Target: %v", err)
	}
}

// With tenants, each event reaches its tenant's partners alone: every
// accepted event arrives fanout times, none at another tenant's partner
// (the receiver checks each delivery's tenant against its path), and the
// platform's start is timed. 17 tenants × 2: more subscriptions than an
// event's routing lists, so they are looked up by tenant.
func TestRunTenants(t *testing.T) {
	r, err := Run(context.Background(), Config{Command: command, Connections: 4, Duration: time.Second, Rate: 30, LatencyDuration: time.Second,
		PayloadBytes: 256, Fanout: 2, Tenants: 17, Relay: true, IdempotencyKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Tenants != 17 || r.DeliveredPerSec <= 0 || r.StartSeconds <= 0 || r.RelayPerSec <= 0 {
		t.Errorf("tenants %d, delivered %v/s, started in %v s, relayed %v/s", r.Tenants, r.DeliveredPerSec, r.StartSeconds, r.RelayPerSec)
	}
	// Every event sent with a key of its own: none refused as a key's reuse.
	if !r.IdempotencyKeys || r.Rejected != 0 {
		t.Errorf("with Idempotency-Keys: reported %v, %d rejected", r.IdempotencyKeys, r.Rejected)
	}
	if r.Lost != 0 || r.Duplicates != 0 || r.Misrouted != 0 {
		t.Errorf("lost %d, duplicated %d, misrouted %d", r.Lost, r.Duplicates, r.Misrouted)
	}
	cat := Catalog("http://x", 2, 3, false, false, 0)
	if !strings.Contains(cat, `partners: p5:`) || strings.Contains(cat, `partners: p6:`) || !strings.Contains(cat, `"p5.things": {partner: "p5", domain: "bench", event: "thing.happened", version: "1", filter: {path: "data.tenant", eq: "t2"}}`) {
		t.Errorf("catalog for 3 tenants × 2:\n%s", cat)
	}
}

// With IdempotencyKeys every request of the closed and the open loop
// carries a key, none the same as another's, across loops too; without,
// none.
func TestIdempotencyKeys(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]int{}
	var unkeyed int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		if k := r.Header.Get("Idempotency-Key"); k != "" {
			keys[k]++
		} else {
			unkeyed++
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	cfg := Config{Connections: 4, Duration: 200 * time.Millisecond, Rate: 100, PayloadBytes: 256, IdempotencyKeys: true}
	cfg.defaults()
	body := func(int64) []byte { return eventBody(256, "x", "") }
	var sent int64
	for range 2 {
		n, _, err := closedLoop(context.Background(), srv.URL, cfg, body, "test")
		if err != nil {
			t.Fatal(err)
		}
		m, _, _, err := openLoop(context.Background(), at(srv.URL), cfg, 200*time.Millisecond, "o", "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		sent += n + m
	}
	cfg.IdempotencyKeys = false
	plain, _, err := closedLoop(context.Background(), srv.URL, cfg, body, "test")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range keys {
		if n != 1 {
			t.Errorf("key %s sent %d times", k, n)
		}
	}
	if int64(len(keys)) != sent || int64(unkeyed) != plain || sent == 0 || plain == 0 {
		t.Errorf("%d keys for %d keyed requests; %d requests without a key, of %d sent so", len(keys), sent, unkeyed, plain)
	}
}

// The receiver holds a tenant's events to its partners: p<K> is owed
// t<K/fanout>'s.
func TestReceiverRouted(t *testing.T) {
	r := newReceiver(Config{Fanout: 2, Tenants: 3})
	for _, c := range []struct {
		path, tenant string
		ok           bool
	}{{"/p0", "t0", true}, {"/p1", "t0", true}, {"/p2", "t1", true}, {"/p5", "t2", true}, {"/p2", "t0", false}, {"/p0", "", false}, {"/slow", "t0", false}} {
		if got := r.routed(c.path, eventBody(300, "x", c.tenant)); got != c.ok {
			t.Errorf("%s ← %q: routed %v", c.path, c.tenant, got)
		}
	}
	if !newReceiver(Config{Fanout: 2, Tenants: 1}).routed("/p1", eventBody(300, "x", "")) {
		t.Error("one tenant: every delivery is routed")
	}
}

// With a slow partner beside the measured one, its deliveries are made
// (they hold their own slots) but not counted: the figures stay the
// measured partner's, nothing lost or duplicated.
func TestRunSlowPartner(t *testing.T) {
	r, err := Run(context.Background(), Config{Command: command, Connections: 2, Duration: time.Second, Rate: 20, LatencyDuration: time.Second,
		PayloadBytes: 256, Fanout: 1, SlowPartner: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.DeliveredPerSec <= 0 || r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("delivered %v/s, lost %d, duplicated %d", r.DeliveredPerSec, r.Lost, r.Duplicates)
	}
	if !strings.Contains(Catalog("http://x", 1, 1, true, false, 0), `partners: slow:`) || strings.Contains(Catalog("http://x", 1, 1, false, false, 0), "slow") {
		t.Error("the catalog names the slow partner only when asked")
	}
}

// TestRunFarPartners: with every partner answering after 500 ms, the
// platform keeps up with 100 events a second by keeping ≈ 50 deliveries
// in flight to the partner (more than the 16 the dispatcher allowed
// before round 19, which delivered 32 a second: run again with those
// bounds set); with the partners' max_in_flight 5 in the catalog it keeps
// 5 in flight and no more, so delivers 10 a second and catches up after
// the events stop. Nothing is lost or duplicated in any.
func TestRunFarPartners(t *testing.T) {
	run := func(rate, maxInFlight int, bounds ...int) (*FarResult, string) {
		var phases phaseLog
		cfg := Config{Command: command, Connections: 2, Duration: time.Second, Rate: rate, LatencyDuration: 3 * time.Second,
			PayloadBytes: 256, Fanout: 1, PartnerLatency: 500 * time.Millisecond, MaxInFlight: maxInFlight, Relay: false, Progress: phases.record}
		if len(bounds) == 2 {
			cfg.Concurrency, cfg.PartnerConcurrency = bounds[0], bounds[1]
		}
		r, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		f := r.Far
		if f == nil {
			t.Fatal("no far-partners result")
		}
		if f.AnswerMS != 500 || f.Events < int64(rate*3*9/10) || f.NotArrived != 0 || f.Duplicates != 0 {
			t.Errorf("max_in_flight %d: %+v", maxInFlight, f)
		}
		return f, strings.Join(phases, ",")
	}
	if f, phases := run(100, 0); f.DeliveredPerSec < 60 || f.PeakInFlight < 40 || !strings.Contains(phases, "latency,far partners") {
		t.Errorf("default bound: %.0f deliveries/s while 100 events/s arrived, at most %d in flight (phases %s): did not keep up", f.DeliveredPerSec, f.PeakInFlight, phases)
	}
	// The dispatcher's bounds before round 19, set as whp dev's
	// --concurrency and --partner-concurrency: 16 in flight, 32 a second.
	if f, _ := run(100, 0, 64, 16); f.PeakInFlight != 16 || f.DeliveredPerSec > 38 {
		t.Errorf("--partner-concurrency 16: %d in flight at most, %.0f deliveries/s; want 16, ≈ 32/s", f.PeakInFlight, f.DeliveredPerSec)
	}
	// Behind: the catch-up is a phase of its own (with nothing owed
	// when the events stop, it ends before it reports).
	if f, phases := run(20, 5); f.PeakInFlight != 5 || f.DeliveredPerSec > 12 || f.CatchUpSeconds < 1.5 || !strings.Contains(phases, "far partners,far catch-up") {
		t.Errorf("max_in_flight 5: %d in flight at most, %.1f deliveries/s, caught up %.1f s after (phases %s); want 5, ≈ 10/s, ≈ 3 s", f.PeakInFlight, f.DeliveredPerSec, f.CatchUpSeconds, phases)
	}
	if !strings.Contains(Catalog("http://x", 1, 1, false, false, 5), "max_in_flight: 5}") || strings.Contains(Catalog("http://x", 1, 1, false, false, 0), "max_in_flight") {
		t.Error("the catalog sets max_in_flight only when asked")
	}
}

// TestRunLimitedPartners: the limited-partners phase's partner takes 8
// deliveries at once (20 ms each: 400 a second) and answers 429 to the
// rest, while events arrive at 500 a second — more than it takes. The
// dispatcher's learnt bound keeps what it sends the partner near its 8,
// so few of its answers are 429s (with the fixed bound of 64, a third or
// more: TestPace in runtime/dispatch compares the two); every event
// arrives once, or waits on a retry for having been refused.
func TestRunLimitedPartners(t *testing.T) {
	var phases phaseLog
	r, err := Run(context.Background(), Config{Command: command, Connections: 2, Duration: time.Second, Rate: 500, LatencyDuration: 2 * time.Second,
		PayloadBytes: 256, Fanout: 1, PartnerLimit: 8, Relay: false, Progress: phases.record})
	if err != nil {
		t.Fatal(err)
	}
	l := r.Limited
	if l == nil {
		t.Fatal("no limited-partners result")
	}
	t.Logf("%+v", *l)
	if l.Limit != 8 || l.AnswerMS != 20 || l.Events < 500*2*9/10 || l.Duplicates != 0 || !strings.Contains(strings.Join(phases, ","), "limited partners") {
		t.Errorf("%+v (phases %v)", *l, phases)
	}
	if l.Refused == 0 || l.RefusedShare > 0.1 {
		t.Errorf("%d answered 429 (%.1f %% of the requests); want some — the partner was sent more than it takes — and at most 10 %%", l.Refused, 100*l.RefusedShare)
	}
	if l.NotArrived > l.Refused {
		t.Errorf("%d not arrived, more than the %d refused (only a refused delivery waits on a retry)", l.NotArrived, l.Refused)
	}
	// Not strangled: a bound stuck at 1 would deliver 50 a second.
	if l.DeliveredPerSec < 100 || l.DeliveredPerSec > 440 {
		t.Errorf("%.0f deliveries/s to a partner that takes 400 a second", l.DeliveredPerSec)
	}
}

// The plot is well-formed SVG with a panel per swept dimension.
// svgDoc is what the plot tests read of an SVG: its panels' lines.
type svgDoc struct {
	XMLName xml.Name
	G       []struct {
		Polyline []struct {
			Points string `xml:"points,attr"`
			Dash   string `xml:"stroke-dasharray,attr"`
		} `xml:"polyline"`
	} `xml:"g"`
}

func TestPlot(t *testing.T) {
	svg := Plot([]Result{{PayloadBytes: 256, Fanout: 1, AcceptedRatio: .5, DeliveredRatio: .3, Latencies: Latencies{LatencyP95MS: 4}},
		{PayloadBytes: 4096, Fanout: 1, AcceptedRatio: .4, DeliveredRatio: .2, Latencies: Latencies{LatencyP95MS: 6}},
		{PayloadBytes: 256, Fanout: 10, AcceptedRatio: .5, DeliveredRatio: 1.2, Latencies: Latencies{LatencyP95MS: 9}}})
	var doc svgDoc
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("not SVG: %v", err)
	}
	if len(doc.G) != 2 || len(doc.G[0].Polyline) != 4 || strings.Count(doc.G[0].Polyline[0].Points, ",") != 2 {
		t.Errorf("panels %+v", doc.G)
	}
	// Runs that measured the relay and the Kafka relay draw them dashed,
	// on the ratios' scale: the largest ratio at the panel's top.
	svg = Plot([]Result{{PayloadBytes: 256, Fanout: 1, DeliveredRatio: .1, RelayRatio: .5, KafkaRelayRatio: .25},
		{PayloadBytes: 4096, Fanout: 1, DeliveredRatio: .1, RelayRatio: .4, KafkaRelayRatio: .2}})
	doc.G = nil
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
		t.Fatal(err)
	}
	if pl := doc.G[0].Polyline; len(pl) != 6 || pl[4].Dash == "" || pl[5].Dash == "" || pl[2].Dash != "" {
		t.Fatalf("with the relays: %+v", pl)
	}
	ys := func(points string) (out []string) {
		for _, p := range strings.Fields(points) {
			_, y, _ := strings.Cut(p, ",")
			out = append(out, y)
		}
		return out
	}
	// h 220, pad 40: the relay's 0.5 (the largest) at y 40, the Kafka
	// relay's 0.25 halfway down, at 110.
	if got := ys(doc.G[0].Polyline[4].Points); got[0] != "40.0" {
		t.Errorf("relay at %v, want its 0.5 at the top (40.0)", got)
	}
	if got := ys(doc.G[0].Polyline[5].Points); got[0] != "110.0" {
		t.Errorf("Kafka relay at %v, want its 0.25 at 110.0", got)
	}
	// A sweep over tenants adds a panel of its own, and its runs stay out
	// of the others.
	svg = Plot([]Result{{PayloadBytes: 256, Fanout: 1, Tenants: 1, DeliveredRatio: .3, Latencies: Latencies{LatencyP95MS: 4}},
		{PayloadBytes: 4096, Fanout: 1, Tenants: 1, DeliveredRatio: .2, Latencies: Latencies{LatencyP95MS: 6}},
		{PayloadBytes: 256, Fanout: 1, Tenants: 100, DeliveredRatio: .25, Latencies: Latencies{LatencyP95MS: 5}},
		{PayloadBytes: 256, Fanout: 1, Tenants: 1000, DeliveredRatio: .2, Latencies: Latencies{LatencyP95MS: 19}}})
	doc.G = nil
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.G) != 3 || strings.Count(doc.G[0].Polyline[0].Points, ",") != 2 || strings.Count(doc.G[2].Polyline[0].Points, ",") != 3 || !strings.Contains(svg, ">1000</text>") {
		t.Errorf("with tenants: panels %+v", doc.G)
	}
	// Payloads and fan-outs swept in one command (whp bench runs the
	// payloads first, then the fan-outs at the default payload): the
	// fan-out panel takes the runs of the fan-outs' payload, not the
	// first run's; each panel's points go left to right, payload sizes
	// on a log scale, spread over the whole axis.
	svg = Plot([]Result{{PayloadBytes: 256, Fanout: 1}, {PayloadBytes: 1024, Fanout: 1}, {PayloadBytes: 262144, Fanout: 1},
		{PayloadBytes: 1024, Fanout: 16}, {PayloadBytes: 1024, Fanout: 1}, {PayloadBytes: 1024, Fanout: 4}})
	doc.G = nil
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
		t.Fatal(err)
	}
	xs := func(points string) []float64 {
		var out []float64
		for _, p := range strings.Fields(points) {
			x, _, _ := strings.Cut(p, ",")
			v, err := strconv.ParseFloat(x, 64)
			if err != nil {
				t.Fatalf("point %q", p)
			}
			out = append(out, v)
		}
		return out
	}
	size, fanout := xs(doc.G[0].Polyline[0].Points), xs(doc.G[1].Polyline[0].Points)
	if len(size) != 4 || len(fanout) != 4 || !slices.IsSorted(size) || !slices.IsSorted(fanout) {
		t.Fatalf("by size %v, by fan-out %v", size, fanout)
	}
	// log2: 256 B → 1 KiB is 2 of the 10 doublings to 256 KiB.
	if got := (size[1] - size[0]) / (size[3] - size[0]); math.Abs(got-0.2) > 0.01 {
		t.Errorf("1 KiB at %.2f of the axis from 256 B to 256 KiB, want 0.2 (log scale)", got)
	}
	if !strings.Contains(svg, ">256 KiB</text>") || !strings.Contains(svg, ">256 B</text>") {
		t.Error("payload labels")
	}
}

// The rate curve runs the latency phase again at each rate: a point a
// rate after the latency phase's own, each with its events all arrived,
// its latencies and the producer's waits ordered, its CPU per event and
// its load read against the run's delivered/s; its plot has a line a
// percentile and a point a rate.
func TestRunRates(t *testing.T) {
	var phases phaseLog
	r, err := Run(context.Background(), Config{Command: command, Connections: 4, Duration: time.Second, Rate: 20, LatencyDuration: time.Second,
		PayloadBytes: 256, Fanout: 2, LatencyRates: []int{40, 80}, Progress: phases.record})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ByRate) != 3 {
		t.Fatalf("points %+v", r.ByRate)
	}
	for i, p := range r.ByRate {
		if want := []int{20, 40, 80}[i]; p.Rate != want || p.Events != int64(want) || p.Refused != 0 || p.NotArrived != 0 {
			t.Errorf("point %d: %+v", i, p)
		}
		if !(p.LatencyP50MS > 0 && p.LatencyP50MS <= p.LatencyP95MS && p.LatencyP95MS <= p.LatencyP99MS) || !(p.AcceptP50MS > 0 && p.AcceptP50MS <= p.AcceptP95MS) {
			t.Errorf("point %d latencies: %+v", i, p)
		}
		if p.CPUMSPerEvent <= 0 || p.Load != float64(p.Rate*2)/r.DeliveredPerSec {
			t.Errorf("point %d CPU %v ms an event, load %v (delivered %v/s)", i, p.CPUMSPerEvent, p.Load, r.DeliveredPerSec)
		}
	}
	if r.LatencyP95MS != r.ByRate[0].LatencyP95MS || r.AcceptP95MS != r.ByRate[0].AcceptP95MS {
		t.Errorf("the first point is not the latency phase's: %+v, p95 %v", r.ByRate[0], r.LatencyP95MS)
	}
	if got := strings.Join(phases, ","); !strings.Contains(got, "latency,latency at 40/s,latency at 80/s,ingest alone") {
		t.Errorf("progress phases %s", got)
	}
	if r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("lost %d, duplicated %d", r.Lost, r.Duplicates)
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(PlotRates(r.ByRate)), &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("rate plot not SVG: %v", err)
	}
	if len(doc.G) != 1 || len(doc.G[0].Polyline) != 4 || strings.Count(doc.G[0].Polyline[1].Points, ",") != 3 {
		t.Errorf("rate plot %+v", doc.G)
	}
}

// A soak records each slice of itself: the deliveries and their latency,
// and the platform's CPU, memory, goroutines and data — every figure read,
// every event delivered once, with the embedded Kafka trimming all it can
// as the soak runs (and fsyncing each batch: --kafka-sync, which the
// result reports); and its plot has a line a figure, a point a slice.
func TestRunSoak(t *testing.T) {
	var phases phaseLog
	cfg := Config{Command: command, Connections: 4, Duration: time.Second, Rate: 30, LatencyDuration: time.Second,
		PayloadBytes: 256, Soak: 3 * time.Second, SoakRate: 40, KafkaKeep: 1, KafkaSync: true, Progress: phases.record}
	if spec := cfg.platform("http://127.0.0.1:1", false); !spec.KafkaSync {
		t.Errorf("the platform's spec %+v: no KafkaSync", spec)
	}
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.KafkaSync || r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("with --kafka-sync: reported %v, lost %d, duplicated %d", r.KafkaSync, r.Lost, r.Duplicates)
	}
	s := r.Soak
	if s == nil || s.Rate != 40 || s.Events == 0 || s.NotArrived != 0 || s.Duplicates != 0 || len(s.Slices) != 3 {
		t.Fatalf("soak %+v", s)
	}
	for i, sl := range s.Slices {
		if sl.EndSeconds < float64(i+1)*0.9 || sl.AcceptedPerSec <= 0 || sl.CPUMSPerEvent <= 0 || sl.RSSMiB <= 0 || sl.HeapMiB <= 0 || sl.Goroutines <= 0 || sl.StoreMiB <= 0 || sl.KafkaMiB <= 0 {
			t.Errorf("slice %d: %+v", i, sl)
		}
		if sl.DeliveredPerSec > 0 && !(sl.LatencyP50MS > 0 && sl.LatencyP50MS <= sl.LatencyP95MS && sl.LatencyP95MS <= sl.LatencyP99MS) {
			t.Errorf("slice %d latencies %v %v %v", i, sl.LatencyP50MS, sl.LatencyP95MS, sl.LatencyP99MS)
		}
	}
	if !strings.Contains(strings.Join(phases, ","), "latency,soak") {
		t.Errorf("progress phases %s", strings.Join(phases, ","))
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(PlotSoak(*s)), &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("soak plot not SVG: %v", err)
	}
	if len(doc.G) != 2 || len(doc.G[0].Polyline) != 2 || len(doc.G[1].Polyline) != 5 || strings.Count(doc.G[1].Polyline[0].Points, ",") != 3 {
		t.Errorf("soak plot panels %+v", doc.G)
	}
}

// eventBody makes events of the size asked, valid against the catalog.
func TestEventBody(t *testing.T) {
	for _, n := range []int{200, 1024, 16384} {
		for _, tenant := range []string{"", "t7"} {
			b := eventBody(n, "t1", tenant)
			if len(b) != n {
				t.Errorf("size %d, tenant %q: got %d", n, tenant, len(b))
			}
			var ev struct {
				Data map[string]string `json:"data"`
			}
			if err := json.Unmarshal(b, &ev); err != nil || ev.Data["id"] != "t1" || ev.Data["tenant"] != tenant {
				t.Errorf("size %d, tenant %q: %v %v", n, tenant, err, ev.Data)
			}
		}
	}
}

// Against a running platform: its catalog routes the bench schema to the
// receiver's fixed address; the bench measures throughput and latency and
// leaves the platform's resources and its ingest alone unreported (they are
// another process's in general).
func TestRunTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "catalog"), 0o755)
	os.WriteFile(filepath.Join(dir, "catalog", "bench.cue"), []byte(Catalog("http://"+addr, 1, 1, false, false, 0)), 0o644)
	p, err := dev.Start(context.Background(), dev.Config{DataDir: filepath.Join(dir, "data"), CatalogDir: filepath.Join(dir, "catalog"),
		Addr: "127.0.0.1:0", AutoApprove: []string{"p0"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	r, err := Run(context.Background(), Config{Command: command, Target: p.URL, ReceiverAddr: addr, Connections: 2, Duration: time.Second,
		Rate: 20, LatencyDuration: time.Second, PayloadBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	if r.Target != p.URL || r.AcceptedPerSec <= 0 || r.DeliveredPerSec <= 0 || r.Lost != 0 || r.LatencyP95MS <= 0 || r.CPUSeconds != 0 || r.IngestPerSec != 0 {
		t.Errorf("result %+v", r)
	}
}

// The receiver reads the payload's own timestamp, not one its data holds.
func TestTimestampOf(t *testing.T) {
	at := time.Date(2026, 11, 29, 6, 0, 0, 123456789, time.UTC)
	body := envelope.Payload{ID: "e", Type: "thing.happened", Timestamp: at,
		Data: json.RawMessage(`{"timestamp":"2000-01-01T00:00:00Z","note":"\"timestamp\":\"1999-01-01T00:00:00Z\""}`)}.JSON()
	if got := timestampOf(body); !got.Equal(at) {
		t.Errorf("timestampOf = %v, want %v", got, at)
	}
	if got := timestampOf([]byte(`{"id":"x"}`)); !got.IsZero() {
		t.Errorf("no timestamp: %v", got)
	}
}

// The outage phase: while the partner answers 503 its breaker opens after
// a few failures in a row, though the earlier phases' successes fill its
// window, and holds the rest without attempting them; once the partner is
// back, every delivery the outage owed arrives, once. The cool-down is a
// quarter of the outage, so probes fail: they are first attempts, and no
// delivery is attempted twice while the partner is down (a retry that
// probed and failed would wait up to 5 minutes). (Without the
// breaker's consecutive-failure rule, every event of the outage would be
// attempted and fail at least once.)
func TestRunOutage(t *testing.T) {
	var phases phaseLog
	r, err := Run(context.Background(), Config{Command: command, Connections: 2, Duration: time.Second, Rate: 50, LatencyDuration: time.Second,
		PayloadBytes: 256, Fanout: 1, Outage: 4 * time.Second, BreakerCoolDown: time.Second, Progress: phases.record})
	if err != nil {
		t.Fatal(err)
	}
	o := r.Outage
	if o == nil {
		t.Fatal("no outage result")
	}
	if o.Seconds != 4 || o.Events <= 0 {
		t.Fatalf("outage %+v", o)
	}
	if o.FailedAttempts < 10 || o.FailedAttempts >= o.Events/2 {
		t.Errorf("%d failed attempts for %d events: the breaker did not hold the outage's deliveries", o.FailedAttempts, o.Events)
	}
	if o.FailedAttempts <= 10 {
		t.Errorf("%d failed attempts: no probe failed during the outage", o.FailedAttempts)
	}
	if o.Held <= 0 {
		t.Errorf("no delivery held: %+v", o)
	}
	if o.MostFailedAttempts != 1 {
		t.Errorf("a delivery was attempted %d times while the partner was down", o.MostFailedAttempts)
	}
	if o.NotArrived != 0 || o.Duplicates != 0 {
		t.Errorf("not arrived %d, duplicated %d", o.NotArrived, o.Duplicates)
	}
	if !(o.RecoveryP50Seconds > 0 && o.RecoveryP50Seconds <= o.RecoverySeconds) || o.PeakInFlight < 1 {
		t.Errorf("recovery: p50 %v s, all %v s, peak in flight %d", o.RecoveryP50Seconds, o.RecoverySeconds, o.PeakInFlight)
	}
	if got := strings.Join(phases, ","); !strings.Contains(got, "latency,outage,recovering") {
		t.Errorf("progress phases %s", got)
	}
	if r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("before the outage: lost %d, duplicated %d", r.Lost, r.Duplicates)
	}
}

// TestRunOutageQuota: the outage phase with partners whose quota is
// spent — 429 with Retry-After: 1 to everything for 4 s — and a breaker
// cool-down of two minutes: the breakers open on the 429s (most of the
// outage's deliveries are held, not attempted) and probe when the
// partners asked, so the backlog arrives seconds after the quota is
// back, not at the cool-down's end.
func TestRunOutageQuota(t *testing.T) {
	r, err := Run(context.Background(), Config{Command: command, Connections: 2, Duration: time.Second, Rate: 50, LatencyDuration: time.Second,
		PayloadBytes: 256, Fanout: 1, Outage: 4 * time.Second, OutageStatus: http.StatusTooManyRequests, OutageRetryAfter: time.Second, BreakerCoolDown: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	o := r.Outage
	if o == nil || o.Status != http.StatusTooManyRequests || o.RetryAfterSeconds != 1 || o.Events <= 0 {
		t.Fatalf("outage %+v", o)
	}
	if o.FailedAttempts >= o.Events*3/4 {
		t.Errorf("%d 429s for %d events: the breaker did not hold the outage's deliveries", o.FailedAttempts, o.Events)
	}
	if o.NotArrived != 0 || o.Duplicates != 0 {
		t.Errorf("not arrived %d, duplicated %d", o.NotArrived, o.Duplicates)
	}
	// The cool-down is 120 s: a backlog in within a quarter of it was
	// probed for when the partners asked.
	if o.RecoverySeconds <= 0 || o.RecoverySeconds > 30 {
		t.Errorf("the backlog arrived %.1f s after the quota was back; the partners asked for 1 s", o.RecoverySeconds)
	}
	t.Logf("%d 429s for %d events, at most %d of one delivery; %d held; backlog in %.1f s (half in %.1f s)", o.FailedAttempts, o.Events, o.MostFailedAttempts, o.Held, o.RecoverySeconds, o.RecoveryP50Seconds)
}

// A process that cannot serve is an error that says which and why, not a
// hang: no command, a command that is not a bench process, and a
// platform that fails to start (its receiver URL is not one), whose
// reason comes back from the process.
func TestProcessErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := startProcess(ctx, nil, processSpec{Baseline: true}); err == nil || !strings.Contains(err.Error(), "Config.Command") {
		t.Errorf("no command: %v", err)
	}
	if _, err := startProcess(ctx, []string{"/bin/sh", "-c", "echo no such thing >&2; exit 3"}, processSpec{Baseline: true}); err == nil || !strings.Contains(err.Error(), "no such thing") {
		t.Errorf("not a bench process: %v", err)
	}
	_, err := startProcess(ctx, command, processSpec{ReceiverURL: "::not a url", Fanout: 1})
	if err == nil || !strings.Contains(err.Error(), "the platform's process") || !strings.Contains(err.Error(), "partners.p0.url") {
		t.Errorf("platform that cannot start: %v", err)
	}
	p, err := startProcess(ctx, command, processSpec{Baseline: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.call(processRequest{Op: "result"}); err == nil || !strings.Contains(err.Error(), "not measuring") {
		t.Errorf("result before measuring: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// The crash phase: the platform's process is SIGKILLed while events
// arrive and started again on its data dir; every event it accepted is
// delivered to every subscription — those it owed when it died included:
// the partners take half a second a delivery, so with 16 in flight each
// (their max_in_flight) they fall behind 50 events a second, and a
// backlog is owed at the kill
// (a restart on an empty data dir would lose it). What is made twice is
// what the partners were answering when the process died, and the ledger
// window, not a replay of the phase.
func TestRunCrash(t *testing.T) {
	var phases phaseLog
	r, err := Run(context.Background(), Config{Command: command, Connections: 2, Duration: time.Second, Rate: 50, LatencyDuration: time.Second,
		PayloadBytes: 256, Fanout: 2, Crash: 3 * time.Second, partnerDelay: 500 * time.Millisecond, MaxInFlight: 16, Progress: phases.record})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Crash
	if c == nil {
		t.Fatal("no crash result")
	}
	if c.Seconds != 3 || c.Events <= 0 || c.RestartSeconds <= 0 || c.FirstDeliverySeconds < c.RestartSeconds/2 {
		t.Fatalf("crash %+v", c)
	}
	if c.RecoverySeconds <= 0 {
		t.Errorf("nothing was owed at the kill: %+v", c)
	}
	if c.NotArrived != 0 {
		t.Errorf("%d deliveries of accepted events never arrived", c.NotArrived)
	}
	// 16 in flight to each partner, and the window's few.
	if c.Duplicates > 2*16+10 {
		t.Errorf("%d deliveries made twice of %d", c.Duplicates, c.Events*2)
	}
	t.Logf("%+v", *c)
	if got := strings.Join(phases, ","); !strings.Contains(got, "latency,crash,recovering") {
		t.Errorf("progress phases %s", got)
	}
	if r.IngestPerSec <= 0 {
		t.Errorf("ingest alone not measured after the crash: %+v", r)
	}
}

// The ordered phase: every key's events arrive in order at every
// partner, through the refusal of one key, whose deliveries wait behind
// its first refused one instead of each being attempted; nothing is lost
// or duplicated, and the refused key catches up.
func TestRunOrdered(t *testing.T) {
	var phases phaseLog
	r, err := Run(context.Background(), Config{Command: command, Connections: 4, Duration: time.Second, Rate: 40, LatencyDuration: time.Second,
		PayloadBytes: 256, Fanout: 2, Ordered: 6 * time.Second, Keys: 4, Progress: phases.record})
	if err != nil {
		t.Fatal(err)
	}
	o := r.Ordered
	if o == nil || o.Keys != 4 || o.Rate != 40 || o.Events <= 0 {
		t.Fatalf("ordered %+v", o)
	}
	if o.OutOfOrder != 0 || o.NotArrived != 0 || o.Duplicates != 0 {
		t.Errorf("out of order %d, not arrived %d, duplicated %d", o.OutOfOrder, o.NotArrived, o.Duplicates)
	}
	if o.RefusedKeyEvents <= 0 || o.FailedAttempts < int64(r.Fanout) || o.FailedAttempts >= o.RefusedKeyEvents*int64(r.Fanout) {
		t.Errorf("%d failed attempts for %d events of the refused key at %d partners: its deliveries did not wait behind the first", o.FailedAttempts, o.RefusedKeyEvents, r.Fanout)
	}
	if o.CatchUpSeconds <= 0 || !(o.LatencyP50MS > 0 && o.LatencyP50MS <= o.LatencyP95MS && o.LatencyP95MS <= o.LatencyP99MS) {
		t.Errorf("catch-up %v s, latencies %v %v %v", o.CatchUpSeconds, o.LatencyP50MS, o.LatencyP95MS, o.LatencyP99MS)
	}
	if !strings.Contains(strings.Join(phases, ","), "latency,ordered") {
		t.Errorf("progress phases %s", strings.Join(phases, ","))
	}
	if r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("before the ordered phase: lost %d, duplicated %d", r.Lost, r.Duplicates)
	}
}

// The receiver counts a delivery that reaches a partner after a later
// one of its key as out of order — per partner and key — and refuses the
// refused key's deliveries while asked to.
func TestReceiverOrder(t *testing.T) {
	r := newReceiver(Config{Fanout: 1, Tenants: 1})
	deliver := func(path, key string, n int) int {
		body := orderedBody(300, key, n)
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"id":"e","type":"thing.ordered","timestamp":"%s","data":%s}`, time.Now().UTC().Format(time.RFC3339Nano), body[strings.Index(string(body), `"data":`)+len(`"data":`):len(body)-1])
		req := httptest.NewRequest(http.MethodPost, path, &b)
		req.Header.Set("webhook-id", fmt.Sprintf("%s-%s-%d", path, key, n))
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w.Code
	}
	for _, d := range []struct {
		path, key string
		n         int
	}{{"/o0", "k1", 0}, {"/o0", "k1", 2}, {"/o0", "k1", 1}, {"/o1", "k1", 1}, {"/o0", "k2", 0}, {"/o0", "k1", 3}} {
		if code := deliver(d.path, d.key, d.n); code != http.StatusNoContent {
			t.Fatalf("%+v answered %d", d, code)
		}
	}
	if got := r.orderedResult().outOfOrder; got != 1 {
		t.Errorf("%d out of order, want 1 (k1.1 after k1.2 at /o0)", got)
	}
	r.refuse(RefusedKey)
	if code := deliver("/o0", RefusedKey, 0); code != http.StatusServiceUnavailable || r.failed.Load() != 1 {
		t.Errorf("refused key answered %d, %d refused", code, r.failed.Load())
	}
	if code := deliver("/o0", "k1", 4); code != http.StatusNoContent {
		t.Errorf("another key while %s is refused: %d", RefusedKey, code)
	}
	r.refuse("")
	if code := deliver("/o0", RefusedKey, 1); code != http.StatusNoContent {
		t.Errorf("refused key after the refusal: %d", code)
	}
	if got := r.count(); got != 8 {
		t.Errorf("%d deliveries counted, want 8", got)
	}
}
