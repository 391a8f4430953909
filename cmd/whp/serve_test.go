package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

// closeOrder is a store that notes when it is closed.
type closeOrder struct {
	store.Store
	note func(string)
}

func (c closeOrder) Close() error {
	c.note("store closed")
	return c.Store.Close()
}

// A role's shutdown runs its drains — what the handlers left to finish
// after their answers, such as the ingest API's keyed outcomes
// (runIngest's api.Wait) — after the HTTP server has stopped and before
// the store closes, and waits for them: a drain still writing holds the
// store open.
func TestServeDrainsBeforeClose(t *testing.T) {
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	tel, err := telemetry.New(context.Background(), telemetry.Options{Service: "whp-test"})
	if err != nil {
		t.Fatal(err)
	}
	r := &role{name: "test", addr: "127.0.0.1:0", metricsAddr: "127.0.0.1:0", st: closeOrder{st, note}, tel: tel,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	started, release := make(chan struct{}), make(chan struct{})
	r.drain = append(r.drain, func() {
		note("drain started")
		close(started)
		<-release
		note("drain done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- r.serve(ctx, http.NewServeMux(), func(ctx context.Context) error {
			<-ctx.Done()
			return nil
		})
	}()
	time.Sleep(100 * time.Millisecond) // serving
	cancel()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the drain did not start after the role was stopped")
	}
	select {
	case err := <-served:
		t.Fatalf("serve returned (%v) while its drain was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"drain started", "drain done", "store closed"}; !slices.Equal(order, want) {
		t.Errorf("shutdown order %v, want %v", order, want)
	}
}
