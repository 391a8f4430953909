package console

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

// overviewModel is the overview page.
type overviewModel struct {
	Window string
	SLO    *telemetry.Report
	Series []telemetry.Point
	// Now counts the deliveries in each status of attention, where known.
	Now       map[string]int
	Open      []breaker.Snapshot
	Breakers  int
	Reconcile *reconciler.Status
}

var windows = []string{"15m", "1h", "6h", "24h"}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, ss session) {
	window, err := telemetry.ParseWindow(r.URL.Query().Get("window"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "window: choose 15m, 1h, 6h or 24h")
		return
	}
	m := overviewModel{Window: shortDuration(window)}
	if s.cfg.SLO != nil {
		rep := s.cfg.SLO.Report(window)
		m.SLO = &rep
		m.Series = s.cfg.SLO.Series(min(window, time.Hour))
	}
	if s.cfg.Store != nil {
		m.Now = map[string]int{}
		for _, status := range store.AttentionStatuses {
			if status == store.DeliveryDeadLettered && s.cfg.DLQ == nil {
				continue
			}
			if _, n, err := s.counts.get(r.Context(), s.cfg.Store, status); err == nil {
				m.Now[status] = n
			} else {
				s.cfg.Log.Warn("console: counts unavailable", "status", status, "error", err)
			}
		}
	}
	if s.cfg.Breakers != nil {
		all := s.cfg.Breakers()
		m.Breakers = len(all)
		for _, b := range all {
			if b.State != breaker.Closed {
				m.Open = append(m.Open, b)
			}
		}
	}
	if s.cfg.ReconcileStatus != nil {
		if st, err := s.cfg.ReconcileStatus(r.Context()); err == nil {
			m.Reconcile = &st
		}
	}
	s.render(w, r, http.StatusOK, overviewPage(s.page(ss, "overview"), m))
}

func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

func pct(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f%%", *v)
}

func ms(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f ms", *v)
}

// chart is a server-rendered line chart: an SVG polyline per series.
type chart struct {
	Title  string
	Max    float64
	Unit   string
	Lines  []chartLine
	Labels [2]string // first and last x labels
}

type chartLine struct {
	Name   string
	Class  string
	Points string // "x,y x,y …" in a 600×150 box
}

const chartW, chartH = 600.0, 150.0

// series is one line of a chart: its name and its value at a point
// (false: no value there).
type series struct {
	name  string
	value func(telemetry.Point) (float64, bool)
}

func lineChart(title, unit string, points []telemetry.Point, lines ...series) chart {
	c := chart{Title: title, Unit: unit}
	for _, p := range points {
		for _, l := range lines {
			if v, ok := l.value(p); ok && v > c.Max {
				c.Max = v
			}
		}
	}
	if c.Max == 0 {
		c.Max = 1
	}
	for i, l := range lines {
		var b strings.Builder
		for j, p := range points {
			v, ok := l.value(p)
			if !ok {
				continue
			}
			x := chartW * float64(j) / float64(max(len(points)-1, 1))
			y := chartH - chartH*v/c.Max
			fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
		}
		c.Lines = append(c.Lines, chartLine{Name: l.name, Class: "s" + fmt.Sprint(i), Points: strings.TrimSpace(b.String())})
	}
	if len(points) > 0 {
		c.Labels = [2]string{points[0].At.Format("15:04"), points[len(points)-1].At.Format("15:04 UTC")}
	}
	return c
}

func throughputChart(points []telemetry.Point) chart {
	return lineChart("Events and deliveries per minute", "/min", points,
		series{"accepted", func(p telemetry.Point) (float64, bool) { return float64(p.Accepted), true }},
		series{"delivered", func(p telemetry.Point) (float64, bool) { return float64(p.Delivered), true }},
		series{"failed", func(p telemetry.Point) (float64, bool) { return float64(p.Failed), true }})
}

func latencyChart(points []telemetry.Point) chart {
	return lineChart("p95 end to end per minute", "ms", points, series{"p95", func(p telemetry.Point) (float64, bool) {
		if p.P95MS == nil {
			return 0, false
		}
		return *p.P95MS, true
	}})
}

func breached(list []string, name string) bool { return slices.Contains(list, name) }

// readyText summarises the reconciler's Ready condition.
func readyText(st reconciler.Status) string {
	for _, c := range st.Conditions {
		if c.Type == "Ready" {
			if c.Status == "True" {
				return "Ready: " + c.Message
			}
			return "Not ready (" + c.Reason + "): " + c.Message
		}
	}
	return "not reconciled yet"
}

// countsTTL is how long the console keeps its counts of the deliveries in
// each status that needs attention — dead-lettered, retrying, held — by
// partner: the overview's, and the Partners page's. Each is from the
// store's status index (store.Store.CountDeliveries): a walk of its keys
// on the embedded store, on DynamoDB a scan of the sparse index that
// DynamoDB bills as reading them (≈ 11,000 read units per 100,000) —
// every load of every operator's page would pay for it again. (The count
// of dead letters was a read of the whole queue, every wh.dlq.* record and
// then each one's status: seconds and a gigabyte for a million.) The DLQ
// page counts afresh: it is loaded to act. A delivery is counted once its
// status is written.
const countsTTL = 10 * time.Second

// countsCache keeps each status's counts by partner for countsTTL; loads
// that come while one is being counted wait for that count.
type countsCache struct {
	group singleflight.Group
	mu    sync.Mutex
	by    map[string]counted // by status
	now   func() time.Time
}

type counted struct {
	partners map[string]int
	at       time.Time
}

// get returns status's counts by partner, and their sum.
func (c *countsCache) get(ctx context.Context, st interface {
	CountDeliveries(ctx context.Context, status string) (map[string]int, error)
}, status string) (map[string]int, int, error) {
	c.mu.Lock()
	if e, ok := c.by[status]; ok && c.now().Sub(e.at) < countsTTL {
		c.mu.Unlock()
		return e.partners, sum(e.partners), nil
	}
	c.mu.Unlock()
	v, err, _ := c.group.Do(status, func() (any, error) {
		// Not the request's context: a load that gives up must not fail
		// the others waiting on the same count.
		counts, err := st.CountDeliveries(context.WithoutCancel(ctx), status)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if c.by == nil {
			c.by = map[string]counted{}
		}
		c.by[status] = counted{counts, c.now()}
		c.mu.Unlock()
		return counts, nil
	})
	if err != nil {
		return nil, 0, err
	}
	counts := v.(map[string]int)
	return counts, sum(counts), nil
}

func sum(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}
