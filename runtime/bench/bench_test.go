package bench

import (
	"context"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

// A short run measures every figure (it asserts what was measured, not
// how fast: the machine is shared): the baseline and the platform's
// throughput are positive, every accepted event reached every
// subscription once, latencies are ordered, the process's resources read.
func TestRun(t *testing.T) {
	var phases []string
	r, err := Run(context.Background(), Config{Connections: 4, Duration: time.Second, Rate: 50, LatencyDuration: time.Second,
		PayloadBytes: 512, Fanout: 2, Progress: func(phase string, _ float64) {
			if len(phases) == 0 || phases[len(phases)-1] != phase {
				phases = append(phases, phase)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if r.BaselinePerSec <= 0 || r.AcceptedPerSec <= 0 || r.DeliveredPerSec <= 0 || r.AcceptedRatio <= 0 {
		t.Errorf("throughput not measured: %+v", r)
	}
	if r.Lost != 0 || r.Duplicates != 0 || r.Rejected != 0 {
		t.Errorf("lost %d, duplicated %d, rejected %d", r.Lost, r.Duplicates, r.Rejected)
	}
	if !(r.LatencyP50MS > 0 && r.LatencyP50MS <= r.LatencyP95MS && r.LatencyP95MS <= r.LatencyP99MS) {
		t.Errorf("latencies %v %v %v", r.LatencyP50MS, r.LatencyP95MS, r.LatencyP99MS)
	}
	if r.CPUSeconds <= 0 || r.PeakRSSMiB <= 0 {
		t.Errorf("resources %v s, %v MiB", r.CPUSeconds, r.PeakRSSMiB)
	}
	if got := strings.Join(phases, ","); !strings.HasPrefix(got, "baseline,throughput") || !strings.Contains(got, "latency") {
		t.Errorf("progress phases %s", got)
	}
}

// The plot is well-formed SVG with a panel per swept dimension.
func TestPlot(t *testing.T) {
	svg := Plot([]Result{{PayloadBytes: 256, Fanout: 1, AcceptedRatio: .5, DeliveredRatio: .3, LatencyP95MS: 4},
		{PayloadBytes: 4096, Fanout: 1, AcceptedRatio: .4, DeliveredRatio: .2, LatencyP95MS: 6},
		{PayloadBytes: 256, Fanout: 10, AcceptedRatio: .5, DeliveredRatio: 1.2, LatencyP95MS: 9}})
	var doc struct {
		XMLName xml.Name
		G       []struct {
			Polyline []struct {
				Points string `xml:"points,attr"`
			} `xml:"polyline"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("not SVG: %v", err)
	}
	if len(doc.G) != 2 || len(doc.G[0].Polyline) != 3 || strings.Count(doc.G[0].Polyline[0].Points, ",") != 2 {
		t.Errorf("panels %+v", doc.G)
	}
}

// eventBody makes events of the size asked, valid against the catalog.
func TestEventBody(t *testing.T) {
	for _, n := range []int{200, 1024, 16384} {
		if b := eventBody(n, "t1"); len(b) != n {
			t.Errorf("size %d: got %d", n, len(b))
		}
	}
}
