// Package dispatch delivers webhooks: it consumes the egress topics, signs
// each delivery per Standard Webhooks, POSTs it to the partner and records
// every attempt in event_delivery_status.
//
// A delivery is skipped when the idempotency ledger says it was already
// delivered, so a replay after a crash does not deliver twice (the one
// window left: the POST succeeded and the process died before the ledger
// write). This first dispatcher retries a failing delivery a bounded number
// of times in process, then dead-letters it to wh.dlq.{event}; the durable
// retry schedule through wh.retry.{event}, the circuit breaker and the SSRF
// guard come with the delivery-guarantees work.
package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/consume"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/secret"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Store is the part of the state the dispatcher uses.
type Store interface {
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	GetDelivery(ctx context.Context, eventID, id string) (store.Delivery, error)
	PutDeliveries(ctx context.Context, ds []store.Delivery) error
	AddDeliveryCounts(ctx context.Context, subscriptionID string, delivered, failed int64) error
	GetIdempotency(ctx context.Context, key string) (store.Idempotency, error)
	PutIdempotency(ctx context.Context, rec store.Idempotency) error
}

// Secrets resolves secret references to their active values.
type Secrets interface {
	Secrets(ctx context.Context, ref string) ([]string, error)
}

// Config configures a Dispatcher; zero fields take the defaults named.
type Config struct {
	// Group is the consumer group on the egress cluster. Default "whp-dispatcher".
	Group string
	// ConnectTimeout bounds connecting to a partner (default 5 s);
	// Timeout bounds a whole attempt (default 15 s).
	ConnectTimeout time.Duration
	Timeout        time.Duration
	// MaxAttempts is how many POSTs a delivery gets before it is
	// dead-lettered (default 3); Backoff[i] is the wait before attempt
	// i+2 (default 500 ms, 2 s).
	MaxAttempts int
	Backoff     []time.Duration
	// Concurrency bounds deliveries in flight. Default 64.
	Concurrency int
	// LedgerTTL is how long a delivered ID is remembered. Default 72 h.
	LedgerTTL time.Duration
	// StatusTTL is how long delivery history is kept. Default 30 days.
	StatusTTL time.Duration
	// ExcerptBytes bounds the stored response body excerpt. Default 1 KiB.
	ExcerptBytes int
	// UserAgent is sent with every delivery.
	UserAgent string
}

func (c *Config) defaults() {
	if c.Group == "" {
		c.Group = "whp-dispatcher"
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.Backoff == nil {
		c.Backoff = []time.Duration{500 * time.Millisecond, 2 * time.Second}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.LedgerTTL <= 0 {
		c.LedgerTTL = 72 * time.Hour
	}
	if c.StatusTTL <= 0 {
		c.StatusTTL = 30 * 24 * time.Hour
	}
	if c.ExcerptBytes <= 0 {
		c.ExcerptBytes = 1024
	}
	if c.UserAgent == "" {
		c.UserAgent = "whp-webhooks/1"
	}
}

// Dispatcher is the dispatcher role.
type Dispatcher struct {
	cfg     Config
	cl      *kgo.Client
	http    *http.Client
	st      Store
	secrets Secrets
	log     *slog.Logger
	now     func() time.Time
}

// New creates the dispatcher's client on the egress cluster; extra kgo
// options (TLS, SASL) are applied to it.
func New(cfg Config, egress []string, st Store, secrets Secrets, log *slog.Logger, opts ...kgo.Opt) (*Dispatcher, error) {
	cfg.defaults()
	base := append([]kgo.Opt{kgo.SeedBrokers(egress...), kgo.RequiredAcks(kgo.AllISRAcks())},
		consume.GroupOptions(cfg.Group, topic.EgressPrefix)...)
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dispatcher egress client: %w", err)
	}
	transport := &http.Transport{
		Proxy:                 nil, // partners are reached directly, never through an ambient proxy
		DialContext:           (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   cfg.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
	}
	hc := &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		// Redirects are not followed: a 3xx is the partner's answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Dispatcher{cfg: cfg, cl: cl, http: hc, st: st, secrets: secrets, log: log, now: time.Now}, nil
}

// Refresh makes the dispatcher look for new egress topics now, rather
// than at its next metadata refresh (up to 10 s): the reconciler calls it
// after creating topics so a new subscription delivers at once.
func (d *Dispatcher) Refresh() { d.cl.ForceMetadataRefresh() }

// Run consumes until ctx ends. Offsets of a batch are committed once every
// delivery in it has reached a final state and its status is written.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.cl.Close()
	for {
		fetches := d.cl.PollRecords(ctx, 1000)
		if ctx.Err() != nil {
			d.cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			d.log.Warn("egress fetch error", "topic", t, "partition", p, "error", err)
		})
		if recs := fetches.Records(); len(recs) > 0 {
			switch complete := d.batch(ctx, recs); {
			case ctx.Err() != nil:
				// Not committed: what was not finished is delivered after
				// the restart, what was is dropped by the ledger.
			case complete:
				if err := d.cl.CommitRecords(context.WithoutCancel(ctx), recs...); err != nil {
					d.log.Warn("commit egress offsets failed; deliveries may be attempted again", "error", err)
				}
			default:
				d.log.Warn("batch incomplete after a transient failure; retrying it", "records", len(recs))
				consume.Rewind(d.cl, recs)
				d.cl.AllowRebalance()
				if !consume.Pause(ctx, time.Second) {
					return nil
				}
				continue
			}
		}
		d.cl.AllowRebalance()
	}
}

// batch delivers recs concurrently and writes their statuses in one batch.
// It reports whether every record reached a final state, so that the batch
// may be committed.
func (d *Dispatcher) batch(ctx context.Context, recs []*kgo.Record) bool {
	var (
		mu         sync.Mutex
		statuses   []store.Delivery
		incomplete bool
		wg         sync.WaitGroup
		sem        = make(chan struct{}, d.cfg.Concurrency)
	)
	for _, r := range recs {
		sem <- struct{}{}
		if ctx.Err() != nil {
			// Shutting down: start nothing new; the rest of the batch is
			// not committed and is delivered after the restart.
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			st, res := d.deliver(ctx, r)
			mu.Lock()
			defer mu.Unlock()
			switch res {
			case write:
				statuses = append(statuses, st)
			case retryBatch:
				incomplete = true
			}
		})
	}
	wg.Wait()
	if len(statuses) > 0 {
		if err := d.st.PutDeliveries(context.WithoutCancel(ctx), statuses); err != nil {
			d.log.Error("writing delivery statuses failed", "deliveries", len(statuses), "error", err)
			incomplete = true
		}
	}
	return !incomplete
}

// result says what deliver leaves to its batch.
type result int

const (
	write      result = iota // a status to write
	skip                     // nothing to write (malformed or already delivered)
	retryBatch               // not finished: the batch must not be committed
)

// outcome classifies one attempt.
type outcome int

const (
	success outcome = iota
	retryable
	final
)

// classify applies the status policy: 2xx success; 408, 409, 425, 429 and
// 5xx retryable; everything else (3xx included: redirects are not
// followed) final.
func classify(code int) outcome {
	switch {
	case code >= 200 && code < 300:
		return success
	case code == 408, code == 409, code == 425, code == 429, code >= 500:
		return retryable
	default:
		return final
	}
}

// deliver runs one delivery to a final state and returns its status.
func (d *Dispatcher) deliver(ctx context.Context, r *kgo.Record) (store.Delivery, result) {
	var msg envelope.Delivery
	if err := json.Unmarshal(r.Value, &msg); err != nil || msg.ID == "" {
		d.log.Error("skipping malformed egress record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "error", err)
		return store.Delivery{}, skip
	}
	log := d.log.With("event_id", msg.EventID, "delivery_id", msg.ID, "partner_id", msg.PartnerID)
	// Before the first attempt, any failure to read state (shutdown
	// included) leaves the delivery to a later pass of the batch.
	ledgerKey := "delivered#" + msg.ID
	switch _, err := d.st.GetIdempotency(ctx, ledgerKey); {
	case err == nil:
		log.Info("duplicate delivery dropped: already delivered")
		return store.Delivery{}, skip
	case !errors.Is(err, store.ErrNotFound):
		log.Warn("ledger unavailable; delivery postponed", "error", err)
		return store.Delivery{}, retryBatch
	}
	st, err := d.st.GetDelivery(ctx, msg.EventID, msg.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		st = store.Delivery{EventID: msg.EventID, ID: msg.ID, SubscriptionID: msg.SubscriptionID, PartnerID: msg.PartnerID,
			SchemaID: msg.SchemaID, CreatedAt: msg.CreatedAt}
	case err != nil:
		log.Warn("status store unavailable; delivery postponed", "error", err)
		return store.Delivery{}, retryBatch
	}
	st.Topic, st.Partition, st.Offset = r.Topic, r.Partition, r.Offset
	st.ExpiresAt = d.now().Add(d.cfg.StatusTTL)
	done := func(status string) (store.Delivery, result) {
		st.Status, st.UpdatedAt, st.NextAttemptAt = status, d.now().UTC(), time.Time{}
		return st, write
	}

	sub, err := d.st.GetSubscription(ctx, msg.SubscriptionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Info("delivery cancelled: the subscription no longer exists", "subscription_id", msg.SubscriptionID)
		return done(store.DeliveryCancelled)
	case err != nil:
		log.Warn("subscription unavailable; delivery postponed", "error", err)
		return store.Delivery{}, retryBatch
	case sub.Status != store.SubscriptionApproved:
		log.Info("delivery cancelled: subscription is not approved", "subscription_id", msg.SubscriptionID, "status", sub.Status)
		return done(store.DeliveryCancelled)
	}
	req, err := d.prepare(ctx, sub)
	switch {
	case errors.Is(err, secret.ErrNotFound) || errors.Is(err, errUnsupported) || errors.Is(err, signature.ErrBadSecret):
		// Misconfiguration: no attempt can succeed until someone fixes it.
		log.Error("delivery cannot be prepared", "error", err)
		st.Attempts = append(st.Attempts, store.Attempt{N: len(st.Attempts) + 1, At: d.now().UTC(), URL: sub.URL, Error: err.Error()})
		d.deadLetter(context.WithoutCancel(ctx), log, msg, st, err.Error())
		return done(store.DeliveryDeadLettered)
	case err != nil:
		log.Warn("secrets unavailable; delivery postponed", "error", err)
		return store.Delivery{}, retryBatch
	}
	for n := 0; n < d.cfg.MaxAttempts; n++ {
		if n > 0 {
			wait := d.cfg.Backoff[min(n-1, len(d.cfg.Backoff)-1)]
			if !consume.Pause(ctx, wait) {
				// Shutting down: record the attempts so far; the batch is
				// not committed and the delivery goes on after the restart.
				st.Status, st.NextAttemptAt, st.UpdatedAt = store.DeliveryRetrying, d.now().Add(wait).UTC(), d.now().UTC()
				return st, write
			}
		}
		a, out := d.attempt(ctx, req, msg, len(st.Attempts)+1)
		st.Attempts = append(st.Attempts, a)
		// What an attempt did is recorded even when shutdown has begun: a
		// success missing from the ledger would be delivered again.
		bg := context.WithoutCancel(ctx)
		switch out {
		case success:
			now := d.now()
			if err := d.st.PutIdempotency(bg, store.Idempotency{Key: ledgerKey, Value: []byte(msg.EventID), CreatedAt: now, ExpiresAt: now.Add(d.cfg.LedgerTTL)}); err != nil {
				log.Warn("ledger write failed after delivery; a replay could deliver it again", "error", err)
			}
			if err := d.st.AddDeliveryCounts(bg, msg.SubscriptionID, 1, 0); err != nil {
				log.Warn("counter update failed", "error", err)
			}
			log.Info("delivered", "status_code", a.StatusCode, "attempt", a.N, "latency_ms", time.Duration(a.Latency).Milliseconds())
			return done(store.DeliveryDelivered)
		case final:
			log.Warn("delivery failed for good", "status_code", a.StatusCode, "error", a.Error, "attempt", a.N)
			d.deadLetter(bg, log, msg, st, "final failure")
			return done(store.DeliveryDeadLettered)
		}
		if ctx.Err() != nil {
			st.Status, st.UpdatedAt = store.DeliveryRetrying, d.now().UTC()
			return st, write
		}
		log.Info("attempt failed; will retry", "status_code", a.StatusCode, "error", a.Error, "attempt", a.N)
	}
	d.deadLetter(context.WithoutCancel(ctx), log, msg, st, "attempts exhausted")
	return done(store.DeliveryDeadLettered)
}

// errUnsupported marks a subscription setting this dispatcher cannot serve.
var errUnsupported = errors.New("not supported")

// request is what every attempt of a delivery shares.
type request struct {
	url        string
	signer     *signature.Signer
	authHeader string
	authValue  string
}

func (d *Dispatcher) prepare(ctx context.Context, sub store.Subscription) (request, error) {
	secrets, err := d.secrets.Secrets(ctx, sub.SigningSecretRef)
	if err != nil {
		return request{}, fmt.Errorf("signing secret %s: %w", sub.SigningSecretRef, err)
	}
	signer, err := signature.NewSigner(secrets...)
	if err != nil {
		return request{}, fmt.Errorf("signing secret %s: %w", sub.SigningSecretRef, err)
	}
	req := request{url: sub.URL, signer: signer}
	switch sub.AuthKind {
	case "", "none":
	case "header":
		vals, err := d.secrets.Secrets(ctx, sub.AuthSecretRef)
		if err != nil {
			return request{}, fmt.Errorf("auth secret %s: %w", sub.AuthSecretRef, err)
		}
		req.authHeader, req.authValue = sub.AuthHeader, vals[len(vals)-1]
	default:
		return request{}, fmt.Errorf("auth kind %q: %w by this dispatcher yet", sub.AuthKind, errUnsupported)
	}
	return req, nil
}

func (d *Dispatcher) attempt(ctx context.Context, req request, msg envelope.Delivery, n int) (store.Attempt, outcome) {
	start := d.now()
	a := store.Attempt{N: n, At: start.UTC(), URL: req.url}
	// An attempt that has started is finished even during shutdown (the
	// client timeout bounds it): abandoning a POST the partner may already
	// have processed would turn a clean stop into a duplicate delivery.
	hr, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, req.url, bytes.NewReader(msg.Body))
	if err != nil {
		a.Error = "invalid URL: " + err.Error()
		return a, final
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", d.cfg.UserAgent)
	req.signer.SetHeaders(hr.Header, msg.ID, start, msg.Body)
	if req.authHeader != "" {
		hr.Header.Set(req.authHeader, req.authValue)
	}
	a.RequestHeaders = redact(hr.Header, req.authHeader)
	resp, err := d.http.Do(hr)
	a.Latency = store.Duration(d.now().Sub(start))
	if err != nil {
		a.Error = describe(err)
		return a, retryable
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, int64(d.cfg.ExcerptBytes)))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	a.StatusCode = resp.StatusCode
	a.ResponseExcerpt = strings.ToValidUTF8(string(excerpt), "�")
	return a, classify(resp.StatusCode)
}

// redact copies the headers sent, hiding credentials.
func redact(h http.Header, authHeader string) map[string]string {
	out := make(map[string]string, len(h))
	for k := range h {
		v := h.Get(k)
		if authHeader != "" && strings.EqualFold(k, authHeader) || strings.EqualFold(k, "Authorization") {
			v = "[redacted]"
		}
		out[strings.ToLower(k)] = v
	}
	return out
}

// describe explains a transport error without internal detail.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "no such host"):
		return "host not found"
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap().Error()
	}
	return err.Error()
}

// deadLetterRecord is the value written to wh.dlq.{event}.
type deadLetterRecord struct {
	Delivery    envelope.Delivery `json:"delivery"`
	Reason      string            `json:"reason"`
	LastAttempt *store.Attempt    `json:"last_attempt,omitempty"`
	FailedAt    time.Time         `json:"failed_at"`
}

func (d *Dispatcher) deadLetter(ctx context.Context, log *slog.Logger, msg envelope.Delivery, st store.Delivery, reason string) {
	rec := deadLetterRecord{Delivery: msg, Reason: reason, FailedAt: d.now().UTC()}
	if n := len(st.Attempts); n > 0 {
		rec.LastAttempt = &st.Attempts[n-1]
	}
	value, err := json.Marshal(rec)
	if err == nil {
		err = d.cl.ProduceSync(context.WithoutCancel(ctx), &kgo.Record{Topic: topic.DLQ(msg.Event), Key: []byte(msg.ID), Value: value}).FirstErr()
	}
	if err != nil {
		log.Error("dead-letter write failed", "error", err)
	}
	if err := d.st.AddDeliveryCounts(ctx, msg.SubscriptionID, 0, 1); err != nil {
		log.Warn("counter update failed", "error", err)
	}
	log.Warn("dead-lettered", "reason", reason, "attempts", len(st.Attempts))
}
