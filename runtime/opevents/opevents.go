// Package opevents publishes operational events — what an on-call engineer
// wants to be told without watching a dashboard — to the log and, when
// configured, to a webhook of the operator's, Svix-style:
//
//	delivery.attempt.failing    a delivery has failed FailingAfter attempts in a row (once per delivery)
//	delivery.attempt.exhausted  a delivery ran out of attempts and went to the DLQ
//	subscription.disabled       a subscription was disabled (410 Gone, or its partner failing for days)
//	partner.breaker.opened      a partner's circuit breaker opened: its deliveries are held
//	partner.breaker.closed      it closed again
//	reconcile.stalled           a catalog revision is invalid; the last good one keeps serving
//
// The webhook gets each event as a JSON POST signed per Standard Webhooks
// (webhook-id, webhook-timestamp, webhook-signature), so the receiver
// verifies it as partners verify deliveries. Events are queued in memory
// (bounded) and sent by Run with a few retries; they are notifications,
// not records: the log line is written first and stays the durable trace,
// and an event dropped because the queue is full or the webhook is down
// says so in the log.
package opevents

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/whp-dev/whp/runtime/signature"
)

// Event types.
const (
	AttemptFailing       = "delivery.attempt.failing"
	AttemptExhausted     = "delivery.attempt.exhausted"
	SubscriptionDisabled = "subscription.disabled"
	BreakerOpened        = "partner.breaker.opened"
	BreakerClosed        = "partner.breaker.closed"
	ReconcileStalled     = "reconcile.stalled"
)

// Event is one operational event, as the webhook receives it.
type Event struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	Timestamp time.Time      `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

// Config configures a Publisher.
type Config struct {
	// URL receives the events; empty: the log only.
	URL string
	// Signer signs each POST (required with URL).
	Signer *signature.Signer
	// Client sends them; it should carry the SSRF guard. Default: a
	// client with a 10 s timeout.
	Client *http.Client
	// Queue bounds the events waiting to be sent. Default 1000.
	Queue int
	// Attempts per event. Default 4 (waits of 1 s, 2 s, 4 s between).
	Attempts int
}

// Publisher publishes operational events. A nil *Publisher logs nothing
// and sends nothing.
type Publisher struct {
	cfg   Config
	log   *slog.Logger
	queue chan Event
	now   func() time.Time
}

// New returns a publisher; call Run to send to the webhook.
func New(cfg Config, log *slog.Logger) *Publisher {
	if cfg.Queue <= 0 {
		cfg.Queue = 1000
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Publisher{cfg: cfg, log: log, queue: make(chan Event, cfg.Queue), now: time.Now}
}

// Publish logs the event and queues it for the webhook. It never blocks.
// data holds ids and reasons only: never a secret.
func (p *Publisher) Publish(typ string, data map[string]any) {
	if p == nil {
		return
	}
	ev := Event{ID: "opev_" + uuid.NewString(), Type: typ, Timestamp: p.now().UTC(), Data: data}
	attrs := []any{"event_type", typ, "operational_event_id", ev.ID}
	for k, v := range data {
		attrs = append(attrs, k, v)
	}
	level := slog.LevelWarn
	if typ == BreakerClosed {
		level = slog.LevelInfo
	}
	p.log.Log(context.Background(), level, "operational event: "+typ, attrs...)
	if p.cfg.URL == "" {
		return
	}
	select {
	case p.queue <- ev:
	default:
		p.log.Error("operational event not sent: the webhook queue is full", "event_type", typ, "operational_event_id", ev.ID)
	}
}

// Run sends queued events until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	if p == nil || p.cfg.URL == "" {
		<-ctx.Done()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-p.queue:
			p.send(ctx, ev)
		}
	}
}

// Flush sends what is queued now, for a process about to be frozen (a
// Lambda function between invocations).
func (p *Publisher) Flush(ctx context.Context) {
	if p == nil || p.cfg.URL == "" {
		return
	}
	for {
		select {
		case ev := <-p.queue:
			p.send(ctx, ev)
		default:
			return
		}
	}
}

func (p *Publisher) send(ctx context.Context, ev Event) {
	body, err := json.Marshal(ev)
	if err != nil {
		p.log.Error("operational event not encodable", "event_type", ev.Type, "error", err)
		return
	}
	wait := time.Second
	var last string
	for attempt := 1; attempt <= p.cfg.Attempts; attempt++ {
		if last = p.post(ctx, ev.ID, body); last == "" {
			return
		}
		if attempt == p.cfg.Attempts {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			p.log.Warn("operational event not sent: stopping", "event_type", ev.Type, "operational_event_id", ev.ID)
			return
		case <-t.C:
		}
		wait *= 2
	}
	p.log.Error("operational event not sent to the webhook", "event_type", ev.Type, "operational_event_id", ev.ID,
		"attempts", p.cfg.Attempts, "last_error", last)
}

// post sends once and returns "" on a 2xx, else what went wrong.
func (p *Publisher) post(ctx context.Context, id string, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	p.cfg.Signer.SetHeaders(req.Header, id, p.now(), body)
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return "request failed"
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return ""
}
