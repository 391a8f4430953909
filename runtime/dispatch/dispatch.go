// Package dispatch delivers webhooks: it consumes the egress topics, signs
// each delivery per Standard Webhooks, POSTs it to the partner and records
// every attempt in event_delivery_status.
//
// One pass makes one attempt. A retryable failure is written to the retry
// tiers of wh.retry.{event} (package retry) with its due time, and the
// retry scheduler hands it back when due; nothing sleeps. Exhausted and
// final failures go to wh.dlq.{event} with the last response.
//
// A delivery is skipped when the idempotency ledger says it was already
// delivered, so a replay after a crash does not deliver twice. Ledger
// entries are written in the background as soon as deliveries are made
// (ledgerLane), statuses and counters after them, those of deliveries
// that end together in one write (consume.Pipeline), while further
// deliveries go on, and offsets are committed after both; until its entry
// is written, a delivery is remembered in memory so a second record of it
// is dropped as well. The one window left: the partner accepted the POST
// and the process died before the ledger write (a few milliseconds; at
// thousands of deliveries a second on the embedded store ≈ 10 —
// docs/reliability.md); the delivery is then made again. Partners dedupe
// on webhook-id, which is the delivery id and is the same on every
// attempt.
package dispatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/whp-dev/whp/runtime/breaker"
	"github.com/whp-dev/whp/runtime/consume"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/opevents"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/secret"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Store is the part of the state the dispatcher uses.
type Store interface {
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	ListSubscriptions(ctx context.Context) ([]store.Subscription, error)
	PutSubscription(ctx context.Context, s store.Subscription) (store.Subscription, error)
	GetDelivery(ctx context.Context, eventID, id string) (store.Delivery, error)
	GetDeliveryState(ctx context.Context, ledgerKey, eventID, deliveryID string) (store.DeliveryState, error)
	PutDeliveries(ctx context.Context, ds []store.Delivery) error
	AddCounts(ctx context.Context, subscriptionID string, c store.Counts) error
	GetIdempotency(ctx context.Context, key string) (store.Idempotency, error)
	PutIdempotency(ctx context.Context, rec store.Idempotency) error
	PutLedger(ctx context.Context, recs []store.Idempotency) error
	PutIdempotencyIf(ctx context.Context, rec store.Idempotency, with ...store.Idempotency) (store.Idempotency, error)
	DeleteIdempotency(ctx context.Context, key string) error
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
	// Retry is the default retry policy; a subscription's catalog
	// override applies on top. Default: retry.Default().
	Retry retry.Policy
	// Guard decides which addresses deliveries may reach. Default: the
	// production policy (https, public addresses only).
	Guard *ssrf.Guard
	// TLS is the base TLS configuration for partner connections (nil:
	// the system's roots, TLS 1.2 at least).
	TLS *tls.Config
	// Flags can pause deliveries to a partner. Default: none.
	Flags flags.Source
	// Breaker tunes the circuit breaker per partner (package breaker).
	Breaker breaker.Config
	// Concurrency bounds deliveries in flight. Default
	// DefaultConcurrency.
	Concurrency int
	// PartnerConcurrency bounds one partner's deliveries in flight, so a
	// partner that hangs cannot take every slot. Default a quarter of
	// Concurrency (at least 1). A partner's max_in_flight in the catalog
	// replaces it for that partner (never above Concurrency).
	//
	// A partner gets at most its bound ÷ its answer's time deliveries a
	// second from one dispatcher (Little's law): 64 in flight to an
	// endpoint that answers in 100 ms is 640 a second, whatever the
	// cores. The defaults were 64 and 16 until the far-partners phase of
	// whp bench measured what 16 costs a partner across the internet
	// (docs/benchmarks.md, "Partners far away").
	//
	// Under that ceiling, each partner's bound is learnt from its answers
	// (pace.go): from 16, it grows while it is used and is cut when the
	// partner pushes back (429, 503, timeouts).
	PartnerConcurrency int
	// FixedPartnerConcurrency turns the learnt bound off: each partner
	// gets its ceiling (max_in_flight, else PartnerConcurrency) whatever it
	// answers.
	FixedPartnerConcurrency bool
	// LedgerTTL is how long a delivered ID is remembered. Default 72 h.
	LedgerTTL time.Duration
	// StatusTTL is how long delivery history is kept. Default 30 days.
	StatusTTL time.Duration
	// ExcerptBytes bounds the stored response body excerpt. Default 1 KiB.
	ExcerptBytes int
	// UserAgent is sent with every delivery.
	UserAgent string
	// Metrics records attempts and what became of deliveries (nil: none).
	Metrics *telemetry.Metrics
	// Ops publishes operational events (attempts failing or exhausted,
	// subscriptions disabled, breakers opened and closed). Default: to
	// the log only.
	Ops *opevents.Publisher
	// FailingAfter is the failed attempt in a row at which a delivery is
	// announced as failing (once). Default 3.
	FailingAfter int
	// Tracing continues each delivery's trace through its attempts and
	// retries (nil: none). Its KafkaOpts belong on the clients, among the
	// options New takes.
	Tracing *telemetry.Tracing
}

// DefaultConcurrency is Config.Concurrency's default, and
// DefaultPartnerConcurrency PartnerConcurrency's with it (a quarter).
const (
	DefaultConcurrency        = 256
	DefaultPartnerConcurrency = DefaultConcurrency / 4
)

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
	if c.Retry.MaxAttempts == 0 {
		c.Retry = retry.Default()
	}
	if c.Guard == nil {
		c.Guard = &ssrf.Guard{}
	}
	if c.Flags == nil {
		c.Flags = flags.Static{}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PartnerConcurrency <= 0 {
		c.PartnerConcurrency = max(c.Concurrency/4, 1)
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
	if c.FailingAfter <= 0 {
		c.FailingAfter = 3
	}
}

// Dispatcher is the dispatcher role.
type Dispatcher struct {
	cfg       Config
	cl        *kgo.Client // egress consumer (unless built by NewBatch), and producer of dead letters
	consuming bool
	retryProd *kgo.Client // retry.NewProducer
	http      *http.Client
	st        Store
	secrets   Secrets
	log       *slog.Logger
	now       func() time.Time
	limits    limiters
	shares    shares // of each partner's partitions, so of its rate limit
	// maxInFlight is each partner's max_in_flight (partner → int), as
	// its subscription last read said (learnPartner, partnerCeiling).
	maxInFlight sync.Map
	// paces is each partner's learnt bound (partner → *pace), unless
	// FixedPartnerConcurrency.
	paces   sync.Map
	creds   credentials
	breaker *breaker.Breaker

	pauseMu sync.Mutex
	paused  map[string]map[string]bool // partner → egress topics paused while its breaker is open
	watches map[string]int             // partner → the generation of its probe watch (watchProbeLocked)
	holds   map[string]int             // egress topic → reasons it is paused (breaker, backlog)

	// pipe writes consumed batches' statuses and ledger entries, then
	// commits their offsets (nil when built by NewBatch).
	pipe   *consume.Pipeline[batchWrites]
	stream *stream // Run's state (nil when built by NewBatch)
	// ledger writes the ledger entries of Run's deliveries ahead of their
	// statuses (nil when built by NewBatch).
	ledger *ledgerLane
	// unwritten holds the ids of deliveries made whose ledger entry is
	// still on its way to the store.
	unwritten sync.Map
}

// New creates the dispatcher's client on the egress cluster; retryProd
// (from retry.NewProducer) writes retries and stays the caller's to close.
// Extra kgo options (TLS, SASL) are applied to the consumer.
func New(cfg Config, egress []string, st Store, secrets Secrets, retryProd *kgo.Client, log *slog.Logger, opts ...kgo.Opt) (*Dispatcher, error) {
	cfg.defaults()
	return newDispatcher(cfg, append(consume.GroupOptions(cfg.Group, topic.EgressPrefix), kgo.DisableAutoCommit()), egress, st, secrets, retryProd, log, opts)
}

// NewBatch creates a dispatcher that consumes nothing itself: its caller
// hands it batches through Deliver (the Lambda handler, fed by an MSK
// event source mapping). Its client only produces dead letters. While a
// partner's breaker is open its deliveries are held in the retry tiers,
// since there is no fetch to pause.
func NewBatch(cfg Config, egress []string, st Store, secrets Secrets, retryProd *kgo.Client, log *slog.Logger, opts ...kgo.Opt) (*Dispatcher, error) {
	cfg.defaults()
	return newDispatcher(cfg, nil, egress, st, secrets, retryProd, log, opts)
}

func newDispatcher(cfg Config, consumer []kgo.Opt, egress []string, st Store, secrets Secrets, retryProd *kgo.Client, log *slog.Logger, opts []kgo.Opt) (*Dispatcher, error) {
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil, // partners are reached directly, never through an ambient proxy
		DialContext:           cfg.Guard.DialContext(dialer),
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   cfg.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if cfg.TLS != nil {
		transport.TLSClientConfig = cfg.TLS.Clone()
	}
	hc := &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		// Redirects are not followed: a 3xx is the partner's answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if cfg.Ops == nil {
		cfg.Ops = opevents.New(opevents.Config{}, log)
	}
	d := &Dispatcher{cfg: cfg, consuming: consumer != nil, retryProd: retryProd, http: hc, st: st, secrets: secrets, log: log, now: time.Now,
		breaker: breaker.New(cfg.Breaker), paused: map[string]map[string]bool{}, watches: map[string]int{}, holds: map[string]int{}}
	d.breaker.OnChange = d.breakerChanged
	d.breaker.OnLongFailure = d.partnerFailingLong
	if d.consuming {
		d.ledger = newLedgerLane(st.PutLedger, d.ledgerWritten, log.With("stage", "ledger"))
		d.pipe = consume.NewPipeline(d.writeBatches, func(ctx context.Context, recs []*kgo.Record) error {
			return d.cl.CommitRecords(ctx, recs...)
		}, log.With("stage", "statuses"))
		d.stream = newStream(d)
		// Partitions that move to another dispatcher have their ledger
		// entries written first, so the new owner skips what was delivered.
		revoke := func(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
			d.stream.revoke(ctx, lost)
			d.shares.revoked(lost)
		}
		assign := func(ctx context.Context, cl *kgo.Client, got map[string][]int32) {
			d.shares.assigned(ctx, cl, got, log)
		}
		consumer = append(consumer, kgo.OnPartitionsRevoked(revoke), kgo.OnPartitionsLost(revoke), kgo.OnPartitionsAssigned(assign))
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(egress...), kgo.RequiredAcks(kgo.AllISRAcks())}, consumer...)
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		d.closePipe()
		return nil, fmt.Errorf("dispatcher egress client: %w", err)
	}
	d.cl = cl
	return d, nil
}

// AttemptTimeout bounds one delivery attempt: work that must finish
// before a deadline leaves at least this much room for what is in flight.
func (d *Dispatcher) AttemptTimeout() time.Duration { return d.cfg.Timeout }

// Ping reports whether the egress cluster answers (any broker of it).
func (d *Dispatcher) Ping(ctx context.Context) error { return d.cl.Ping(ctx) }

// Close closes the client of a dispatcher that is not Run (Run closes its
// own when it returns).
func (d *Dispatcher) Close() {
	d.closePipe()
	d.cl.Close()
}

// closeTimeout bounds how long a stopping dispatcher keeps writing the
// statuses of what it delivered (within the pods' 45 s grace).
const closeTimeout = 15 * time.Second

func (d *Dispatcher) closePipe() {
	if d.pipe != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		d.pipe.Close(ctx) // its writes wait for the ledger lane, still running
		d.ledger.close(ctx)
		cancel()
	}
}

// Breakers reports every partner's circuit breaker.
func (d *Dispatcher) Breakers() []breaker.Snapshot { return d.breaker.Snapshots() }

// BreakerStates reports every partner's breaker state, for the
// whp.breaker.state gauge.
func (d *Dispatcher) BreakerStates() []telemetry.BreakerState {
	var out []telemetry.BreakerState
	for _, s := range d.breaker.Snapshots() {
		out = append(out, telemetry.BreakerState{Partner: s.Partner, State: string(s.State)})
	}
	return out
}

// InFlight is each partner's deliveries in flight in Run, its bound now
// (partnerLimit) and its ceiling (partnerCeiling), and those read and
// waiting, for whp.deliveries.in_flight, whp status and the console: the
// partners that have had a delivery since the dispatcher started. None
// when built by NewBatch (a batch's are over when Deliver returns).
func (d *Dispatcher) InFlight() []telemetry.PartnerInFlight {
	s := d.stream
	if s == nil {
		return nil
	}
	s.mu.Lock()
	out := make([]telemetry.PartnerInFlight, 0, len(s.busy))
	for partner, n := range s.busy {
		out = append(out, telemetry.PartnerInFlight{Partner: partner, InFlight: n, Waiting: max(0, s.backlog[partner]-n), WaitsFor: s.gated[partner].why})
	}
	s.mu.Unlock()
	for i := range out {
		out[i].Limit, out[i].Ceiling = d.partnerLimit(out[i].Partner), d.partnerCeiling(out[i].Partner)
	}
	return out
}

// breakerChanged announces the breaker opening or closing (an operational
// event; half-open, and a failed probe opening it again, are only logged)
// and, when it closes, resumes the partner's paused egress topics.
func (d *Dispatcher) breakerChanged(partner string, from, to breaker.State) {
	switch {
	case to == breaker.Open && from == breaker.Closed:
		s := d.breaker.Snapshot(partner)
		d.cfg.Ops.Publish(opevents.BreakerOpened, map[string]any{"partner_id": partner, "from": string(from), "reason": s.Reason,
			"probe_at": s.ProbeAt.UTC().Format(time.RFC3339), "partner_asked": s.PartnerAsked})
	case to == breaker.Open:
		s := d.breaker.Snapshot(partner)
		d.log.Info("circuit breaker probe failed: open again", "partner_id", partner, "reason", s.Reason, "probe_at", s.ProbeAt.UTC().Format(time.RFC3339), "partner_asked", s.PartnerAsked)
	case to == breaker.Closed:
		d.cfg.Ops.Publish(opevents.BreakerClosed, map[string]any{"partner_id": partner, "from": string(from)})
	default:
		d.log.Info("circuit breaker half-open: probing", "partner_id", partner)
	}
	if to == breaker.Closed {
		// Back from an outage: its pace starts again as a new partner's.
		// The failures that opened the breaker (503s, timeouts) cut it to
		// its floor, and the threshold with it, so it would otherwise grow
		// by one a round trip until paceForget — 6 s from 1 to 64 at 100
		// ms, where slow start takes 0.6.
		d.paces.Delete(partner)
		d.resume(partner)
	}
}

// pause stops fetching a partner's egress topic while its breaker is
// open: its records stay in Kafka (backpressure) instead of being held one
// by one — and stay there through the breaker's probes, which the
// deliveries already held make: they come due when the breaker lets the
// next probe out (retryAt). Resuming the topics for each probe moved
// another fetch into the retry tiers every time, and each later probe
// had all of them written again: the writes grew with the square of an
// outage's length (whp bench --outage, held passes: 859 in 60 s, 15,292
// in 180 s). The topics resume when the breaker closes, or when no held
// first attempt made a probe (watchProbeLocked), so that a fetched record
// makes it rather than a retry (breaker.AllowRetry).
func (d *Dispatcher) pause(partner, topicName string, retryAt time.Time) {
	if !d.consuming {
		return
	}
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	if d.paused[partner] == nil {
		d.paused[partner] = map[string]bool{}
	}
	if d.paused[partner][topicName] {
		return
	}
	d.paused[partner][topicName] = true
	d.holdLocked(topicName)
	if len(d.paused[partner]) == 1 { // the partner's first paused topic
		// Paused while half-open (its probe out), that probe counts.
		since := d.now()
		if open, halfOpened, next, _ := d.breaker.Probing(partner); open && next.IsZero() {
			since = halfOpened
		}
		d.watches[partner]++
		d.watchProbeLocked(partner, d.watches[partner], since, retryAt)
	}
}

// watchProbeLocked looks, half a probe's grace after at (so, before a
// retry may probe: breaker.AllowRetry), whether the partner's breaker let
// a probe out since since; if none came, or none of the held deliveries
// that came due was a first attempt, it resumes the partner's topics.
// gen is the watch's generation: a resume ends it, and a later pause
// starts the next. pauseMu is held.
func (d *Dispatcher) watchProbeLocked(partner string, gen int, since, at time.Time) {
	time.AfterFunc(max(0, at.Add(d.breaker.ProbeGrace(partner)/2).Sub(d.now())), func() {
		d.pauseMu.Lock()
		defer d.pauseMu.Unlock()
		if d.watches[partner] != gen || len(d.paused[partner]) == 0 {
			return // resumed since
		}
		open, halfOpened, next, probing := d.breaker.Probing(partner)
		switch {
		case !open:
			// Closed: breakerChanged resumes the topics.
		case next.IsZero() && probing:
			// Half-open, its probe out (a partner that hangs holds it
			// until the attempt's timeout): look again.
			d.watchProbeLocked(partner, gen, since, d.now())
		case halfOpened.Before(since), next.IsZero():
			// No held first attempt came due to make the probe: a
			// fetched record will.
			d.resumeLocked(partner)
		default:
			// The probe failed: watch the next.
			d.watchProbeLocked(partner, gen, d.now(), next)
		}
	})
}

func (d *Dispatcher) resume(partner string) {
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	d.resumeLocked(partner)
}

func (d *Dispatcher) resumeLocked(partner string) {
	var ts []string
	for t := range d.paused[partner] {
		ts = append(ts, t)
	}
	delete(d.paused, partner)
	for _, t := range ts {
		d.unholdLocked(t)
	}
}

// holdTopic stops fetching an egress topic until as many unholdTopic
// calls: the breaker and a partner's backlog pause topics independently.
func (d *Dispatcher) holdTopic(t string) {
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	d.holdLocked(t)
}

func (d *Dispatcher) unholdTopic(t string) {
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	d.unholdLocked(t)
}

func (d *Dispatcher) holdLocked(t string) {
	if d.holds[t]++; d.holds[t] == 1 {
		d.cl.PauseFetchTopics(t)
	}
}

func (d *Dispatcher) unholdLocked(t string) {
	if d.holds[t]--; d.holds[t] <= 0 {
		delete(d.holds, t)
		d.cl.ResumeFetchTopics(t)
	}
}

// partnerFailingLong disables every subscription of a partner that has
// been failing for the breaker's DisableAfter.
func (d *Dispatcher) partnerFailingLong(partner string, since time.Time) {
	ctx := context.Background()
	d.log.Error("partner failing for too long; its subscriptions are disabled", "partner_id", partner, "failing_since", since)
	subs, err := d.st.ListSubscriptions(ctx)
	if err != nil {
		d.log.Error("listing the partner's subscriptions failed", "partner_id", partner, "error", err)
		return
	}
	for _, s := range subs {
		if s.PartnerID == partner && s.Status == store.SubscriptionApproved {
			d.disable(ctx, d.log, s.ID, fmt.Sprintf("every delivery to the partner has failed since %s; approve the subscription again to resume", since.Format(time.RFC3339)))
		}
	}
}

// Refresh makes the dispatcher look for new egress topics now, rather
// than at its next metadata refresh (up to 10 s): the reconciler calls it
// after creating topics so a new subscription delivers at once.
func (d *Dispatcher) Refresh() {
	if d.consuming {
		d.cl.ForceMetadataRefresh()
	}
}

// Deliver makes the first attempt of each delivery in recs (egress
// records) and writes their statuses in one batch. It returns the records
// that were not handled and must be handed to it again (state was
// unavailable, or ctx ended first); handing it any record again is
// harmless, since the ledger drops what was delivered. Retryable failures
// are not among them: they wait in the retry tiers.
func (d *Dispatcher) Deliver(ctx context.Context, recs []*kgo.Record) (failed []*kgo.Record) {
	failed, w := d.batch(ctx, recs)
	if err := d.writeBatches(context.WithoutCancel(ctx), []batchWrites{w}); err != nil {
		d.log.Error("writing delivery statuses failed", "deliveries", len(w.statuses), "error", err)
		return recs
	}
	return failed
}

// batch delivers recs concurrently: up to Concurrency keys' records at
// once, and no more of one partner's than its bound (partnerLimit, read
// again as each key starts: a pace learnt in the batch holds in it) — a
// key whose partner has its bound in flight waits, without a slot, for
// one of the partner's to end. It returns the records not handled (the
// batch may be committed only when there are none) and what the batch
// leaves to write.
func (d *Dispatcher) batch(ctx context.Context, recs []*kgo.Record) ([]*kgo.Record, batchWrites) {
	col := newCollector()
	ctx = withMemo(context.WithValue(ctx, collectorKey{}, col))
	var (
		mu      sync.Mutex
		failed  []*kgo.Record
		wg      sync.WaitGroup
		sem     = make(chan struct{}, d.cfg.Concurrency)
		busy    = map[string]int{}       // partner → its keys running (mu)
		learned = map[string]bool{}      // partners whose bound the batch read
		ended   = make(chan struct{}, 1) // a key's records are done
	)
	for waiting := byKey(recs); len(waiting) > 0; {
		var later [][]*kgo.Record
		for _, group := range waiting {
			partner, _ := topic.EgressPartner(group[0].Topic)
			if !learned[partner] {
				learned[partner] = true
				d.learnPartner(ctx, group[0])
			}
			mu.Lock()
			full := busy[partner] >= d.partnerLimit(partner)
			if !full {
				busy[partner]++
			}
			mu.Unlock()
			if full {
				later = append(later, group) // its partner's bound is in flight
				continue
			}
			release := func() {
				mu.Lock()
				busy[partner]--
				mu.Unlock()
			}
			sem <- struct{}{}
			if ctx.Err() != nil {
				// Shutting down: start nothing new; the rest of the batch
				// is not committed and is delivered after the restart.
				<-sem
				release()
				mu.Lock()
				failed = append(failed, group...)
				mu.Unlock()
				continue
			}
			wg.Go(func() {
				defer func() {
					<-sem
					release()
					select {
					case ended <- struct{}{}:
					default:
					}
				}()
				// One key's records one after the other: what ordered
				// subscriptions need, and harmless for the others.
				for _, r := range group {
					if d.deliverRecord(ctx, r) == retryBatch {
						mu.Lock()
						failed = append(failed, r)
						mu.Unlock()
					}
				}
			})
		}
		if waiting = later; len(waiting) > 0 {
			<-ended // a slot of some partner's is free again
		}
	}
	wg.Wait()
	return failed, col.take()
}

// deliverRecord makes the first attempt of the delivery in an egress
// record; a status to write goes to ctx's collector.
func (d *Dispatcher) deliverRecord(ctx context.Context, r *kgo.Record) result {
	msg, err := envelope.ParseDelivery(r.Value) // its Body a slice of the record's
	if err != nil || msg.ID == "" {
		d.log.Error("skipping malformed egress record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "error", err)
		return skip
	}
	rctx, span := d.cfg.Tracing.Process(ctx, r, attribute.String("whp.event_id", msg.EventID), attribute.String("whp.delivery_id", msg.ID),
		attribute.String("whp.partner_id", msg.PartnerID))
	defer span.End()
	st, res := d.run(rctx, msg, 1, r)
	d.record(rctx, msg, st, res)
	if res == write {
		collectorOf(ctx).status(st)
	}
	return res
}

// collector gathers what deliveries leave to write: statuses, the ledger
// entries of what was delivered, and counter updates summed per
// subscription (written once per subscription instead of once per
// delivery; the counters are rates, not a ledger, so a delivery handled
// again counts again).
type collector struct {
	mu       sync.Mutex
	statuses []store.Delivery
	ledger   []store.Idempotency
	counts   map[string]store.Counts
}

type collectorKey struct{}

func newCollector() *collector { return &collector{counts: map[string]store.Counts{}} }

// collectorOf is ctx's collector, or nil.
func collectorOf(ctx context.Context) *collector {
	c, _ := ctx.Value(collectorKey{}).(*collector)
	return c
}

func (c *collector) status(st store.Delivery) {
	c.mu.Lock()
	c.statuses = append(c.statuses, st)
	c.mu.Unlock()
}

// take returns what was gathered and starts afresh.
func (c *collector) take() batchWrites {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := batchWrites{statuses: c.statuses, ledger: c.ledger, counts: c.counts}
	c.statuses, c.ledger, c.counts = nil, nil, map[string]store.Counts{}
	return w
}

func (w batchWrites) empty() bool {
	return len(w.statuses) == 0 && len(w.ledger) == 0 && len(w.counts) == 0
}

// memo holds the subscriptions a batch (or, when streaming, one poll's
// records) read, so each is read once rather than once per delivery: a
// batch is one moment, and a subscription changed meanwhile is read by
// the next one.
type memo struct {
	mu   sync.Mutex
	subs map[string]*subRead
}

type memoKey struct{}

func newMemo() *memo { return &memo{subs: map[string]*subRead{}} }

func withMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, newMemo())
}

// subRead is one subscription read, shared by a batch's deliveries, and
// the request prepared for it (secrets resolved, signer built).
type subRead struct {
	once sync.Once
	sub  store.Subscription
	err  error

	prepOnce sync.Once
	req      request
	prepErr  error
}

// subscription reads a subscription, once per memo when ctx carries one.
func (d *Dispatcher) subscription(ctx context.Context, id string) (store.Subscription, error) {
	p, ok := ctx.Value(memoKey{}).(*memo)
	if !ok {
		return d.st.GetSubscription(ctx, id)
	}
	p.mu.Lock()
	r := p.subs[id]
	if r == nil {
		r = &subRead{}
		p.subs[id] = r
	}
	p.mu.Unlock()
	r.once.Do(func() { r.sub, r.err = d.st.GetSubscription(ctx, id) })
	return r.sub, r.err
}

// learnPartner reads the bound and the rate limit of r's partner from r's
// subscription before r's chain is started or queued, so that they hold
// from a partner's first delivery on (one that takes a request at a time
// gets one; one limited to a few a second has its first chains wait for
// their tokens, stream.runChain) and a change reaches a partner all of
// whose deliveries are waiting. ctx carries the poll's memo: the read is
// the one the poll's deliveries of the subscription share. If the record
// or the read fails, the delivery's own read will say so; the last bound
// read (at first, PartnerConcurrency) holds meanwhile.
func (d *Dispatcher) learnPartner(ctx context.Context, r *kgo.Record) {
	msg, err := envelope.ParseDelivery(r.Value)
	if err != nil {
		return
	}
	sub, err := d.subscription(ctx, msg.SubscriptionID)
	if err != nil {
		return
	}
	if v, ok := d.maxInFlight.Load(sub.PartnerID); !ok || v.(int) != sub.MaxInFlight {
		d.maxInFlight.Store(sub.PartnerID, sub.MaxInFlight)
	}
	d.limits.learn(sub, d.share(sub))
}

// share is the share of sub's partner's rate limit this dispatcher keeps
// to (shares.of), 1 for a partner without one.
func (d *Dispatcher) share(sub store.Subscription) float64 {
	if sub.RateLimitPerSecond <= 0 {
		return 1
	}
	return d.shares.of(sub.PartnerID)
}

// partnerCeiling is the most deliveries partner may ever have in flight:
// its max_in_flight as its subscription last read said (without one, or
// before any was read, PartnerConcurrency), never more than Concurrency.
func (d *Dispatcher) partnerCeiling(partner string) int {
	n := d.cfg.PartnerConcurrency
	if v, ok := d.maxInFlight.Load(partner); ok && v.(int) > 0 {
		n = v.(int)
	}
	return min(n, d.cfg.Concurrency)
}

// partnerLimit is the most deliveries partner may have in flight now: its
// pace's bound under its ceiling (the ceiling itself with
// FixedPartnerConcurrency).
func (d *Dispatcher) partnerLimit(partner string) int {
	ceiling := d.partnerCeiling(partner)
	if d.cfg.FixedPartnerConcurrency {
		return ceiling
	}
	return d.pace(partner).bound(ceiling)
}

// atBound reports whether partner has pushed back lately and has its
// bound in flight (never with FixedPartnerConcurrency: the fixed bound
// holds first attempts only, as it always has).
func (d *Dispatcher) atBound(partner string) bool {
	pc := d.pace(partner)
	return pc != nil && pc.held(pc.bound(d.partnerCeiling(partner)))
}

// pace is partner's learnt bound (nil with FixedPartnerConcurrency).
func (d *Dispatcher) pace(partner string) *pace {
	if d.cfg.FixedPartnerConcurrency {
		return nil
	}
	if p, ok := d.paces.Load(partner); ok {
		return p.(*pace)
	}
	p, _ := d.paces.LoadOrStore(partner, newPace())
	return p.(*pace)
}

// prepared is prepare, once per subscription per memo when ctx carries
// one (sub is then the memo's read of it).
func (d *Dispatcher) prepared(ctx context.Context, sub store.Subscription) (request, error) {
	p, ok := ctx.Value(memoKey{}).(*memo)
	if !ok {
		return d.prepare(ctx, sub)
	}
	p.mu.Lock()
	r := p.subs[sub.ID]
	p.mu.Unlock()
	if r == nil || r.sub.Rev != sub.Rev {
		return d.prepare(ctx, sub)
	}
	r.prepOnce.Do(func() { r.req, r.prepErr = d.prepare(ctx, sub) })
	return r.req, r.prepErr
}

// batchWrites is what a batch leaves to write.
type batchWrites struct {
	statuses []store.Delivery
	ledger   []store.Idempotency // Deliver's; Run's go through the ledger lane
	counts   map[string]store.Counts
	// ledgerUpTo is the ledger lane's mark when the batch was handed over:
	// its write is done once the lane has written that far.
	ledgerUpTo uint64
}

// count adds to a subscription's counters: to ctx's collector when it
// carries one, else to the store at once.
func (d *Dispatcher) count(ctx context.Context, log *slog.Logger, subscriptionID string, c store.Counts) {
	if p := collectorOf(ctx); p != nil {
		p.mu.Lock()
		p.counts[subscriptionID] = p.counts[subscriptionID].Plus(c)
		p.mu.Unlock()
		return
	}
	if err := d.st.AddCounts(ctx, subscriptionID, c); err != nil {
		log.Warn("counter update failed", "subscription_id", subscriptionID, "error", err)
	}
}

// delivered records in the ledger that msg was delivered: when ctx
// carries a collector, through the ledger lane (Run) or with the batch's
// statuses (Deliver), remembered in memory until written; else at once.
func (d *Dispatcher) delivered(ctx context.Context, log *slog.Logger, msg envelope.Delivery) {
	now := d.now()
	rec := store.Idempotency{Key: ledgerKey(msg.EventID, msg.ID), Value: []byte(msg.EventID), CreatedAt: now, ExpiresAt: now.Add(d.cfg.LedgerTTL)}
	if p := collectorOf(ctx); p != nil {
		d.unwritten.Store(msg.ID, struct{}{})
		if d.ledger != nil {
			d.ledger.add(rec)
			return
		}
		p.mu.Lock()
		p.ledger = append(p.ledger, rec)
		p.mu.Unlock()
		return
	}
	if err := d.st.PutIdempotency(ctx, rec); err != nil {
		log.Warn("ledger write failed after delivery; a replay could deliver it again", "error", err)
		return
	}
	d.cfg.Metrics.LedgerLag(ctx, d.now().Sub(now))
}

// ledgerKey is a delivery's key in the ledger. The event ID (a UUIDv7,
// time-ordered) comes first so that new entries are written side by side
// at the end of the embedded store's B+tree instead of one page each at
// random places (a delivery ID is a hash): 17 % fewer page writes per
// event, 30 % less time writing (whp bench, bbolt's TxStats). The
// delivery ID ends the key, after the last '#'.
func ledgerKey(eventID, deliveryID string) string { return "delivered#" + eventID + "#" + deliveryID }

// writeBatches writes what batches left: statuses, counters and
// Deliver's ledger entries, all at once, then, for Run, waits until the
// ledger lane has written the entries of those batches' deliveries. The
// embedded store commits concurrent writes in one transaction (one
// fsync: the counters in a transaction of their own after the others made
// each write ≈ 60 % longer, BenchmarkWriteBatches); DynamoDB takes them
// in parallel. An error means the ledger and statuses must be written
// again, which is harmless (both writes replace). The counters are not:
// they are taken out of ws as they are sent, so a write again does not
// add them twice, and one that fails is logged and dropped — they are
// rates, not a ledger.
func (d *Dispatcher) writeBatches(ctx context.Context, ws []batchWrites) error {
	var statuses []store.Delivery
	var ledger []store.Idempotency
	counts := map[string]store.Counts{}
	for i, w := range ws {
		statuses = append(statuses, w.statuses...)
		ledger = append(ledger, w.ledger...)
		for id, c := range w.counts {
			counts[id] = counts[id].Plus(c)
		}
		ws[i].counts = nil
	}
	var wg sync.WaitGroup
	var ledgerErr, statusErr error
	if len(ledger) > 0 {
		wg.Go(func() { ledgerErr = d.st.PutLedger(ctx, ledger) })
	}
	if len(statuses) > 0 {
		wg.Go(func() { statusErr = d.st.PutDeliveries(ctx, statuses) })
	}
	for id, c := range counts {
		wg.Go(func() {
			if err := d.st.AddCounts(ctx, id, c); err != nil {
				d.log.Warn("counter update failed", "subscription_id", id, "error", err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(ledgerErr, statusErr); err != nil {
		return err
	}
	d.ledgerWritten(ledger)
	if d.ledger != nil {
		var upTo uint64
		for _, w := range ws {
			upTo = max(upTo, w.ledgerUpTo)
		}
		return d.ledger.wait(ctx, upTo)
	}
	return nil
}

// ledgerWritten drops written ledger entries' deliveries from
// d.unwritten, and records how long after the partner's answer (the
// entry's CreatedAt) each was written: the delivery window.
func (d *Dispatcher) ledgerWritten(recs []store.Idempotency) {
	now := d.now()
	for _, rec := range recs {
		d.unwritten.Delete(rec.Key[strings.LastIndexByte(rec.Key, '#')+1:])
		d.cfg.Metrics.LedgerLag(context.Background(), now.Sub(rec.CreatedAt))
	}
}

// byKey groups records by topic and key, keeping their order, groups in
// order of first appearance.
func byKey(recs []*kgo.Record) [][]*kgo.Record {
	index := map[string]int{}
	var groups [][]*kgo.Record
	for _, r := range recs {
		k := r.Topic + "\x00" + string(r.Key)
		if len(r.Key) == 0 {
			k = fmt.Sprintf("%s\x00\x00%d/%d", r.Topic, r.Partition, r.Offset)
		}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	return groups
}

// pausedRecheck is how soon a paused partner's held delivery looks again;
// each look that finds the partner still paused doubles it, up to
// maxPausedRecheck: a retry of a partner paused for an hour is held again
// ≈ 60 times, not 720 (its first attempts wait in the stream instead:
// stream.runChain), and is made at most a minute after the resume.
const (
	pausedRecheck    = 5 * time.Second
	maxPausedRecheck = time.Minute
)

// errNotAttempted is returned by DeliverRetry when the attempt could not
// be made (state unavailable); the scheduler defers the record.
var errNotAttempted = errors.New("dispatch: attempt not made")

// DeliverRetry makes a due retry attempt; it implements retry.Deliverer.
func (d *Dispatcher) DeliverRetry(ctx context.Context, value []byte, attempt int) error {
	msg, err := envelope.ParseDelivery(value) // its Body a slice of the record's
	if err != nil || msg.ID == "" {
		d.log.Error("skipping malformed retry record", "error", err)
		return nil
	}
	if msg.Resume {
		msg.Resume = false
		log := d.log.With("event_id", msg.EventID, "delivery_id", msg.ID, "partner_id", msg.PartnerID)
		d.drain(ctx, log, msg)
		return nil
	}
	st, res := d.run(ctx, msg, attempt, nil)
	d.record(ctx, msg, st, res)
	switch res {
	case retryBatch:
		return errNotAttempted
	case write:
		if err := d.st.PutDeliveries(context.WithoutCancel(ctx), []store.Delivery{st}); err != nil {
			d.log.Error("writing delivery status failed", "delivery_id", msg.ID, "error", err)
		}
	}
	return nil
}

// record counts what a pass made of a delivery.
func (d *Dispatcher) record(ctx context.Context, msg envelope.Delivery, st store.Delivery, res result) {
	var outcome string
	switch {
	case res == retryBatch:
		return // not attempted: counted when it is
	case res == rewrite:
		outcome = telemetry.OutcomeDuplicate
	case st.Status == store.DeliveryDelivered:
		outcome = telemetry.OutcomeDelivered
	case st.Status == store.DeliveryDeadLettered:
		outcome = telemetry.OutcomeDeadLettered
	case st.Status == store.DeliveryCancelled:
		outcome = telemetry.OutcomeCancelled
	case st.Status == store.DeliveryRetrying:
		outcome = telemetry.OutcomeRetryScheduled
	case st.Status == store.DeliveryHeld:
		outcome = telemetry.OutcomeHeld
	case st.Status == "":
		outcome = telemetry.OutcomeDuplicate
	default:
		return
	}
	d.cfg.Metrics.Delivery(ctx, msg.PartnerID, outcome, msg.AcceptedAt, d.now())
}

// result says what run leaves to its caller.
type result int

const (
	write      result = iota // a status to write
	skip                     // nothing (more) to write
	retryBatch               // not attempted: try the record again later
	// rewrite is a status to write for a delivery this pass did not make:
	// a drain reading again what a drain cut short by a crash had made,
	// its status lost with that drain's checkpoint. Counted as a
	// duplicate, not as delivered a second time.
	rewrite
)

// outcome classifies one attempt.
type outcome int

const (
	success outcome = iota
	retryable
	final
)

// classify applies the status policy: 2xx success; 408, 409, 425, 429
// and 5xx retryable; everything else final — 3xx included, since
// redirects are not followed, and 410, which also disables the
// subscription.
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

// run makes attempt number n of a delivery and decides what follows. from
// is the egress record on a first attempt, nil on a retry.
func (d *Dispatcher) run(ctx context.Context, msg envelope.Delivery, n int, from *kgo.Record) (ret store.Delivery, res result) {
	log := withAttrs(d.log, slog.String("event_id", msg.EventID), slog.String("delivery_id", msg.ID), slog.String("partner_id", msg.PartnerID),
		slog.Int("attempt", n), slog.String("trace_id", telemetry.TraceID(ctx)))
	// Before the attempt, any failure to read state (shutdown included)
	// leaves the delivery for a later pass.
	if _, ok := d.unwritten.Load(msg.ID); ok {
		log.Info("duplicate delivery dropped: already delivered")
		return store.Delivery{}, skip
	}
	// The ledger and the status in one read.
	state, err := d.st.GetDeliveryState(ctx, ledgerKey(msg.EventID, msg.ID), msg.EventID, msg.ID)
	switch {
	case err != nil:
		log.Warn("ledger or status store unavailable; delivery postponed", "error", err)
		return store.Delivery{}, retryBatch
	case state.Delivered, state.Found && state.Status.Status == store.DeliveryDelivered:
		// The status says so too: it is written after the ledger entry,
		// and answers for entries under an earlier form of the key.
		log.Info("duplicate delivery dropped: already delivered")
		if drainingOf(ctx) != nil && state.Found && state.Status.Status != store.DeliveryDelivered {
			// A drain cut short by a crash before its checkpoint made it:
			// its status, lost with the checkpoint, says so now.
			st := state.Status
			st.Status, st.Reason, st.UpdatedAt, st.NextAttemptAt = store.DeliveryDelivered, "", d.now().UTC(), time.Time{}
			return st, rewrite
		}
		d.resumeIfBlocker(ctx, log, msg)
		return store.Delivery{}, skip
	case drainingOf(ctx) != nil && state.Found && finalStatus(state.Status.Status):
		// Queued twice (its egress record read again after a crash): the
		// first was made.
		return store.Delivery{}, skip
	}
	st := state.Status
	if !state.Found {
		st = store.Delivery{EventID: msg.EventID, ID: msg.ID, SubscriptionID: msg.SubscriptionID, PartnerID: msg.PartnerID,
			SchemaID: msg.SchemaID, CreatedAt: msg.CreatedAt}
	}
	if from != nil {
		st.Topic, st.Partition, st.Offset = from.Topic, from.Partition, from.Offset
	}
	st.ExpiresAt = d.now().Add(d.cfg.StatusTTL)
	// Each write of this pass says why, where its status needs it
	// (store.Delivery.Reason); a reason of an earlier pass does not stay.
	st.Reason = ""
	done := func(status, reason string) (store.Delivery, result) {
		st.Status, st.Reason, st.UpdatedAt, st.NextAttemptAt = status, reason, d.now().UTC(), time.Time{}
		return st, write
	}
	bg := context.WithoutCancel(ctx) // what an attempt did is recorded even during shutdown

	sub, err := d.subscription(ctx, msg.SubscriptionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Info("delivery cancelled: the subscription no longer exists", "subscription_id", msg.SubscriptionID)
		return done(store.DeliveryCancelled, "the subscription no longer exists")
	case err != nil:
		log.Warn("subscription unavailable; delivery postponed", "error", err)
		return store.Delivery{}, retryBatch
	case sub.Status == store.SubscriptionDisabled:
		reason := "subscription disabled: " + sub.Reason
		st = d.deadLetter(bg, log, msg, st, reason)
		return done(store.DeliveryDeadLettered, reason)
	case sub.Status != store.SubscriptionApproved:
		log.Info("delivery cancelled: subscription is not approved", "subscription_id", msg.SubscriptionID, "status", sub.Status)
		return done(store.DeliveryCancelled, "the subscription is "+sub.Status+", not Approved")
	}
	ordered := sub.Mode == "ordered" && msg.Key != ""
	// A drain makes its key's queued deliveries itself: they neither queue
	// again nor drain (order.go).
	if ordered && drainingOf(ctx) == nil {
		admitted, err := d.admit(ctx, msg)
		if err != nil {
			log.Warn("ordering gate unavailable; delivery postponed", "error", err)
			return store.Delivery{}, retryBatch
		}
		if !admitted {
			st.Status, st.Reason, st.UpdatedAt, st.NextAttemptAt = store.DeliveryHeld, reasonQueued, d.now().UTC(), time.Time{}
			return st, write
		}
		defer func() {
			if finalStatus(ret.Status) && res == write {
				d.drain(bg, log, msg)
			}
		}()
	}
	// later schedules the next attempt; an ordered delivery first becomes
	// its key's blocker, so later deliveries of the key queue behind it.
	later := func(n int, wait time.Duration, status, reason string) (store.Delivery, result) {
		st.Reason = reason
		if ordered {
			if err := d.block(bg, msg); err != nil {
				log.Warn("ordering gate unavailable; delivery postponed", "error", err)
				return store.Delivery{}, retryBatch
			}
		}
		return d.schedule(ctx, log, msg, st, n, wait, status)
	}
	if d.cfg.Flags.Current().PartnerPaused(sub.PartnerID) {
		// Paused by an operator: held, looked at again every few seconds.
		// (Run's first attempts wait in the stream instead: stream.runChain;
		// this is a retry's, a Lambda batch's, or one that met the pause
		// between the two looks.)
		hold := pausedRecheck
		if prev := state.Status; state.Found && prev.Status == store.DeliveryHeld && prev.Reason == reasonPaused {
			hold = min(max(2*prev.NextAttemptAt.Sub(prev.UpdatedAt), pausedRecheck), maxPausedRecheck)
		}
		log.Debug("delivery held", "reason", "partner paused")
		return later(n, hold, store.DeliveryHeld, reasonPaused)
	}
	policy, err := d.cfg.Retry.With(sub.Retry)
	if err != nil {
		log.Warn("subscription retry policy unreadable; using the default", "error", err)
	}
	req, err := d.prepared(ctx, sub)
	switch {
	case errors.Is(err, secret.ErrNotFound) || errors.Is(err, errUnsupported) || errors.Is(err, errBadCredential) ||
		errors.Is(err, signature.ErrBadSecret) || errors.Is(err, ssrf.ErrRefused):
		// No attempt can succeed until someone fixes the configuration.
		log.Error("delivery refused before sending", "error", err)
		st.Attempts = append(st.Attempts, store.Attempt{N: n, At: d.now().UTC(), URL: sub.URL, Error: err.Error()})
		st = d.deadLetter(bg, log, msg, st, err.Error())
		return done(store.DeliveryDeadLettered, err.Error())
	case err != nil:
		log.Warn("secrets unavailable; delivery postponed", "error", err)
		return store.Delivery{}, retryBatch
	}

	allow := d.breaker.Allow
	if n > 1 {
		allow = d.breaker.AllowRetry // probes are first attempts' to make, where there are some
	}
	if ok, retryAt := allow(sub.PartnerID); !ok {
		if from != nil {
			d.pause(sub.PartnerID, from.Topic, retryAt)
		}
		log.Debug("delivery held", "reason", "circuit breaker open")
		return later(n, max(retryAt.Sub(d.now()), 0), store.DeliveryHeld, reasonBreaker)
	}
	if n > 1 && d.atBound(sub.PartnerID) {
		// A retry does not add to a partner that has pushed back lately
		// and has its bound in flight (its first attempts are held to it
		// by Run and batch): it waits a second or two in the retry tiers,
		// its attempt not spent, and the partner's capacity goes to what
		// it is already sent. Without this, the retries of a partner that
		// refuses what passes its limit came due on top of the bound and
		// were refused again. A partner that has not pushed back gets its
		// retries at once, bound or not: they are its oldest deliveries,
		// and held behind the first attempts of a backlog they arrived
		// last (whp bench --outage: 1.5 s after the rest). Asked after the
		// breaker, so that a delivery held while it is open says so.
		d.breaker.Release(sub.PartnerID)
		log.Debug("delivery held", "reason", "partner at its bound in flight")
		return later(n, paceHold(), store.DeliveryHeld, reasonPace)
	}
	// A token taken for it already: by Run before it started, or by the
	// pass that held it for the limit until its token was due (limits.go).
	if !hasToken(ctx) && !(state.Found && state.Status.Status == store.DeliveryHeld && state.Status.Reason == reasonRateLimit) {
		if wait := d.limits.reserve(sub, d.share(sub), d.now()); wait > maxInlineWait {
			d.breaker.Release(sub.PartnerID)
			log.Debug("delivery held", "reason", "partner rate limit")
			return later(n, wait, store.DeliveryHeld, reasonRateLimit)
		} else if wait > 0 {
			time.Sleep(wait)
		}
	}

	a, out, retryAfter := d.attempt(ctx, req, msg, n)
	st.Attempts = append(st.Attempts, a)
	d.cfg.Metrics.Attempt(ctx, sub.PartnerID, [...]string{success: telemetry.AttemptSuccess, retryable: telemetry.AttemptRetryable, final: telemetry.AttemptFinal}[out], time.Duration(a.Latency))
	// Only outcomes that speak of the partner's health count: success,
	// failures worth retrying (5xx, 408, timeouts, refusals), and 429s as
	// push-backs. A 429 is not a failure: a partner that answers it is up
	// and asking for less, which its pace gives it (pace.go) and its
	// Retry-After schedules; counted as a failure, a partner that takes 4
	// at once would have its breaker opened by the first 16 sent to it,
	// and nothing delivered to it for the cool-down (TestPace). Only 429s
	// to everything, for a second, open it (breaker.PushBack). The
	// Retry-After of the answer that opens the breaker sets when it
	// probes (TestRetryAfterSetsCoolDown, TestBreakerProbesWhenAsked).
	switch {
	case out == success:
		d.breaker.Record(sub.PartnerID, breaker.Success, 0)
	case out == retryable && a.StatusCode == http.StatusTooManyRequests:
		d.breaker.Record(sub.PartnerID, breaker.PushBack, retryAfter)
	case out == retryable:
		d.breaker.Record(sub.PartnerID, breaker.Failure, retryAfter)
	default:
		d.breaker.Release(sub.PartnerID)
	}
	switch out {
	case success:
		d.delivered(bg, log, msg)
		d.count(bg, log, msg.SubscriptionID, store.Counts{Delivered: 1})
		// At debug, as ingest's "accepted": what a delivery made is
		// recorded in its status (the console's, the API's), and the log at
		// info keeps to what needs attention — failures, retries, dead
		// letters, breakers. An info line per delivery is a log of ≈ 1.5
		// MB/s at 5,000 deliveries a second, paid for again by the log
		// pipeline.
		log.LogAttrs(ctx, slog.LevelDebug, "delivered", slog.Int("status_code", a.StatusCode), slog.Int64("latency_ms", time.Duration(a.Latency).Milliseconds()))
		return done(store.DeliveryDelivered, "")
	case final:
		reason := fmt.Sprintf("final failure: %s", describeAttempt(a))
		if a.StatusCode == http.StatusGone {
			reason = "the partner answered 410 Gone: the subscription is disabled"
			d.disable(bg, log, sub.ID, fmt.Sprintf("the partner answered 410 Gone to delivery %s at %s; approve the subscription again to resume", msg.ID, a.At.Format(time.RFC3339)))
		}
		log.Warn("delivery failed for good", "status_code", a.StatusCode, "error", a.Error)
		st = d.deadLetter(bg, log, msg, st, reason)
		return done(store.DeliveryDeadLettered, reason)
	}
	wait, ok := policy.Next(n+1, msg.AcceptedAt, d.now(), retryAfter)
	if !ok {
		reason := fmt.Sprintf("attempts exhausted after %d (last: %s)", n, describeAttempt(a))
		st = d.deadLetter(bg, log, msg, st, reason)
		d.cfg.Ops.Publish(opevents.AttemptExhausted, opData(msg, reason, n))
		return done(store.DeliveryDeadLettered, reason)
	}
	if n == d.cfg.FailingAfter {
		d.cfg.Ops.Publish(opevents.AttemptFailing, opData(msg, describeAttempt(a), n))
	}
	log.Info("attempt failed; retry scheduled", "status_code", a.StatusCode, "error", a.Error, "retry_in", wait.Round(time.Millisecond).String())
	return later(n+1, wait, store.DeliveryRetrying, "")
}

// The reasons a delivery is held, as its status records them.
const (
	reasonPaused    = flags.PausedReason
	reasonBreaker   = "its partner's circuit breaker is open"
	reasonRateLimit = "its partner's rate limit"
	reasonPace      = "its partner has as many deliveries in flight as its answers allow"
	reasonQueued    = "queued behind an earlier delivery of its key (ordered)"
)

// schedule hands attempt n to the retry tiers, due after wait, with the
// delivery's status. The status is written first: the next pass then reads
// this one's history, and no later write of this pass can overwrite what
// the next one records.
func (d *Dispatcher) schedule(ctx context.Context, log *slog.Logger, msg envelope.Delivery, st store.Delivery, n int, wait time.Duration, status string) (store.Delivery, result) {
	bg := context.WithoutCancel(ctx)
	due := d.now().Add(wait)
	st.Status, st.UpdatedAt, st.NextAttemptAt = status, d.now().UTC(), due.UTC()
	if err := d.st.PutDeliveries(bg, []store.Delivery{st}); err != nil {
		log.Error("writing the delivery status failed; the delivery will be attempted again", "error", err)
		return store.Delivery{}, retryBatch
	}
	rec := retry.NewRecord(topic.Retry(msg.Event), []byte(msg.ID), msg.JSON(), due, n, d.now())
	rec.Context = ctx // the retry carries the delivery's trace
	if err := d.retryProd.ProduceSync(bg, rec).FirstErr(); err != nil {
		// Not scheduled: the record is attempted again from where it came.
		log.Error("scheduling the next attempt failed; the delivery will be attempted again", "error", err)
		return store.Delivery{}, retryBatch
	}
	return st, skip
}

// opData is what an operational event says of a delivery: ids and the
// last outcome, never its body or headers.
func opData(msg envelope.Delivery, last string, attempts int) map[string]any {
	return map[string]any{"event_id": msg.EventID, "delivery_id": msg.ID, "subscription_id": msg.SubscriptionID,
		"partner_id": msg.PartnerID, "attempts": attempts, "last": last}
}

func describeAttempt(a store.Attempt) string {
	if a.StatusCode != 0 {
		return fmt.Sprintf("HTTP %d", a.StatusCode)
	}
	return a.Error
}

// disable marks a subscription Disabled, saying why.
func (d *Dispatcher) disable(ctx context.Context, log *slog.Logger, id, reason string) {
	if p, ok := ctx.Value(memoKey{}).(*memo); ok {
		// Once written, the rest of the batch reads it again and sees it
		// disabled.
		defer func() {
			p.mu.Lock()
			delete(p.subs, id)
			p.mu.Unlock()
		}()
	}
	for range 3 {
		sub, err := d.st.GetSubscription(ctx, id)
		if err != nil || sub.Status == store.SubscriptionDisabled {
			return
		}
		now := d.now().UTC()
		sub.Status, sub.Reason, sub.DecidedBy, sub.DecidedAt, sub.UpdatedAt = store.SubscriptionDisabled, reason, "whp dispatcher", now, now
		if _, err := d.st.PutSubscription(ctx, sub); err == nil {
			d.cfg.Ops.Publish(opevents.SubscriptionDisabled, map[string]any{"subscription_id": id, "partner_id": sub.PartnerID, "reason": reason})
			return
		} else if !errors.Is(err, store.ErrConflict) {
			log.Error("disabling the subscription failed", "subscription_id", id, "error", err)
			return
		}
	}
}

// errUnsupported marks a subscription setting this dispatcher cannot
// serve; errBadCredential a credential that cannot be used as it is.
var (
	errUnsupported   = errors.New("not supported")
	errBadCredential = errors.New("unusable credential")
)

// request is what every attempt of a delivery shares.
type request struct {
	url        string
	signer     *signature.Signer
	authHeader string
	token      oauth2.TokenSource // oauth2: a bearer token per attempt
	client     *http.Client       // mtls: a client with the certificate; nil: the shared one
	// header is every attempt's headers, made once: the static ones, and
	// the Standard Webhooks three with their values left to each attempt.
	// An attempt sends a clone (two allocations, where setting each
	// header was one or two apiece). recorded is header as an attempt
	// records it (redact), the three left to each attempt.
	header   http.Header
	recorded map[string]string
}

// The Standard Webhooks headers as http.Header keys them.
var (
	headerID        = http.CanonicalHeaderKey(signature.HeaderID)
	headerTimestamp = http.CanonicalHeaderKey(signature.HeaderTimestamp)
	headerSignature = http.CanonicalHeaderKey(signature.HeaderSignature)
)

func (d *Dispatcher) prepare(ctx context.Context, sub store.Subscription) (request, error) {
	if err := d.cfg.Guard.CheckURL(sub.URL); err != nil {
		return request{}, err
	}
	secrets, err := d.secrets.Secrets(ctx, sub.SigningSecretRef)
	if err != nil {
		return request{}, fmt.Errorf("signing secret %s: %w", sub.SigningSecretRef, err)
	}
	signer, err := signature.NewSigner(secrets...)
	if err != nil {
		return request{}, fmt.Errorf("signing secret %s: %w", sub.SigningSecretRef, err)
	}
	req := request{url: sub.URL, signer: signer, header: http.Header{"Content-Type": {"application/json"}, "User-Agent": {d.cfg.UserAgent},
		headerID: {""}, headerTimestamp: {""}, headerSignature: {""}}}
	switch sub.AuthKind {
	case "", "none":
	case "header", "oauth2", "mtls":
		vals, err := d.secrets.Secrets(ctx, sub.AuthSecretRef)
		if err != nil {
			return request{}, fmt.Errorf("auth secret %s: %w", sub.AuthSecretRef, err)
		}
		current := vals[len(vals)-1]
		switch sub.AuthKind {
		case "header":
			req.authHeader = sub.AuthHeader
			req.header.Set(sub.AuthHeader, current)
		case "oauth2":
			if err := d.cfg.Guard.CheckURL(sub.AuthTokenURL); err != nil {
				return request{}, fmt.Errorf("oauth2 token URL: %w", err)
			}
			req.token = d.creds.tokenSource(sub, current, d.http)
		case "mtls":
			if req.client, err = d.creds.mtlsClient(current, d.http, d.cfg.TLS); err != nil {
				return request{}, fmt.Errorf("auth secret %s: %w", sub.AuthSecretRef, err)
			}
		}
	default:
		return request{}, fmt.Errorf("auth kind %q: %w by this dispatcher yet", sub.AuthKind, errUnsupported)
	}
	req.recorded = redact(req.header, req.authHeader)
	return req, nil
}

// attempt POSTs once and returns the attempt, its outcome and the
// partner's Retry-After (0 if none).
func (d *Dispatcher) attempt(ctx context.Context, req request, msg envelope.Delivery, n int) (store.Attempt, outcome, time.Duration) {
	start := d.now()
	a := store.Attempt{N: n, At: start.UTC(), URL: req.url}
	// An attempt that has started is finished even during shutdown (the
	// client timeout bounds it): abandoning a POST the partner may already
	// have processed would turn a clean stop into a duplicate delivery.
	hr, err := http.NewRequestWithContext(telemetry.Detached(ctx), http.MethodPost, req.url, bytes.NewReader(msg.Body))
	if err != nil {
		a.Error = "invalid URL: " + err.Error()
		return a, final, 0
	}
	hr.Header = req.header.Clone()
	id, ts, sig := req.signer.Values(msg.ID, start, msg.Body)
	hr.Header[headerID][0], hr.Header[headerTimestamp][0], hr.Header[headerSignature][0] = id, ts, sig
	if req.token != nil {
		tok, err := req.token.Token()
		if err != nil {
			a.Error, a.Latency = tokenError(err), store.Duration(d.now().Sub(start))
			return a, retryable, 0
		}
		hr.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	}
	a.RequestHeaders = maps.Clone(req.recorded)
	a.RequestHeaders[signature.HeaderID], a.RequestHeaders[signature.HeaderTimestamp], a.RequestHeaders[signature.HeaderSignature] = id, ts, sig
	if req.token != nil {
		a.RequestHeaders["authorization"] = redacted
	}
	client := d.http
	if req.client != nil {
		client = req.client
	}
	// The partner's URL is not an attribute: its query may hold a token.
	_, span := d.cfg.Tracing.Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("http.request.method", http.MethodPost), attribute.String("server.address", hr.URL.Hostname()),
		attribute.String("whp.partner_id", msg.PartnerID), attribute.String("whp.delivery_id", msg.ID), attribute.Int("whp.attempt", n)))
	defer span.End()
	pc, inFlight, sent := d.pace(msg.PartnerID), 0, time.Now()
	if pc != nil {
		inFlight = pc.begin()
	}
	resp, err := client.Do(hr)
	a.Latency = store.Duration(d.now().Sub(start))
	if pc != nil {
		pc.end(sent, time.Now(), inFlight, answerOf(resp, err), d.partnerCeiling(msg.PartnerID))
	}
	if err != nil {
		a.Error = describe(err)
		span.SetStatus(codes.Error, a.Error)
		if errors.Is(err, ssrf.ErrRefused) {
			return a, final, 0
		}
		return a, retryable, 0
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, int64(d.cfg.ExcerptBytes)))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	a.StatusCode = resp.StatusCode
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if classify(resp.StatusCode) != success {
		span.SetStatus(codes.Error, resp.Status)
	}
	a.ResponseExcerpt = strings.ToValidUTF8(string(excerpt), "�")
	return a, classify(resp.StatusCode), retry.ParseRetryAfter(resp.Header.Get("Retry-After"), d.now())
}

// redacted stands for a credential in the headers an attempt records.
const redacted = "[redacted]"

// redact copies the headers sent, hiding credentials.
func redact(h http.Header, authHeader string) map[string]string {
	out := make(map[string]string, len(h))
	for k := range h {
		v := h.Get(k)
		if authHeader != "" && strings.EqualFold(k, authHeader) || strings.EqualFold(k, "Authorization") {
			v = redacted
		}
		out[strings.ToLower(k)] = v
	}
	return out
}

// describe explains a transport error without internal detail.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, ssrf.ErrRefused):
		// The guard's own sentence, without the transport's wrapping.
		msg := err.Error()
		return msg[strings.Index(msg, ssrf.ErrRefused.Error()):]
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

// deadLetter writes msg's record to the dead-letter queue and returns st
// locating it there (Topic, Partition, Offset): a redrive of the delivery
// by its event and delivery ids reads that record alone, not the queue
// (runtime/dlq). st is returned as it was if the write failed.
func (d *Dispatcher) deadLetter(ctx context.Context, log *slog.Logger, msg envelope.Delivery, st store.Delivery, reason string) store.Delivery {
	rec := envelope.DeadLetter{Delivery: msg, Reason: reason, Attempts: len(st.Attempts), FailedAt: d.now().UTC()}
	if n := len(st.Attempts); n > 0 {
		rec.LastAttempt = &st.Attempts[n-1]
	}
	value, err := json.Marshal(rec)
	if err == nil {
		var r *kgo.Record
		r, err = d.cl.ProduceSync(ctx, &kgo.Record{Topic: topic.DLQ(msg.Event), Key: []byte(msg.ID), Value: value, Context: ctx}).First()
		if err == nil {
			st.Topic, st.Partition, st.Offset = r.Topic, r.Partition, r.Offset
		}
	}
	if err != nil {
		log.Error("dead-letter write failed", "error", err)
	}
	d.count(ctx, log, msg.SubscriptionID, store.Counts{Failed: 1})
	log.Warn("dead-lettered", "reason", reason, "attempts", len(st.Attempts))
	return st
}
