package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// RatePoint is the latency phase at one rate: events sent at Rate (open
// loop) for the phase's length, and what their deliveries took.
type RatePoint struct {
	Rate int `json:"rate_per_sec"`
	// Load is the deliveries a second the rate asks for (Rate × fan-out)
	// over the run's delivered/s: how near the platform is to what it
	// delivered flat out on the same machine in the same run.
	Load float64 `json:"load,omitempty"`
	// Events were accepted, Refused answered otherwise (or not at all).
	Events  int64 `json:"events"`
	Refused int64 `json:"refused"`
	Latencies
	// CPUMSPerEvent is the platform's process's CPU from the first event
	// sent to the last delivery, per event (embedded platform only).
	CPUMSPerEvent float64 `json:"cpu_ms_per_event,omitempty"`
	// NotArrived counts the deliveries owed that had not arrived 30 s
	// after the last event was sent.
	NotArrived int64 `json:"not_arrived"`
}

// latencyAt runs the latency phase at rate: events numbered from prefix
// sent for cfg.LatencyDuration, then a wait of up to 30 s for every
// delivery they are owed. sent is how many were accepted.
func latencyAt(ctx context.Context, target string, cfg Config, platform *process, recv *receiver, rate int, prefix, phase string) (p RatePoint, sent int64, err error) {
	sample := func() (float64, error) {
		if platform == nil {
			return 0, nil
		}
		r, err := platform.call(processRequest{Op: "sample"})
		return r.CPUSeconds, err
	}
	cpu0, err := sample()
	if err != nil {
		return p, 0, err
	}
	recv.reset()
	c := cfg
	c.Rate = rate
	sent, refused, waits, err := openLoop(ctx, at(target+"/v1/events"), c, cfg.LatencyDuration, prefix, phase, nil)
	if err != nil {
		return p, 0, err
	}
	want := sent * int64(cfg.Fanout)
	wait := time.Now().Add(30 * time.Second)
	for recv.count() < want && time.Now().Before(wait) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	cpu1, err := sample()
	if err != nil {
		return p, 0, err
	}
	lat := recv.latencies()
	p = RatePoint{Rate: rate, Events: sent, Refused: refused, NotArrived: max(want-recv.count(), 0), Latencies: Latencies{
		LatencyP50MS: percentile(lat, 50), LatencyP95MS: percentile(lat, 95), LatencyP99MS: percentile(lat, 99),
		AcceptP50MS: percentile(waits, 50), AcceptP95MS: percentile(waits, 95), AcceptP99MS: percentile(waits, 99)}}
	if platform != nil && sent > 0 {
		p.CPUMSPerEvent = (cpu1 - cpu0) / float64(sent) * 1000
	}
	return p, sent, nil
}

// rateCurve runs the latency phase at each of cfg.LatencyRates after
// first, the latency phase's own point; delivered is the run's
// delivered/s, against which each point's load is reckoned.
func rateCurve(ctx context.Context, target string, cfg Config, platform *process, recv *receiver, first RatePoint, delivered float64) ([]RatePoint, error) {
	points := []RatePoint{first}
	for _, rate := range cfg.LatencyRates {
		p, _, err := latencyAt(ctx, target, cfg, platform, recv, rate, "r"+strconv.Itoa(rate)+"-", "latency at "+strconv.Itoa(rate)+"/s")
		if err != nil {
			return nil, err
		}
		points = append(points, p)
	}
	if delivered > 0 {
		for i := range points {
			points[i].Load = float64(points[i].Rate*cfg.Fanout) / delivered
		}
	}
	return points, nil
}

// PlotRates draws, as an SVG, the latency percentiles and the producer's
// p95 wait against the rate (each point labelled with its load: the share
// of the run's delivered/s it asks for), with the 5 ms line of the p95
// target.
func PlotRates(points []RatePoint) string {
	const w, h, pad, right = 560.0, 260.0, 44.0, 40.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, w, h+30)
	fmt.Fprintf(&b, `<g transform="translate(0,10)"><text x="%.0f" y="10" font-weight="bold">latency by rate (ingest accepted → receiver got it)</text>`, pad)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, pad, h-pad, w-right, h-pad)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">events per second (below: the load, the share of delivered/s it asks for)</text>`, (w+pad-right)/2, h+14)
	maxX, maxY := 1.0, 5.0
	for _, p := range points {
		maxX = max(maxX, float64(p.Rate))
		maxY = max(maxY, p.LatencyP99MS, p.AcceptP95MS)
	}
	// Gridlines every 5 ms (10 past 50), the top rounded up to one, so
	// the target's 5 ms line sits where a reader expects it.
	step := 5.0
	if maxY > 50 {
		step = 10
	}
	maxY = math.Ceil(maxY/step) * step
	px := func(v float64) float64 { return pad + (w-right-pad)*v/maxX }
	py := func(v float64) float64 { return h - pad - (h-2*pad)*v/maxY }
	for y := step; y <= maxY; y += step {
		color := "#e4e7ec"
		if y == 5 {
			color = "#b42318"
		}
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`, pad, py(y), w-right, py(y), color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.0f ms</text>`, pad-4, py(y)+4, y)
	}
	for i, s := range []struct {
		name, color string
		v           func(RatePoint) float64
	}{
		{"p50", "#067647", func(p RatePoint) float64 { return p.LatencyP50MS }},
		{"p95", "#b42318", func(p RatePoint) float64 { return p.LatencyP95MS }},
		{"p99", "#7a5af8", func(p RatePoint) float64 { return p.LatencyP99MS }},
		{"202 p95 (the producer's wait)", "#2458c6", func(p RatePoint) float64 { return p.AcceptP95MS }},
	} {
		var pts []string
		for _, p := range points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(p.Rate)), py(s.v(p))))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`, px(float64(p.Rate)), py(s.v(p)), s.color)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.Join(pts, " "), s.color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`, pad+8, 28+14*float64(i), s.color, s.name)
	}
	// A rate's label is left out where it would overlap the last one
	// drawn.
	last := math.Inf(-1)
	for _, p := range points {
		x := px(float64(p.Rate))
		if x-last < 44 {
			continue
		}
		last = x
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`, x, h-pad+14, p.Rate)
		if p.Load > 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#667085">%.0f %%</text>`, x, h-pad+27, p.Load*100)
		}
	}
	b.WriteString(`</g></svg>`)
	return b.String()
}
