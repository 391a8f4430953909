package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/reconciler/artifact"
	"github.com/whp-dev/whp/reconciler/source"
	"github.com/whp-dev/whp/runtime/embedkafka"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/telemetry"
)

// reconcileFlags are the flags of `whp reconcile`.
type reconcileFlags struct {
	catalogDir, repo, branch, tag, commit, path        string
	gitUser, gitPasswordFile, gitTokenFile, sshKeyFile string
	knownHostsFile, webhookSecretFile, addr            string
	gitCAFile, statusAt                                string
	artifacts, artifactsURL                            string
	b                                                  backend
	once, dryRun, pruneTopics                          bool
	ops                                                opsFlags
	emf                                                io.Writer // Lambda: metrics as CloudWatch EMF
	tel                                                *telemetry.Telemetry
	interval                                           time.Duration
	egressPartitions                                   int
}

// egressPartitionsUsage is --egress-partitions's help, whp reconcile's
// and whp dev's.
const egressPartitionsUsage = "partitions of each subscription's egress topic wh.egress.{partner}.{event}; fewer let an egress cluster hold more partners (partitions only grow: lowering it changes new topics only)"

// maxEgressPartitions bounds --egress-partitions: a partner's partitions
// are how many dispatcher pods can share its deliveries, and past 64 a
// value is a typo, not a deployment (every egress topic would take them).
const maxEgressPartitions = 64

// checkEgressPartitions is whp dev's and whp reconcile's check of
// --egress-partitions.
func checkEgressPartitions(command string, n int) error {
	if n < 1 || n > maxEgressPartitions {
		return usageError{fmt.Sprintf("whp %s: --egress-partitions %d: want 1 to %d", command, n, maxEgressPartitions)}
	}
	return nil
}

func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "status" {
		return runReconcileStatus(ctx, args[1:], stdout, stderr)
	}
	f, err := parseReconcileFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, closeAll, err := f.open(ctx, log)
	if err != nil {
		return err
	}
	defer closeAll()
	if f.dryRun {
		return dryRun(ctx, r.Source, r.Applier, stdout, stderr)
	}
	if f.once {
		s, err := r.ReconcileOnce(ctx)
		r.Ops.Flush(ctx)
		s.Render(stdout)
		if err != nil {
			return exitError{1}
		}
		return nil
	}
	go r.Ops.Run(ctx)
	return follow(ctx, r, *f, stdout, log)
}

// parseReconcileFlags reads the flags of `whp reconcile` from args and
// WHP_* variables.
func parseReconcileFlags(args []string, stderr io.Writer) (*reconcileFlags, error) {
	fs := newFlags("reconcile", stderr)
	var f reconcileFlags
	fs.StringVar(&f.catalogDir, "catalog", "./catalog", "catalog directory to follow (ignored with --repo)")
	fs.StringVar(&f.repo, "repo", "", "Git repository to follow: a local path or an https:// or ssh:// URL")
	fs.StringVar(&f.branch, "branch", "main", "branch to follow")
	fs.StringVar(&f.tag, "tag", "", "tag to follow instead of a branch")
	fs.StringVar(&f.commit, "commit", "", "commit to pin instead of a branch")
	fs.StringVar(&f.path, "path", "catalog", "the catalog's sub-path in the repository")
	fs.StringVar(&f.gitUser, "git-username", "", "username for an HTTPS repository")
	fs.StringVar(&f.gitPasswordFile, "git-password-file", "", "file holding the HTTPS password or token (kept out of the process list)")
	fs.StringVar(&f.gitTokenFile, "git-token-file", "", "file holding a bearer token for an HTTPS repository")
	fs.StringVar(&f.sshKeyFile, "ssh-key-file", "", "PEM private key for an ssh:// repository")
	fs.StringVar(&f.knownHostsFile, "known-hosts-file", "", "known_hosts for an ssh:// repository")
	fs.StringVar(&f.gitCAFile, "git-ca-file", "", "PEM CA bundle for an HTTPS repository with a private CA")
	f.b.register(fs) // --store, --data-dir (and its embedded Kafka unless brokers are given), --ingress-brokers, --egress-brokers…
	fs.StringVar(&f.artifacts, "artifacts", "", "where to publish each schema version's JSON Schema: a directory, or s3://bucket/prefix (credentials from the AWS default chain)")
	fs.StringVar(&f.artifactsURL, "artifacts-url", "", "base URL partners read the artifacts at (the $id of each schema)")
	fs.StringVar(&f.statusAt, "status", "", "where to keep the status: s3://bucket/key.json (default: reconciler-status.json in the data dir)")
	fs.BoolVar(&f.once, "once", false, "apply the current revision once and exit")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan and change nothing")
	fs.BoolVar(&f.pruneTopics, "prune-topics", false, "delete wh.* topics no longer in the catalog (deletes their records)")
	fs.IntVar(&f.egressPartitions, "egress-partitions", reconciler.DefaultEgressPartitions, egressPartitionsUsage)
	fs.DurationVar(&f.interval, "interval", time.Minute, "how often to look for a new revision and repair drift")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8081", "address of the status and trigger endpoints when following")
	f.ops.register(fs.String)
	fs.StringVar(&f.webhookSecretFile, "webhook-secret-file", "", "file holding the push webhook's HMAC secret (enables POST /v1/reconcile/trigger)")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if (f.b.ingress == "") != (f.b.egress == "") {
		return nil, usageError{"whp reconcile: give both --ingress-brokers and --egress-brokers, or neither"}
	}
	if err := checkEgressPartitions("reconcile", f.egressPartitions); err != nil {
		return nil, err
	}
	return &f, nil
}

// open builds the reconciler the flags describe: its source, store, Kafka
// clients (or the data dir's embedded Kafka), status and artifact stores.
// The returned func closes what it opened.
func (f *reconcileFlags) open(ctx context.Context, log *slog.Logger) (r *reconciler.Reconciler, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	src, err := f.source()
	if err != nil {
		return nil, nil, err
	}
	// The store first: the embedded store's lock keeps a second process (a
	// running whp dev) away from the data dir and its embedded Kafka.
	st, err := f.b.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() { st.Close() })
	kopts, err := f.b.kafkaOpts(ctx)
	if err != nil {
		return nil, nil, err
	}
	ingress, egress := splitList(f.b.ingress), splitList(f.b.egress)
	if len(ingress) == 0 {
		clusters, err := embedkafka.Start(filepath.Join(f.b.dataDir, "kafka"))
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, clusters.Close)
		ingress, egress = clusters.Ingress.ListenAddrs(), clusters.Egress.ListenAddrs()
		kopts = append(kopts, embedkafka.ClientOpts()...)
	}
	in, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(ingress...)}, kopts...)...)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, in.Close)
	eg, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(egress...)}, kopts...)...)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, eg.Close)
	applier := &reconciler.Applier{Store: st, Ingress: in, Egress: eg, PruneTopics: f.pruneTopics,
		EgressPartitions: int32(f.egressPartitions), Log: log, Now: time.Now}
	status, err := statusStore(ctx, f.statusAt, f.b.dataDir)
	if err != nil {
		return nil, nil, err
	}
	r = &reconciler.Reconciler{Source: src, Applier: applier, Status: status, Interval: f.interval, Log: log, Now: time.Now,
		ArtifactBaseURL: f.artifactsURL}
	if r.Artifacts, err = artifactStore(ctx, f.artifacts); err != nil {
		return nil, nil, err
	}
	if r.Ops, err = f.ops.publisher(ctx, &f.b, &ssrf.Guard{}, log); err != nil {
		return nil, nil, err
	}
	if f.tel, err = telemetry.New(ctx, telemetry.Options{Service: "whp-reconcile", EMF: f.emf}); err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() { f.tel.Shutdown(context.Background()) })
	r.Metrics = f.tel.Metrics
	return r, closeAll, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (f reconcileFlags) source() (reconciler.Source, error) {
	if f.repo == "" {
		return source.Dir{Path: f.catalogDir}, nil
	}
	g := source.Git{URL: f.repo, Branch: f.branch, Tag: f.tag, Commit: f.commit, Path: f.path, Auth: map[string][]byte{}}
	if f.gitUser != "" {
		g.Auth["username"] = []byte(f.gitUser)
	}
	for key, file := range map[string]string{"password": f.gitPasswordFile, "bearerToken": f.gitTokenFile, "identity": f.sshKeyFile, "known_hosts": f.knownHostsFile, "caFile": f.gitCAFile} {
		if file == "" {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("git credentials: %w", err)
		}
		g.Auth[key] = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	return g, nil
}

func dryRun(ctx context.Context, src reconciler.Source, a *reconciler.Applier, stdout, stderr io.Writer) error {
	art, err := src.Fetch(ctx)
	if err != nil {
		return err
	}
	cat, err := catalog.LoadFiles(art.Revision, art.Files)
	var ps catalog.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintf(stderr, "revision %s is invalid: %d problem(s); nothing would be applied\n", art.Revision, len(ps))
		return exitError{1}
	}
	if err != nil {
		return err
	}
	plan, err := a.Plan(ctx, cat, art.Revision)
	if err != nil {
		return err
	}
	plan.Render(stdout)
	return nil
}

func follow(ctx context.Context, r *reconciler.Reconciler, f reconcileFlags, stdout io.Writer, log *slog.Logger) error {
	secret := ""
	if f.webhookSecretFile != "" {
		b, err := os.ReadFile(f.webhookSecretFile)
		if err != nil {
			return fmt.Errorf("webhook secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	mux := http.NewServeMux()
	r.Register(mux, secret)
	mux.Handle("GET /metrics", f.tel.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	// Ready as soon as it serves: a failing revision is reported in the
	// status (and the last good one keeps serving), not by taking the pod
	// out of rotation, which would hide the status endpoint too.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ready\n") })
	srv := &http.Server{Addr: f.addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintf(stdout, "whp reconcile: following %s every %s; status at http://%s/v1/reconcile/status\n", describeSource(f), f.interval, f.addr)
	runErr := r.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("status server", "error", err)
		return err
	}
	return runErr
}

func describeSource(f reconcileFlags) string {
	if f.repo == "" {
		return f.catalogDir
	}
	ref := "branch " + f.branch
	switch {
	case f.commit != "":
		ref = "commit " + f.commit
	case f.tag != "":
		ref = "tag " + f.tag
	}
	return fmt.Sprintf("%s (%s, path %s)", f.repo, ref, f.path)
}

func runReconcileStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reconcile status", stderr)
	dataDir := fs.String("data-dir", ".whp", "data dir whose stored status to read")
	url := fs.String("url", "", "base URL of a running whp (whp dev or whp reconcile) to ask instead, e.g. http://127.0.0.1:8080")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	var st reconciler.Status
	if *url != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/v1/reconcile/status", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("reconcile status: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("reconcile status: %s answered %s", *url, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return fmt.Errorf("reconcile status: %w", err)
		}
	} else {
		var err error
		if st, err = reconciler.StatusFileIn(*dataDir).Load(ctx); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	st.Render(stdout)
	return nil
}

// artifactStore opens --artifacts: nil when unset, S3 for s3:// URLs, else
// a directory.
func artifactStore(ctx context.Context, where string) (artifact.Store, error) {
	if where == "" {
		return nil, nil
	}
	if _, ok := strings.CutPrefix(where, "s3://"); !ok {
		return artifact.Dir{Path: where}, nil
	}
	st, _, err := s3Store(ctx, "--artifacts", where)
	return st, err
}

// s3Store opens s3://bucket/prefix with credentials from the AWS default
// chain; rest is the prefix.
func s3Store(ctx context.Context, flag, where string) (artifact.S3, string, error) {
	bucket, rest, _ := strings.Cut(strings.TrimPrefix(where, "s3://"), "/")
	if bucket == "" {
		return artifact.S3{}, "", usageError{fmt.Sprintf("whp reconcile: %s %q: want s3://bucket/path", flag, where)}
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return artifact.S3{}, "", fmt.Errorf("AWS configuration: %w", err)
	}
	return artifact.S3{Client: s3.NewFromConfig(cfg), Bucket: bucket}, rest, nil
}

// statusStore opens --status: a JSON object in S3, or the data dir's file.
func statusStore(ctx context.Context, where, dataDir string) (reconciler.StatusStore, error) {
	if where == "" {
		return reconciler.StatusFileIn(dataDir), nil
	}
	if !strings.HasPrefix(where, "s3://") {
		return reconciler.StatusFile{Path: where}, nil
	}
	st, key, err := s3Store(ctx, "--status", where)
	if err != nil {
		return nil, err
	}
	return reconciler.StatusObject{Store: st, Key: key, IsNotFound: func(err error) bool { return errors.Is(err, artifact.ErrNotFound) }}, nil
}
