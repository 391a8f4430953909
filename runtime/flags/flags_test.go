package flags

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flags.json")
	p := File(path, time.Hour, quiet)
	if err := p.Refresh(ctx); err != nil || p.Current().PartnerPaused("acme") {
		t.Fatalf("no file: %v, %+v", err, p.Current())
	}
	os.WriteFile(path, []byte(`{"partners":{"acme":{"paused":true,"transform":false}},"schemas":{"shop#order.created#1":{"ingest_paused":true,"message":"maintenance"}}}`), 0o644)
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	s := p.Current()
	if !s.PartnerPaused("acme") || s.PartnerPaused("beta") || !s.TransformOff("acme") || s.TransformOff("beta") {
		t.Errorf("partners = %+v", s.Partners)
	}
	if paused, msg := s.IngestPaused("shop#order.created#1"); !paused || msg != "maintenance" {
		t.Errorf("schema = %v %q", paused, msg)
	}
	// An invalid document keeps the last good flags.
	os.WriteFile(path, []byte(`{"partners":{"acme":{"paused":"yes"}}}`), 0o644)
	if err := p.Refresh(ctx); err == nil {
		t.Error("an invalid document was accepted")
	}
	if !p.Current().PartnerPaused("acme") {
		t.Error("an invalid document replaced the last good flags")
	}
	os.WriteFile(path, []byte(`{"partners":{"acme":{"paused":true}}, "extra": 1}`), 0o644)
	if err := p.Refresh(ctx); err == nil {
		t.Error("an unknown field was accepted")
	}
}

// TestAppConfigAgent polls a local HTTP server standing where the AppConfig
// Agent serves on localhost:2772.
func TestAppConfigAgent(t *testing.T) {
	var doc atomic.Value
	doc.Store(`{"partners":{"acme":{"paused":true}}}`)
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/applications/whp/environments/prod/configurations/flags" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, doc.Load().(string))
	}))
	defer agent.Close()
	p := AppConfigAgent(agent.URL+"/applications/whp/environments/prod/configurations/flags", 10*time.Millisecond, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for !p.Current().PartnerPaused("acme") {
		if time.Now().After(deadline) {
			t.Fatal("flags never loaded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	doc.Store(`{}`)
	for p.Current().PartnerPaused("acme") {
		if time.Now().After(deadline) {
			t.Fatal("a change was not picked up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	agent.Close() // the agent goes away: the last flags stay
	time.Sleep(50 * time.Millisecond)
	if p.Current().PartnerPaused("acme") {
		t.Error("flags changed while the agent was down")
	}
}
