package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Plot draws, as an SVG, how throughput (as a ratio to the baseline) and
// p95 latency move with payload size, with fan-out and, when a sweep
// varied it, with the number of tenants (on a log scale) across results
// of one sweep: a panel per varied dimension. Where the runs measured the
// relay and the Kafka relay, their delivered rates (over the baseline)
// are drawn dashed beside the platform's: the ceilings each payload and
// fan-out leave it on the machine of the run.
func Plot(results []Result) string {
	// The fan-out panel takes the runs of the payload its sweep ran at
	// (a sweep of payloads beside it starts at another size), the tenants
	// panel those of its sweep's payload and fan-out.
	fanoutPayload, tenantsOf := results[0], results[0]
	if i := slices.IndexFunc(results, func(r Result) bool { return r.Fanout != 1 && r.Tenants <= 1 }); i >= 0 {
		fanoutPayload = results[i]
	}
	if i := slices.IndexFunc(results, func(r Result) bool { return r.Tenants > 1 }); i >= 0 {
		tenantsOf = results[i]
	}
	var bySize, byFanout, byTenants []Result
	for _, r := range results {
		one := r.Tenants <= 1
		if r.Fanout == 1 && one {
			bySize = append(bySize, r)
		}
		if r.PayloadBytes == fanoutPayload.PayloadBytes && one {
			byFanout = append(byFanout, r)
		}
		if r.PayloadBytes == tenantsOf.PayloadBytes && r.Fanout == tenantsOf.Fanout {
			byTenants = append(byTenants, r)
		}
	}
	tenants := slices.ContainsFunc(results, func(r Result) bool { return r.Tenants > 1 })
	panels := 2.0
	if tenants {
		panels = 3
	}
	const w, h, pad = 360.0, 220.0, 40.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, panels*(w+20)-20, h+30)
	panel := func(x0 float64, title, xlabel string, rs []Result, x func(Result) float64, label func(Result) string) {
		fmt.Fprintf(&b, `<g transform="translate(%.0f,10)"><text x="%.0f" y="10" font-weight="bold">%s</text>`, x0, pad, title)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, pad, h-pad, w-10, h-pad)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s</text>`, w/2, h-8, xlabel)
		if len(rs) == 0 {
			b.WriteString(`</g>`)
			return
		}
		rs = slices.Clone(rs)
		slices.SortStableFunc(rs, func(a, b Result) int { return cmp.Compare(x(a), x(b)) })
		minX, maxX, maxR, maxL := x(rs[0]), x(rs[len(rs)-1]), 0.0, 0.0
		for _, r := range rs {
			maxR = max(maxR, r.IngestRatio, r.AcceptedRatio, r.DeliveredRatio, r.RelayRatio, r.KafkaRelayRatio)
			maxL = max(maxL, r.LatencyP95MS)
		}
		// The smallest x at the axis's left end, the largest at its right
		// (one x alone: in the middle).
		px := func(v float64) float64 {
			if maxX == minX {
				return pad + (w-10-pad)/2
			}
			return pad + (w-10-pad)*(v-minX)/(maxX-minX)
		}
		py := func(v, m float64) float64 { return h - pad - (h-2*pad)*v/max(m, 1e-9) }
		line := func(color string, v func(Result) float64, m float64, dash ...string) {
			if len(dash) > 0 && !slices.ContainsFunc(rs, func(r Result) bool { return v(r) > 0 }) {
				return // a ceiling not measured
			}
			var pts []string
			for _, r := range rs {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x(r)), py(v(r), m)))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`, px(x(r)), py(v(r), m), color)
			}
			dashed := ""
			if len(dash) > 0 {
				dashed = ` stroke-dasharray="` + dash[0] + `"`
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`, strings.Join(pts, " "), color, dashed)
		}
		line("#7a5af8", func(r Result) float64 { return r.IngestRatio }, maxR)
		line("#2458c6", func(r Result) float64 { return r.AcceptedRatio }, maxR)
		line("#067647", func(r Result) float64 { return r.DeliveredRatio }, maxR)
		line("#b42318", func(r Result) float64 { return r.LatencyP95MS }, maxL)
		line("#667085", func(r Result) float64 { return r.RelayRatio }, maxR, "6 3")
		line("#101828", func(r Result) float64 { return r.KafkaRelayRatio }, maxR, "2 3")
		for _, r := range rs {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`, px(x(r)), h-pad+14, label(r))
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="28" fill="#7a5af8">ingest alone ×base (axis to %.2f×)</text>`, pad, maxR)
		fmt.Fprintf(&b, `<text x="%.0f" y="42" fill="#2458c6">accepted ×base</text>`, pad)
		fmt.Fprintf(&b, `<text x="%.0f" y="56" fill="#067647">delivered ×base</text>`, pad)
		fmt.Fprintf(&b, `<text x="%.0f" y="70" fill="#b42318">p95 (max %.1f ms)</text>`, pad, maxL)
		if slices.ContainsFunc(rs, func(r Result) bool { return r.RelayRatio > 0 || r.KafkaRelayRatio > 0 }) {
			fmt.Fprintf(&b, `<text x="%.0f" y="84" fill="#667085">- - relay, · · Kafka relay: delivered ×base</text>`, pad)
		}
		b.WriteString(`</g>`)
	}
	panel(0, "by payload size", "payload (log scale)", bySize, func(r Result) float64 { return math.Log2(float64(r.PayloadBytes)) },
		func(r Result) string { return sizeLabel(r.PayloadBytes) })
	panel(w+20, "by fan-out", "subscriptions per event", byFanout, func(r Result) float64 { return float64(r.Fanout) },
		func(r Result) string { return fmt.Sprint(r.Fanout) })
	if tenants {
		panel(2*(w+20), "by tenants (a partner each)", "tenants (log scale)", byTenants,
			func(r Result) float64 { return math.Log10(float64(max(r.Tenants, 1))) },
			func(r Result) string { return fmt.Sprint(max(r.Tenants, 1)) })
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// sizeLabel is a payload size as the plot's axis names it: 256 B, 4 KiB.
func sizeLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// PlotSoak draws, as an SVG, how a soak's figures move with time: its
// deliveries per second and p95 latency in one panel, the platform's
// memory and data on disk in the other.
func PlotSoak(s SoakResult) string {
	const w, h, pad = 420.0, 240.0, 40.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, 2*(w+20)-20, h+30)
	type series struct {
		name, color string
		v           func(SoakSlice) float64
	}
	maxT := 1.0
	for _, sl := range s.Slices {
		maxT = max(maxT, sl.EndSeconds)
	}
	panel := func(x0 float64, title string, ss []series) {
		fmt.Fprintf(&b, `<g transform="translate(%.0f,10)"><text x="%.0f" y="10" font-weight="bold">%s</text>`, x0, pad, title)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, pad, h-pad, w-10, h-pad)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">seconds (to %.0f)</text>`, w/2-30, h-8, maxT)
		px := func(t float64) float64 { return pad + (w-10-pad)*t/maxT }
		for i, se := range ss {
			m := 0.0
			for _, sl := range s.Slices {
				m = max(m, se.v(sl))
			}
			var pts []string
			for _, sl := range s.Slices {
				y := h - pad - (h-2*pad)*se.v(sl)/max(m, 1e-9)
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(sl.EndSeconds), y))
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.Join(pts, " "), se.color)
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s (max %.1f)</text>`, pad, 28+14*float64(i), se.color, se.name, m)
		}
		b.WriteString(`</g>`)
	}
	panel(0, fmt.Sprintf("a soak at %d events/s", s.Rate), []series{
		{"delivered/s", "#067647", func(sl SoakSlice) float64 { return sl.DeliveredPerSec }},
		{"p95 ms", "#b42318", func(sl SoakSlice) float64 { return sl.LatencyP95MS }},
	})
	panel(w+20, "the platform's memory and data (MiB, each on its own scale)", []series{
		{"resident", "#2458c6", func(sl SoakSlice) float64 { return sl.RSSMiB }},
		{"anonymous", "#7a5af8", func(sl SoakSlice) float64 { return sl.AnonMiB }},
		{"heap live", "#c11574", func(sl SoakSlice) float64 { return sl.HeapMiB }},
		{"store on disk", "#b54708", func(sl SoakSlice) float64 { return sl.StoreMiB }},
		{"kafka on disk", "#667085", func(sl SoakSlice) float64 { return sl.KafkaMiB }},
	})
	b.WriteString(`</svg>`)
	return b.String()
}
