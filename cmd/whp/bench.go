package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/whp-dev/whp/runtime/bench"
	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/dev"
	"github.com/whp-dev/whp/runtime/dispatch"
	"github.com/whp-dev/whp/runtime/embedkafka"
)

// benchProcess is the hidden command whp bench runs the platform and the
// baseline with, each in a process of its own (bench.Config.Command).
const benchProcess = "bench-process"

// runBench is `whp bench`: the platform measured against a bare handler in
// the same run (runtime/bench).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	conns := fs.Int("connections", 64, "keep-alive connections of the load generator")
	duration := fs.Duration("duration", 10*time.Second, "length of each throughput phase")
	rate := fs.Int("rate", 200, "events per second of the latency phase")
	latencyFor := fs.Duration("latency-duration", 10*time.Second, "length of the latency phase")
	payload := fs.Int("payload", 1024, "event size in bytes")
	fanout := fs.Int("fanout", 1, "subscriptions each event is delivered to")
	tenants := fs.Int("tenants", 1, "spread the events over this many tenants, each with --fanout partners of its own subscribed to its events alone (a filter on data.tenant): tenants × fanout partner endpoints")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	latencyRates := fs.String("latency-rates", "", "add a phase after the latency phase: the latency phase again at each of these rates, e.g. 1000,2000,4000 (with --plot, drawn as latency by rate)")
	sweepPayloads := fs.String("sweep-payloads", "", "run once per payload size, e.g. 256,1024,4096,16384 (with --plot)")
	sweepFanouts := fs.String("sweep-fanouts", "", "run once per fan-out, e.g. 1,10,100 (with --plot)")
	sweepTenants := fs.String("sweep-tenants", "", "run once per number of tenants, e.g. 1,100,10000 (with --plot)")
	plot := fs.String("plot", "", "write an SVG plot of the sweeps to this file")
	heapProfile := fs.String("memprofile", "", "write a heap profile taken when memory peaked during the platform's phases to this file; with sweeps, one per run (FILE.1, FILE.2, …)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the platform's phases (not the baseline) to this file; with sweeps, one per run (FILE.1, FILE.2, …)")
	target := fs.String("url", "", "measure a running platform at this base URL instead of starting one (its catalog needs --print-catalog's additions)")
	receiverAddr := fs.String("receiver-addr", "", "where the bench's receiver listens (default 127.0.0.1:0; with --url, the address the target's catalog names)")
	partnerTLS := fs.String("partner-tls", "", "serve the partners' endpoints over HTTPS with a certificate made for the run, which the embedded platform trusts: h2 (offering HTTP/2 and HTTP/1.1, as most endpoints do) or http1 (HTTP/1.1 alone); default plain HTTP")
	slow := fs.Duration("slow-partner", 0, "add a partner, subscribed to every event, that answers each delivery after this long; the figures are the other partners' (what one slow endpoint costs the others)")
	outage := fs.Duration("outage", 0, "add a last phase: every partner answers 503 for this long while events arrive at --rate, then recovers; reports the attempts spent on the down partners and how long the backlog took to arrive")
	outageStatus := fs.Int("outage-status", http.StatusServiceUnavailable, "what the partners answer during --outage: 429 (a quota spent) or a 5xx")
	outageRetryAfter := fs.Duration("outage-retry-after", 0, "send this Retry-After (whole seconds) with the --outage answers: a partner that says when to come back")
	crash := fs.Duration("crash", 0, "add a last phase: events arrive at --rate for this long, and a third of the way in the platform's process is SIGKILLed and started again on its data dir; reports what was refused, lost and duplicated, and how long until it served and delivered again")
	soak := fs.Duration("soak", 0, "add a phase after the latency phase: events arrive at --soak-rate for this long, recorded in twenty slices (deliveries, latency, the platform's CPU, memory, goroutines and data on disk): does anything drift")
	soakRate := fs.Int("soak-rate", 0, "events per second of the soak (default: --rate)")
	orderedFor := fs.Duration("ordered", 0, "add a phase after the soak: events of --keys partition keys arrive at --rate for this long, for partners subscribed in mode ordered, which refuse one key's deliveries for its middle third; reports what arrived out of order, the other keys' latency, and how long the refused key took to catch up")
	keys := fs.Int("keys", 16, "partition keys of the ordered phase's events")
	concurrency := fs.Int("concurrency", dispatch.DefaultConcurrency, "the embedded platform's: deliveries in flight at once (whp dev's --concurrency)")
	partnerConcurrency := fs.Int("partner-concurrency", dispatch.DefaultPartnerConcurrency, "the embedded platform's: one partner's deliveries in flight at once, unless its max_in_flight says otherwise (whp dev's --partner-concurrency)")
	partnerLimit := fs.Int("partner-limit", 0, "add a phase after the far-partners phase: events arrive at --rate for --latency-duration while every partner takes this many deliveries at once, answering each after --partner-latency (20 ms without), and answers 429 with Retry-After: 1 to the rest; reports the share of 429s, the deliveries a second, the latency and the most one partner was sent at once")
	fixedPartnerConcurrency := fs.Bool("fixed-partner-concurrency", false, "the embedded platform's: "+fixedPartnerConcurrencyUsage+" (whp dev's --fixed-partner-concurrency)")
	maxInFlight := fs.Int("max-in-flight", 0, "every partner's max_in_flight in the bench's catalog: the most deliveries in flight to each at once (0: the dispatcher's default, its --partner-concurrency)")
	partnerLatency := fs.Duration("partner-latency", 0, "add a phase after the ordered phase: events arrive at --rate for --latency-duration while every partner takes this long to answer each delivery, as endpoints across the internet do; reports the deliveries a second while they arrived, the backlog's catch-up, the latency and the most in flight to one partner")
	history := fs.Duration("history", dev.DefaultHistory, "the embedded platform's: how long events' and deliveries' history is kept in its store (whp dev's --history)")
	kafkaKeep := fs.Int64("kafka-keep-mib", embedkafka.DefaultKeep>>20, "the embedded platform's: MiB of consumed records each embedded Kafka cluster keeps (whp dev's --kafka-keep-mib; 0: all)")
	idemKeys := fs.Bool("idempotency-keys", false, "send every event with an Idempotency-Key of its own, as a producer that retries safely does (the platform claims and records each in its store before its 202)")
	kafkaSync := fs.Bool("kafka-sync", false, "the embedded platform's: fsync each batch its embedded Kafka writes before acknowledging it (whp dev's --kafka-sync)")
	egressPartitions := fs.Int("egress-partitions", 0, "the embedded platform's: partitions of each subscription's egress topic (whp dev's --egress-partitions; 0: its default)")
	coolDown := fs.Duration("breaker-cooldown", breaker.DefaultCoolDown, "the embedded platform's: how long an open circuit breaker waits before probing (whp dev's --breaker-cooldown)")
	sampleRatio := fs.Float64("trace-sample-ratio", 1, "the embedded platform's share of traced events, from 0 (exclusive) to 1 (whp dev's default: every event)")
	dataDir := fs.String("data-dir", "", "keep the embedded platform's data (its store, Kafka's log, catalog) in this directory, to look at after the run; default: a temporary directory, removed")
	kafkaRelay := fs.Bool("kafka-relay", true, "after the relay, measure it again through the embedded platform's two durable Kafka hops — each event on disk in the ingress cluster before its 202 and in the egress cluster before its POST, nothing else: the delivered rate's ceiling on this machine for a platform built on them (embedded platform only)")
	relay := fs.Bool("relay", true, "before the platform starts, measure a bare relay — each event answered 202, then POSTed to its partners, no other work — with the same load and receiver: the delivered rate's ceiling on this machine (embedded platform only)")
	printCatalog := fs.Bool("print-catalog", false, "print the catalog the bench needs (for --url), with --receiver-addr, --fanout and --tenants, and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *outageStatus != http.StatusTooManyRequests && (*outageStatus < 500 || *outageStatus > 599) || *outageRetryAfter < 0 || *outageRetryAfter%time.Second != 0 {
		return usageError{"whp bench: --outage-status is 429 or a 5xx, --outage-retry-after whole seconds ≥ 0"}
	}
	if *conns < 1 || *rate < 1 || *payload < 100 || *payload > 1<<20 || *fanout < 1 || *tenants < 1 || *egressPartitions < 0 || *egressPartitions > maxEgressPartitions || *duration < time.Second || *latencyFor < time.Second || *slow < 0 || *partnerLatency < 0 || *partnerLimit < 0 || *maxInFlight < 0 || *maxInFlight > 500 || *outage < 0 || *crash < 0 || *soak < 0 || *orderedFor < 0 || *keys < 1 || *soakRate < 0 || *kafkaKeep < 0 || *history <= 0 || *coolDown <= 0 || !(*sampleRatio > 0 && *sampleRatio <= 1) {
		return usageError{"whp bench: --connections, --rate, --fanout and --tenants ≥ 1, 100 ≤ --payload ≤ 1048576, durations ≥ 1s, --keys ≥ 1, 0 ≤ --max-in-flight ≤ 500, --slow-partner, --partner-latency, --partner-limit, --outage, --crash, --soak, --ordered, --soak-rate and --kafka-keep-mib ≥ 0, --history > 0, --breaker-cooldown > 0, 0 < --trace-sample-ratio ≤ 1, 0 ≤ --egress-partitions ≤ 64"}
	}
	if *printCatalog {
		if *receiverAddr == "" {
			return usageError{"whp bench: --print-catalog needs --receiver-addr, the address the receiver will listen on"}
		}
		fmt.Fprint(stdout, bench.Catalog("http://"+*receiverAddr, *fanout, *tenants, *slow > 0, *orderedFor > 0, *maxInFlight))
		return nil
	}
	if err := bench.ValidPartnerTLS(*partnerTLS); err != nil {
		return usageError{"whp bench: --partner-tls: " + err.Error()}
	}
	if *target != "" && *partnerTLS != "" {
		return usageError{"whp bench: --partner-tls needs the embedded platform, which trusts the run's certificate: not with --url"}
	}
	if err := checkConcurrency("bench", *concurrency, *partnerConcurrency); err != nil {
		return err
	}
	if *target != "" && *kafkaSync {
		return usageError{"whp bench: --kafka-sync is the embedded platform's: not with --url"}
	}
	if *target != "" && *crash > 0 {
		return usageError{"whp bench: --crash kills the embedded platform: not with --url"}
	}
	if *target != "" && *receiverAddr == "" {
		return usageError{"whp bench: --url needs --receiver-addr, the address the target's catalog delivers to"}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	base := bench.Config{Command: []string{exe, benchProcess}, DataDir: *dataDir, Target: *target, ReceiverAddr: *receiverAddr, Connections: *conns, Duration: *duration, Rate: *rate, LatencyDuration: *latencyFor, PayloadBytes: *payload, Fanout: *fanout, Tenants: *tenants, SlowPartner: *slow,
		Soak: *soak, SoakRate: *soakRate, Ordered: *orderedFor, Keys: *keys, PartnerLatency: *partnerLatency, PartnerLimit: *partnerLimit, MaxInFlight: *maxInFlight, Concurrency: *concurrency, PartnerConcurrency: *partnerConcurrency, FixedPartnerConcurrency: *fixedPartnerConcurrency, KafkaKeep: *kafkaKeep << 20, KafkaSync: *kafkaSync, IdempotencyKeys: *idemKeys, History: *history, Outage: *outage, OutageStatus: *outageStatus, OutageRetryAfter: *outageRetryAfter, Crash: *crash, PartnerTLS: *partnerTLS, BreakerCoolDown: *coolDown, EgressPartitions: *egressPartitions, TraceSampleRatio: *sampleRatio, Relay: *relay, KafkaRelay: *kafkaRelay, Progress: progressBar(stderr)}
	if *kafkaKeep == 0 {
		base.KafkaKeep = -1 // all of them
	}
	if base.LatencyRates, err = intList(*latencyRates); err != nil {
		return usageError{"whp bench: --latency-rates: " + err.Error()}
	}
	if *plot != "" && *soak > 0 && len(base.LatencyRates) > 0 && *sweepPayloads+*sweepFanouts+*sweepTenants == "" {
		return usageError{"whp bench: --plot draws a soak or the latency by rate of one run, not both: drop --soak or --latency-rates"}
	}
	runs := []bench.Config{base}
	payloads, err := intList(*sweepPayloads)
	if err != nil {
		return usageError{"whp bench: --sweep-payloads: " + err.Error()}
	}
	fanouts, err := intList(*sweepFanouts)
	if err != nil {
		return usageError{"whp bench: --sweep-fanouts: " + err.Error()}
	}
	tenantCounts, err := intList(*sweepTenants)
	if err != nil {
		return usageError{"whp bench: --sweep-tenants: " + err.Error()}
	}
	if len(payloads)+len(fanouts)+len(tenantCounts) > 0 {
		runs = nil
		for _, p := range payloads {
			c := base
			c.PayloadBytes = p
			runs = append(runs, c)
		}
		for _, f := range fanouts {
			c := base
			c.Fanout = f
			runs = append(runs, c)
		}
		for _, n := range tenantCounts {
			c := base
			c.Tenants = n
			runs = append(runs, c)
		}
	}
	if *dataDir != "" {
		// A platform that resumes from an earlier run's data would deliver
		// that run's backlog into this one's figures.
		if entries, err := os.ReadDir(*dataDir); err == nil && len(entries) > 0 {
			return usageError{fmt.Sprintf("whp bench: --data-dir %s is not empty", *dataDir)}
		}
		for i := range runs {
			if len(runs) > 1 {
				runs[i].DataDir = filepath.Join(*dataDir, strconv.Itoa(i+1))
			}
		}
	}
	var results []bench.Result
	for i, c := range runs {
		// One profile per run: the first run's in the named file, later
		// runs' beside it with their index.
		for _, prof := range []struct {
			name string
			into *io.Writer
		}{{*cpuProfile, &c.CPUProfile}, {*heapProfile, &c.HeapProfile}} {
			if prof.name == "" {
				continue
			}
			name := prof.name
			if i > 0 {
				name = fmt.Sprintf("%s.%d", prof.name, i)
			}
			f, err := os.Create(name)
			if err != nil {
				return err
			}
			defer f.Close()
			*prof.into = f
		}
		r, err := bench.Run(ctx, c)
		fmt.Fprint(stderr, "\r\033[K")
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if *plot != "" {
		svg := bench.Plot(results)
		if len(results) == 1 && results[0].Soak != nil {
			svg = bench.PlotSoak(*results[0].Soak)
		} else if len(results) == 1 && len(results[0].ByRate) > 0 {
			svg = bench.PlotRates(results[0].ByRate)
		}
		if err := os.WriteFile(*plot, []byte(svg), 0o644); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if len(results) == 1 {
			return enc.Encode(results[0])
		}
		return enc.Encode(results)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PAYLOAD\tFAN-OUT\tTENANTS\tSTART\tBASELINE/s\tINGEST ALONE/s\t×BASE\tACCEPTED/s\t×BASE\tDELIVERED/s\t×BASE\tp50\tp95\tp99\t202 p95\tCPU s\tCPU ms/EVENT\tPEAK RSS (ANON)\tLOST\tDUP")
	for _, r := range results {
		fmt.Fprintf(tw, "%d B\t%d\t%d\t%.1f s\t%.0f\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f\t%.2f\t%.0f (%.0f) MiB\t%d\t%d\n",
			r.PayloadBytes, r.Fanout, r.Tenants, r.StartSeconds, r.BaselinePerSec, r.IngestPerSec, r.IngestRatio, r.AcceptedPerSec, r.AcceptedRatio, r.DeliveredPerSec, r.DeliveredRatio,
			r.LatencyP50MS, r.LatencyP95MS, r.LatencyP99MS, r.AcceptP95MS, r.CPUSeconds, r.CPUPerEventMS, r.PeakRSSMiB, r.PeakAnonMiB, r.Lost, r.Duplicates)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d connections; ingest alone: no other role running; accepted, delivered: all roles in one process, apart from the load generator and the receiver; CPU and peak RSS the platform's process's; at %d events/s: latency from ingest accepting an event to the receiver getting it, 202 p95 the producer's wait for its answer\n", base.Connections, base.Rate)
	if base.IdempotencyKeys {
		fmt.Fprintln(stdout, "every event sent with an Idempotency-Key of its own (--idempotency-keys)")
	}
	if base.KafkaSync { // the embedded platform's: refused with --url above
		fmt.Fprintln(stdout, "the embedded Kafka fsynced each batch before acknowledging it (--kafka-sync): an event answered 202 was on disk")
	}
	if base.MaxInFlight > 0 {
		fmt.Fprintf(stdout, "every partner's max_in_flight %d (--max-in-flight)\n", base.MaxInFlight)
	}
	if base.SlowPartner > 0 {
		fmt.Fprintf(stdout, "with one more partner answering each delivery after %s (not counted)\n", base.SlowPartner)
	}
	for _, r := range results {
		if r.RelayPerSec > 0 {
			fmt.Fprintln(stdout, relayLine(r, len(results) > 1))
		}
		if r.KafkaRelayPerSec > 0 {
			fmt.Fprintln(stdout, kafkaRelayLine(r, len(results) > 1))
		}
	}
	for _, r := range results {
		fmt.Fprintln(stdout, partnerLine(r, len(results) > 1))
	}
	for _, r := range results {
		if len(r.PeakFilesMiB) > 0 {
			fmt.Fprintln(stdout, peakBreakdown(r, len(results) > 1))
		}
	}
	for _, r := range results {
		if r.Misrouted > 0 {
			fmt.Fprintf(stdout, "%d tenants: %d deliveries reached a partner of another tenant\n", r.Tenants, r.Misrouted)
		}
	}
	for _, r := range results {
		if len(r.ByRate) > 0 {
			printRates(stdout, r)
		}
	}
	for _, r := range results {
		if s := r.Soak; s != nil {
			printSoak(stdout, r, *s)
		}
	}
	for _, r := range results {
		if o := r.Ordered; o != nil {
			fmt.Fprintf(stdout, "ordered: %.0f s of events at %d/s over %d keys (fan-out %d, mode ordered): %d accepted, %d arrived out of order; the other keys' latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; "+
				"key %s refused for %.0f s (%d events meanwhile, %d failed attempts) caught up %.1f s after; not arrived %d, duplicated %d\n",
				o.Seconds, o.Rate, o.Keys, r.Fanout, o.Events, o.OutOfOrder, o.LatencyP50MS, o.LatencyP95MS, o.LatencyP99MS, bench.RefusedKey, o.Seconds/3, o.RefusedKeyEvents, o.FailedAttempts, o.CatchUpSeconds, o.NotArrived, o.Duplicates)
		}
	}
	for _, r := range results {
		if f := r.Far; f != nil {
			fmt.Fprintf(stdout, "far partners: each answered a delivery after %.0f ms while events arrived at %d/s for %.0f s (fan-out %d): %d accepted; %.0f deliveries/s while they arrived (%d/s owed), the rest %.1f s after; "+
				"latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; at most %d deliveries in flight to one partner, %d connections opened; not arrived %d, duplicated %d\n",
				f.AnswerMS, f.Rate, f.Seconds, r.Fanout, f.Events, f.DeliveredPerSec, f.Rate*r.Fanout, f.CatchUpSeconds, f.LatencyP50MS, f.LatencyP95MS, f.LatencyP99MS, f.PeakInFlight, f.Connections, f.NotArrived, f.Duplicates)
		}
	}
	for _, r := range results {
		if l := r.Limited; l != nil {
			fmt.Fprintf(stdout, "limited partners: each took %d deliveries at once, answering each after %.0f ms, and 429 to the rest, while events arrived at %d/s for %.0f s (fan-out %d): %d accepted; %d answered 429 (%.1f %% of the requests), at most %d sent to one partner at once; "+
				"%.0f deliveries/s while they arrived (%d/s owed), the rest %.1f s after; latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; not arrived %d, duplicated %d\n",
				l.Limit, l.AnswerMS, l.Rate, l.Seconds, r.Fanout, l.Events, l.Refused, 100*l.RefusedShare, l.PeakOffered, l.DeliveredPerSec, l.Rate*r.Fanout, l.CatchUpSeconds, l.LatencyP50MS, l.LatencyP95MS, l.LatencyP99MS, l.NotArrived, l.Duplicates)
		}
	}
	for _, r := range results {
		if o := r.Outage; o != nil {
			answer := fmt.Sprint(o.Status)
			if o.RetryAfterSeconds > 0 {
				answer += fmt.Sprintf(" with Retry-After: %.0f", o.RetryAfterSeconds)
			}
			fmt.Fprintf(stdout, "outage: every partner answered %s for %.0f s while %d events arrived (fan-out %d): %d failed attempts (at most %d of one delivery), %d deliveries held (a status write and a retry record each); "+
				"after recovery the backlog arrived in %.1f s (half of it in %.1f s), at most %d deliveries in flight to one partner; not arrived %d, duplicated %d\n",
				answer, o.Seconds, o.Events, r.Fanout, o.FailedAttempts, o.MostFailedAttempts, o.Held, o.RecoverySeconds, o.RecoveryP50Seconds, o.PeakInFlight, o.NotArrived, o.Duplicates)
		}
	}
	for _, r := range results {
		if c := r.Crash; c != nil {
			fmt.Fprintf(stdout, "crash: the platform's process was SIGKILLed %.1f s into %.0f s of events at %d/s (fan-out %d): %d accepted, %d refused while it was down; "+
				"it served again after %.1f s and delivered again after %.1f s; what it owed when it died had arrived %.1f s after the kill; not arrived %d, duplicated %d\n",
				c.Seconds/3, c.Seconds, r.Rate, r.Fanout, c.Events, c.Refused, c.RestartSeconds, c.FirstDeliverySeconds, c.RecoverySeconds, c.NotArrived, c.Duplicates)
		}
	}
	return nil
}

// printRates prints the latency phase at each rate.
func printRates(w io.Writer, r bench.Result) {
	fmt.Fprintf(w, "latency by rate (fan-out %d; load: the deliveries a second the rate asks for, over the %.0f/s delivered flat out):\n", r.Fanout, r.DeliveredPerSec)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RATE\tLOAD\tACCEPTED\tp50\tp95\tp99\t202 p95\tCPU ms/EVENT\tNOT ARRIVED")
	for _, p := range r.ByRate {
		fmt.Fprintf(tw, "%d/s\t%.0f %%\t%d\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.3f\t%d\n",
			p.Rate, p.Load*100, p.Events, p.LatencyP50MS, p.LatencyP95MS, p.LatencyP99MS, p.AcceptP95MS, p.CPUMSPerEvent, p.NotArrived)
	}
	tw.Flush()
}

// printSoak prints the soak's slices, and how the first quarter's compare
// with the last's.
func printSoak(w io.Writer, r bench.Result, s bench.SoakResult) {
	fmt.Fprintf(w, "soak: %.0f s of events at %d/s (fan-out %d): %d accepted; not arrived %d, duplicated %d\n", s.Seconds, s.Rate, r.Fanout, s.Events, s.NotArrived, s.Duplicates)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tACCEPTED/s\tDELIVERED/s\tp50\tp95\tp99\tCPU ms/EVENT\tRSS (ANON)\tHEAP LIVE\tGOROUTINES\tSTORE\tKAFKA")
	for _, sl := range s.Slices {
		fmt.Fprintf(tw, "%.0f s\t%.0f\t%.0f\t%.1f ms\t%.1f ms\t%.1f ms\t%.3f\t%.0f (%.0f) MiB\t%.1f MiB\t%d\t%.0f MiB\t%.0f MiB\n",
			sl.EndSeconds, sl.AcceptedPerSec, sl.DeliveredPerSec, sl.LatencyP50MS, sl.LatencyP95MS, sl.LatencyP99MS, sl.CPUMSPerEvent, sl.RSSMiB, sl.AnonMiB, sl.HeapMiB, sl.Goroutines, sl.StoreMiB, sl.KafkaMiB)
	}
	tw.Flush()
}

func intList(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// progressBar draws the phase and a bar on one line of w.
func progressBar(w io.Writer) func(string, float64) {
	var mu sync.Mutex
	return func(phase string, done float64) {
		mu.Lock()
		defer mu.Unlock()
		n := int(min(max(done, 0), 1) * 30)
		fmt.Fprintf(w, "\r\033[K%-10s [%s%s] %3.0f%%", phase, strings.Repeat("#", n), strings.Repeat(" ", 30-n), done*100)
	}
}

// runLabel starts a line about one run of several (label) with the run's
// payload and fan-out.
func runLabel(b *strings.Builder, r bench.Result, label bool) {
	if label {
		fmt.Fprintf(b, "%d B, fan-out %d: ", r.PayloadBytes, r.Fanout)
	}
}

// peakBreakdown is the line that splits a run's peak resident set into
// its anonymous part and the files the platform maps (of 1 MiB or more,
// largest first); labelled with the run's payload and fan-out when there
// are several.
func peakBreakdown(r bench.Result, label bool) string {
	var b strings.Builder
	runLabel(&b, r, label)
	fmt.Fprintf(&b, "peak RSS %.0f MiB: anonymous %.0f", r.PeakRSSMiB, r.PeakAnonMiB)
	names := slices.Collect(maps.Keys(r.PeakFilesMiB))
	slices.SortFunc(names, func(x, y string) int { return cmp.Compare(r.PeakFilesMiB[y], r.PeakFilesMiB[x]) })
	for _, n := range names {
		if mib := r.PeakFilesMiB[n]; mib >= 1 {
			fmt.Fprintf(&b, ", %s %.0f", n, mib)
		}
	}
	b.WriteString(" (files: their pages the process has mapped)")
	return b.String()
}

// relayLine compares the platform's delivered rate with the relay's, the
// ceiling measured in the same run.
func relayLine(r bench.Result, label bool) string {
	return ceilingLine(r, label, "relay (202, then a POST to each partner; no validation, storage, signing or retry)", "the relay",
		r.RelayPerSec, r.RelayRatio, r.RelayCPUPerEventMS, r.DeliveredOfRelay)
}

// kafkaRelayLine compares the platform's delivered rate with the Kafka
// relay's, measured in the same run.
func kafkaRelayLine(r bench.Result, label bool) string {
	return ceilingLine(r, label, "kafka relay (the relay through the embedded Kafka's two durable hops; nothing else)", "it",
		r.KafkaRelayPerSec, r.KafkaRelayRatio, r.KafkaRelayCPUPerEventMS, r.DeliveredOfKafkaRelay)
}

// ceilingLine says what a ceiling measured in run r (what, called it
// afterwards) delivered, and the platform's delivered rate over it.
func ceilingLine(r bench.Result, label bool, what, it string, perSec, ratio, cpuMS, platformOf float64) string {
	var b strings.Builder
	runLabel(&b, r, label)
	fmt.Fprintf(&b, "%s: %.0f delivered/s, %.2f× the baseline, %.3f CPU ms/event; the platform delivered %.2f× %s",
		what, perSec, ratio, cpuMS, platformOf, it)
	return b.String()
}

// partnerLine says how the platform reached the partners in a run: the
// scheme, the connections it opened and the requests it sent on them.
func partnerLine(r bench.Result, label bool) string {
	var b strings.Builder
	runLabel(&b, r, label)
	switch r.PartnerTLS {
	case bench.PartnerTLSHTTP2:
		b.WriteString("partners over HTTPS, offering HTTP/2: ")
	case bench.PartnerTLSHTTP1:
		b.WriteString("partners over HTTPS, HTTP/1.1 alone: ")
	default:
		b.WriteString("partners over plain HTTP: ")
	}
	requests := r.PartnerRequestsHTTP1 + r.PartnerRequestsHTTP2
	fmt.Fprintf(&b, "%d connections opened, %d of them used, for %d requests", r.PartnerConnections, r.PartnerConnectionsUsed, requests)
	if r.PartnerRequestsHTTP2 > 0 {
		fmt.Fprintf(&b, " (%d over HTTP/2)", r.PartnerRequestsHTTP2)
	}
	return b.String()
}
