package telemetry

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestManyPartnersKeepTheirSeries: with thousands of partners, each keeps
// its own series of every per-partner metric — none folded into the
// SDK's overflow series, as past its default limit of 2,000 — so a
// dashboard or alert on one partner reads that partner.
func TestManyPartnersKeepTheirSeries(t *testing.T) {
	ctx := context.Background()
	tel, err := New(ctx, Options{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	const partners = 3000
	now := time.Now()
	for i := range partners {
		p := fmt.Sprintf("p%d", i)
		tel.Metrics.Attempt(ctx, p, "delivered", 5*time.Millisecond)
		tel.Metrics.Delivery(ctx, p, "delivered", now.Add(-10*time.Millisecond), now)
	}
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	if strings.Contains(text, "otel_metric_overflow") {
		t.Error("series folded into the overflow series")
	}
	for _, name := range []string{"whp_deliveries_total", "whp_delivery_attempt_duration_seconds_count", "whp_delivery_end_to_end_duration_seconds_count"} {
		n := 0
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, name+"{") && strings.Contains(line, `partner="`) {
				n++
			}
		}
		if n != partners {
			t.Errorf("%s: %d partner series, want %d", name, n, partners)
		}
	}
}
