// Package dev runs the whole platform in one process on embedded defaults:
// two in-process Kafka clusters and the embedded store under the data dir,
// the catalog applied at start, ingest, processor, dispatcher and a demo
// partner, all on one HTTP address. It is `whp dev`, and the harness the
// end-to-end tests start.
package dev

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/console"
	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/reconciler/artifact"
	"github.com/whp-dev/whp/reconciler/source"
	"github.com/whp-dev/whp/runtime/adminauth"
	"github.com/whp-dev/whp/runtime/approval"
	"github.com/whp-dev/whp/runtime/demo"
	"github.com/whp-dev/whp/runtime/dispatch"
	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/runtime/embedkafka"
	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/ingest"
	"github.com/whp-dev/whp/runtime/opevents"
	"github.com/whp-dev/whp/runtime/processor"
	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/runtime/replay"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/secret"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// DefaultHistory is how long whp dev keeps events' and deliveries'
// history: 30 days, the production tables' TTL.
const DefaultHistory = 30 * 24 * time.Hour

// DemoPartnerID is the catalog partner `whp dev` serves itself; its
// subscriptions are approved automatically in dev mode only.
const DemoPartnerID = "demo"

// Config configures the embedded platform.
type Config struct {
	// DataDir holds everything that persists: store/ (store.db, events.db),
	// kafka/, secrets.json.
	DataDir string
	// CatalogDir is the catalog to apply at start.
	CatalogDir string
	// Addr is the listen address, e.g. 127.0.0.1:8080; ignored when
	// Listener is set.
	Addr     string
	Listener net.Listener
	// AutoApprove lists the partners whose Pending subscriptions are
	// approved at start, recorded as decided by "whp dev". Default: the
	// demo partner only; every other partner waits for an approver.
	AutoApprove []string
	// ReconcileInterval is how often the catalog directory is read again
	// (and drift repaired). Default 2 s.
	ReconcileInterval time.Duration
	// WebhookSecret enables POST /v1/reconcile/trigger, verified by HMAC.
	WebhookSecret string
	// Flags are the operational switches; default: polled every second
	// from DataDir/flags.json.
	Flags *flags.Poller
	// AdminToken guards the approvals API (/v1/subscriptions). Default:
	// read from DataDir/admin-token, created (0600) on first start.
	AdminToken string
	// OpsWebhookURL receives the operational events (opevents), signed
	// with the dev secret OpsSigningRef; empty: they are only logged.
	OpsWebhookURL string
	// TraceSampleRatio is the share of new traces recorded, in (0, 1];
	// 0 means 1: every event traced, its trace shown in the console.
	// Tracing every event through every hop costs about 15 % of the CPU
	// under load (docs/benchmarks.md).
	TraceSampleRatio float64
	// EgressPartitions is the reconciler's (reconciler.Applier): the
	// partitions of each subscription's egress topic; 0: its default.
	EgressPartitions int32
	// KafkaKeep is how many bytes of records its consumers are done with
	// each embedded Kafka cluster keeps (embedkafka.Trim, every
	// KafkaTrimInterval): what resend and replay can still read. 0:
	// embedkafka.DefaultKeep; negative: all of them, for the topics'
	// retention (memory and disk then grow with every event).
	KafkaKeep int64
	// KafkaTrimInterval is how often the clusters are trimmed. Default 15 s.
	KafkaTrimInterval time.Duration
	// KafkaSync makes the embedded clusters fsync each batch they write
	// before acknowledging it (kfake.SyncWrites), so an event answered
	// 202 survives a crash of the machine, not only of the process.
	// Without it the clusters do as Kafka does by default
	// (log.flush.interval.messages unbounded): a batch is acknowledged
	// once the OS has it, and written back to disk by the OS — safe from
	// a crash of whp, not from a power loss in the seconds before. On
	// MSK, acks=all waits instead for the batch to be on at least two of
	// three brokers (min.insync.replicas, infra/modules/msk). It costs
	// about half the throughput on a small machine (docs/benchmarks.md,
	// "A 202 that survives the machine").
	KafkaSync bool
	// History is how long events' and deliveries' history is kept in the
	// store (their status TTL), swept every tenth of it, at most every
	// 10 minutes. Default 30 days, as the DynamoDB tables' TTL.
	History time.Duration
	// IngestOnly starts everything but the processor: accepted events
	// stay in the ingress topics, nothing is routed or delivered. whp
	// bench measures the ingest role alone with it, as it runs in
	// production on its own pods, with no other role sharing its CPU.
	IngestOnly bool
	// Ingest and Dispatch tune those roles (zero values: their defaults).
	Ingest   ingest.Config
	Dispatch dispatch.Config
	Log      *slog.Logger

	// ingestStore, if set (tests), is the store the ingest API is given,
	// made from the platform's: where a test holds its writes.
	ingestStore func(ingest.Store) ingest.Store
}

// Platform is a running embedded platform.
type Platform struct {
	// URL is the base URL everything is served under.
	URL  string
	Demo *demo.Partner

	log       *slog.Logger
	srv       *http.Server
	kafka     *embedkafka.Clusters
	tel       *telemetry.Telemetry
	st        *embedded.Store
	producer  *kgo.Client
	ingest    *ingest.API
	retryProd *kgo.Client
	admins    []*kgo.Client
	cancel    context.CancelFunc
	group     *errgroup.Group
	served    chan error
	stopOnce  sync.Once
	stopErr   error
	ready     atomic.Bool
}

// Start brings the platform up and returns once it serves. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (_ *Platform, err error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
	}
	p := &Platform{URL: "http://" + ln.Addr().String(), log: log, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			ln.Close()
			p.closeResources()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	storeDir := filepath.Join(cfg.DataDir, "store")
	// A store whp did not close — it crashed or was killed — is read whole
	// as it opens, to find its files' free pages (embedded.Store.Close):
	// say why this start takes longer, ≈ 0.75 s a GB.
	if n, err := embedded.Unclosed(storeDir); err != nil {
		log.Debug("reading the store's files before opening them", "error", err) // Open reports what is wrong with them
	} else if n > 0 {
		log.Info("the store was not closed (whp crashed or was killed): reading its files whole to find their free pages", "mib", n>>20)
	}
	if p.st, err = embedded.Open(storeDir); err != nil {
		return nil, err
	}
	var kafkaOpts []kfake.Opt
	if cfg.KafkaSync {
		kafkaOpts = append(kafkaOpts, kfake.SyncWrites())
	}
	if p.kafka, err = embedkafka.Start(filepath.Join(cfg.DataDir, "kafka"), kafkaOpts...); err != nil {
		return nil, err
	}
	ingressAddrs, egressAddrs := p.kafka.Ingress.ListenAddrs(), p.kafka.Egress.ListenAddrs()

	secrets := secret.OpenFile(filepath.Join(cfg.DataDir, "secrets.json"))
	if cfg.AutoApprove == nil {
		cfg.AutoApprove = []string{DemoPartnerID}
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 2 * time.Second
	}
	if cfg.Flags == nil {
		cfg.Flags = flags.File(filepath.Join(cfg.DataDir, "flags.json"), time.Second, log.With("role", "flags"))
	}
	if err := cfg.Flags.Refresh(ctx); err != nil {
		log.Warn("flags unreadable; starting without them", "error", err)
	}
	cfg.Ingest.Flags, cfg.Dispatch.Flags = cfg.Flags, cfg.Flags
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	cfg.Dispatch.StatusTTL = cmp.Or(cfg.Dispatch.StatusTTL, cfg.History)
	// Dev keeps traces in memory: GET /v1/events/{id}/trace shows an
	// event's, from the POST to each partner's answer.
	if p.tel, err = telemetry.New(ctx, telemetry.Options{Service: "whp-dev", Traces: telemetry.TracesMemory, TraceSampleRatio: cfg.TraceSampleRatio}); err != nil {
		return nil, err
	}
	cfg.Ingest.Metrics, cfg.Dispatch.Metrics, cfg.Dispatch.Tracing = p.tel.Metrics, p.tel.Metrics, p.tel.Tracing
	// Every role's client: the embedded clusters' options, and tracing.
	kopts := append(embedkafka.ClientOpts(), p.tel.Tracing.KafkaOpts()...)
	if cfg.Dispatch.Guard == nil {
		// Dev delivers to the demo partner on loopback over http; private
		// networks and metadata endpoints stay refused.
		cfg.Dispatch.Guard = &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}
	}
	ops, err := opsPublisher(cfg, secrets, log.With("role", "ops"))
	if err != nil {
		return nil, err
	}
	cfg.Dispatch.Ops = ops
	reg := registry.New(p.st, log)
	var workers []interface{ Refresh() } // set below, before the reconciler runs again
	rec, err := p.reconciler(cfg, ingressAddrs, egressAddrs, secrets, reg, func() {
		for _, w := range workers {
			w.Refresh()
		}
	})
	if err != nil {
		return nil, err
	}
	// The first reconcile runs before serving. An invalid catalog stops a
	// first start with its problems; once a revision has been applied, an
	// invalid one is Stalled and the last good state keeps serving.
	switch st, err := rec.ReconcileOnce(ctx); {
	case errors.Is(err, reconciler.ErrStalled) && st.LastAppliedRevision == "":
		return nil, fmt.Errorf("catalog %s is invalid:\n%s", cfg.CatalogDir, strings.Join(st.Problems, "\n"))
	case errors.Is(err, reconciler.ErrStalled):
		log.Warn("the catalog is invalid; serving the last applied revision", "serving", st.LastAppliedRevision, "problems", len(st.Problems))
		if err := reg.Refresh(ctx); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("apply catalog %s: %w", cfg.CatalogDir, err)
	}
	if p.producer, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(ingressAddrs...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0)}, kopts...)...); err != nil {
		return nil, fmt.Errorf("ingest producer: %w", err)
	}
	var proc *processor.Processor
	if !cfg.IngestOnly {
		if proc, err = processor.New(processor.Config{Flags: cfg.Flags, Tracing: p.tel.Tracing, StatusTTL: cfg.History}, ingressAddrs, egressAddrs, p.st, reg, log.With("role", "processor"), kopts...); err != nil {
			return nil, err
		}
	}
	if p.retryProd, err = retry.NewProducer(egressAddrs, kopts...); err != nil {
		return nil, fmt.Errorf("retry producer: %w", err)
	}
	disp, err := dispatch.New(cfg.Dispatch, egressAddrs, p.st, secrets, p.retryProd, log.With("role", "dispatcher"), kopts...)
	if err != nil {
		return nil, err
	}
	sched, err := retry.NewScheduler(egressAddrs, p.retryProd, disp, log.With("role", "retry-scheduler"), kopts...)
	if err != nil {
		return nil, err
	}
	sched.Tracing = p.tel.Tracing
	workers = []interface{ Refresh() }{disp, sched}
	if proc != nil {
		workers = append(workers, proc)
	}
	p.Demo = demo.New(secrets, demoSigningRef, log.With("role", "demo-partner"))

	mux := http.NewServeMux()
	// A keyed request's outcome is written after its 202: whp dev outlives
	// its answers, and Stop waits for those writes.
	cfg.Ingest.RecordAfterAnswer = true
	var ingestStore ingest.Store = p.st
	if cfg.ingestStore != nil {
		ingestStore = cfg.ingestStore(p.st)
	}
	p.ingest = ingest.New(cfg.Ingest, reg, p.producer, ingestStore, log.With("role", "ingest"))
	p.ingest.Register(mux)
	p.Demo.Register(mux)
	mux.Handle("GET /schemas/", http.FileServer(http.Dir(filepath.Join(cfg.DataDir, "artifacts"))))
	rec.Register(mux, cfg.WebhookSecret)
	if cfg.AdminToken == "" {
		if cfg.AdminToken, err = adminToken(filepath.Join(cfg.DataDir, AdminTokenFile)); err != nil {
			return nil, err
		}
	}
	dlqClient, err := kgo.NewClient(append(embedkafka.ClientOpts(), kgo.SeedBrokers(egressAddrs...), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return nil, err
	}
	replayIn, err := kgo.NewClient(append(embedkafka.ClientOpts(), kgo.SeedBrokers(ingressAddrs...))...)
	if err != nil {
		return nil, err
	}
	p.admins = append(p.admins, dlqClient, replayIn)
	replayer := replay.New(replayIn, dlqClient, p.st)
	replays := replay.NewAPI(replayer, cfg.AdminToken, log.With("role", "replay"))
	replays.Register(mux)
	approval.New(p.st, cfg.AdminToken, log.With("role", "approvals")).WithBackfill(replays).Register(mux)
	queue := dlq.New(dlqClient, p.st)
	dlq.NewAPI(queue, cfg.AdminToken, log.With("role", "dlq")).Register(mux)
	users, err := consoleUsers(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	con := console.New(console.Config{Store: p.st, DLQ: queue, Resend: console.ReplayResender{Replayer: replayer, Store: p.st}, Breakers: disp.Breakers, InFlight: disp.InFlight,
		SLO: p.tel.SLO, Spans: p.tel.Tracing.Spans, ReconcileStatus: rec.Status.Load, Users: users, Dev: true, Flags: cfg.Flags,
		Log: log.With("role", "console")})
	mux.Handle("/console/", con.Handler())
	mux.HandleFunc("GET /v1/breakers", adminauth.Require(cfg.AdminToken, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"breakers": disp.Breakers()})
	}))
	if err := p.tel.Metrics.ObserveInFlight(disp.InFlight); err != nil {
		return nil, err
	}
	if err := p.tel.Metrics.ObserveBreakers(disp.BreakerStates); err != nil {
		return nil, err
	}
	if err := p.tel.Metrics.ObserveKafka(kadm.NewClient(dlqClient), []string{"whp-dispatcher", "whp-retry"}, topic.DLQPrefix, 2*time.Second); err != nil {
		return nil, err
	}
	if err := p.tel.Metrics.ObserveKafka(kadm.NewClient(replayIn), []string{"whp-processor"}, "", 2*time.Second); err != nil {
		return nil, err
	}
	mux.Handle("GET /metrics", p.tel.Handler())
	mux.HandleFunc("GET /v1/status", adminauth.Require(cfg.AdminToken, func(w http.ResponseWriter, r *http.Request) {
		p.status(w, r, disp, rec)
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", p.readyz)
	mux.HandleFunc("GET /v1/events/{id}/trace", p.trace)
	p.srv = &http.Server{Handler: p.tel.Instrument(mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}

	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	g, gctx := errgroup.WithContext(wctx)
	p.group = g
	if proc != nil {
		g.Go(func() error { return proc.Run(gctx) })
	}
	g.Go(func() error { return disp.Run(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	g.Go(func() error { return reg.Run(gctx, 5*time.Second) })
	g.Go(func() error { return rec.Run(gctx) })
	g.Go(func() error { return cfg.Flags.Run(gctx) })
	g.Go(func() error { return p.sweep(gctx, min(10*time.Minute, max(cfg.History/10, time.Second))) })
	if cfg.KafkaKeep >= 0 {
		keep, every := cmp.Or(cfg.KafkaKeep, embedkafka.DefaultKeep), cmp.Or(cfg.KafkaTrimInterval, 15*time.Second)
		g.Go(func() error { return p.kafka.KeepTrimmed(gctx, keep, every, log.With("role", "kafka")) })
	}
	g.Go(func() error { return ops.Run(gctx) })
	go func() { p.served <- p.srv.Serve(ln) }()
	p.ready.Store(true)
	return p, nil
}

// Store returns the embedded store, for tests and tools in this process.
func (p *Platform) Store() store.Store { return p.st }

// Kafka returns the embedded clusters, for fault injection in tests.
func (p *Platform) Kafka() *embedkafka.Clusters { return p.kafka }

func (p *Platform) readyz(w http.ResponseWriter, _ *http.Request) {
	if !p.ready.Load() {
		http.Error(w, "starting\n", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}

// OpsSigningRef names the dev secret the operational events webhook is
// signed with; whp dev creates it.
const OpsSigningRef = "ops/webhook/signing"

// opsPublisher is the operational events publisher of cfg: to the log,
// and to cfg.OpsWebhookURL if set, through the same SSRF guard as
// deliveries.
func opsPublisher(cfg Config, secrets *secret.File, log *slog.Logger) (*opevents.Publisher, error) {
	if cfg.OpsWebhookURL == "" {
		return opevents.New(opevents.Config{}, log), nil
	}
	if err := cfg.Dispatch.Guard.CheckURL(cfg.OpsWebhookURL); err != nil {
		return nil, fmt.Errorf("operational events webhook: %w", err)
	}
	if _, err := secrets.EnsureSigningSecrets([]string{OpsSigningRef}); err != nil {
		return nil, fmt.Errorf("operational events webhook: %w", err)
	}
	vals, err := secrets.Secrets(context.Background(), OpsSigningRef)
	if err != nil {
		return nil, fmt.Errorf("operational events webhook: %w", err)
	}
	signer, err := signature.NewSigner(vals...)
	if err != nil {
		return nil, fmt.Errorf("operational events webhook: %w", err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil,
		DialContext: cfg.Dispatch.Guard.DialContext(&net.Dialer{Timeout: 5 * time.Second})}}
	return opevents.New(opevents.Config{URL: cfg.OpsWebhookURL, Signer: signer, Client: client}, log), nil
}

// ensureSecrets creates missing signing secrets in the dev secrets file so
// every partner can be signed for; production secrets are never created.
func ensureSecrets(secrets *secret.File, cat *catalog.Catalog, log *slog.Logger) error {
	var refs []string
	for _, p := range cat.Partners {
		refs = append(refs, p.SigningSecret)
		if p.Auth.Kind == "header" {
			refs = append(refs, p.Auth.Secret)
		}
	}
	created, err := secrets.EnsureSigningSecrets(refs)
	if err != nil {
		return fmt.Errorf("dev secrets: %w", err)
	}
	for _, ref := range created {
		log.Info("dev secret created", "ref", ref)
	}
	return nil
}

// AdminTokenFile is the file under the data dir holding the dev admin token.
const AdminTokenFile = "admin-token"

// adminToken reads the token at path, creating a random one (0600) if the
// file does not exist.
func adminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return tok, nil
}

// demoSigningRef names the demo partner's signing secret; the example
// catalog declares it, and the demo partner verifies with it.
const demoSigningRef = "partners/demo/signing"

// reconciler builds the reconciler that follows the catalog directory.
// After each applied revision it creates missing dev secrets, approves the
// auto-approved partners' subscriptions and refreshes ingest's schemas.
func (p *Platform) reconciler(cfg Config, ingressAddrs, egressAddrs []string, secrets *secret.File, reg *registry.Registry, refresh func()) (*reconciler.Reconciler, error) {
	in, err := kgo.NewClient(append(embedkafka.ClientOpts(), kgo.SeedBrokers(ingressAddrs...))...)
	if err != nil {
		return nil, err
	}
	eg, err := kgo.NewClient(append(embedkafka.ClientOpts(), kgo.SeedBrokers(egressAddrs...))...)
	if err != nil {
		in.Close()
		return nil, err
	}
	p.admins = append(p.admins, in, eg)
	log := p.log.With("role", "reconciler")
	return &reconciler.Reconciler{
		Source:      source.Dir{Path: cfg.CatalogDir},
		Applier:     &reconciler.Applier{Store: p.st, Ingress: in, Egress: eg, EgressPartitions: cfg.EgressPartitions, Log: log, Now: time.Now},
		Status:      reconciler.StatusFileIn(cfg.DataDir),
		Metrics:     p.tel.Metrics,
		Ops:         cfg.Dispatch.Ops,
		Interval:    cfg.ReconcileInterval,
		LoadOptions: []catalog.Option{catalog.WithDemoBase(p.URL)},
		Artifacts:   artifact.Dir{Path: filepath.Join(cfg.DataDir, "artifacts")},
		// Served under /schemas/ by whp dev itself.
		ArtifactBaseURL: p.URL,
		OnApplied: func(ctx context.Context, cat *catalog.Catalog) error {
			if err := ensureSecrets(secrets, cat, log); err != nil {
				return err
			}
			if err := p.autoApprove(ctx, cfg.AutoApprove); err != nil {
				return err
			}
			refresh() // new topics are consumed at once
			return reg.Refresh(ctx)
		},
		Log: log,
		Now: time.Now,
	}, nil
}

// autoApprove approves the Pending subscriptions of the given partners,
// recorded as decided by "whp dev", so the quickstart's first event is
// delivered without an approver.
func (p *Platform) autoApprove(ctx context.Context, partners []string) error {
	subs, err := p.st.ListSubscriptions(ctx)
	if err != nil {
		return err
	}
	auto := map[string]bool{}
	for _, id := range partners {
		auto[id] = true
	}
	// Several at a time, as the reconciler applies: the store commits
	// them together (a bench's 1,000 partners, one by one, took 3.5 s).
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, s := range subs {
		if !auto[s.PartnerID] || s.Status != store.SubscriptionPending {
			continue
		}
		g.Go(func() error {
			d := reconciler.Decision{SubscriptionID: s.ID, Status: store.SubscriptionApproved, By: "whp dev",
				Reason: "approved automatically in dev mode", ConfigHash: s.ConfigHash, At: time.Now()}
			if _, err := reconciler.Decide(gctx, p.st, d); err != nil {
				return fmt.Errorf("approve subscription %s: %w", s.ID, err)
			}
			p.log.Info("subscription approved automatically (dev mode)", "subscription_id", s.ID)
			return nil
		})
	}
	return g.Wait()
}

func (p *Platform) sweep(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := p.st.Sweep(ctx); err != nil {
				p.log.Warn("store sweep failed", "error", err)
			} else if n > 0 {
				p.log.Debug("expired store items deleted", "count", n)
			}
		}
	}
}

// Stop drains the platform: the HTTP server stops taking requests and
// finishes those in flight, the workers finish their batch and commit, and
// Kafka and the store are flushed and closed.
func (p *Platform) Stop() error {
	p.stopOnce.Do(func() {
		p.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		if err := p.srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := <-p.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		p.ingest.Wait() // the Idempotency-Keys answered, before the store closes
		p.cancel()
		if err := p.group.Wait(); err != nil {
			errs = append(errs, err)
		}
		p.closeResources()
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}

func (p *Platform) closeResources() {
	if p.tel != nil {
		p.tel.Shutdown(context.Background())
	}
	if p.producer != nil {
		p.producer.Close()
	}
	for _, cl := range p.admins {
		cl.Close()
	}
	if p.retryProd != nil {
		p.retryProd.Close()
	}
	if p.kafka != nil {
		p.kafka.Close()
	}
	if p.st != nil {
		if err := p.st.Close(); err != nil {
			// Nothing written is lost; the next start scans the files.
			p.log.Warn("closing the store", "error", err)
		}
	}
}

// Banner says what listens where.
func (p *Platform) Banner(cfg Config) string {
	lines := []string{
		"whp dev: the whole platform in one process",
		"  ingest API      " + p.URL + "/v1/events   (POST an event; GET /v1/events/{id} for its deliveries)",
		"  demo partner    " + p.URL + "/demo/       (what the demo partner received and verified)",
		"  JSON Schemas    " + p.URL + "/schemas/index.json   (what partners receive, per version)",
		"  console         " + p.URL + "/console/   (sign in as admin, approver, viewer or demo with the password in " + filepath.Join(cfg.DataDir, ConsolePasswordFile) + ")",
		"  health          " + p.URL + "/healthz  " + p.URL + "/readyz",
		"  approvals API   " + p.URL + "/v1/subscriptions   (Authorization: Bearer $(cat " + filepath.Join(cfg.DataDir, AdminTokenFile) + "))",
		"  dead letters    " + p.URL + "/v1/dlq             (same token; whp dlq list | redrive)",
		"  flags           " + filepath.Join(cfg.DataDir, "flags.json") + "   (pause partners or ingest, switch transforms; read every second)",
		"  catalog         " + cfg.CatalogDir + "   (applied again on every change; status at " + p.URL + "/v1/reconcile/status)",
		"  data            " + cfg.DataDir + "   (store, embedded Kafka, dev secrets)",
		"  durability      " + durability(cfg.KafkaSync),
	}
	return strings.Join(lines, "\n") + "\n"
}

// durability is what the banner says a 202 promises.
func durability(synced bool) string {
	if synced {
		return "an event answered 202 is on disk first (--kafka-sync): it survives a crash of the machine"
	}
	return "an event answered 202 is in the OS's hands: it survives a crash of whp, not of the machine (--kafka-sync: on disk first)"
}
