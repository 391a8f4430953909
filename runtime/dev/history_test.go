package dev

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

// TestHistorySwept: whp dev --history bounds the store: an event and its
// deliveries are kept that long, then swept (every tenth of it, at least
// every second), and GET /v1/events/{id} answers 404.
func TestHistorySwept(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) { c.History = 2 * time.Second })
	id := accept(t, p, orderEvent(1))
	ds := mustDelivered(t, p, id, 2)
	if _, code := getEvent(t, p, id); code != http.StatusOK {
		t.Fatalf("GET the delivered event = %d, want 200 within its history", code)
	}
	eventually(t, "the event swept once its history ended", func() bool {
		_, code := getEvent(t, p, id)
		return code == http.StatusNotFound
	})
	for _, d := range ds {
		if _, err := p.Store().GetDelivery(t.Context(), id, d.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("delivery %s after its history ended: %v, want ErrNotFound", d.ID, err)
		}
	}
}
