package reconciler

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/whp-dev/whp/catalog"
)

// bigCatalog generates a catalog of n schemas (n/20 domains of 20 events)
// and n subscriptions spread over n/10 partners.
func bigCatalog(n int) map[string][]byte {
	files := map[string][]byte{}
	for d := 0; d < n/20; d++ {
		var b strings.Builder
		b.WriteString("package whp\n\n")
		for e := 0; e < 20; e++ {
			fmt.Fprintf(&b, "schemas: \"dom-%d\": \"event.e%d\": \"1\": {owner: \"team-%d\", payload: {id: =~\"^id_\", amount: number & >0, note?: string, items: [...{sku: string, qty: int & >=1}]}}\n", d, e, d)
		}
		files[fmt.Sprintf("dom-%d.cue", d)] = []byte(b.String())
	}
	var b strings.Builder
	b.WriteString("package whp\n\n")
	for p := 0; p < n/10; p++ {
		fmt.Fprintf(&b, "partners: \"p-%d\": {name: \"Partner %d\", url: \"https://p%d.example/hook\", signing_secret: \"partners/p-%d/signing\", contact: \"ops@p%d.example\"}\n", p, p, p, p, p)
	}
	for s := 0; s < n; s++ {
		fmt.Fprintf(&b, "subscriptions: \"s-%d\": {partner: \"p-%d\", domain: \"dom-%d\", event: \"event.e%d\", version: \"1\"}\n", s, s%(n/10), s/20, s%20)
	}
	files["partners.cue"] = []byte(b.String())
	return files
}

// BenchmarkCatalog1000 reports, for 1,000 schemas and 1,000 subscriptions,
// the time to load and validate the catalog (compiling every schema) and
// the time of a reconcile that finds nothing to change (reading the store
// and both clusters' topics, and planning; an unchanged revision is not
// compiled again by the Reconciler).
//
//	go test -run '^$' -bench Catalog1000 -benchtime 3x ./reconciler
func BenchmarkCatalog1000(b *testing.B) {
	files := bigCatalog(1000)
	b.Run("validate", func(b *testing.B) {
		for b.Loop() {
			c, err := catalog.LoadFiles("bench", files)
			if err != nil {
				b.Fatal(err)
			}
			if len(c.Schemas) != 1000 || len(c.Subscriptions) != 1000 {
				b.Fatalf("%d schemas, %d subscriptions", len(c.Schemas), len(c.Subscriptions))
			}
		}
	})
	b.Run("noop-reconcile", func(b *testing.B) {
		ctx := context.Background()
		c, err := catalog.LoadFiles("bench", files)
		if err != nil {
			b.Fatal(err)
		}
		a, _ := newApplier(b)
		if _, err := a.Apply(ctx, c, "r1"); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			res, err := a.Apply(ctx, c, "r1")
			if err != nil {
				b.Fatal(err)
			}
			if !res.Plan.Empty() {
				b.Fatalf("no-op reconcile planned %d changes", len(res.Plan.Changes))
			}
		}
	})
}
