// Package teststores opens each kind of store a test or benchmark runs
// on: the embedded one, and the DynamoDB one against dynalite — a real
// DynamoDB API endpoint, whose every request is a round trip, as
// DynamoDB's are (what a loop of one request per item costs shows there,
// and not on the embedded store).
package teststores

import (
	"context"
	"testing"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/dynamo"
	"github.com/whp-dev/whp/store/embedded"
)

// Kind is a kind of store, by name.
type Kind struct {
	Name string
	// Open opens an empty store of the kind, closed (or dropped) when tb
	// ends.
	Open func(tb testing.TB) store.Store
}

// All are the embedded store and the DynamoDB one against dynalite.
var All = []Kind{
	{"embedded", func(tb testing.TB) store.Store {
		st, err := embedded.Open(tb.TempDir())
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { st.Close() })
		return st
	}},
	{"dynalite", func(tb testing.TB) store.Store {
		db := dynalitetest.Start(tb)
		if _, err := dynamo.CreateTables(context.Background(), db, "test"); err != nil {
			tb.Fatal(err)
		}
		return dynamo.New(db, "test")
	}},
}
