package catalog

import (
	"testing"
	"time"

	"cuelang.org/go/cue"
)

// orderEvent is a small, valid orders/order.created v1 payload.
var orderEvent = []byte(`{"order_id":"ord_8a7d6c5b","customer_id":"cus_1234abcd","amount":129.5,"currency":"EUR",` +
	`"items":[{"sku":"SKU-1","quantity":2},{"sku":"SKU-2","quantity":1}],"note":"leave at the door"}`)

// payloadValue loads the example catalog's order.created v1 payload as a
// cue.Value, the way a per-event CUE validator would hold it.
func payloadValue(tb testing.TB) cue.Value {
	tb.Helper()
	files, err := readFiles(".")
	if err != nil {
		tb.Fatal(err)
	}
	l := &loader{dir: ".", ctx: newCtx()}
	root, ok := l.build(files, options{})
	if !ok {
		tb.Fatal(l.problems)
	}
	return root.LookupPath(cue.MakePath(cue.Str("schemas"), cue.Str("orders"), cue.Str("order.created"), cue.Str("1"), cue.Str("payload")))
}

// TestValidatorsAgree keeps the benchmark honest: both paths accept the
// benchmark's event and both reject the same broken one.
func TestValidatorsAgree(t *testing.T) {
	c, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	compiled := c.Schema("orders#order.created#1").Validator()
	p := payloadValue(t)
	bad := []byte(`{"order_id":"ord_8a7d6c5b","customer_id":"cus_1234abcd","amount":-1,"currency":"EUR","items":[]}`)
	for _, tc := range []struct {
		name string
		doc  []byte
		ok   bool
	}{{"valid", orderEvent, true}, {"negative amount", bad, false}} {
		vs, err := compiled.Validate(tc.doc)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(vs) == 0; got != tc.ok {
			t.Errorf("%s: compiled valid = %v, want %v (%v)", tc.name, got, tc.ok, vs)
		}
		cueErr := p.Unify(p.Context().CompileBytes(tc.doc)).Validate(cue.Concrete(true))
		if got := cueErr == nil; got != tc.ok {
			t.Errorf("%s: CUE valid = %v, want %v (%v)", tc.name, got, tc.ok, cueErr)
		}
	}
}

// BenchmarkValidate compares per-event CUE evaluation with the compiled JSON
// Schema validator ingest uses. Both include decoding the JSON document.
// Compare with: go test -bench Validate -benchmem ./catalog
func BenchmarkValidate(b *testing.B) {
	b.Run("cue", func(b *testing.B) {
		p := payloadValue(b)
		ctx := p.Context()
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Unify(ctx.CompileBytes(orderEvent)).Validate(cue.Concrete(true)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compiled", func(b *testing.B) {
		c, err := Load(".")
		if err != nil {
			b.Fatal(err)
		}
		v := c.Schema("orders#order.created#1").Validator()
		b.ReportAllocs()
		for b.Loop() {
			vs, err := v.Validate(orderEvent)
			if err != nil || len(vs) > 0 {
				b.Fatal(err, vs)
			}
		}
	})
}

// BenchmarkValidateRatio measures both paths interleaved, in blocks, in the
// same run, and reports how many times faster the compiled path is
// (x_faster). Interleaving keeps the ratio meaningful on a noisy machine,
// where two separate benchmarks may run under different load.
func BenchmarkValidateRatio(b *testing.B) {
	p := payloadValue(b)
	ctx := p.Context()
	c, err := Load(".")
	if err != nil {
		b.Fatal(err)
	}
	v := c.Schema("orders#order.created#1").Validator()
	const block = 20
	var cueTime, compiledTime time.Duration
	for b.Loop() {
		start := time.Now()
		for range block {
			if err := p.Unify(ctx.CompileBytes(orderEvent)).Validate(cue.Concrete(true)); err != nil {
				b.Fatal(err)
			}
		}
		mid := time.Now()
		for range block {
			if vs, err := v.Validate(orderEvent); err != nil || len(vs) > 0 {
				b.Fatal(err, vs)
			}
		}
		cueTime += mid.Sub(start)
		compiledTime += time.Since(mid)
	}
	b.ReportMetric(float64(cueTime)/float64(compiledTime), "x_faster")
	b.ReportMetric(float64(cueTime.Nanoseconds())/float64(b.N*block), "cue_ns/event")
	b.ReportMetric(float64(compiledTime.Nanoseconds())/float64(b.N*block), "compiled_ns/event")
}
