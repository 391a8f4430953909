package opevents

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/signature"
)

// A webhook that fails once gets the event on the next attempt, signed;
// the log has the event whether or not it is sent.
func TestPublishRetries(t *testing.T) {
	key := signature.NewSecret()
	signer, err := signature.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	got := make(chan Event, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if err := signature.Verify(r.Header, body, time.Now(), signature.DefaultTolerance, key); err != nil {
			t.Errorf("signature: %v", err)
		}
		var ev Event
		json.Unmarshal(body, &ev)
		got <- ev
	}))
	defer srv.Close()
	var logs bytes.Buffer
	p := New(Config{URL: srv.URL, Signer: signer}, slog.New(slog.NewTextHandler(&logs, nil)))
	p.Publish(BreakerOpened, map[string]any{"partner_id": "acme"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	select {
	case ev := <-got:
		if ev.Type != BreakerOpened || ev.Data["partner_id"] != "acme" || !strings.HasPrefix(ev.ID, "opev_") {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the event never arrived")
	}
	if calls.Load() != 2 {
		t.Errorf("%d calls, want 2", calls.Load())
	}
	if !strings.Contains(logs.String(), "operational event: partner.breaker.opened") || !strings.Contains(logs.String(), "partner_id=acme") {
		t.Errorf("log: %s", logs.String())
	}
}

// A full queue drops the event with an error in the log, never blocking
// the caller; Flush sends what is queued.
func TestQueueBoundAndFlush(t *testing.T) {
	key := signature.NewSecret()
	signer, _ := signature.NewSigner(key)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	var logs bytes.Buffer
	p := New(Config{URL: srv.URL, Signer: signer, Queue: 2}, slog.New(slog.NewTextHandler(&logs, nil)))
	for range 3 {
		p.Publish(AttemptFailing, map[string]any{"delivery_id": "d"})
	}
	if !strings.Contains(logs.String(), "the webhook queue is full") {
		t.Errorf("no drop logged: %s", logs.String())
	}
	p.Flush(context.Background())
	if calls.Load() != 2 {
		t.Errorf("flushed %d events, want the 2 queued", calls.Load())
	}
	var nilP *Publisher
	nilP.Publish(AttemptFailing, nil)
	nilP.Flush(context.Background())
}
