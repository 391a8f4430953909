package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/whp-dev/whp/runtime/bench"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		stdout     []string
		stderr     []string
		stderrNone string
	}{
		{name: "no command", args: nil, code: 2, stderr: []string{"Usage:"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}},
		{name: "valid example catalog", args: []string{"catalog", "validate", "--dir", "../../catalog"}, code: 0,
			stdout: []string{"valid (4 schemas, 2 partners, 4 subscriptions"}},
		{name: "catalog dir from the environment", args: []string{"catalog", "validate"}, env: map[string]string{"WHP_DIR": "../../catalog"}, code: 0,
			stdout: []string{"valid"}},
		{name: "invalid catalog", args: []string{"catalog", "validate", "--dir", "../../catalog/testdata/invalid/dangling-refs"}, code: 1,
			stderr: []string{
				"../../catalog/testdata/invalid/dangling-refs/catalog.cue:6:28: subscriptions.\"ghost.orders\".partner: no partner \"ghost\"",
				"2 problem(s)",
			}},
		{name: "missing catalog", args: []string{"catalog", "validate", "--dir", "/nonexistent"}, code: 1, stderr: []string{"read catalog /nonexistent"}},
		{name: "catalog without subcommand", args: []string{"catalog"}, code: 2, stderr: []string{"expected the subcommand validate"}},
		{name: "bad flag", args: []string{"dev", "--no-such-flag"}, code: 2, stderr: []string{"flag provided but not defined"}},
		{name: "bad log level", args: []string{"dev", "--log-level", "loud"}, code: 2, stderr: []string{`--log-level "loud"`}},
		{name: "bad retry schedule", args: []string{"dev", "--retry-schedule", "5s,soon"}, code: 2, stderr: []string{`"soon" is not a positive duration`}},
		{name: "no egress partitions", args: []string{"dev", "--egress-partitions", "0"}, code: 2, stderr: []string{"--egress-partitions 0: want 1 to 64"}},
		{name: "no egress partitions to reconcile", args: []string{"reconcile", "--once", "--catalog", "../../catalog", "--egress-partitions", "0"}, code: 2, stderr: []string{"--egress-partitions 0: want 1 to 64"}},
		{name: "bad env value", args: []string{"dev"}, env: map[string]string{"WHP_MAX_BODY_BYTES": "lots"}, code: 1, stderr: []string{`WHP_MAX_BODY_BYTES="lots"`}},
		{name: "negative kafka keep", args: []string{"dev", "--kafka-keep-mib", "-1"}, code: 2, stderr: []string{"--kafka-keep-mib -1: want 0 (keep all) or more"}},
		{name: "no history", args: []string{"dev", "--history", "0s"}, code: 2, stderr: []string{"--history 0s: want a positive duration"}},
		{name: "no deliveries in flight", args: []string{"dev", "--concurrency", "0"}, code: 2, stderr: []string{"whp dev: --concurrency 0: want a whole number of 1 or more"}},
		{name: "a partner's bound above the dispatcher's", args: []string{"dev", "--concurrency", "32", "--partner-concurrency", "64"}, code: 2,
			stderr: []string{"whp dev: --partner-concurrency 64: want a whole number from 1 to --concurrency (32)"}},
		{name: "two places to read the flags from", args: []string{"processor", "--flags-file", "flags.json", "--appconfig-agent-url", "http://localhost:2772/x"}, code: 2,
			stderr: []string{"whp processor: --flags-file and --appconfig-agent-url: give one place to read the flags from"}},
		{name: "a partner's bound above the dispatcher role's", args: []string{"dispatcher", "--concurrency", "8", "--partner-concurrency", "9"}, code: 2,
			stderr: []string{"whp dispatcher: --partner-concurrency 9: want a whole number from 1 to --concurrency (8)"}},
		{name: "a dispatcher role's pacing neither on nor off", args: []string{"dispatcher", "--fixed-partner-concurrency", "maybe"}, code: 2,
			stderr: []string{`whp dispatcher: --fixed-partner-concurrency "maybe": want true or false`}},
		{name: "bench partners' negative limit", args: []string{"bench", "--partner-limit", "-1"}, code: 2, stderr: []string{"--slow-partner, --partner-latency, --partner-limit, --outage"}},
		{name: "bench outage's status not a failure", args: []string{"bench", "--outage-status", "404"}, code: 2, stderr: []string{"--outage-status is 429 or a 5xx"}},
		{name: "bench outage's Retry-After not whole seconds", args: []string{"bench", "--outage-retry-after", "1500ms"}, code: 2, stderr: []string{"--outage-retry-after whole seconds"}},
		{name: "bench partners' max in flight above 500", args: []string{"bench", "--max-in-flight", "501"}, code: 2, stderr: []string{"0 ≤ --max-in-flight ≤ 500"}},
		{name: "bench catalog with max in flight", args: []string{"bench", "--print-catalog", "--receiver-addr", "10.0.3.7:9700", "--max-in-flight", "250"}, code: 0,
			stdout: []string{`partners: p0: {name: "P0", url: "http://10.0.3.7:9700/p0", signing_secret: "partners/p0/signing", contact: "bench", max_in_flight: 250}`}},
		{name: "negative soak", args: []string{"bench", "--soak", "-1s"}, code: 2, stderr: []string{"--soak, --ordered, --soak-rate and --kafka-keep-mib ≥ 0"}},
		{name: "negative ordered phase", args: []string{"bench", "--ordered", "-1s"}, code: 2, stderr: []string{"--soak, --ordered, --soak-rate and --kafka-keep-mib ≥ 0"}},
		{name: "bad latency rates", args: []string{"bench", "--latency-rates", "1000,fast"}, code: 2, stderr: []string{`--latency-rates: "fast" is not a positive number`}},
		{name: "two plots of one run", args: []string{"bench", "--latency-rates", "1000", "--soak", "5s", "--plot", "x.svg"}, code: 2, stderr: []string{"--plot draws a soak or the latency by rate of one run, not both"}},
		{name: "no keys", args: []string{"bench", "--ordered", "5s", "--keys", "0"}, code: 2, stderr: []string{"--keys ≥ 1"}},
		{name: "unknown partner TLS", args: []string{"bench", "--partner-tls", "tls1.3"}, code: 2, stderr: []string{`--partner-tls: "tls1.3": want "h2" or "http1"`}},
		{name: "kafka sync of a running platform", args: []string{"bench", "--kafka-sync", "--url", "http://127.0.0.1:1", "--receiver-addr", "127.0.0.1:2"}, code: 2, stderr: []string{"--kafka-sync is the embedded platform's: not with --url"}},
		{name: "partner TLS of a running platform", args: []string{"bench", "--partner-tls", "h2", "--url", "http://127.0.0.1:1", "--receiver-addr", "127.0.0.1:2"}, code: 2, stderr: []string{"--partner-tls needs the embedded platform"}},
		{name: "bench catalog with the ordered phase's", args: []string{"bench", "--print-catalog", "--receiver-addr", "10.0.3.7:9700", "--ordered", "30s"}, code: 0,
			stdout: []string{`"thing.ordered": "1"`, `partners: o0: {name: "O0", url: "http://10.0.3.7:9700/o0"`, `mode: "ordered"`}},
		{name: "bench into a data dir in use", args: []string{"bench", "--data-dir", "../../catalog"}, code: 2, stderr: []string{"--data-dir ../../catalog is not empty"}},
		{name: "invalid catalog stops dev", args: []string{"dev", "--addr", "127.0.0.1:0", "--catalog", "../../catalog/testdata/invalid/bad-names"}, code: 1,
			stderr: []string{"is invalid", "catalog.cue:3:35"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if len(args) > 0 && args[0] == "dev" {
				args = append(args, "--data-dir", t.TempDir())
			}
			var out, errOut bytes.Buffer
			code := run(context.Background(), args, &out, &errOut)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut.String())
				}
			}
		})
	}
}

// The whp binary's own packages do no heavy work when they initialise:
// every process pays for it at start — each role's pod, and each Lambda
// cold start — whatever it runs. (runtime/bench once built its 1 MiB of
// event padding at init: ≈ 10 ms and 5 MB allocated in every process.)
// The test binary links the same packages; run with GODEBUG=inittrace=1,
// the runtime reports each package's initialisation.
func TestInitIsCheap(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	const budget = 64 << 10 // bytes allocated by one package's init
	seen := 0
	for line := range strings.Lines(string(out)) {
		// init PKG @T ms, C ms clock, B bytes, A allocs
		f := strings.Fields(line)
		if len(f) < 10 || f[0] != "init" || !strings.HasPrefix(f[1], "github.com/whp-dev/whp/") {
			continue
		}
		seen++
		if b, err := strconv.Atoi(f[7]); err != nil || b > budget {
			t.Errorf("%s allocates %s bytes when it initialises (budget %d): %s", f[1], f[7], budget, strings.TrimSpace(line))
		}
	}
	if seen == 0 {
		t.Fatalf("no init trace of whp's packages:\n%s", out)
	}
}

// The peak's breakdown names the anonymous part, then each mapped file of
// 1 MiB or more, largest first; labelled when there are several runs.
func TestPeakBreakdown(t *testing.T) {
	r := bench.Result{PayloadBytes: 1024, Fanout: 4, PeakRSSMiB: 139.4, PeakAnonMiB: 44.2,
		PeakFilesMiB: map[string]float64{"store.db": 45.6, "whp": 44.1, "events.db": 5.2, "libc.so.6": 0.4}}
	want := "peak RSS 139 MiB: anonymous 44, store.db 46, whp 44, events.db 5 (files: their pages the process has mapped)"
	if got := peakBreakdown(r, false); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := peakBreakdown(r, true); got != "1024 B, fan-out 4: "+want {
		t.Errorf("labelled: %s", got)
	}
}

// The ceilings' lines: what each delivered, and the platform against it.
func TestRelayLine(t *testing.T) {
	for _, tc := range []struct {
		line   func(bench.Result, bool) string
		r      bench.Result
		prefix string
		want   string
	}{
		{relayLine, bench.Result{PayloadBytes: 1024, Fanout: 4, RelayPerSec: 14485.4, RelayRatio: 0.467, RelayCPUPerEventMS: 0.0614, DeliveredOfRelay: 0.2935}, "1024 B, fan-out 4: ",
			"relay (202, then a POST to each partner; no validation, storage, signing or retry): 14485 delivered/s, 0.47× the baseline, 0.061 CPU ms/event; the platform delivered 0.29× the relay"},
		{kafkaRelayLine, bench.Result{PayloadBytes: 1024, Fanout: 1, KafkaRelayPerSec: 9120.6, KafkaRelayRatio: 0.351, KafkaRelayCPUPerEventMS: 0.1234, DeliveredOfKafkaRelay: 0.5512}, "1024 B, fan-out 1: ",
			"kafka relay (the relay through the embedded Kafka's two durable hops; nothing else): 9121 delivered/s, 0.35× the baseline, 0.123 CPU ms/event; the platform delivered 0.55× it"},
	} {
		if got := tc.line(tc.r, false); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
		if got := tc.line(tc.r, true); got != tc.prefix+tc.want {
			t.Errorf("labelled: %s", got)
		}
	}
}

// The partners' line names the scheme and counts what reuse comes to.
func TestPartnerLine(t *testing.T) {
	for _, tc := range []struct {
		r    bench.Result
		want string
	}{
		{bench.Result{PartnerConnections: 16, PartnerConnectionsUsed: 16, PartnerRequestsHTTP1: 17506}, "partners over plain HTTP: 16 connections opened, 16 of them used, for 17506 requests"},
		{bench.Result{PartnerTLS: bench.PartnerTLSHTTP2, PartnerConnections: 16, PartnerConnectionsUsed: 1, PartnerRequestsHTTP2: 19649}, "partners over HTTPS, offering HTTP/2: 16 connections opened, 1 of them used, for 19649 requests (19649 over HTTP/2)"},
		{bench.Result{PartnerTLS: bench.PartnerTLSHTTP1, PartnerConnections: 25, PartnerConnectionsUsed: 23, PartnerRequestsHTTP1: 16905}, "partners over HTTPS, HTTP/1.1 alone: 25 connections opened, 23 of them used, for 16905 requests"},
	} {
		if got := partnerLine(tc.r, false); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
