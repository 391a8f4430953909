package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// EMFNamespace is the CloudWatch namespace of whp's metrics on Lambda.
const EMFNamespace = "whp"

// emf writes the metrics as CloudWatch embedded metric format lines: on
// Lambda, what a function writes to stdout in that format becomes
// CloudWatch metrics, with no agent and no API call. The reader is manual
// and delta: each Flush writes what happened since the last, so an
// invocation's counts are never counted twice.
type emf struct {
	mu     sync.Mutex
	reader *sdkmetric.ManualReader
	w      io.Writer
	now    func() time.Time
}

func newEMF(w io.Writer) *emf {
	return &emf{w: w, now: time.Now, reader: sdkmetric.NewManualReader(
		sdkmetric.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }))}
}

// emfUnits maps instrument units to CloudWatch's.
var emfUnits = map[string]string{"s": "Seconds", "{state}": "None"}

func emfUnit(u string) string {
	if cw, ok := emfUnits[u]; ok {
		return cw
	}
	return "Count"
}

// flush collects and writes one line per metric and attribute set.
func (e *emf) flush(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(ctx, &rm); err != nil {
		return err
	}
	ts := e.now().UnixMilli()
	enc := json.NewEncoder(e.w)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			unit := emfUnit(m.Unit)
			write := func(attrs attribute.Set, value any) error {
				line := map[string]any{}
				var dims []string
				for _, kv := range attrs.ToSlice() {
					dims = append(dims, string(kv.Key))
					line[string(kv.Key)] = kv.Value.Emit()
				}
				slices.Sort(dims)
				// Rolled up too: by each label alone, and over all, so an
				// alarm on {outcome=dead_lettered} or on the total finds it.
				sets := [][]string{}
				if len(dims) > 0 {
					sets = append(sets, dims)
				}
				if len(dims) > 1 {
					for _, d := range dims {
						sets = append(sets, []string{d})
					}
				}
				sets = append(sets, []string{})
				line["_aws"] = map[string]any{"Timestamp": ts, "CloudWatchMetrics": []any{map[string]any{
					"Namespace": EMFNamespace, "Dimensions": sets,
					"Metrics": []any{map[string]string{"Name": m.Name, "Unit": unit}}}}}
				line[m.Name] = value
				return enc.Encode(line)
			}
			var err error
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					if dp.Value != 0 {
						err = firstErr(err, write(dp.Attributes, dp.Value))
					}
				}
			case metricdata.Sum[float64]:
				for _, dp := range data.DataPoints {
					if dp.Value != 0 {
						err = firstErr(err, write(dp.Attributes, dp.Value))
					}
				}
			case metricdata.Gauge[int64]:
				for _, dp := range data.DataPoints {
					err = firstErr(err, write(dp.Attributes, dp.Value))
				}
			case metricdata.Histogram[float64]:
				for _, dp := range data.DataPoints {
					if dp.Count == 0 {
						continue
					}
					values, counts := histogramValues(dp)
					err = firstErr(err, write(dp.Attributes, map[string]any{"Values": values, "Counts": counts}))
				}
			}
			if err != nil {
				return fmt.Errorf("telemetry: writing EMF: %w", err)
			}
		}
	}
	return nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// histogramValues represents each non-empty bucket by a value inside it
// (its midpoint; the open last bucket by its lower bound, the first by its
// upper bound), the form EMF takes for distributions.
func histogramValues(dp metricdata.HistogramDataPoint[float64]) ([]float64, []uint64) {
	var values []float64
	var counts []uint64
	b := dp.Bounds
	for i, n := range dp.BucketCounts {
		if n == 0 {
			continue
		}
		var v float64
		switch {
		case len(b) == 0:
			v = dp.Sum / float64(dp.Count)
		case i == 0:
			v = b[0]
		case i >= len(b):
			v = b[len(b)-1]
		default:
			v = (b[i-1] + b[i]) / 2
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		values = append(values, v)
		counts = append(counts, n)
	}
	return values, counts
}
