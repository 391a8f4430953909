package dev

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/whp-dev/whp/runtime/telemetry"
)

// scrape reads /metrics as Prometheus would.
func scrape(t testing.TB, p *Platform) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the sample of family name whose labels include want (counter,
// gauge, or a histogram's count); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func names(fams map[string]*dto.MetricFamily) string {
	var ns []string
	for n := range fams {
		if strings.HasPrefix(n, "whp_") || strings.HasPrefix(n, "http_") {
			ns = append(ns, n)
		}
	}
	sort.Strings(ns)
	return strings.Join(ns, " ")
}

// TestTelemetry runs events through whp dev — valid, invalid, for an
// unknown schema, one delivery refused once — and checks what /metrics and
// /v1/status say: counts by schema, partner and outcome, the attempt and
// end-to-end histograms, breaker state, consumer lag, requests by route,
// the SLOs, and no event or delivery id among the label values.
func TestTelemetry(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	beta.answer(http.StatusServiceUnavailable)
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	var ids []string
	for i := range 5 {
		ids = append(ids, accept(t, p, orderEvent(i)))
	}
	for _, bad := range []string{
		`{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"ord_1","amount":-1}}`,
		`{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"x","amount":1}}`,
		`{"domain":"shop","event":"order.lost","version":"1","data":{}}`,
	} {
		if a := post(t, p, bad); a.status/100 != 4 {
			t.Fatalf("POST %s = %d", bad, a.status)
		}
	}
	eventually(t, "5 deliveries each to alpha and beta", func() bool {
		a, _, _ := alpha.counts()
		b, _, _ := beta.counts()
		return a == 5 && b == 5
	})

	var fams map[string]*dto.MetricFamily
	eventually(t, "the retried delivery counted as delivered", func() bool {
		fams = scrape(t, p)
		return value(fams, "whp_deliveries_total", map[string]string{"partner": "beta", "outcome": "delivered"}) == 5
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"whp_ingest_validations_total", map[string]string{"schema": "shop#order.created#1", "result": "valid"}, 5},
		{"whp_ingest_validations_total", map[string]string{"schema": "shop#order.created#1", "result": "invalid"}, 2},
		{"whp_ingest_validations_total", map[string]string{"schema": "unknown", "result": "invalid"}, 1},
		{"whp_deliveries_total", map[string]string{"partner": "alpha", "outcome": "delivered"}, 5},
		{"whp_deliveries_total", map[string]string{"partner": "beta", "outcome": "retry_scheduled"}, 1},
		{"whp_delivery_retries_total", map[string]string{"partner": "beta"}, 1},
		{"whp_delivery_attempt_duration_seconds", map[string]string{"partner": "beta", "outcome": "retryable"}, 1},
		{"whp_delivery_attempt_duration_seconds", map[string]string{"partner": "beta", "outcome": "success"}, 5},
		{"whp_delivery_end_to_end_duration_seconds", map[string]string{"partner": "alpha"}, 5},
		{"whp_delivery_ledger_lag_seconds", map[string]string{}, 10},
		{"whp_breaker_state", map[string]string{"partner": "alpha"}, 0},
		{"whp_deliveries_in_flight", map[string]string{"partner": "alpha"}, 0},
		// The bound a partner starts at (runtime/dispatch's pace.go): five
		// deliveries, never more than half of it in flight, do not grow it.
		{"whp_deliveries_in_flight_limit", map[string]string{"partner": "alpha"}, 16},
		{"http_server_request_duration_seconds", map[string]string{"http_route": "POST /v1/events", "http_response_status_code": "202"}, 5},
		{"http_server_request_duration_seconds", map[string]string{"http_route": "POST /v1/events", "http_response_status_code": "400"}, 2},
		{"http_server_request_duration_seconds", map[string]string{"http_route": "POST /v1/events", "http_response_status_code": "404"}, 1},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v (families: %s)", c.name, c.labels, got, c.want, names(fams))
		}
	}
	if got := value(fams, "whp_deliveries_total", map[string]string{"partner": "gamma"}); got != -1 {
		t.Errorf("gamma, whose subscription is Pending, has deliveries counted: %v", got)
	}
	if got := value(fams, "whp_reconcile_runs_total", map[string]string{"result": "applied"}); got < 1 {
		t.Errorf("reconcile runs applied = %v, want ≥ 1", got)
	}
	for _, group := range []string{"whp-processor", "whp-dispatcher"} {
		if got := value(fams, "whp_consumer_lag", map[string]string{"group": group}); got < 0 {
			t.Errorf("no consumer lag reported for %s (families: %s)", group, names(fams))
		}
	}
	// Bounded cardinality: no event id is a label value.
	for _, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				for _, id := range ids {
					if l.GetValue() == id {
						t.Errorf("%s has event id %s as label %s", f.GetName(), id, l.GetName())
					}
				}
			}
		}
	}

	// The SLOs over the last hour: 5 of 8 requests valid; 10 of 10
	// finished deliveries delivered; a p95 end to end.
	tok, err := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/v1/status?window=1h", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	s := st.SLO
	if s.Validated != 8 || s.ValidationSuccess == nil || *s.ValidationSuccess != 62.5 {
		t.Errorf("validation: %d, %v; want 8 at 62.5%%", s.Validated, s.ValidationSuccess)
	}
	if s.Finished != 10 || s.DeliverySuccess == nil || *s.DeliverySuccess != 100 {
		t.Errorf("delivery: %d, %v; want 10 at 100%%", s.Finished, s.DeliverySuccess)
	}
	if s.P95EndToEndMS == nil || *s.P95EndToEndMS <= 0 {
		t.Errorf("p95 end to end: %v", s.P95EndToEndMS)
	}
	if len(s.Breaches) == 0 || s.Breaches[0] != "validation_success" {
		t.Errorf("breaches %v, want validation_success first", s.Breaches)
	}
	if len(st.Breakers) != 2 || st.Reconcile.LastAppliedRevision == "" {
		t.Errorf("status: breakers %+v, reconcile %+v", st.Breakers, st.Reconcile)
	}
	for _, q := range []string{"?window=1s", "?window=48h", "?window=soon"} {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/v1/status"+q, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /v1/status%s = %d, want 400", q, resp.StatusCode)
		}
	}
	if resp, err := http.Get(p.URL + "/v1/status"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/status without the token: %v %v", resp.StatusCode, err)
	}
}

// TestTrace follows one event: a producer sends a traceparent, and one
// trace — the producer's — spans ingest's request, the ingress produce and
// fetch, processing, the egress produce and fetch, delivery processing,
// the refused attempt, the retry through the retry tiers and the attempt
// that succeeds; every span's parent is in the trace, and the event
// records the trace id.
func TestTrace(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	beta.answer(http.StatusServiceUnavailable)
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	id := accept(t, p, orderEvent(1), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	mustDelivered(t, p, id, 2)

	var trace []telemetry.Span
	eventually(t, "the second attempt's span", func() bool {
		trace = traceOf(t, p, id)
		n := 0
		for _, s := range trace {
			if s.Name == "POST" {
				n++
			}
		}
		return n == 3 // alpha once, beta twice
	})
	spans := map[string]telemetry.Span{}
	count := map[string]int{}
	for _, s := range trace {
		if s.TraceID != traceID {
			t.Fatalf("span %q in trace %q, want the producer's %s", s.Name, s.TraceID, traceID)
		}
		spans[s.SpanID] = s
		count[s.Name]++
	}
	for name, min := range map[string]int{
		"POST /v1/events":                       1,
		"wh.ingress.shop.order.created publish": 1,
		"wh.ingress.shop.order.created process": 1,
		"wh.egress.alpha.order.created publish": 1,
		"wh.egress.beta.order.created process":  1,
		"wh.retry.order.created publish":        1,
		"wh.retry.order.created process":        1,
		"POST":                                  3,
	} {
		if count[name] < min {
			t.Errorf("%d spans %q, want at least %d; spans: %v", count[name], name, min, count)
		}
	}
	for name := range count {
		if strings.HasSuffix(name, " receive") {
			t.Errorf("span %q: fetches are not traced (a span per buffered record)", name)
		}
	}
	for _, s := range trace {
		if s.ParentID == "00f067aa0ba902b7" {
			continue // the producer's span
		}
		if _, ok := spans[s.ParentID]; !ok {
			t.Errorf("span %q has parent %s, not in the trace", s.Name, s.ParentID)
		}
	}
	var failed, ok int
	for _, s := range trace {
		if s.Name == "POST" && s.Attributes["whp.partner_id"] == "beta" {
			if s.Attributes["http.response.status_code"] == "503" && strings.HasPrefix(s.Status, "error") {
				failed++
			} else if s.Attributes["http.response.status_code"] == "204" {
				ok++
			}
		}
		for k, v := range s.Attributes {
			if strings.Contains(v, "127.0.0.1:") && k != "server.address" {
				t.Errorf("span %q attribute %s = %q: a partner URL in a span", s.Name, k, v)
			}
		}
	}
	if failed != 1 || ok != 1 {
		t.Errorf("beta's attempts: %d failed, %d ok; want 1 and 1", failed, ok)
	}
	if ev, _ := getEvent(t, p, id); ev.ID != id {
		t.Fatalf("event %s not found", id)
	}
	if ev, err := p.Store().GetEvent(t.Context(), id); err != nil || ev.TraceID != traceID {
		t.Errorf("stored event trace id %q, %v", ev.TraceID, err)
	}
}

// TestTraceSampleRatio: a platform that samples (almost) no new trace
// still delivers, and records no span of an event it did not sample; a
// producer's sampled traceparent keeps its own decision.
func TestTraceSampleRatio(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) { c.TraceSampleRatio = 1e-12 })
	spans := func(id string) int { return len(traceOf(t, p, id)) }
	unsampled := accept(t, p, orderEvent(1))
	sampled := accept(t, p, orderEvent(2), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	mustDelivered(t, p, unsampled, 2)
	mustDelivered(t, p, sampled, 2)
	if n := spans(unsampled); n != 0 {
		t.Errorf("an unsampled event has %d spans", n)
	}
	eventually(t, "the sampled event's spans", func() bool { return spans(sampled) > 0 })
}
