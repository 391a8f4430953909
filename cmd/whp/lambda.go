package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/lambdahttp"
	"github.com/whp-dev/whp/runtime/lambdakafka"
	"github.com/whp-dev/whp/runtime/processor"
	"github.com/whp-dev/whp/runtime/retry"
)

// onLambda reports whether this process is a Lambda function: the runtime
// sets AWS_LAMBDA_RUNTIME_API for the bootstrap it starts.
func onLambda() bool { return os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" }

// runLambda serves the role WHP_ROLE names as a Lambda function. Its
// configuration is the role's own, from WHP_* environment variables
// (docs/configuration.md); deploy/README.md says how each is wired.
func runLambda(ctx context.Context, roleName string, stderr io.Writer) error {
	h, closeAll, err := lambdaHandler(ctx, roleName, os.Stdout, stderr)
	if err != nil {
		return err
	}
	defer closeAll()
	lambda.StartWithOptions(h, lambda.WithContext(ctx))
	return nil
}

// lambdaRoles are the roles a Lambda function can serve.
const lambdaRoles = "ingest, processor, dispatcher or reconcile"

// lambdaHandler builds the handler of a role, once per sandbox (clients,
// store and caches outlive invocations):
//
//   - ingest: API Gateway HTTP API events (payload format 2.0), served by
//     the same http.Handler as `whp ingest`.
//   - processor: MSK event source mapping events on the ingress topics.
//   - dispatcher: MSK event source mapping events on the egress topics
//     (first attempts), and scheduled events, on which it drains the retry
//     tiers for --retry-window.
//   - reconcile: scheduled events; each applies the catalog's current
//     revision once.
//
// Each writes its metrics to stdout in CloudWatch embedded metric format
// at the end of every invocation (and exports its spans, with --traces
// otlp).
func lambdaHandler(ctx context.Context, roleName string, stdout, stderr io.Writer) (any, func(), error) {
	switch roleName {
	case "ingest":
		r := &role{name: "ingest", emf: stdout}
		if err := r.flags(nil, stderr, nil); err != nil {
			return nil, nil, err
		}
		// The Lambda records a keyed request's outcome before answering: a
		// frozen sandbox would not write it after.
		mux, reg, prod, _, err := r.ingestAPI(ctx, stderr, false)
		if err != nil {
			return nil, nil, err
		}
		// Between invocations the sandbox is frozen and this goroutine
		// with it; it refreshes the schemas whenever the function runs.
		go reg.Run(ctx, 5*time.Second)
		r.pollFlags(ctx)
		serve := lambdahttp.Handler(r.tel.Instrument(mux))
		h := func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			defer r.tel.Flush(ctx)
			return serve(ctx, ev)
		}
		return h, func() { prod.Close(); r.close() }, nil
	case "processor":
		return processorLambda(ctx, stdout, stderr)
	case "dispatcher":
		return dispatcherLambda(ctx, stdout, stderr)
	case "reconcile", "reconciler":
		return reconcileLambda(ctx, stdout, stderr)
	case "":
		return nil, nil, fmt.Errorf("on Lambda, WHP_ROLE must name the role to run: %s", lambdaRoles)
	default:
		return nil, nil, fmt.Errorf("WHP_ROLE=%q: the Lambda runtime serves %s", roleName, lambdaRoles)
	}
}

func processorLambda(ctx context.Context, stdout, stderr io.Writer) (any, func(), error) {
	r := &role{name: "processor", emf: stdout}
	if err := r.flags(nil, stderr, nil); err != nil {
		return nil, nil, err
	}
	_, eg, kopts, err := r.connect(ctx, stderr, false, true)
	if err != nil {
		return nil, nil, err
	}
	reg, err := r.registry(ctx)
	if err != nil {
		return nil, nil, err
	}
	go reg.Run(ctx, 5*time.Second)
	r.pollFlags(ctx)
	p, err := processor.NewBatch(processor.Config{Tracing: r.tel.Tracing, Flags: r.opflags}, eg, r.st, reg, r.log, kopts...)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex // a Processor takes one batch at a time
	batch := func(ctx context.Context, recs []*kgo.Record) []*kgo.Record {
		mu.Lock()
		defer mu.Unlock()
		if err := p.Process(ctx, recs); err != nil {
			r.log.Error("processing batch failed; the event source mapping hands it again", "records", len(recs), "error", err)
			return recs
		}
		return nil
	}
	h := func(ctx context.Context, ev events.KafkaEvent) (lambdakafka.Response, error) {
		defer r.tel.Flush(ctx)
		return lambdakafka.Handle(ctx, ev, batch, r.log), nil
	}
	return h, func() { p.Close(); r.close() }, nil
}

func dispatcherLambda(ctx context.Context, stdout, stderr io.Writer) (any, func(), error) {
	dr, err := newDispatcherRole(ctx, nil, stderr, true, stdout)
	if err != nil {
		return nil, nil, err
	}
	dr.pollFlags(ctx)
	h := func(ctx context.Context, raw json.RawMessage) (any, error) {
		defer dr.tel.Flush(ctx)
		defer dr.cfg.Ops.Flush(ctx) // before the sandbox freezes
		switch lambdakafka.KindOf(raw) {
		case lambdakafka.Kafka:
			var ev events.KafkaEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				return nil, fmt.Errorf("reading the event source mapping's event: %w", err)
			}
			return lambdakafka.Handle(ctx, ev, dr.d.Deliver, dr.log), nil
		case lambdakafka.Scheduled:
			return nil, dr.drainRetries(ctx)
		}
		return nil, errors.New("unrecognised event: the dispatcher takes MSK event source mapping events and scheduled events")
	}
	return h, func() { dr.d.Close(); dr.retryProd.Close(); dr.close() }, nil
}

// drainRetries runs the retry scheduler for the retry window: due retries
// are attempted, later ones are moved down their tiers, and what is not
// yet due stays in Kafka for the next scheduled invocation (nothing waits
// in the function). Schedule the function at least as often as the window
// lasts, e.g. every minute for the default 50 s, so a retry is at most a
// few seconds late.
func (dr *dispatcherRole) drainRetries(ctx context.Context) error {
	w, err := lambdakafka.Window(ctx, dr.retryWindow, dr.d.AttemptTimeout()+5*time.Second, time.Now())
	if err != nil {
		return err
	}
	sched, err := retry.NewScheduler(dr.eg, dr.retryProd, dr.d, dr.log, dr.kopts...)
	if err != nil {
		return err
	}
	sched.Tracing = dr.tel.Tracing
	wctx, cancel := context.WithTimeout(ctx, w)
	defer cancel()
	dr.log.Info("draining the retry tiers", "window", w.String())
	return sched.Run(wctx) // commits what it finished and leaves the group
}

func reconcileLambda(ctx context.Context, stdout, stderr io.Writer) (any, func(), error) {
	f, err := parseReconcileFlags(nil, stderr)
	if err != nil {
		return nil, nil, err
	}
	f.emf = stdout
	// A function's disk does not outlive its sandbox, and it cannot host
	// Kafka: everything the reconciler keeps must live elsewhere.
	var problems []error
	if f.b.ingress == "" {
		problems = append(problems, usageError{"on Lambda, WHP_INGRESS_BROKERS and WHP_EGRESS_BROKERS are required (there is no embedded Kafka)"})
	}
	if f.b.storeKind != "dynamodb" {
		problems = append(problems, usageError{"on Lambda, WHP_STORE must be dynamodb"})
	}
	if !strings.HasPrefix(f.statusAt, "s3://") {
		problems = append(problems, usageError{"on Lambda, WHP_STATUS must be s3://bucket/key.json (the function's disk does not last)"})
	}
	if f.repo == "" {
		problems = append(problems, usageError{"on Lambda, WHP_REPO must name the catalog's Git repository"})
	}
	if err := errors.Join(problems...); err != nil {
		return nil, nil, err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("role", "reconcile")
	r, closeAll, err := f.open(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	h := func(ctx context.Context, raw json.RawMessage) (any, error) {
		if lambdakafka.KindOf(raw) != lambdakafka.Scheduled {
			return nil, errors.New("unrecognised event: the reconciler takes scheduled events")
		}
		defer f.tel.Flush(ctx)
		defer r.Ops.Flush(ctx)
		// On a bad revision the last good one keeps serving; the error
		// fails the invocation, so it shows in the function's error metric.
		return r.ReconcileOnce(ctx)
	}
	return h, closeAll, nil
}
