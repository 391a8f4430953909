package dynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/storetest"
)

// TestConformance runs the store conformance suite against dynalite: each
// dir the suite asks for is an environment of its own tables.
func TestConformance(t *testing.T) {
	db := dynalitetest.Start(t)
	storetest.Run(t, func(t *testing.T, dir string) store.Store {
		sum := sha256.Sum256([]byte(dir))
		env := "t" + hex.EncodeToString(sum[:6])
		if _, err := CreateTables(context.Background(), db, env); err != nil {
			t.Fatal(err)
		}
		return New(db, env)
	})
}
