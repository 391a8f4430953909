package telemetry

import (
	"context"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The indicators count only the minutes inside the window, the p95 is
// interpolated within its bucket, and each indicator outside its
// objective is named.
func TestSLOReport(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 30, 0, time.UTC)
	s := NewSLO(DefaultObjectives)
	s.now = func() time.Time { return now }
	// Two hours ago: failures that a 1 h window must not see.
	now = now.Add(-2 * time.Hour)
	for range 50 {
		s.Validated(false)
		s.Finished(false, 0)
	}
	now = now.Add(2 * time.Hour)
	for i := range 100 {
		s.Validated(i != 0) // 99 of 100 valid
		// 100 deliveries: 94 at 5 ms, 6 at 150 ms.
		d := 5 * time.Millisecond
		if i >= 94 {
			d = 150 * time.Millisecond
		}
		s.Finished(true, d)
	}
	s.Finished(false, 0)

	r := s.Report(time.Hour)
	if r.Validated != 100 || *r.ValidationSuccess != 99 {
		t.Errorf("validation: %d at %v, want 100 at 99%%", r.Validated, *r.ValidationSuccess)
	}
	if r.Finished != 101 || math.Abs(*r.DeliverySuccess-100*100.0/101) > 1e-9 {
		t.Errorf("delivery: %d at %v", r.Finished, *r.DeliverySuccess)
	}
	// Rank 95 of 100 is the first of the six in (100, 150] ms: 100 + 50/6.
	if want := 100 + 50.0/6; math.Abs(*r.P95EndToEndMS-want) > 1e-9 {
		t.Errorf("p95 = %v ms, want %v", *r.P95EndToEndMS, want)
	}
	if len(r.Breaches) != 1 || r.Breaches[0] != "delivery_success" {
		t.Errorf("breaches %v, want [delivery_success]", r.Breaches)
	}
	// Over three hours the old failures count.
	if r := s.Report(3 * time.Hour); r.Validated != 150 || r.Finished != 151 {
		t.Errorf("3 h window: %d validated, %d finished", r.Validated, r.Finished)
	}
	// A window with nothing in it has no indicators, and no breaches.
	empty := NewSLO(DefaultObjectives)
	if r := empty.Report(time.Hour); r.ValidationSuccess != nil || r.DeliverySuccess != nil || r.P95EndToEndMS != nil || len(r.Breaches) != 0 {
		t.Errorf("empty: %+v", r)
	}
	// Minutes older than the ring are forgotten, not mixed into new ones.
	now = now.Add(MaxWindow)
	s.Validated(true)
	if r := s.Report(MaxWindow); r.Validated != 1 {
		t.Errorf("after a day: %d validated, want 1", r.Validated)
	}
}

// A nil SLO and a nil Metrics record nothing and do not panic.
func TestNilRecorders(t *testing.T) {
	var s *SLO
	s.Validated(true)
	s.Finished(true, time.Second)
	var m *Metrics
	m.Validation(t.Context(), "x", true)
	m.Delivery(t.Context(), "p", OutcomeDelivered, time.Now(), time.Now())
	if err := m.ObserveBreakers(nil); err != nil {
		t.Fatal(err)
	}
}

// Each validation counts once in the exported counter and once in the
// SLO, with its result — the first of a schema too (a cached counter's
// first use once counted as invalid in the SLO).
func TestValidationCounts(t *testing.T) {
	tel, err := New(context.Background(), Options{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tel.Metrics.Validation(ctx, "shop#order.created#1", true)
	tel.Metrics.Validation(ctx, "shop#order.created#1", true)
	tel.Metrics.Validation(ctx, "shop#order.created#1", false)
	tel.Metrics.Validation(ctx, "unknown", false)
	if r := tel.SLO.Report(time.Hour); r.Validated != 4 || r.ValidationSuccess == nil || *r.ValidationSuccess != 50 {
		t.Errorf("SLO: %d validated at %v%%, want 4 at 50%%", r.Validated, r.ValidationSuccess)
	}
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`whp_ingest_validations_total{result="valid",schema="shop#order.created#1"} 2`,
		`whp_ingest_validations_total{result="invalid",schema="shop#order.created#1"} 1`,
		`whp_ingest_validations_total{result="invalid",schema="unknown"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("no %s in\n%s", want, grepWhp(rec.Body.String()))
		}
	}
}
