package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/dev"
	"github.com/whp-dev/whp/runtime/dispatch"
	"github.com/whp-dev/whp/runtime/embedkafka"
	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/retry"
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	dataDir := fs.String("data-dir", ".whp", "directory for everything that persists (store, embedded Kafka, dev secrets)")
	catalogDir := fs.String("catalog", "./catalog", "catalog directory to apply")
	addr := fs.String("addr", "127.0.0.1:8080", "address to serve the ingest API, demo partner and health on")
	maxBody := fs.Int64("max-body-bytes", 256<<10, "largest accepted event request, in bytes")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	interval := fs.Duration("reconcile-interval", 2*time.Second, "how often the catalog directory is read again (and drift repaired)")
	webhookSecretFile := fs.String("webhook-secret-file", "", "file holding the push webhook's HMAC secret (enables POST /v1/reconcile/trigger)")
	connectTimeout := fs.Duration("connect-timeout", 5*time.Second, "bound on connecting to a partner")
	deliveryTimeout := fs.Duration("delivery-timeout", 15*time.Second, "bound on a whole delivery attempt")
	schedule := fs.String("retry-schedule", "5s,5m,30m,2h,5h,10h,14h,20h,24h", "default waits before each retry, comma-separated (subscriptions may override)")
	maxAttempts := fs.Int("max-attempts", 10, "default attempts per delivery, the first included")
	maxAge := fs.Duration("max-age", 96*time.Hour, "default: no attempt later than this after the event")
	coolDown := fs.Duration("breaker-cooldown", breaker.DefaultCoolDown, "how long a partner's open circuit breaker waits before probing, when the answer that opened it had no Retry-After")
	concurrency := fs.Int("concurrency", dispatch.DefaultConcurrency, concurrencyUsage)
	partnerConcurrency := fs.Int("partner-concurrency", dispatch.DefaultPartnerConcurrency, partnerConcurrencyUsage)
	fixedPartnerConcurrency := fs.Bool("fixed-partner-concurrency", false, fixedPartnerConcurrencyUsage)
	egressPartitions := fs.Int("egress-partitions", reconciler.DefaultEgressPartitions, egressPartitionsUsage)
	flagsFile := fs.String("flags-file", "", "JSON file of operational flags, read every second (default: flags.json in the data dir)")
	agentURL := fs.String("appconfig-agent-url", "", "read the flags from the AWS AppConfig Agent at this URL instead of a file")
	sampleRatio := fs.Float64("trace-sample-ratio", 1, "share of new traces recorded, from 0 (exclusive) to 1; a producer's traceparent keeps its own decision")
	history := fs.Duration("history", dev.DefaultHistory, "how long events' and deliveries' history is kept in the embedded store (about 2.2 KB an event on disk), swept every tenth of it, at most every 10 minutes")
	kafkaKeep := fs.Int64("kafka-keep-mib", embedkafka.DefaultKeep>>20, "of the records its consumers are done with, how many MiB each embedded Kafka cluster keeps for resend and replay (the oldest go first; what a consumer still owes is always kept); 0: all, for the topics' retention, as memory and disk grow with every event")
	kafkaSync := fs.Bool("kafka-sync", false, "fsync each batch the embedded Kafka writes before acknowledging it, so an event answered 202 survives a crash of the machine, not only of whp; costs about half the throughput on a small machine (docs/benchmarks.md)")
	opsURL := fs.String("ops-webhook-url", "", "URL that receives operational events (attempts failing, breakers, stalled reconciles), signed with the dev secret ops/webhook/signing")
	if err := parse(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("whp dev: --log-level %q: want debug, info, warn or error", *logLevel)}
	}
	if *maxBody <= 0 {
		return usageError{"whp dev: --max-body-bytes must be positive"}
	}
	if err := checkEgressPartitions("dev", *egressPartitions); err != nil {
		return err
	}
	if err := checkConcurrency("dev", *concurrency, *partnerConcurrency); err != nil {
		return err
	}
	if *history <= 0 {
		return usageError{fmt.Sprintf("whp dev: --history %s: want a positive duration", *history)}
	}
	if *kafkaKeep < 0 {
		return usageError{fmt.Sprintf("whp dev: --kafka-keep-mib %d: want 0 (keep all) or more", *kafkaKeep)}
	}
	if !(*sampleRatio > 0 && *sampleRatio <= 1) {
		return usageError{fmt.Sprintf("whp dev: --trace-sample-ratio %v: want more than 0 and at most 1", *sampleRatio)}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *interval <= 0 {
		return usageError{"whp dev: --reconcile-interval must be positive"}
	}
	policy := retry.Default()
	policy.Schedule = nil
	for _, part := range strings.Split(*schedule, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return usageError{fmt.Sprintf("whp dev: --retry-schedule: %q is not a positive duration", part)}
		}
		policy.Schedule = append(policy.Schedule, d)
	}
	if *maxAttempts < 1 || *connectTimeout <= 0 || *deliveryTimeout <= 0 || *maxAge <= 0 {
		return usageError{"whp dev: --max-attempts, --connect-timeout, --delivery-timeout and --max-age must be positive"}
	}
	policy.MaxAttempts, policy.MaxAge = *maxAttempts, *maxAge
	cfg := dev.Config{DataDir: *dataDir, CatalogDir: *catalogDir, Addr: *addr, Log: log, ReconcileInterval: *interval, OpsWebhookURL: *opsURL,
		TraceSampleRatio: *sampleRatio, EgressPartitions: int32(*egressPartitions), KafkaKeep: *kafkaKeep << 20, KafkaSync: *kafkaSync, History: *history}
	if *kafkaKeep == 0 {
		cfg.KafkaKeep = -1
	}
	cfg.Dispatch.Retry, cfg.Dispatch.ConnectTimeout, cfg.Dispatch.Timeout = policy, *connectTimeout, *deliveryTimeout
	cfg.Dispatch.Breaker.CoolDown = *coolDown
	cfg.Dispatch.Concurrency, cfg.Dispatch.PartnerConcurrency, cfg.Dispatch.FixedPartnerConcurrency = *concurrency, *partnerConcurrency, *fixedPartnerConcurrency
	switch {
	case *agentURL != "":
		cfg.Flags = flags.AppConfigAgent(*agentURL, 15*time.Second, log.With("role", "flags"))
	case *flagsFile != "":
		cfg.Flags = flags.File(*flagsFile, time.Second, log.With("role", "flags"))
	}
	if *webhookSecretFile != "" {
		b, err := os.ReadFile(*webhookSecretFile)
		if err != nil {
			return fmt.Errorf("webhook secret: %w", err)
		}
		cfg.WebhookSecret = strings.TrimSpace(string(b))
	}
	cfg.Ingest.MaxBodyBytes = *maxBody
	p, err := dev.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, p.Banner(cfg))
	fmt.Fprintf(stdout, "\nTry:\n  curl -s %s/v1/events -H 'content-type: application/json' -d @- <<'EOF'\n  %s\n  EOF\n\nCtrl-C stops it; start it again with the same --data-dir and nothing is lost.\n",
		p.URL, exampleEvent)
	<-ctx.Done()
	fmt.Fprintln(stdout, "whp dev: stopping")
	if err := p.Stop(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "whp dev: stopped")
	return nil
}

// exampleEvent is the README's first event.
const exampleEvent = `{"domain":"orders","event":"order.created","version":"1","key":"ord_1001","data":{"order_id":"ord_1001","customer_id":"cus_42ab","amount":129.5,"currency":"EUR","items":[{"sku":"SKU-1","quantity":2}]}}`

// version is the module version, or the VCS revision of a source build.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return "(devel)"
}
