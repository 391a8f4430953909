// Package demo is the partner `whp dev` serves under /demo/: a receiver
// that verifies each webhook's Standard Webhooks signature as a real
// partner must, answers 204 (or 401 when verification fails), and shows
// what it received at GET /demo/.
package demo

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/whp-dev/whp/runtime/signature"
)

// Secrets resolves the demo partner's signing secret.
type Secrets interface {
	Secrets(ctx context.Context, ref string) ([]string, error)
}

// Webhook is one webhook the demo partner received.
type Webhook struct {
	ID         string          `json:"webhook_id"`
	ReceivedAt time.Time       `json:"received_at"`
	Verified   bool            `json:"verified"`
	Error      string          `json:"error,omitempty"`
	Duplicate  bool            `json:"duplicate"`
	Body       json.RawMessage `json:"body"`
}

// Summary is the answer of GET /demo/.
type Summary struct {
	Received   int       `json:"received"`
	Verified   int       `json:"verified"`
	Duplicates int       `json:"duplicates"`
	Latest     []Webhook `json:"latest"` // newest first
}

const keep = 100

// Partner is the demo receiver.
type Partner struct {
	secrets Secrets
	ref     string
	log     *slog.Logger

	mu       sync.Mutex
	seen     map[string]bool
	latest   []Webhook
	received int
	verified int
	dups     int
}

// New returns a demo partner verifying with the secret named ref.
func New(secrets Secrets, ref string, log *slog.Logger) *Partner {
	return &Partner{secrets: secrets, ref: ref, log: log, seen: map[string]bool{}}
}

// Register adds /demo/ routes to mux.
func (p *Partner) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /demo/webhooks", p.receive)
	mux.HandleFunc("GET /demo/{$}", p.summary)
}

func (p *Partner) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	wh := Webhook{ID: r.Header.Get(signature.HeaderID), ReceivedAt: time.Now().UTC()}
	if json.Valid(body) {
		wh.Body = body
	}
	secrets, err := p.secrets.Secrets(r.Context(), p.ref)
	if err == nil {
		err = signature.Verify(r.Header, body, time.Now(), signature.DefaultTolerance, secrets...)
	}
	wh.Verified = err == nil
	if err != nil {
		wh.Error = err.Error()
	}
	p.mu.Lock()
	p.received++
	if wh.Verified {
		p.verified++
		wh.Duplicate = p.seen[wh.ID]
		if wh.Duplicate {
			p.dups++
		}
		p.seen[wh.ID] = true
	}
	p.latest = append([]Webhook{wh}, p.latest[:min(len(p.latest), keep-1)]...)
	p.mu.Unlock()
	if !wh.Verified {
		p.log.Warn("demo partner rejected a webhook: signature not verified", "delivery_id", wh.ID, "error", wh.Error)
		http.Error(w, "signature verification failed", http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *Partner) summary(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(p.Summary())
}

// Summary reports what was received so far.
func (p *Partner) Summary() Summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Summary{Received: p.received, Verified: p.verified, Duplicates: p.dups, Latest: append([]Webhook(nil), p.latest...)}
}
