package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/whp-dev/whp/runtime/dispatch"
	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/ingest"
	"github.com/whp-dev/whp/runtime/processor"
	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// role is what the three roles share: flags, logging, a store, and an
// HTTP server for probes (and, for ingest, the API).
type role struct {
	name     string
	b        backend
	addr     string
	logLevel string
	log      *slog.Logger
	st       store.Store
	// ready are the dependencies /readyz checks besides the store.
	ready []check
	// metricsAddr serves /metrics and /v1/slo, apart from the API.
	metricsAddr string
	traces      string
	sampleRatio float64
	tel         *telemetry.Telemetry
	emf         io.Writer     // Lambda: metrics in CloudWatch embedded metric format
	admins      []*kgo.Client // clients of the lag and DLQ gauges
	// drain runs once the HTTP server has shut down, before the store
	// closes: what the handlers left to finish after their answers.
	drain []func()
	// flagsFile and agentURL say where the operators' flags are read
	// from (pauses, transforms); opflags holds them, and its poller, if
	// any, runs with the role's workers (serve).
	flagsFile, agentURL string
	opflags             flags.Source
	poller              *flags.Poller
}

func (r *role) flags(args []string, stderr io.Writer, extra func(fsAdd func(name, value, usage string) *string)) error {
	fs := newFlags(r.name, stderr)
	r.b.register(fs)
	fs.StringVar(&r.addr, "addr", "127.0.0.1:8080", "address of the HTTP server (probes /healthz /readyz, and the API of ingest)")
	fs.StringVar(&r.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&r.metricsAddr, "metrics-addr", "127.0.0.1:9464", "address serving Prometheus /metrics and the SLOs at /v1/slo (kept off the API's address)")
	fs.StringVar(&r.traces, "traces", "none", "trace exporter: none, or otlp (OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318)")
	fs.Float64Var(&r.sampleRatio, "trace-sample-ratio", 1, "share of new traces recorded, from 0 (exclusive) to 1; a producer's traceparent keeps its own decision")
	fs.StringVar(&r.flagsFile, "flags-file", "", "JSON file of operational flags (a partner paused, a schema's ingest paused, transforms off), read every second; every role reads the same flags (default: none)")
	fs.StringVar(&r.agentURL, "appconfig-agent-url", "", "read the operational flags from the AWS AppConfig Agent at this URL, every 15 s, instead of a file")
	if extra != nil {
		extra(fs.String)
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if r.traces != telemetry.TracesNone && r.traces != telemetry.TracesOTLP {
		return usageError{fmt.Sprintf("whp %s: --traces %q: want none or otlp", r.name, r.traces)}
	}
	if r.sampleRatio <= 0 || r.sampleRatio > 1 {
		return usageError{fmt.Sprintf("whp %s: --trace-sample-ratio %v: want more than 0 and at most 1", r.name, r.sampleRatio)}
	}
	if r.flagsFile != "" && r.agentURL != "" {
		return usageError{fmt.Sprintf("whp %s: --flags-file and --appconfig-agent-url: give one place to read the flags from", r.name)}
	}
	return nil
}

// startFlags reads the operators' flags once, before the role serves, so
// that a partner paused is paused from the first delivery; unreadable,
// the role starts without them and its poller tries again each interval,
// as whp dev does.
func (r *role) startFlags(ctx context.Context) {
	log := r.log.With("component", "flags")
	switch {
	case r.agentURL != "":
		r.poller = flags.AppConfigAgent(r.agentURL, 15*time.Second, log)
	case r.flagsFile != "":
		r.poller = flags.File(r.flagsFile, time.Second, log)
	default:
		r.opflags = flags.Static{}
		return
	}
	r.opflags = r.poller
	if err := r.poller.Refresh(ctx); err != nil {
		log.Warn("flags unreadable; starting without them", "error", err)
	}
}

// pollFlags keeps a Lambda function's flags fresh: between invocations
// the sandbox is frozen and the poller with it, so they are read again
// whenever the function runs (as its schemas are). serve runs the
// poller of a role on EKS.
func (r *role) pollFlags(ctx context.Context) {
	if r.poller != nil {
		go r.poller.Run(ctx)
	}
}

func (r *role) start(ctx context.Context, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(r.logLevel)); err != nil {
		return usageError{fmt.Sprintf("whp %s: --log-level %q: want debug, info, warn or error", r.name, r.logLevel)}
	}
	// Production roles log JSON; one line per event on the data path.
	r.log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})).With("role", r.name)
	r.startFlags(ctx)
	st, err := r.b.openStore(ctx)
	if err != nil {
		return err
	}
	r.st = st
	if r.tel, err = telemetry.New(ctx, telemetry.Options{Service: "whp-" + r.name, Traces: r.traces, TraceSampleRatio: r.sampleRatio, EMF: r.emf}); err != nil {
		return err
	}
	return nil
}

// connect checks the broker flags the role needs, starts the role (logging,
// store) and returns the seed brokers with the Kafka client options (TLS,
// SASL, compression) every client of the role shares.
func (r *role) connect(ctx context.Context, stderr io.Writer, ingress, egress bool) (in, eg []string, kopts []kgo.Opt, err error) {
	if in, eg, err = r.b.brokers(ingress, egress); err != nil {
		return nil, nil, nil, err
	}
	if err = r.start(ctx, stderr); err != nil {
		return nil, nil, nil, err
	}
	if kopts, err = r.b.kafkaOpts(ctx); err != nil {
		return nil, nil, nil, err
	}
	return in, eg, append(kopts, r.tel.Tracing.KafkaOpts()...), nil
}

// registry loads the schemas from the store; the caller keeps it fresh
// with its Run.
func (r *role) registry(ctx context.Context) (*registry.Registry, error) {
	reg := registry.New(r.st, r.log)
	if err := reg.Refresh(ctx); err != nil {
		return nil, err
	}
	return reg, nil
}

// serve runs the HTTP server and the workers until ctx ends, then stops
// the server and waits for the workers to finish their batch.
func (r *role) serve(ctx context.Context, mux *http.ServeMux, workers ...func(context.Context) error) error {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("GET /readyz", readiness(append([]check{{"store", r.pingStore}}, r.ready...), readinessTTL))
	srv := &http.Server{Addr: r.addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if r.poller != nil {
		workers = append(workers, r.poller.Run)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, w := range workers {
		g.Go(func() error { return w(gctx) })
	}
	srv.Handler = r.tel.Instrument(mux)
	msrv := &http.Server{Addr: r.metricsAddr, Handler: r.tel.Mux(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 2)
	go func() { served <- srv.ListenAndServe() }()
	go func() { served <- msrv.ListenAndServe() }()
	r.log.Info("started", "addr", r.addr, "metrics_addr", r.metricsAddr, "store", r.b.storeKind)
	select {
	case <-gctx.Done():
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	msrv.Shutdown(sctx)
	for _, f := range r.drain {
		f()
	}
	err := g.Wait()
	r.close()
	r.log.Info("stopped")
	return err
}

// close releases what start and observeKafka opened.
func (r *role) close() {
	for _, cl := range r.admins {
		cl.Close()
	}
	if r.tel != nil {
		r.tel.Shutdown(context.Background())
	}
	r.st.Close()
}

// observeKafka reports the lag of groups on a cluster (and the dead
// letters kept there, if dlqPrefix is set) in the role's metrics.
func (r *role) observeKafka(brokers []string, kopts []kgo.Opt, groups []string, dlqPrefix string) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, kopts...)...)
	if err != nil {
		return err
	}
	r.admins = append(r.admins, cl)
	return r.tel.Metrics.ObserveKafka(kadm.NewClient(cl), groups, dlqPrefix, 2*time.Second)
}

// pingStore reaches the store with the cheapest read there is: a lookup
// of a subscription that does not exist.
func (r *role) pingStore(ctx context.Context) error {
	if _, err := r.st.GetSubscription(ctx, "whp-readiness-probe"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func runIngest(ctx context.Context, args []string, stderr io.Writer) error {
	r := &role{name: "ingest"}
	if err := r.flags(args, stderr, nil); err != nil {
		return err
	}
	mux, reg, prod, api, err := r.ingestAPI(ctx, stderr, true)
	if err != nil {
		return err
	}
	defer prod.Close()
	r.drain = append(r.drain, api.Wait)
	r.ready = append(r.ready, check{"ingress kafka", prod.Ping})
	return r.serve(ctx, mux, func(ctx context.Context) error { return reg.Run(ctx, 5*time.Second) })
}

// ingestAPI starts the role and builds the producers' API: the handler
// whp ingest serves on EKS and the ingest Lambda serves behind API Gateway.
// recordAfterAnswer is ingest.Config's: a server that outlives its
// answers, not a Lambda.
func (r *role) ingestAPI(ctx context.Context, stderr io.Writer, recordAfterAnswer bool) (*http.ServeMux, *registry.Registry, *kgo.Client, *ingest.API, error) {
	in, _, kopts, err := r.connect(ctx, stderr, true, false)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	reg, err := r.registry(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(in...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0)}, kopts...)...)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	mux := http.NewServeMux()
	api := ingest.New(ingest.Config{Metrics: r.tel.Metrics, RecordAfterAnswer: recordAfterAnswer, Flags: r.opflags}, reg, prod, r.st, r.log)
	api.Register(mux)
	return mux, reg, prod, api, nil
}

func runProcessor(ctx context.Context, args []string, stderr io.Writer) error {
	r := &role{name: "processor"}
	if err := r.flags(args, stderr, nil); err != nil {
		return err
	}
	in, eg, kopts, err := r.connect(ctx, stderr, true, true)
	if err != nil {
		return err
	}
	reg, err := r.registry(ctx)
	if err != nil {
		return err
	}
	proc, err := processor.New(processor.Config{Tracing: r.tel.Tracing, Flags: r.opflags}, in, eg, r.st, reg, r.log, kopts...)
	if err != nil {
		return err
	}
	r.ready = append(r.ready, check{"kafka", proc.Ping})
	if err := r.observeKafka(in, kopts, []string{"whp-processor"}, ""); err != nil {
		return err
	}
	return r.serve(ctx, http.NewServeMux(), proc.Run, func(ctx context.Context) error { return reg.Run(ctx, 5*time.Second) })
}

func runDispatcher(ctx context.Context, args []string, stderr io.Writer) error {
	dr, err := newDispatcherRole(ctx, args, stderr, false, nil)
	if err != nil {
		return err
	}
	defer dr.retryProd.Close()
	sched, err := retry.NewScheduler(dr.eg, dr.retryProd, dr.d, dr.log, dr.kopts...)
	if err != nil {
		return err
	}
	sched.Tracing = dr.tel.Tracing
	dr.ready = append(dr.ready, check{"egress kafka", dr.d.Ping})
	if err := dr.observeKafka(dr.eg, dr.kopts, []string{"whp-dispatcher", "whp-retry"}, topic.DLQPrefix); err != nil {
		return err
	}
	return dr.serve(ctx, http.NewServeMux(), dr.d.Run, sched.Run, dr.cfg.Ops.Run)
}

// dispatcherRole is the dispatcher as both runtimes build it: on EKS it
// consumes the egress topics and runs the retry scheduler; on Lambda it is
// handed batches and drains the retry tiers on a schedule.
type dispatcherRole struct {
	role
	cfg         dispatch.Config
	eg          []string
	kopts       []kgo.Opt
	retryProd   *kgo.Client
	d           *dispatch.Dispatcher
	retryWindow time.Duration // Lambda: how long a scheduled invocation drains the retry tiers
	ops         opsFlags
}

// newDispatcherRole builds the dispatcher; batch (Lambda) makes it take
// batches instead of consuming, and emf, if set, receives its metrics.
func newDispatcherRole(ctx context.Context, args []string, stderr io.Writer, batch bool, emf io.Writer) (*dispatcherRole, error) {
	dr := &dispatcherRole{role: role{name: "dispatcher", emf: emf}}
	var devDelivery, retryWindow, concurrency, partnerConcurrency, fixed *string
	if err := dr.flags(args, stderr, func(add func(string, string, string) *string) {
		devDelivery = add("dev-delivery", "", `"loopback" lets deliveries reach loopback over http: for tests and local runs only, never in production`)
		dr.ops.register(add)
		retryWindow = add("retry-window", "50s", "on Lambda: how long each scheduled invocation drains the retry tiers (bounded by the function's timeout less the delivery timeout and 5 s)")
		concurrency = add("concurrency", strconv.Itoa(dispatch.DefaultConcurrency), concurrencyUsage)
		partnerConcurrency = add("partner-concurrency", strconv.Itoa(dispatch.DefaultPartnerConcurrency), partnerConcurrencyUsage)
		fixed = add("fixed-partner-concurrency", "false", fixedPartnerConcurrencyUsage)
	}); err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(*concurrency)
	if err != nil {
		return nil, usageError{fmt.Sprintf("whp dispatcher: --concurrency %q: want a whole number of 1 or more", *concurrency)}
	}
	pn, err := strconv.Atoi(*partnerConcurrency)
	if err != nil {
		return nil, usageError{fmt.Sprintf("whp dispatcher: --partner-concurrency %q: want a whole number from 1 to --concurrency (%d)", *partnerConcurrency, n)}
	}
	if err := checkConcurrency("dispatcher", n, pn); err != nil {
		return nil, err
	}
	dr.cfg.Concurrency, dr.cfg.PartnerConcurrency = n, pn
	if dr.cfg.FixedPartnerConcurrency, err = strconv.ParseBool(*fixed); err != nil {
		return nil, usageError{fmt.Sprintf("whp dispatcher: --fixed-partner-concurrency %q: want true or false", *fixed)}
	}
	w, err := time.ParseDuration(*retryWindow)
	if err != nil || w < time.Second {
		return nil, usageError{fmt.Sprintf("whp dispatcher: --retry-window %q: want a duration of 1s or more, e.g. 50s", *retryWindow)}
	}
	dr.retryWindow = w
	_, eg, kopts, err := dr.connect(ctx, stderr, false, true)
	if err != nil {
		return nil, err
	}
	dr.eg, dr.kopts = eg, kopts
	secrets, err := dr.b.secretsProvider(ctx)
	if err != nil {
		return nil, err
	}
	switch *devDelivery {
	case "":
	case "loopback":
		dr.cfg.Guard = &ssrf.Guard{AllowLoopback: true, AllowHTTP: true}
		dr.log.Warn("deliveries may reach loopback over http (--dev-delivery loopback): not for production")
	default:
		return nil, usageError{`whp dispatcher: --dev-delivery takes only "loopback"`}
	}
	guard := dr.cfg.Guard
	if guard == nil {
		guard = &ssrf.Guard{}
	}
	if dr.cfg.Ops, err = dr.ops.publisher(ctx, &dr.b, guard, dr.log); err != nil {
		return nil, err
	}
	if dr.retryProd, err = retry.NewProducer(eg, kopts...); err != nil {
		return nil, err
	}
	newD := dispatch.New
	if batch {
		newD = dispatch.NewBatch
	}
	dr.cfg.Metrics, dr.cfg.Tracing, dr.cfg.Flags = dr.tel.Metrics, dr.tel.Tracing, dr.opflags
	if dr.d, err = newD(dr.cfg, eg, dr.st, secrets, dr.retryProd, dr.log, kopts...); err != nil {
		dr.retryProd.Close()
		return nil, err
	}
	if err := dr.tel.Metrics.ObserveBreakers(dr.d.BreakerStates); err != nil {
		return nil, err
	}
	if err := dr.tel.Metrics.ObserveInFlight(dr.d.InFlight); err != nil {
		return nil, err
	}
	return dr, nil
}

// The usage of --concurrency and --partner-concurrency, whp dev's and
// the dispatcher role's.
const (
	concurrencyUsage             = "deliveries in flight at once"
	partnerConcurrencyUsage      = "the most of one partner's deliveries in flight at once, so a partner that hangs cannot take every slot (at most --concurrency); a partner's max_in_flight in the catalog replaces it for that partner. Under it each partner's bound is learnt from its answers: from 16, doubling each round trip while it is used, cut to 0.7 by a 429, a 503 or a timeout (see --fixed-partner-concurrency). A partner gets at most this ÷ its answer's time deliveries a second (64 at 100 ms: 640)"
	fixedPartnerConcurrencyUsage = "give each partner its --partner-concurrency (or max_in_flight) in flight whatever it answers, instead of a bound learnt from its answers"
)

// checkConcurrency checks the dispatcher's bounds for command cmd.
func checkConcurrency(cmd string, n, pn int) error {
	if n < 1 {
		return usageError{fmt.Sprintf("whp %s: --concurrency %d: want a whole number of 1 or more", cmd, n)}
	}
	if pn < 1 || pn > n {
		return usageError{fmt.Sprintf("whp %s: --partner-concurrency %d: want a whole number from 1 to --concurrency (%d)", cmd, pn, n)}
	}
	return nil
}
