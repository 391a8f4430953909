// Package telemetry is how whp is observed: OpenTelemetry metrics exported
// for Prometheus on /metrics, the service level indicators computed from
// the same recordings (SLO), and the instruments the data path records
// into (Metrics).
//
// Each process has one Telemetry. Components take its *Metrics; a nil one
// records nothing.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is a process's metrics pipeline.
type Telemetry struct {
	Metrics  *Metrics
	SLO      *SLO
	Tracing  *Tracing
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
	emf      *emf
}

// Options configure New.
type Options struct {
	// Service names the process (whp-dev, whp-ingest, …).
	Service string
	// Objectives the SLO report holds the indicators to. Default
	// DefaultObjectives.
	Objectives *Objectives
	// Traces selects the span exporter: TracesNone (default),
	// TracesMemory or TracesOTLP.
	Traces string
	// TraceSampleRatio is the share of new traces recorded (a trace a
	// producer started keeps its own decision). Default 1.
	TraceSampleRatio float64
	// EMF, when set, also receives the metrics in CloudWatch embedded
	// metric format at each Flush (Lambda: os.Stdout).
	EMF io.Writer
}

// CardinalityLimit is the most series an instrument keeps; past it the
// SDK folds new ones into one series labelled otel_metric_overflow. Its
// default (2,000) was passed by the per-partner histograms at 2,000
// partners, after which per-partner dashboards and alerts read a blend
// (TestManyPartnersKeepTheirSeries). A series costs a few hundred bytes.
const CardinalityLimit = 100_000

// New builds the pipeline: an OpenTelemetry meter provider whose readings
// Prometheus scrapes from Handler, with the Go runtime's and the process's
// collectors beside them.
func New(ctx context.Context, opts Options) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(opts.Service))
	mopts := []sdkmetric.Option{sdkmetric.WithReader(exp), sdkmetric.WithResource(res), sdkmetric.WithCardinalityLimit(CardinalityLimit)}
	if os.Getenv("OTEL_METRICS_EXEMPLAR_FILTER") == "" {
		// Exemplars reach neither reader (the Prometheus handler does not
		// speak OpenMetrics; EMF has none), and each histogram series kept
		// a reservoir a bucket and a random source: 17 MB at 1,000
		// partners. The variable turns them back on.
		mopts = append(mopts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	}
	var em *emf
	if opts.EMF != nil {
		em = newEMF(opts.EMF)
		mopts = append(mopts, sdkmetric.WithReader(em.reader))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	obj := DefaultObjectives
	if opts.Objectives != nil {
		obj = *opts.Objectives
	}
	slo := NewSLO(obj)
	m, err := newMetrics(mp.Meter("github.com/whp-dev/whp"), slo)
	if err != nil {
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	if opts.TraceSampleRatio <= 0 {
		opts.TraceSampleRatio = 1
	}
	tr, err := newTracing(ctx, opts.Traces, opts.TraceSampleRatio, res)
	if err != nil {
		return nil, err
	}
	return &Telemetry{Metrics: m, SLO: slo, Tracing: tr, registry: reg, provider: mp, emf: em}, nil
}

// Handler serves the Prometheus exposition (GET /metrics).
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{Timeout: 10 * time.Second})
}

// Mux serves GET /metrics and GET /v1/slo?window=1h (the SLO report as
// JSON), for a role's metrics address.
func (t *Telemetry) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", t.Handler())
	mux.HandleFunc("GET /v1/slo", func(w http.ResponseWriter, r *http.Request) {
		window, err := ParseWindow(r.URL.Query().Get("window"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(t.SLO.Report(window))
	})
	return mux
}

// ParseWindow reads an SLO window: a duration from 1m to MaxWindow; empty
// is 1h.
func ParseWindow(v string) (time.Duration, error) {
	if v == "" {
		return time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute || d > MaxWindow {
		return 0, fmt.Errorf("window %q: want a duration from 1m to %s, e.g. 1h", v, MaxWindow)
	}
	return d, nil
}

// Flush writes the metrics since the last Flush as EMF (if configured) and
// exports buffered spans: a Lambda function calls it at the end of each
// invocation, before its sandbox may freeze.
func (t *Telemetry) Flush(ctx context.Context) error {
	var err error
	if t.emf != nil {
		err = t.emf.flush(ctx)
	}
	return errors.Join(err, t.Tracing.Flush(ctx))
}

// Shutdown flushes and stops the meter and tracer providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.Tracing.shutdown(ctx), t.provider.Shutdown(ctx))
}

// Instrument wraps h so that every request has a server span (continuing
// the caller's traceparent, if it sent one) and is counted under the route
// the mux matched (r.Pattern), never the raw path: bounded labels.
func (t *Telemetry) Instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := t.Tracing.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.Tracing.Start(ctx, r.Method, serverSpan)
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		r = r.WithContext(ctx)
		h.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		span.SetName(route)
		span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", sw.code))
		if sw.code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.code))
		}
		t.Metrics.HTTP(ctx, route, r.Method, sw.code, time.Since(start))
	})
}

// serverSpan is the start option of every server span, made once.
var serverSpan = trace.WithSpanKind(trace.SpanKindServer)

type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
