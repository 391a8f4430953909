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

	"github.com/whp-dev/whp/runtime/dev"
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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *interval <= 0 {
		return usageError{"whp dev: --reconcile-interval must be positive"}
	}
	cfg := dev.Config{DataDir: *dataDir, CatalogDir: *catalogDir, Addr: *addr, Log: log, ReconcileInterval: *interval}
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
