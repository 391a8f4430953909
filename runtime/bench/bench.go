// Package bench measures the platform the way its users feel it: events
// accepted per second at ingest, deliveries per second reaching a partner,
// and the latency from ingest accepting an event to the partner receiving
// it — against a baseline measured in the same run with the same client
// and payload (a bare net/http handler answering 202), so every figure is
// also a ratio that the machine's speed and noise cancel out of.
//
// The platform is whp dev's (runtime/dev) doing all of its real work:
// schema validation, durable writes to both Kafka clusters, signing,
// statuses recorded. It runs in a process of its own, as does the
// baseline (Config.Command), beside the receiver and the load generator
// in the bench's, all on 127.0.0.1: the CPU and memory figures are the
// platform's process's.
package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/dev"
	"github.com/whp-dev/whp/runtime/dispatch"
	"github.com/whp-dev/whp/runtime/retry"
)

// Config is one run.
type Config struct {
	// Command starts a process that serves the platform or the baseline:
	// the program and its arguments, run as they are; the process must
	// call ServeProcess with its standard input and output. whp bench
	// runs itself ("whp bench-process"). Required.
	Command []string
	// Connections is the number of keep-alive connections of the load
	// generator. Default 64.
	Connections int
	// Duration of each throughput phase. Default 10 s.
	Duration time.Duration
	// Rate is the fixed event rate of the latency phase, per second.
	// Default 200.
	Rate int
	// LatencyDuration is how long the latency phase lasts. Default 10 s.
	LatencyDuration time.Duration
	// LatencyRates, if set, adds a phase after the latency phase (outside
	// the CPU and memory figures of the others; before the soak): the
	// latency phase again at each of these rates in turn, each for
	// LatencyDuration (ratecurve.go). It measures what a buyer asks of
	// latency: how it holds as the load nears what the platform delivers.
	LatencyRates []int
	// PayloadBytes is the size of each event's body. Default 1024.
	PayloadBytes int
	// Fanout is the number of subscriptions each event is delivered to.
	// Default 1.
	Fanout int
	// Tenants spreads the events over this many tenants, each with
	// Fanout partners of its own whose subscriptions take its events
	// alone (a filter on the event's data.tenant): Tenants × Fanout
	// partner endpoints, each event still delivered Fanout times — a
	// platform with an endpoint per customer, as a buyer with thousands
	// of customers runs it. Default 1: no tenant, Fanout partners
	// subscribed to every event.
	Tenants int
	// DataDir holds the platform's data; empty: a temporary directory.
	DataDir string
	// Target, if set, is the base URL of a running platform to measure
	// instead of starting one. Its catalog must route the bench schema to
	// the receiver (Catalog prints what to add), with Fanout
	// subscriptions. CPU and memory are then not the platform's and are
	// not reported.
	Target string
	// ReceiverAddr is where the receiver listens. Default 127.0.0.1:0 (any
	// port); with Target, the address the target's catalog names.
	ReceiverAddr string
	// Relay, with the embedded platform, measures the relay (relay.go)
	// before the platform starts: the delivered rate's ceiling on the
	// machine of the run.
	Relay bool
	// KafkaRelay, with the embedded platform, measures the Kafka relay
	// (kafkarelay.go) after the relay: the relay through the platform's two
	// durable Kafka hops, with nothing else — the delivered rate's ceiling
	// for a platform built on them, on the machine of the run.
	KafkaRelay bool
	// Progress, if set, is told what the run is doing (0..1 per phase),
	// from one goroutine at a time.
	Progress func(phase string, done float64)
	// CPUProfile, if set, receives a pprof CPU profile of the platform's
	// process in the phases with every role running (throughput, drain,
	// latency) — not of ingest alone. CPUSeconds covers the same phases.
	CPUProfile io.Writer
	// SlowPartner, if positive, adds one more partner, "slow", subscribed
	// to every event, that answers each delivery after this long. Its
	// deliveries are not counted: the figures are the other partners',
	// and show what one slow endpoint costs the others.
	SlowPartner time.Duration
	// TraceSampleRatio is the embedded platform's share of traced events
	// (dev.Config.TraceSampleRatio); 0: every event, whp dev's default.
	TraceSampleRatio float64
	// Outage, if positive, adds a last phase (after the latency phase, and
	// outside its CPU and memory figures): every partner answers 503 for
	// this long while events arrive at Rate, then recovers. It measures
	// what a buyer asks of a platform when an endpoint goes down: how many
	// attempts it spends on the endpoint while it is down, how long the
	// backlog takes to arrive once it is back, and how hard the catch-up
	// hits it (OutageResult).
	Outage time.Duration
	// OutageStatus is what the partners answer during the outage: 503
	// without it (a partner down), 429 for one whose quota is spent, or
	// another 5xx.
	OutageStatus int
	// OutageRetryAfter, if positive, is sent with those answers as
	// Retry-After, in whole seconds: a partner that says when to come
	// back.
	OutageRetryAfter time.Duration
	// Crash, if positive, adds a last phase (after the outage's, if any;
	// outside the CPU and memory figures, embedded platform only): events
	// arrive at Rate for this long, and a third of the way in the
	// platform's process is SIGKILLed — every role and the embedded Kafka
	// and store die at once — and started again on its data dir, as a
	// supervisor restarts a crashed pod. It measures what a buyer asks of
	// a crash: what was lost or duplicated, and how long until the
	// platform serves and delivers again (CrashResult).
	Crash time.Duration
	// Soak, if positive, adds a phase after the latency phase (outside the
	// CPU and memory figures of the others; before the outage and crash
	// phases, if any): events arrive at SoakRate for this long, and each
	// twentieth of it (at least a second) records the deliveries made and
	// their latency, and the platform's CPU, memory, goroutines and data
	// on disk (SoakResult). It measures what a buyer asks of a platform
	// left running: whether anything drifts as the hours pass.
	Soak time.Duration
	// SoakRate is the soak's events per second. Default Rate.
	SoakRate int
	// Ordered, if positive, adds a phase after the soak (outside the CPU
	// and memory figures; before the outage and crash phases, if any):
	// events of Keys partition keys arrive at Rate for this long, for
	// Fanout partners subscribed in mode "ordered", and for its middle
	// third the partners refuse one key's deliveries (ordered.go). It
	// measures what a buyer asks of ordered delivery: whether every key's
	// order holds, and what one failing key costs the others
	// (OrderedResult).
	Ordered time.Duration
	// Keys is the ordered phase's number of partition keys. Default 16.
	Keys int
	// PartnerLatency, if positive, adds a phase after the ordered phase
	// (outside the CPU and memory figures; before the outage and crash
	// phases, if any): events arrive at Rate for LatencyDuration while
	// every partner takes this long to answer each delivery, as an
	// endpoint across the internet does (far.go). It measures what a
	// buyer asks of partners that are far away: does the platform keep
	// enough deliveries in flight to keep up (FarResult).
	PartnerLatency time.Duration
	// PartnerLimit, if positive, adds a phase after the far-partners phase
	// (outside the CPU and memory figures; before the outage and crash
	// phases, if any): events arrive at Rate for LatencyDuration while
	// every partner takes this many deliveries at once, answering each
	// after PartnerLatency (limitedHold without one), and answers 429 with
	// Retry-After: 1 to the rest, as an endpoint with a concurrency limit
	// of its own does (limited.go). It measures what a buyer asks of such
	// partners: how many of their answers are 429s, and what that costs
	// the deliveries' latency (LimitedResult).
	PartnerLimit int
	// MaxInFlight, if positive, is every partner's max_in_flight in the
	// embedded platform's catalog (Catalog): the most deliveries in
	// flight to each at once. 0: the dispatcher's default.
	MaxInFlight int
	// Concurrency and PartnerConcurrency are the embedded platform's
	// dispatcher's bounds (whp dev's --concurrency and
	// --partner-concurrency). 0: their defaults.
	Concurrency, PartnerConcurrency int
	// FixedPartnerConcurrency is whp dev's --fixed-partner-concurrency.
	FixedPartnerConcurrency bool
	// KafkaKeep is the embedded platform's (dev.Config.KafkaKeep, whp
	// dev's --kafka-keep-mib in bytes): how much of the records its
	// consumers are done with each embedded Kafka cluster keeps. 0: its
	// default; negative: all.
	KafkaKeep int64
	// KafkaSync is the embedded platform's (dev.Config.KafkaSync, whp
	// dev's --kafka-sync): each batch its embedded Kafka writes is
	// fsynced before it is acknowledged.
	KafkaSync bool
	// History is the embedded platform's (dev.Config.History): how long
	// its store keeps events' and deliveries' history. 0: its default.
	History time.Duration
	// EgressPartitions is the embedded platform's (whp dev's
	// --egress-partitions): each subscription's egress topic's
	// partitions. 0: its default, 3.
	EgressPartitions int
	// BreakerCoolDown is the embedded platform's (whp dev's
	// --breaker-cooldown): how long an open circuit breaker waits before
	// it probes the partner again. 0: whp dev's default, 30 s.
	BreakerCoolDown time.Duration
	// PartnerTLS, if set, has the partners' endpoints served over HTTPS
	// (partnertls.go): PartnerTLSHTTP2 offering HTTP/2 and HTTP/1.1,
	// PartnerTLSHTTP1 HTTP/1.1 alone. Embedded platform only: its
	// dispatcher trusts the run's certificate. Default: plain HTTP.
	PartnerTLS string
	// partnerCA is the PEM of the receiver's certificate, with PartnerTLS.
	partnerCA string
	// partnerDelay, if positive, is how long every partner takes to
	// answer a delivery during the crash phase: a test's way to have
	// deliveries owed when the platform dies.
	partnerDelay time.Duration
	// HeapProfile, if set, receives a pprof heap profile taken when the
	// platform's anonymous memory peaked during the platform's phases (the
	// last of the samples that set a new peak by 10 % or more).
	HeapProfile io.Writer
	// IdempotencyKeys has every request carry an Idempotency-Key of its
	// own, as a producer that retries safely sends (README: "retry with
	// the same Idempotency-Key"): the platform then claims and records
	// each key in its store on the 202's path. The baseline and the relay
	// get the header too, and ignore it.
	IdempotencyKeys bool
}

// loops numbers the load loops of the process, so that the
// Idempotency-Keys of one loop are not another's: a loop numbers its
// events from 1, and the ingest-alone phase runs several.
var loops atomic.Int64

// poster posts events over cfg.Connections keep-alive connections, with
// an Idempotency-Key unique to the process's run, the loop and the event
// if cfg asks for them.
type poster struct {
	cl   *http.Client
	keys string // the keys' prefix; "" sends none
}

func (c Config) poster() poster {
	p := poster{cl: client(c.Connections)}
	if c.IdempotencyKeys {
		p.keys = fmt.Sprintf("bench-%d-%d-%d-", os.Getpid(), time.Now().UnixNano(), loops.Add(1))
	}
	return p
}

func (p poster) post(url string, seq int64, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.keys != "" {
		req.Header.Set("Idempotency-Key", p.keys+strconv.FormatInt(seq, 10))
	}
	return p.cl.Do(req)
}

func (c *Config) defaults() {
	if c.Connections <= 0 {
		c.Connections = 64
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.LatencyDuration <= 0 {
		c.LatencyDuration = 10 * time.Second
	}
	if c.PayloadBytes <= 0 {
		c.PayloadBytes = 1024
	}
	if c.Fanout <= 0 {
		c.Fanout = 1
	}
	if c.Tenants <= 0 {
		c.Tenants = 1
	}
	if c.Keys <= 0 {
		c.Keys = 16
	}
	if c.Progress == nil {
		c.Progress = func(string, float64) {}
	}
	if c.OutageStatus == 0 {
		c.OutageStatus = http.StatusServiceUnavailable
	}
}

// Result is what a run measured.
type Result struct {
	Target       string `json:"target,omitempty"` // a running platform, or "" for the embedded one
	Connections  int    `json:"connections"`
	PayloadBytes int    `json:"payload_bytes"`
	Fanout       int    `json:"fanout"`
	Tenants      int    `json:"tenants"`
	// EgressPartitions is Config.EgressPartitions, if set.
	EgressPartitions int `json:"egress_partitions,omitempty"`
	// KafkaSync is Config.KafkaSync: the embedded Kafka fsynced each
	// batch before acknowledging it.
	KafkaSync bool `json:"kafka_sync,omitempty"`
	// IdempotencyKeys is Config.IdempotencyKeys: every event was sent
	// with an Idempotency-Key of its own.
	IdempotencyKeys bool `json:"idempotency_keys,omitempty"`

	BaselinePerSec float64 `json:"baseline_per_sec"`
	// IngestPerSec is what the ingest role accepts alone — nothing
	// routed or delivered meanwhile — as it runs in production on its own
	// pods: the burst a producer can send. Not measured against a target.
	IngestPerSec float64 `json:"ingest_alone_per_sec,omitempty"`
	// AcceptedPerSec is what ingest accepts while the same process also
	// routes and delivers every accepted event (all roles on one machine).
	AcceptedPerSec  float64 `json:"accepted_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	// RelayPerSec is what the relay delivered (Config.Relay): a platform
	// doing no work of its own, the delivered rate's ceiling in the run.
	// RelayRatio is it over the baseline, DeliveredOfRelay the platform's
	// delivered rate over it. RelayCPUPerEventMS is the relay's process's
	// CPU over the events it accepted (compare CPUPerEventMS).
	RelayPerSec        float64 `json:"relay_delivered_per_sec,omitempty"`
	RelayCPUPerEventMS float64 `json:"relay_cpu_ms_per_event,omitempty"`
	RelayRatio         float64 `json:"relay_ratio,omitempty"`
	DeliveredOfRelay   float64 `json:"delivered_of_relay,omitempty"`
	// KafkaRelayPerSec is what the Kafka relay delivered (Config.KafkaRelay),
	// and the rest as for the relay.
	KafkaRelayPerSec        float64 `json:"kafka_relay_delivered_per_sec,omitempty"`
	KafkaRelayCPUPerEventMS float64 `json:"kafka_relay_cpu_ms_per_event,omitempty"`
	KafkaRelayRatio         float64 `json:"kafka_relay_ratio,omitempty"`
	DeliveredOfKafkaRelay   float64 `json:"delivered_of_kafka_relay,omitempty"`
	// PartnerTLS is Config.PartnerTLS. PartnerConnections is how many
	// connections the platform opened to the partners over the run (every
	// phase but ingest alone's), PartnerConnectionsUsed those that carried
	// a request, and PartnerRequestsHTTP1 and …HTTP2 the requests it sent
	// on them by protocol: what its connection reuse comes to.
	PartnerTLS             string `json:"partner_tls,omitempty"`
	PartnerConnections     int64  `json:"partner_connections"`
	PartnerConnectionsUsed int64  `json:"partner_connections_used"`
	PartnerRequestsHTTP1   int64  `json:"partner_requests_http1"`
	PartnerRequestsHTTP2   int64  `json:"partner_requests_http2,omitempty"`
	// Ratios to the baseline. IngestRatio's baseline is measured in
	// slices alternating with the ingest-alone phase's (ingestSlices).
	IngestRatio    float64 `json:"ingest_alone_ratio,omitempty"`
	AcceptedRatio  float64 `json:"accepted_ratio"`
	DeliveredRatio float64 `json:"delivered_ratio"`
	// Rejected counts answers other than 202 during the throughput phase.
	Rejected int64 `json:"rejected"`
	// Latency at the fixed rate.
	Rate int `json:"rate_per_sec"`
	Latencies
	// The platform's process's CPU time over the phases with every role
	// running (the receiver and the load generator are not in it).
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerEventMS is CPUSeconds over the events accepted in those
	// phases, and CPUPerEventBaselines the same in units of one baseline
	// exchange (× the baseline's rate): what an event costs end to end,
	// with the machine's speed of the moment cancelled out.
	CPUPerEventMS        float64 `json:"cpu_ms_per_event"`
	CPUPerEventBaselines float64 `json:"cpu_per_event_baselines"`
	// PeakRSSMiB is the largest resident set of the platform's process
	// sampled during this run's platform phases; PeakAnonMiB its
	// anonymous part (heap, stacks), without the pages of the embedded
	// store's memory-mapped file, which the kernel can drop and read
	// again (Linux only; 0 elsewhere).
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	PeakAnonMiB float64 `json:"peak_anon_mib,omitempty"`
	// PeakFilesMiB is the rest of the resident set at its peak: the
	// resident pages of each file the process maps (its executable, the
	// embedded store's files), by the file's base name (Linux only).
	PeakFilesMiB map[string]float64 `json:"peak_rss_files_mib,omitempty"`
	// StartSeconds is from starting the platform's process to its serving
	// on a fresh data dir: the catalog loaded and applied (its schemas
	// compiled, every partner and subscription written), every role
	// started. Embedded platform only.
	StartSeconds float64 `json:"start_seconds,omitempty"`
	// Lost counts deliveries that never arrived within the drain time;
	// Duplicates, deliveries that arrived twice.
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	// Misrouted counts deliveries, over the whole run, to a partner that
	// was not owed them: one of another tenant's (Config.Tenants).
	Misrouted int64 `json:"misrouted,omitempty"`
	// ByRate is the latency phase's figures followed by the rate curve's
	// (Config.LatencyRates), one point a rate.
	ByRate []RatePoint `json:"by_rate,omitempty"`
	// Soak is the soak phase's (Config.Soak).
	Soak *SoakResult `json:"soak,omitempty"`
	// Ordered is the ordered phase's (Config.Ordered).
	Ordered *OrderedResult `json:"ordered,omitempty"`
	// Far is the far-partners phase's (Config.PartnerLatency).
	Far *FarResult `json:"far_partners,omitempty"`
	// Limited is the limited-partners phase's (Config.PartnerLimit).
	Limited *LimitedResult `json:"limited_partners,omitempty"`
	// MaxInFlight is Config.MaxInFlight, if set.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Outage is the outage phase's (Config.Outage).
	Outage *OutageResult `json:"outage,omitempty"`
	// Crash is the crash phase's (Config.Crash).
	Crash *CrashResult `json:"crash,omitempty"`
}

// Latencies are a latency phase's: from ingest accepting an event to
// the receiver getting it, and the producer's wait, from sending the POST
// to reading its 202 (validated, durable on the ingress cluster).
type Latencies struct {
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	AcceptP50MS  float64 `json:"accept_p50_ms"`
	AcceptP95MS  float64 `json:"accept_p95_ms"`
	AcceptP99MS  float64 `json:"accept_p99_ms"`
}

// SoakResult is what the soak phase measured: events arrived at Rate for
// Seconds, and each slice of it was recorded on its own.
type SoakResult struct {
	Seconds float64 `json:"seconds"`
	Rate    int     `json:"rate_per_sec"`
	// Events is how many were accepted; each is owed to every
	// subscription. NotArrived counts the deliveries that had not arrived
	// when nothing more had for 15 s; Duplicates, those that arrived twice.
	Events     int64       `json:"events"`
	NotArrived int64       `json:"not_arrived"`
	Duplicates int64       `json:"duplicates"`
	Slices     []SoakSlice `json:"slices"`
}

// SoakSlice is one slice of the soak. The platform's figures (CPU,
// memory, goroutines, data) are the embedded platform's only.
type SoakSlice struct {
	// EndSeconds is the slice's end, from the soak's start.
	EndSeconds float64 `json:"end_seconds"`
	// Accepted and Delivered are per second over the slice; the latency
	// is of the deliveries that arrived in it (ingest accepted → receiver
	// got it).
	AcceptedPerSec  float64 `json:"accepted_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	LatencyP50MS    float64 `json:"latency_p50_ms"`
	LatencyP95MS    float64 `json:"latency_p95_ms"`
	LatencyP99MS    float64 `json:"latency_p99_ms"`
	// CPUMSPerEvent is the platform's process's CPU over the slice, per
	// event accepted in it.
	CPUMSPerEvent float64 `json:"cpu_ms_per_event,omitempty"`
	// At the slice's end: the platform's resident set, its anonymous
	// part, its Go heap's live bytes (at the last GC), its goroutines,
	// and the sizes of the embedded store's and Kafka's data on disk.
	RSSMiB     float64 `json:"rss_mib,omitempty"`
	AnonMiB    float64 `json:"anon_mib,omitempty"`
	HeapMiB    float64 `json:"heap_mib,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
	StoreMiB   float64 `json:"store_mib,omitempty"`
	KafkaMiB   float64 `json:"kafka_mib,omitempty"`
}

// soakSlices is how many slices a soak is recorded in (each at least a
// second).
const soakSlices = 20

// soak runs the soak phase against target (platform, if not nil, is the
// embedded platform's process, whose data is in cfg.DataDir).
func soak(ctx context.Context, cfg Config, target string, platform *process, recv *receiver) (*SoakResult, error) {
	c := cfg
	c.Rate = cmp.Or(cfg.SoakRate, cfg.Rate)
	slice := max(cfg.Soak/soakSlices, time.Second)
	res := &SoakResult{Seconds: cfg.Soak.Seconds(), Rate: c.Rate}
	sample := func() (processReply, error) {
		if platform == nil {
			return processReply{}, nil
		}
		return platform.call(processRequest{Op: "sample"})
	}
	prev, err := sample()
	if err != nil {
		return nil, err
	}
	recv.reset()
	_, _, _, dups0 := recv.window() // the receiver counts duplicates over the run
	var accepted atomic.Int64
	loop := make(chan error, 1)
	go func() {
		_, _, _, err := openLoop(ctx, at(target+"/v1/events"), c, cfg.Soak, "s", "soak", &accepted)
		loop <- err
	}()
	start := time.Now()
	t := time.NewTicker(slice)
	defer t.Stop()
	var lastAccepted, lastReceived int64
	lastLat, lastAt := 0, start
	for range int(cfg.Soak / slice) {
		select {
		case <-ctx.Done():
			<-loop
			return nil, ctx.Err()
		case <-t.C:
		}
		now := time.Now()
		secs := now.Sub(lastAt).Seconds()
		acc, got := accepted.Load(), recv.count()
		lat, n := recv.latenciesFrom(lastLat)
		sl := SoakSlice{EndSeconds: now.Sub(start).Seconds(), AcceptedPerSec: float64(acc-lastAccepted) / secs, DeliveredPerSec: float64(got-lastReceived) / secs,
			LatencyP50MS: percentile(lat, 50), LatencyP95MS: percentile(lat, 95), LatencyP99MS: percentile(lat, 99)}
		cur, err := sample()
		if err != nil {
			<-loop
			return nil, err
		}
		if platform != nil {
			if events := acc - lastAccepted; events > 0 {
				sl.CPUMSPerEvent = (cur.CPUSeconds - prev.CPUSeconds) / float64(events) * 1000
			}
			sl.RSSMiB, sl.AnonMiB, sl.HeapMiB, sl.Goroutines = cur.RSSMiB, cur.AnonMiB, cur.HeapMiB, cur.Goroutines
			sl.StoreMiB, sl.KafkaMiB = dirMiB(filepath.Join(cfg.DataDir, "data", "store")), dirMiB(filepath.Join(cfg.DataDir, "data", "kafka"))
		}
		res.Slices = append(res.Slices, sl)
		prev, lastAccepted, lastReceived, lastLat, lastAt = cur, acc, got, n, now
	}
	if err := <-loop; err != nil {
		return nil, err
	}
	res.Events = accepted.Load()
	want := res.Events * int64(cfg.Fanout)
	recv.await(ctx, want, 15*time.Second, func(done float64) { cfg.Progress("soak: draining", done) })
	_, _, got, dups := recv.window()
	res.NotArrived, res.Duplicates = max(want-got, 0), dups-dups0
	return res, nil
}

// dirMiB is the size of the files under dir, in MiB (0 if unreadable).
func dirMiB(dir string) float64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed while walking (a segment trimmed)
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return float64(n) / (1 << 20)
}

// CrashResult is what the crash phase measured: events arrived at the
// run's rate while the platform's process was SIGKILLed and started
// again on its data dir.
type CrashResult struct {
	Seconds float64 `json:"seconds"`
	// Events is how many were accepted (202) during the phase, before
	// the kill and after the restart; each is owed to every subscription.
	Events int64 `json:"events"`
	// Refused counts the POSTs not accepted: sent while the platform was
	// down, or cut off by the kill. None of them was acknowledged, so
	// none is owed; a producer sends them again (with an Idempotency-Key,
	// so that one whose answer was lost is not accepted twice).
	Refused int64 `json:"refused"`
	// RestartSeconds is from the kill to the new process serving: the
	// embedded Kafka's and the store's data reopened, the catalog
	// applied, every role started.
	RestartSeconds float64 `json:"restart_seconds"`
	// FirstDeliverySeconds is from the kill to the first delivery after
	// it; RecoverySeconds to the last delivery of an event accepted before
	// the kill (0 if every one had arrived before it): when what the
	// crash interrupted was made good.
	FirstDeliverySeconds float64 `json:"first_delivery_seconds"`
	RecoverySeconds      float64 `json:"recovery_seconds"`
	// NotArrived counts the phase's deliveries that had not arrived when
	// nothing more had for a minute (lost); Duplicates, those that
	// arrived twice (a delivery the partner had answered when the kill
	// came, before its answer was recorded, is made again: at least
	// once).
	NotArrived int64 `json:"not_arrived"`
	Duplicates int64 `json:"duplicates"`
}

// OutageResult is what the outage phase measured: while every partner
// answered 503, events arrived at the run's rate; then the partners
// recovered, and no more events were sent.
type OutageResult struct {
	Seconds float64 `json:"seconds"`
	// Status is what the partners answered (Config.OutageStatus), and
	// RetryAfterSeconds the Retry-After they sent with it (0: none).
	Status            int     `json:"status"`
	RetryAfterSeconds float64 `json:"retry_after_seconds,omitempty"`
	// Events is how many were accepted during the outage; each is owed
	// to every subscription.
	Events int64 `json:"events"`
	// FailedAttempts is how many POSTs the partners answered Status: what
	// the platform spent on endpoints that were down (its breakers hold
	// the rest of the deliveries without attempting them).
	FailedAttempts int64 `json:"failed_attempts"`
	// MostFailedAttempts is the most POSTs of one delivery the partners
	// answered Status. A delivery failed twice is one whose retry was
	// attempted while the partner was down — by default it then waits
	// anywhere up to 5 minutes, behind the rest of the backlog.
	MostFailedAttempts int64 `json:"most_failed_attempts"`
	// RecoveryP50Seconds and RecoverySeconds: from the partners' recovery
	// to the median, and to the last, of the outage's deliveries arriving
	// — how long the backlog took to catch up.
	RecoveryP50Seconds float64 `json:"recovery_p50_seconds"`
	RecoverySeconds    float64 `json:"recovery_seconds"`
	// Held counts the passes that held a delivery without attempting it
	// (whp_deliveries_total{outcome="held"}), from the outage's start to
	// the end of the catch-up: each is a status write and a retry record,
	// what the outage cost the platform's stores. Embedded platform only.
	Held int64 `json:"held,omitempty"`
	// PeakInFlight is the most deliveries one partner had in flight at
	// once during the catch-up: how hard the backlog hits an endpoint
	// that has just come back.
	PeakInFlight int64 `json:"peak_in_flight"`
	// NotArrived counts the outage's deliveries that had not arrived when
	// the catch-up gave up (nothing arrived for twice the breaker's
	// cool-down, at least a minute): a delivery attempted twice while the
	// partner was down may be among them, waiting out the next step of
	// its schedule. Duplicates counts those that arrived twice.
	NotArrived int64 `json:"not_arrived"`
	Duplicates int64 `json:"duplicates"`
}

// Run measures the baseline, then starts the platform and measures it.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	if err := ValidPartnerTLS(cfg.PartnerTLS); err != nil {
		return Result{}, fmt.Errorf("bench: PartnerTLS %w", err)
	}
	if cfg.PartnerTLS != PartnerTLSNone && cfg.Target != "" {
		return Result{}, errors.New("bench: partners over TLS need the embedded platform, whose dispatcher trusts the run's certificate, not a Target")
	}
	res := Result{PartnerTLS: cfg.PartnerTLS, Target: cfg.Target, Connections: cfg.Connections, PayloadBytes: cfg.PayloadBytes, Fanout: cfg.Fanout, Tenants: cfg.Tenants, EgressPartitions: cfg.EgressPartitions, Rate: cfg.Rate,
		KafkaSync: cfg.KafkaSync && cfg.Target == "", IdempotencyKeys: cfg.IdempotencyKeys, MaxInFlight: cfg.MaxInFlight}
	body := eventBody(cfg.PayloadBytes, "baseline", cfg.tenant(0))

	// The baseline: the same client and payload against a handler that
	// reads the body and answers 202, in a process of its own.
	base, err := startProcess(ctx, cfg.Command, processSpec{Baseline: true})
	if err != nil {
		return res, err
	}
	defer base.Close()
	n, _, err := closedLoop(ctx, base.URL+"/v1/events", cfg, func(int64) []byte { return body }, "baseline")
	if err != nil {
		return res, err
	}
	res.BaselinePerSec = float64(n) / cfg.Duration.Seconds()

	recv := newReceiver(cfg)
	recv.slow = cfg.SlowPartner
	rs, caPEM, err := serveReceiver(cfg, recv)
	if err != nil {
		return res, err
	}
	defer rs.Close()
	cfg.partnerCA = caPEM
	if cfg.Relay && cfg.Target == "" {
		if res.RelayPerSec, res.RelayCPUPerEventMS, err = relayPhase(ctx, cfg, recv, rs.URL, false); err != nil {
			return res, err
		}
	}
	if cfg.KafkaRelay && cfg.Target == "" {
		if res.KafkaRelayPerSec, res.KafkaRelayCPUPerEventMS, err = relayPhase(ctx, cfg, recv, rs.URL, true); err != nil {
			return res, err
		}
	}
	target, stopPlatform := cfg.Target, func() error { return nil }
	var platform *process
	if target == "" {
		if cfg.DataDir == "" {
			// The bench's, not the process's: the crash phase starts
			// another on the same data.
			if cfg.DataDir, err = os.MkdirTemp("", "whp-bench-"); err != nil {
				return res, err
			}
			defer os.RemoveAll(cfg.DataDir)
		}
		started := time.Now()
		if platform, err = startProcess(ctx, cfg.Command, cfg.platform(rs.URL, false)); err != nil {
			return res, err
		}
		res.StartSeconds = time.Since(started).Seconds()
		stop := sync.OnceValue(func() error {
			// Before the platform stops, the slow partner answers
			// whatever it still holds.
			recv.release()
			return platform.Close()
		})
		defer stop()
		stopPlatform = stop
		target = platform.URL
	}
	defer recv.release()
	target = strings.TrimRight(target, "/")
	var measured func() error
	if platform != nil {
		if measured, err = measure(platform, cfg, &res); err != nil {
			return res, err
		}
	}

	// Throughput: as fast as the connections go.
	accepted, rejected, err := closedLoop(ctx, target+"/v1/events", cfg, cfg.numbered("t"), "throughput")
	if err != nil {
		return res, err
	}
	res.AcceptedPerSec, res.Rejected = float64(accepted)/cfg.Duration.Seconds(), rejected
	// Delivered per second: from the first delivery to the last, once
	// every accepted event has reached every subscription (or the drain
	// timed out).
	// The drain ends when everything arrived, or when nothing more has
	// arrived for 15 s (what is missing then is lost).
	want := accepted * int64(cfg.Fanout)
	recv.await(ctx, want, 15*time.Second, func(done float64) { cfg.Progress("draining", done) })
	first, last, got, dups := recv.window()
	if got > 0 && last.After(first) {
		res.DeliveredPerSec = float64(got) / last.Sub(first).Seconds()
	}
	res.Lost, res.Duplicates = max(want-got, 0), dups

	// Latency at a fixed rate.
	at0, sent, err := latencyAt(ctx, target, cfg, platform, recv, cfg.Rate, "l", "latency")
	if err != nil {
		return res, err
	}
	res.Latencies = at0.Latencies
	if measured != nil {
		if err := measured(); err != nil {
			return res, err
		}
		if events := accepted + sent; events > 0 {
			res.CPUPerEventMS = res.CPUSeconds / float64(events) * 1000
			res.CPUPerEventBaselines = res.CPUSeconds / float64(events) * res.BaselinePerSec
		}
	}
	if len(cfg.LatencyRates) > 0 {
		if res.ByRate, err = rateCurve(ctx, target, cfg, platform, recv, at0, res.DeliveredPerSec); err != nil {
			return res, err
		}
	}
	if cfg.Soak > 0 {
		if res.Soak, err = soak(ctx, cfg, target, platform, recv); err != nil {
			return res, err
		}
	}
	if cfg.Ordered > 0 {
		if res.Ordered, err = ordered(ctx, target, cfg, recv); err != nil {
			return res, err
		}
	}
	if cfg.PartnerLatency > 0 {
		if res.Far, err = farPartners(ctx, target, cfg, recv); err != nil {
			return res, err
		}
	}
	if cfg.PartnerLimit > 0 {
		if res.Limited, err = limitedPartners(ctx, target, cfg, recv); err != nil {
			return res, err
		}
	}
	if cfg.Outage > 0 {
		if res.Outage, err = outage(ctx, target, cfg, recv); err != nil {
			return res, err
		}
	}
	if cfg.Crash > 0 && platform != nil {
		if res.Crash, err = crash(ctx, cfg, &platform, rs.URL, recv); err != nil {
			return res, err
		}
	}
	if platform != nil {
		// So that the two platforms share no CPU.
		if err := stopPlatform(); err != nil {
			return res, err
		}
		if res.IngestPerSec, res.IngestRatio, err = ingestAlone(ctx, cfg, base.URL, rs.URL, body); err != nil {
			return res, err
		}
	}
	res.Misrouted = recv.misrouted.Load()
	res.PartnerConnections, res.PartnerConnectionsUsed = recv.conns.conns.Load(), recv.conns.used.Load()
	res.PartnerRequestsHTTP1, res.PartnerRequestsHTTP2 = recv.conns.http1.Load(), recv.conns.http2.Load()
	if res.BaselinePerSec > 0 {
		res.AcceptedRatio = res.AcceptedPerSec / res.BaselinePerSec
		res.DeliveredRatio = res.DeliveredPerSec / res.BaselinePerSec
		res.RelayRatio = res.RelayPerSec / res.BaselinePerSec
		res.KafkaRelayRatio = res.KafkaRelayPerSec / res.BaselinePerSec
	}
	if res.RelayPerSec > 0 {
		res.DeliveredOfRelay = res.DeliveredPerSec / res.RelayPerSec
	}
	if res.KafkaRelayPerSec > 0 {
		res.DeliveredOfKafkaRelay = res.DeliveredPerSec / res.KafkaRelayPerSec
	}
	return res, nil
}

// measure has the platform's process measure itself — its CPU time and
// peak memory, and the profiles cfg asks for — until the returned
// function is called, which records the figures in res.
func measure(platform *process, cfg Config, res *Result) (func() error, error) {
	req := processRequest{Op: "measure"}
	profiles := map[*string]io.Writer{&req.CPUProfile: cfg.CPUProfile, &req.HeapProfile: cfg.HeapProfile}
	var files []string
	removeFiles := func() {
		for _, f := range files {
			os.Remove(f)
		}
	}
	for name, w := range profiles {
		if w == nil {
			continue
		}
		f, err := os.CreateTemp("", "whp-bench-*.pprof")
		if err != nil {
			removeFiles()
			return nil, err
		}
		f.Close()
		*name = f.Name()
		files = append(files, f.Name())
	}
	if _, err := platform.call(req); err != nil {
		removeFiles()
		return nil, err
	}
	return func() error {
		defer removeFiles()
		usage, err := platform.call(processRequest{Op: "result"})
		if err != nil {
			return err
		}
		res.CPUSeconds, res.PeakRSSMiB, res.PeakAnonMiB, res.PeakFilesMiB = usage.CPUSeconds, usage.PeakRSSMiB, usage.PeakAnonMiB, usage.PeakFilesMiB
		for name, w := range profiles {
			if w == nil {
				continue
			}
			b, err := os.ReadFile(*name)
			if err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// ingestSlices is how many slices the ingest-alone phase alternates with
// the baseline.
const ingestSlices = 4

// ingestAlone measures the ingest role by itself: a platform of its own
// that runs no processor (its events are never routed, and it is
// discarded), in slices alternating with the baseline at baseURL, so that
// the ratio is taken between neighbours in time on a machine whose speed
// drifts (over a run, the baseline moves by a quarter here).
func ingestAlone(ctx context.Context, cfg Config, baseURL, receiverURL string, baseBody []byte) (perSec, ratio float64, err error) {
	p, err := startProcess(ctx, cfg.Command, cfg.platform(receiverURL, true))
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	slice := cfg
	slice.Duration = max(cfg.Duration/ingestSlices, time.Second/2)
	var in, bn int64
	for range ingestSlices {
		b, _, err := closedLoop(ctx, baseURL+"/v1/events", slice, func(int64) []byte { return baseBody }, "ingest alone")
		if err != nil {
			return 0, 0, err
		}
		n, _, err := closedLoop(ctx, p.URL+"/v1/events", slice, cfg.numbered("i"), "ingest alone")
		if err != nil {
			return 0, 0, err
		}
		in, bn = in+n, bn+b
	}
	return float64(in) / (slice.Duration.Seconds() * ingestSlices), float64(in) / float64(max(bn, 1)), nil
}

// eventBody is an event of size bytes, of tenant if not "". Its padding
// is text — words drawn from a small vocabulary, the same for every event
// — so it compresses about as well as real events do (≈3×), not like a
// run of one letter (≈20×), which would flatter Kafka's share of the work
// and hide how much fetched data the consumers hold.
func eventBody(size int, id, tenant string) []byte {
	const frame = `{"domain":"bench","event":"thing.happened","version":"1","data":{"id":"","pad":""}}`
	const tenantField = `,"tenant":""`
	extra := len(id)
	if tenant != "" {
		extra += len(tenantField) + len(tenant)
	}
	pad := padding()
	n := min(max(size-len(frame)-extra, 0), len(pad))
	// One allocation: the load generator should cost about what the
	// baseline's (which posts one prepared body) does.
	b := make([]byte, 0, len(frame)+extra+n)
	b = append(b, `{"domain":"bench","event":"thing.happened","version":"1","data":{"id":"`...)
	b = append(b, id...)
	if tenant != "" {
		b = append(b, `","tenant":"`...)
		b = append(b, tenant...)
	}
	b = append(b, `","pad":"`...)
	b = append(b, pad[:n]...)
	return append(b, `"}}`...)
}

// numbered makes the i-th event of a phase: PayloadBytes bytes, its id
// the phase's prefix and i, so that no two events of a run are the same,
// and its tenant the i-th in turn.
func (c Config) numbered(prefix string) func(int64) []byte {
	return func(i int64) []byte {
		return eventBody(c.PayloadBytes, prefix+strconv.FormatInt(i, 10), c.tenant(i))
	}
}

// tenant is the i-th event's tenant: t0, t1… in turn; "" with one tenant.
func (c Config) tenant(i int64) string {
	if c.Tenants <= 1 {
		return ""
	}
	return "t" + strconv.FormatInt(i%int64(c.Tenants), 10)
}

// padding is the text events are padded with, long enough for the
// largest payload (--payload is bounded by the ingest body limit). It is
// made on first use, not when the package initialises: every whp process
// links this package, and making it at start-up cost each of them — every
// role's pod, every Lambda cold start — ≈ 10 ms and 1 MiB kept
// (GODEBUG=inittrace=1).
var padding = sync.OnceValue(func() []byte {
	words := strings.Fields(`order shipped invoice paid customer account created updated deleted refund
		warehouse parcel carrier tracking address street city postal region country amount currency
		total subtotal tax discount coupon item quantity price product variant colour size weight
		status pending complete failed retry partner webhook event delivery signature timestamp`)
	rng := rand.New(rand.NewPCG(1, 2)) // the same text every run
	var b []byte
	for len(b) < 1<<20 {
		b = append(b, words[rng.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b
})

// platform is the spec of the platform's process: its catalog routes the
// bench schema to the receiver at receiverURL with cfg.Fanout
// subscriptions; ingestOnly runs it without its processor, always in a
// temporary data dir.
func (c Config) platform(receiverURL string, ingestOnly bool) processSpec {
	s := processSpec{ReceiverURL: receiverURL, Fanout: c.Fanout, Tenants: c.Tenants, SlowPartner: c.SlowPartner > 0, Ordered: c.Ordered > 0, MaxInFlight: c.MaxInFlight, Concurrency: c.Concurrency, PartnerConcurrency: c.PartnerConcurrency, FixedPartnerConcurrency: c.FixedPartnerConcurrency, DataDir: c.DataDir,
		TraceSampleRatio: c.TraceSampleRatio, BreakerCoolDown: c.BreakerCoolDown, IngestOnly: ingestOnly, EgressPartitions: c.EgressPartitions, KafkaKeep: c.KafkaKeep, KafkaSync: c.KafkaSync, History: c.History,
		PartnerCA: c.partnerCA}
	if ingestOnly {
		s.DataDir = ""
	}
	return s
}

// startPlatform starts whp dev's platform as s asks, in s.DataDir or a
// temporary directory.
func startPlatform(ctx context.Context, s processSpec) (*dev.Platform, func(), error) {
	dir, cleanup := s.DataDir, func() {}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "whp-bench-"); err != nil {
			return nil, nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
	}
	catalogDir := filepath.Join(dir, "catalog")
	if err := os.MkdirAll(catalogDir, 0o755); err != nil {
		cleanup()
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(catalogDir, "bench.cue"), []byte(Catalog(s.ReceiverURL, s.Fanout, s.Tenants, s.SlowPartner, s.Ordered, s.MaxInFlight)), 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	partners := make([]string, s.Fanout*max(s.Tenants, 1))
	for i := range partners {
		partners[i] = fmt.Sprintf("p%d", i)
	}
	if s.SlowPartner {
		partners = append(partners, "slow")
	}
	if s.Ordered {
		for i := range s.Fanout {
			partners = append(partners, fmt.Sprintf("o%d", i))
		}
	}
	dcfg := dev.Config{DataDir: filepath.Join(dir, "data"), CatalogDir: catalogDir, Addr: "127.0.0.1:0", AutoApprove: partners, IngestOnly: s.IngestOnly,
		TraceSampleRatio: s.TraceSampleRatio, EgressPartitions: int32(s.EgressPartitions), KafkaKeep: s.KafkaKeep, KafkaSync: s.KafkaSync, History: s.History,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// whp dev's retry schedule and breaker: the outage phase measures
	// what a user of whp dev gets.
	dcfg.Dispatch = dispatch.Config{Retry: retry.Default(), Breaker: breaker.Config{CoolDown: s.BreakerCoolDown}, Concurrency: s.Concurrency, PartnerConcurrency: s.PartnerConcurrency, FixedPartnerConcurrency: s.FixedPartnerConcurrency}
	if s.PartnerCA != "" {
		var err error
		if dcfg.Dispatch.TLS, err = partnerRoots(s.PartnerCA); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	p, err := dev.Start(ctx, dcfg)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return p, func() { p.Stop(); cleanup() }, nil
}

// Catalog is the catalog the bench needs: the schema bench/thing.happened
// v1 and fanout partners p0… delivering to the receiver at receiverURL
// (paths /p0, /p1…) — or, with tenants > 1, fanout partners for each
// tenant (p0…p(fanout-1) for t0, the next fanout for t1…), each
// subscribed with a filter to its tenant's events alone; with ordered,
// the ordered phase's schema bench/thing.ordered v1 and fanout partners
// o0… subscribed to it in mode "ordered"; with maxInFlight > 0, every
// partner's max_in_flight. Add it to a running platform's catalog to
// target it.
func Catalog(receiverURL string, fanout, tenants int, slow, ordered bool, maxInFlight int) string {
	var b strings.Builder
	b.WriteString("package whp\n\nschemas: bench: \"thing.happened\": \"1\": {owner: \"bench\", payload: {id: string, tenant?: string, pad: string}}\n")
	bound := ""
	if maxInFlight > 0 {
		bound = fmt.Sprintf(", max_in_flight: %d", maxInFlight)
	}
	partner := func(id, event, fields string) {
		fmt.Fprintf(&b, "partners: %s: {name: %q, url: %q, signing_secret: \"partners/%s/signing\", contact: \"bench\"%s}\n", id, strings.ToUpper(id), receiverURL+"/"+id, id, bound)
		fmt.Fprintf(&b, "subscriptions: \"%s.things\": {partner: %q, domain: \"bench\", event: %q, version: \"1\"%s}\n", id, id, event, fields)
	}
	for i := range fanout * max(tenants, 1) {
		filter := ""
		if tenants > 1 {
			filter = fmt.Sprintf(", filter: {path: \"data.tenant\", eq: \"t%d\"}", i/fanout)
		}
		partner(fmt.Sprintf("p%d", i), "thing.happened", filter)
	}
	if slow {
		partner("slow", "thing.happened", "")
	}
	if ordered {
		b.WriteString("schemas: bench: \"thing.ordered\": \"1\": {owner: \"bench\", payload: {seq: string, pad: string}}\n")
		for i := range fanout {
			partner(fmt.Sprintf("o%d", i), "thing.ordered", ", mode: \"ordered\", retry: "+orderedRetry)
		}
	}
	return b.String()
}

// server is an HTTP server on 127.0.0.1.
type server struct {
	URL string
	srv *http.Server
}

// serve serves h on 127.0.0.1, any port.
func serve(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *server) Close() { s.srv.Close() }

// client is the load generator's: conns keep-alive connections.
func client(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute, DisableCompression: true}}
}

// closedLoop posts from every connection back to back for the duration and
// returns the 202s and the other answers.
func closedLoop(ctx context.Context, url string, cfg Config, body func(int64) []byte, phase string) (ok, other int64, err error) {
	c := cfg.poster()
	defer c.cl.CloseIdleConnections()
	var seq, okN, otherN atomic.Int64
	var firstErr atomic.Value
	end := time.Now().Add(cfg.Duration)
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Connections {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				n := seq.Add(1)
				resp, err := c.post(url, n, body(n))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					otherN.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					okN.Add(1)
				} else {
					otherN.Add(1)
				}
			}
		})
	}
	stop := progressEvery(cfg, phase, func() float64 { return min(time.Since(start).Seconds()/cfg.Duration.Seconds(), 1) })
	wg.Wait()
	stop()
	if okN.Load() == 0 {
		return 0, otherN.Load(), noneAccepted(phase, &firstErr)
	}
	return okN.Load(), otherN.Load(), ctx.Err()
}

// progressEvery tells cfg.Progress how far phase is (done) every 200 ms
// until stop is called, which returns once the last call has: Progress
// is called by one goroutine at a time.
func progressEvery(cfg Config, phase string, done func() float64) (stop func()) {
	quit, ticked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticked)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				cfg.Progress(phase, done())
			}
		}
	}()
	return func() {
		close(quit)
		<-ticked
	}
}

// noneAccepted is a load phase's error when no request was accepted:
// the first that failed outright, if one did.
func noneAccepted(phase string, firstErr *atomic.Value) error {
	if e, _ := firstErr.Load().(error); e != nil {
		return fmt.Errorf("%s: no request succeeded: %w", phase, e)
	}
	return fmt.Errorf("%s: no request was accepted", phase)
}

// outage runs the outage phase (Config.Outage) against the platform at
// target, whose partners recv serves.
func outage(ctx context.Context, target string, cfg Config, recv *receiver) (*OutageResult, error) {
	dups0 := recv.duplicates()
	var held0 int64
	if cfg.Target == "" {
		held0 = heldPasses(target)
	}
	down := &downAnswer{status: cfg.OutageStatus}
	if cfg.OutageRetryAfter > 0 {
		down.retryAfter = strconv.Itoa(int(cfg.OutageRetryAfter / time.Second))
	}
	recv.fail(down)
	// The partners recover when the outage's time is up, whether or not
	// the producer's last POSTs are answered yet; arrivals from then on
	// are the backlog's.
	recovered := make(chan struct{})
	time.AfterFunc(cfg.Outage, func() {
		recv.reset()
		recv.catchUp.Store(true)
		recv.fail(nil)
		close(recovered)
	})
	sent, _, _, err := openLoop(ctx, at(target+"/v1/events"), cfg, cfg.Outage, "o", "outage", nil)
	<-recovered
	if err != nil {
		return nil, err
	}
	res := &OutageResult{Seconds: cfg.Outage.Seconds(), Status: cfg.OutageStatus, RetryAfterSeconds: cfg.OutageRetryAfter.Seconds(), Events: sent}
	quiet := max(2*max(cmp.Or(cfg.BreakerCoolDown, breaker.DefaultCoolDown), cfg.OutageRetryAfter), time.Minute)
	want := sent * int64(cfg.Fanout)
	recv.await(ctx, want, quiet, func(done float64) { cfg.Progress("recovering", done) })
	arrivals := recv.arrivals()
	res.RecoveryP50Seconds = percentile(arrivals, 50)
	if len(arrivals) > 0 {
		res.RecoverySeconds = slices.Max(arrivals)
	}
	res.FailedAttempts, res.MostFailedAttempts, res.PeakInFlight = recv.failed.Load(), recv.mostFailed(), recv.peak.Load()
	res.NotArrived, res.Duplicates = max(want-recv.count(), 0), recv.duplicates()-dups0
	if cfg.Target == "" {
		res.Held = heldPasses(target) - held0
	}
	return res, ctx.Err()
}

// crash runs the crash phase (Config.Crash): events at the run's rate,
// the platform's process SIGKILLed a third of the way in and started
// again on its data dir; *platform is the new process after.
func crash(ctx context.Context, cfg Config, platform **process, receiverURL string, recv *receiver) (*CrashResult, error) {
	res := &CrashResult{Seconds: cfg.Crash.Seconds()}
	dups0 := recv.duplicates()
	recv.reset()
	recv.delay.Store(int64(cfg.partnerDelay))
	defer recv.delay.Store(0)
	var url atomic.Pointer[string]
	u := (*platform).URL + "/v1/events"
	url.Store(&u)
	var before int64 // arrivals before the kill
	killed := make(chan error, 1)
	time.AfterFunc(cfg.Crash/3, func() {
		at := time.Now()
		(*platform).kill()
		before = recv.restart()
		p, err := startProcess(ctx, cfg.Command, cfg.platform(receiverURL, false))
		if err != nil {
			killed <- err
			return
		}
		*platform = p
		res.RestartSeconds = time.Since(at).Seconds()
		u := p.URL + "/v1/events"
		url.Store(&u)
		killed <- nil
	})
	sent, refused, _, err := openLoop(ctx, func() string { return *url.Load() }, cfg, cfg.Crash, "c", "crash", nil)
	if restartErr := <-killed; restartErr != nil {
		return nil, restartErr
	}
	if err != nil {
		return nil, err
	}
	res.Events, res.Refused = sent, refused
	want := sent * int64(cfg.Fanout)
	recv.await(ctx, want-before, time.Minute, func(done float64) { cfg.Progress("recovering", done) })
	if arrivals := recv.arrivals(); len(arrivals) > 0 {
		res.FirstDeliverySeconds = slices.Min(arrivals)
	}
	if kill, last := recv.owed(); !last.IsZero() {
		res.RecoverySeconds = last.Sub(kill).Seconds()
	}
	res.NotArrived, res.Duplicates = max(want-before-recv.count(), 0), recv.duplicates()-dups0
	return res, ctx.Err()
}

// heldPasses reads whp_deliveries_total{outcome="held"}, summed over
// partners, from the platform's /metrics (0 if it cannot).
func heldPasses(base string) int64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "whp_deliveries_total{") || !strings.Contains(line, `outcome="held"`) {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			n += v
		}
	}
	return int64(n)
}

// openLoop sends events at the fixed rate for d, whatever the answers
// take, and returns how many were accepted and how long each 202 took, in
// ms. Their IDs start with prefix; phase names the progress. If counted is
// not nil, it counts the accepted as they are (a soak reads it as it runs).
func openLoop(ctx context.Context, url func() string, cfg Config, d time.Duration, prefix, phase string, counted *atomic.Int64) (accepted, refused int64, waits []float64, err error) {
	c := cfg.poster()
	defer c.cl.CloseIdleConnections()
	var other atomic.Int64
	ok := counted
	if ok == nil {
		ok = new(atomic.Int64)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(cfg.Rate)
	total := int(d / interval)
	event := cfg.numbered(prefix)
	// Each event has its time on a fixed schedule; one sent late (the
	// machine was busy) does not push the rest back — a ticker would drop
	// the ticks it could not deliver, and at 2,000 a second sent ≈ 1,650.
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				wg.Wait()
				return ok.Load(), other.Load(), waits, ctx.Err()
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			wg.Wait()
			return ok.Load(), other.Load(), waits, ctx.Err()
		}
		wg.Go(func() {
			body := event(int64(i))
			start := time.Now()
			resp, err := c.post(url(), int64(i), body)
			if err != nil {
				other.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				other.Add(1)
				return
			}
			took := float64(time.Since(start)) / float64(time.Millisecond)
			ok.Add(1)
			mu.Lock()
			waits = append(waits, took)
			mu.Unlock()
		})
		if i%50 == 0 {
			cfg.Progress(phase, float64(i)/float64(total))
		}
	}
	wg.Wait()
	return ok.Load(), other.Load(), waits, nil
}

// at is a fixed URL, for openLoop.
func at(url string) func() string { return func() string { return url } }

// receiver is the partner: it counts deliveries by webhook-id and the
// time from the event's acceptance (its timestamp) to arrival.
type receiver struct {
	slow      time.Duration // how long /slow answers take
	gone      chan struct{} // closed when the run ends: /slow answers at once
	goneOnce  sync.Once
	delay     atomic.Int64     // how long the partners take to answer, in ns (Config.partnerDelay)
	hold      atomic.Int64     // how long the partners hold a delivery they have recorded before answering it, in ns (the far-partners phase)
	limit     atomic.Int64     // with catchUp, how many requests each partner takes at once, answering 429 to the rest (0: all; the limited-partners phase)
	throttled atomic.Int64     // 429s answered for limit
	failed    atomic.Int64     // down answers since the outage began
	failedBy  map[string]int64 // down answers by webhook-id since then
	catchUp   atomic.Bool      // the outage is over: count in flight, time arrivals
	inFlight  sync.Map         // partner's path → *atomic.Int64
	peak      atomic.Int64     // the most one partner had in flight since reset
	mu        sync.Mutex
	seen      map[string]bool
	dups      int64
	resetAt   time.Time
	first     time.Time
	last      time.Time
	lat       []float64
	since     []float64 // each arrival's seconds after resetAt, during the catch-up
	lastOwed  time.Time // the last arrival, during the catch-up, of an event accepted before resetAt
	received  atomic.Int64
	// With more than one tenant, partner p<K> is owed tenant t<K/fanout>'s
	// events alone; a delivery of another's is misrouted, and not counted
	// as received.
	fanout, tenants int
	misrouted       atomic.Int64
	// conns counts the connections the platform opens and the requests
	// it sends by protocol (partnertls.go).
	conns connCounter
	// down is what the partners answer while down (the outage phase);
	// nil: they answer as usual.
	down atomic.Pointer[downAnswer]
	// The ordered phase's: the key whose deliveries are refused, and
	// what arrived in order (ordered.go).
	refusing atomic.Pointer[string]
	order    orderState
}

func newReceiver(cfg Config) *receiver {
	return &receiver{seen: map[string]bool{}, gone: make(chan struct{}), resetAt: time.Now(), fanout: cfg.Fanout, tenants: cfg.Tenants}
}

// routed reports whether a delivery to path (/p<K>) of body is its
// partner's: with one tenant every one is; else the event's data.tenant
// (read without decoding the body, as timestampOf reads) must be the
// partner's.
func (r *receiver) routed(path string, body []byte) bool {
	if r.tenants <= 1 {
		return true
	}
	k, err := strconv.Atoi(strings.TrimPrefix(path, "/p"))
	if err != nil {
		return false
	}
	n, ok := tenantOf(body)
	return ok && k/r.fanout == n
}

// tenantOf is the number of an event's tenant (its data.tenant, "t<N>"
// as Config.tenant names them), read without decoding the body; ok is
// false for an event without one.
func tenantOf(body []byte) (n int, ok bool) {
	tenant, ok := stringField(body, `"tenant":"`)
	if !ok || !bytes.HasPrefix(tenant, []byte("t")) {
		return 0, false
	}
	n, err := strconv.Atoi(string(tenant[1:]))
	return n, err == nil
}

// downAnswer is what the partners answer while down: status
// (Config.OutageStatus), with a Retry-After if retryAfter is set.
type downAnswer struct {
	status     int
	retryAfter string
}

// fail makes the partners answer down, or (nil) answer again; an outage
// starts its count of failed attempts afresh.
func (r *receiver) fail(down *downAnswer) {
	if down != nil {
		r.mu.Lock()
		r.failedBy = map[string]int64{}
		r.mu.Unlock()
		r.failed.Store(0)
	}
	r.down.Store(down)
}

// enter counts a request in flight at its partner, and returns its
// counter to decrement when the request is answered, and the count with
// it.
func (r *receiver) enter(path string) (*atomic.Int64, int64) {
	c, ok := r.inFlight.Load(path)
	if !ok {
		c, _ = r.inFlight.LoadOrStore(path, new(atomic.Int64))
	}
	n := c.(*atomic.Int64).Add(1)
	for p := r.peak.Load(); n > p && !r.peak.CompareAndSwap(p, n); p = r.peak.Load() {
	}
	return c.(*atomic.Int64), n
}

// release makes the slow partner's answers immediate (the run is over).
func (r *receiver) release() { r.goneOnce.Do(func() { close(r.gone) }) }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.conns.request(req)
	if req.URL.Path == "/slow" {
		io.Copy(io.Discard, req.Body)
		t := time.NewTimer(r.slow)
		select {
		case <-t.C:
		case <-r.gone:
			t.Stop()
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	reached := time.Now() // the request reached the partner
	if r.catchUp.Load() {
		c, n := r.enter(req.URL.Path)
		defer c.Add(-1)
		if l := r.limit.Load(); l > 0 && n > l {
			// A partner with a limit of its own: what passes it is
			// answered at once, and asked to come back in a second.
			io.Copy(io.Discard, req.Body)
			r.throttled.Add(1)
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
	}
	if d := r.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if down := r.down.Load(); down != nil {
		io.Copy(io.Discard, req.Body)
		r.failed.Add(1)
		r.mu.Lock()
		r.failedBy[req.Header.Get("webhook-id")]++
		r.mu.Unlock()
		if down.retryAfter != "" {
			w.Header().Set("Retry-After", down.retryAfter)
		}
		w.WriteHeader(down.status)
		return
	}
	now := time.Now()
	body, _ := io.ReadAll(req.Body)
	ordered := strings.HasPrefix(req.URL.Path, "/o")
	if ordered && r.refused(body) {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if !ordered && !r.routed(req.URL.Path, body) {
		r.misrouted.Add(1)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ts := timestampOf(body)
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	if r.seen[id] {
		r.dups++
	} else {
		r.seen[id] = true
		r.received.Add(1)
		if r.first.IsZero() {
			r.first = now
		}
		r.last = now
		// Timed from when it reached the partner: one sent before the
		// reset (by a process since killed, say) is not the catch-up's.
		if r.catchUp.Load() && !reached.Before(r.resetAt) {
			r.since = append(r.since, reached.Sub(r.resetAt).Seconds())
			if !ts.IsZero() && ts.Before(r.resetAt) {
				r.lastOwed = reached
			}
		}
		timed := !ts.IsZero()
		if ordered {
			timed = r.orderedLocked(req.URL.Path, body, ts, now) && timed
		}
		if timed {
			r.lat = append(r.lat, float64(now.Sub(ts))/float64(time.Millisecond))
		}
	}
	r.mu.Unlock()
	if d := r.hold.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	w.WriteHeader(http.StatusNoContent)
}

// timestampOf is a delivery's "timestamp" (when ingest accepted the
// event), read without decoding the body — the receiver should cost
// about what the baseline's handler does. The payload writes it before
// its data (envelope.Payload), and no JSON string holds the unescaped
// quote that opens the key, so the first match is the payload's.
func timestampOf(body []byte) time.Time {
	v, ok := stringField(body, `"timestamp":"`)
	if !ok {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, string(v))
	return t
}

// stringField is the value of the first string field that prefix (its
// `"name":"`) opens in a JSON body, found without decoding it — the
// receiver should cost about what the baseline's handler does: the bytes
// up to the next quote (no escapes in the values read here: times and
// tenant ids).
func stringField(body []byte, prefix string) ([]byte, bool) {
	i := bytes.Index(body, []byte(prefix))
	if i < 0 {
		return nil, false
	}
	rest := body[i+len(prefix):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil, false
	}
	return rest[:j], true
}

func (r *receiver) count() int64 { return r.received.Load() }

// await waits until want deliveries have arrived since the last reset,
// or nothing more has arrived for quiet (what is missing then is lost, or
// late), telling progress the share arrived.
func (r *receiver) await(ctx context.Context, want int64, quiet time.Duration, progress func(float64)) {
	lastCount, lastMove := int64(-1), time.Now()
	for n := r.count(); n < want && time.Since(lastMove) < quiet && ctx.Err() == nil; n = r.count() {
		if n != lastCount {
			lastCount, lastMove = n, time.Now()
		}
		progress(float64(n) / float64(max(want, 1)))
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *receiver) window() (first, last time.Time, n, dups int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first, r.last, r.received.Load(), r.dups
}

func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resetLocked()
}

func (r *receiver) resetLocked() {
	r.first, r.last, r.lat, r.since, r.lastOwed, r.resetAt = time.Time{}, time.Time{}, nil, nil, time.Time{}, time.Now()
	r.order = orderState{}
	r.received.Store(0)
	r.peak.Store(0)
}

// restart resets the counts as reset does, times each arrival from now
// on (catchUp), and returns how many had arrived since the last reset.
func (r *receiver) restart() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.received.Load()
	r.resetLocked()
	r.catchUp.Store(true)
	return n
}

// owed is the last reset and the last arrival since of an event accepted
// before it (zero: none).
func (r *receiver) owed() (reset, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resetAt, r.lastOwed
}

// arrivals are the seconds from the last reset to each arrival since.
func (r *receiver) arrivals() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.since)
}

// mostFailed is the most failed answers one delivery got since the outage began.
func (r *receiver) mostFailed() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var most int64
	for _, n := range r.failedBy {
		most = max(most, n)
	}
	return most
}

func (r *receiver) duplicates() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dups
}

// latenciesFrom is the latencies recorded since the reset, from the i-th
// on, and how many there are in all.
func (r *receiver) latenciesFrom(i int) ([]float64, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lat[min(i, len(r.lat)):]), len(r.lat)
}

func (r *receiver) latencies() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lat)
}

// percentile is the nearest-rank percentile of xs (0 if empty).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// memSampler samples the process's resident memory every 50 ms and keeps
// the peaks: of the whole (VmRSS) and of its anonymous part (RssAnon),
// and the whole's file-backed part by file at its peak. Sampling per run,
// rather than the process's lifetime high-water mark, keeps one run of a
// sweep from carrying an earlier run's peak.
type memSampler struct {
	done      chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
	rss, anon float64
	// files is the resident MiB of each mapped file at the last sample
	// that raised the peak by smapsStep or more since files was read:
	// reading /proc/self/smaps walks every mapping's pages, and read at
	// every sample that raised the peak — every 50 ms while memory grows —
	// it was 1 % of the platform's CPU in a default run's profile.
	files   map[string]float64
	filesAt float64  // the resident MiB when files was read
	statm   *os.File // /proc/self/statm, nil where there is none
	// heap, when profiling, is the heap profile taken at the last sample
	// that raised the anonymous peak by 10 % or more.
	profile  bool
	heap     []byte
	heapAnon float64
}

func sampleMemory(profile bool) *memSampler {
	m := &memSampler{done: make(chan struct{}), profile: profile}
	if f, err := os.Open("/proc/self/statm"); err == nil {
		m.statm = f
	}
	m.wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.done:
				return
			case <-t.C:
			}
		}
	})
	return m
}

// stop ends the sampling and returns the peaks in MiB, and the mapped
// files' part of the whole at its peak.
func (m *memSampler) stop() (rss, anon float64, files map[string]float64) {
	m.once.Do(func() {
		close(m.done)
		m.wg.Wait()
		m.sample()
		if m.statm != nil {
			m.statm.Close()
		}
	})
	return m.rss, m.anon, m.files
}

// smapsStep is how far the peak rises before the mapped files are read
// again: their breakdown is of a sample within it of the peak.
const smapsStep = 2 // MiB

func (m *memSampler) sample() {
	var rss, anon float64
	ok := false
	if m.statm != nil {
		rss, anon, ok = readStatm(m.statm)
	}
	if !ok {
		rss = peakRSSMiB() // no /proc: the lifetime high-water mark
	}
	if ok && rss > m.rss && (m.files == nil || rss >= m.filesAt+smapsStep) {
		if files, err := mappedFiles(); err == nil {
			m.files, m.filesAt = files, rss
		}
	}
	m.rss, m.anon = max(m.rss, rss), max(m.anon, anon)
	if m.profile && anon >= m.heapAnon*1.1 {
		var b bytes.Buffer
		if pprof.Lookup("heap").WriteTo(&b, 0) == nil {
			m.heap, m.heapAnon = b.Bytes(), anon
		}
	}
}

// procStatus reads the resident set and its anonymous part, in MiB, from
// /proc/self/statm: its resident pages, less its shared ones (the file
// pages it maps, and shared memory, which the platform has none of) —
// /proc/self/status's VmRSS and RssAnon, which the kernel counts the
// same way, for a fraction of the cost of reading and parsing that file
// twenty times a second.
func procStatus() (rss, anon float64, ok bool) {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	return readStatm(f)
}

// readStatm reads an open /proc/self/statm again from its start: the
// sampler keeps it open, since opening it was most of a read's cost.
func readStatm(statm *os.File) (rss, anon float64, ok bool) {
	var buf [128]byte
	n, err := statm.ReadAt(buf[:], 0)
	if n == 0 || (err != nil && err != io.EOF) {
		return 0, 0, false
	}
	f := strings.Fields(string(buf[:n])) // size resident shared text lib data dt, in pages
	if len(f) < 3 {
		return 0, 0, false
	}
	resident, err1 := strconv.ParseUint(f[1], 10, 64)
	shared, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || shared > resident {
		return 0, 0, false
	}
	page := float64(os.Getpagesize()) / (1 << 20)
	return float64(resident) * page, float64(resident-shared) * page, true
}

// mappedFiles reads /proc/self/smaps: the resident MiB of each file the
// process maps, by the file's base name, each mapping of it summed (an
// executable maps its text, data and read-only data apart).
func mappedFiles() (map[string]float64, error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	files := map[string]float64{}
	file := ""
	for line := range strings.Lines(string(b)) {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			// A mapping's header: address perms offset dev inode [path].
			file = ""
			if len(fields) >= 6 && strings.HasPrefix(fields[5], "/") && fields[4] != "0" {
				file = filepath.Base(strings.Join(fields[5:], " "))
			}
		case file != "" && len(fields) == 3 && fields[0] == "Rss:":
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err == nil {
				files[file] += kb / 1024
			}
		}
	}
	return files, nil
}

// peakRSSMiB is the process's lifetime peak resident set (getrusage's
// Maxrss: kilobytes on Linux, bytes on macOS).
func peakRSSMiB() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return float64(ru.Maxrss) / (1 << 20)
	}
	return float64(ru.Maxrss) / 1024
}
