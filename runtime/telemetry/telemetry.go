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
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Telemetry is a process's metrics pipeline.
type Telemetry struct {
	Metrics  *Metrics
	SLO      *SLO
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
}

// Options configure New.
type Options struct {
	// Service names the process (whp-dev, whp-ingest, …).
	Service string
	// Objectives the SLO report holds the indicators to. Default
	// DefaultObjectives.
	Objectives *Objectives
}

// New builds the pipeline: an OpenTelemetry meter provider whose readings
// Prometheus scrapes from Handler, with the Go runtime's and the process's
// collectors beside them.
func New(opts Options) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(opts.Service))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	obj := DefaultObjectives
	if opts.Objectives != nil {
		obj = *opts.Objectives
	}
	slo := NewSLO(obj)
	m, err := newMetrics(mp.Meter("github.com/whp-dev/whp"), slo)
	if err != nil {
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	return &Telemetry{Metrics: m, SLO: slo, registry: reg, provider: mp}, nil
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

// Shutdown stops the meter provider.
func (t *Telemetry) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// Instrument wraps h so that every request is recorded under the route
// the mux matched (r.Pattern), never the raw path: bounded labels.
func (m *Metrics) Instrument(h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.HTTP(r.Context(), route, r.Method, sw.code, time.Since(start))
	})
}

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
