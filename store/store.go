// Package store defines the platform's state: the five tables of DESIGN.md
// (event_schema, partner_event_subscription, event_subscription_kafka,
// event_delivery_status, idempotency_ledger) as Go types and the Store
// interface every backend implements — the embedded store for `whp dev`
// and tests, DynamoDB in production. Each backend must pass the
// conformance suite in package storetest.
//
// The interface only uses what DynamoDB does well: single-item conditional
// writes (no transactions), atomic counters, and queries on a key or a GSI.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

var (
	// ErrNotFound is returned when no item has the key.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict is returned when a conditional write loses: the item
	// exists where it must not, or changed since it was read.
	ErrConflict = errors.New("store: conflicting write")
	// ErrInvalidCursor is returned for a Page.Cursor that no page of the
	// same query gave: the caller's bad input, not the store's failure.
	ErrInvalidCursor = errors.New("store: invalid cursor")
)

// Table names, without the environment prefix.
const (
	TableEventSchema              = "event_schema"
	TablePartnerEventSubscription = "partner_event_subscription"
	TableEventSubscriptionKafka   = "event_subscription_kafka"
	TableEventDeliveryStatus      = "event_delivery_status"
	TableIdempotencyLedger        = "idempotency_ledger"
)

// TableName is the physical name of a table: webhooks-{env}-{table}.
func TableName(env, table string) string { return "webhooks-" + env + "-" + table }

// Schema is an item of event_schema, keyed by PRODUCER_DOMAIN#EVENT_NAME#VERSION.
type Schema struct {
	ID                string `json:"id"`
	Domain            string `json:"domain"`
	Event             string `json:"event"`
	Version           string `json:"version"`
	Status            string `json:"status"` // ACTIVE or INACTIVE (status-index)
	ContainsSensitive bool   `json:"contains_sensitive"`
	Description       string `json:"description,omitempty"`
	Owner             string `json:"owner,omitempty"`
	Compatibility     string `json:"compatibility,omitempty"`
	JSONSchema        []byte `json:"json_schema"`
	// SensitivePaths are data fields dropped from deliveries unless a
	// subscription allows them.
	SensitivePaths []string  `json:"sensitive_paths,omitempty"`
	CUESource      string    `json:"cue_source"`
	Revision       string    `json:"revision"` // catalog revision that last wrote it
	UpdatedAt      time.Time `json:"updated_at"`
}

// Subscription statuses.
const (
	SubscriptionPending   = "Pending"
	SubscriptionApproved  = "Approved"
	SubscriptionRejected  = "Rejected"
	SubscriptionCancelled = "Cancelled"
	// SubscriptionDisabled: deliveries stopped by the platform (the
	// partner answered 410 Gone); Reason says why. Approving resumes it.
	SubscriptionDisabled = "Disabled"
)

// Subscription is an item of partner_event_subscription, keyed by
// PARTNER_ID#EVENT_SCHEMA_ID. It carries the partner's delivery settings so
// the dispatcher needs one read per subscription.
type Subscription struct {
	ID            string `json:"id"`
	PartnerID     string `json:"partner_id"`
	SchemaID      string `json:"schema_id"`
	Name          string `json:"name"` // its key in the catalog
	URL           string `json:"url"`
	AuthKind      string `json:"auth_kind"`
	AuthHeader    string `json:"auth_header,omitempty"`
	AuthSecretRef string `json:"auth_secret_ref,omitempty"`
	// AuthTokenURL, AuthClientID and AuthScopes configure oauth2 auth.
	AuthTokenURL     string   `json:"auth_token_url,omitempty"`
	AuthClientID     string   `json:"auth_client_id,omitempty"`
	AuthScopes       []string `json:"auth_scopes,omitempty"`
	SigningSecretRef string   `json:"signing_secret_ref"`
	// Mode is unordered or ordered; Retry and Filter are the catalog's
	// retry policy override and filter, as JSON (nil when absent).
	Mode   string          `json:"mode,omitempty"`
	Retry  json.RawMessage `json:"retry,omitempty"`
	Filter json.RawMessage `json:"filter,omitempty"`
	// RateLimitPerSecond and RateLimitBurst are the partner's token bucket
	// (0: unlimited).
	RateLimitPerSecond float64 `json:"rate_limit_per_second,omitempty"`
	RateLimitBurst     int     `json:"rate_limit_burst,omitempty"`
	// MaxInFlight is the partner's bound on its deliveries in flight at
	// once, per dispatcher process (0: the dispatcher's default).
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Transform reshapes data for the partner (JSON, nil for none);
	// AllowSensitive lets the schema's sensitive fields through; the
	// metadata of the partner and of the subscription go with every
	// delivery.
	Transform       json.RawMessage   `json:"transform,omitempty"`
	AllowSensitive  bool              `json:"allow_sensitive,omitempty"`
	PartnerMetadata map[string]string `json:"partner_metadata,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	// ConfigHash digests what an approver approves (URL and auth); when it
	// changes the subscription goes back to Pending.
	ConfigHash string    `json:"config_hash"`
	Status     string    `json:"status"`
	DecidedBy  string    `json:"decided_by,omitempty"`
	DecidedAt  time.Time `json:"decided_at,omitzero"`
	Reason     string    `json:"reason,omitempty"`
	Revision   string    `json:"revision"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Rev is the item's write counter for optimistic concurrency: a put
	// succeeds only if the stored Rev equals it (0: the item must not exist),
	// and the stored item then has Rev+1.
	Rev int64 `json:"rev"`
}

// SubscriptionKafka is an item of event_subscription_kafka: where a
// subscription's records flow, and its delivery counters.
type SubscriptionKafka struct {
	SubscriptionID string `json:"subscription_id"`
	EgressTopic    string `json:"egress_topic"`
	RetryTopic     string `json:"retry_topic"`
	DLQTopic       string `json:"dlq_topic"`
	// Delivered, Failed and Filtered are updated only by AddCounts.
	Delivered int64     `json:"delivered"`
	Failed    int64     `json:"failed"`
	Filtered  int64     `json:"filtered"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Counts are increments of a subscription's counters.
type Counts struct {
	Delivered, Failed, Filtered int64
}

// Plus is c and o summed.
func (c Counts) Plus(o Counts) Counts {
	return Counts{Delivered: c.Delivered + o.Delivered, Failed: c.Failed + o.Failed, Filtered: c.Filtered + o.Filtered}
}

// Route says whether one subscription of the event's schema took it, and
// if not, why (a filter's reason, or the subscription's status).
type Route struct {
	SubscriptionID string `json:"subscription_id"`
	PartnerID      string `json:"partner_id"`
	Matched        bool   `json:"matched"`
	Reason         string `json:"reason,omitempty"`
}

// Event is the event item of event_delivery_status (partition key
// WEBHOOK_EVENT_UUID, sort key EVENT): what was accepted and where it lives
// in the ingress topic.
type Event struct {
	ID             string    `json:"id"`
	SchemaID       string    `json:"schema_id"`
	Key            string    `json:"key,omitempty"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	AcceptedAt     time.Time `json:"accepted_at"`
	Topic          string    `json:"topic"`
	Partition      int32     `json:"partition"`
	Offset         int64     `json:"offset"`
	// TraceID is the event's trace, from the producer's POST to the
	// partners' answers.
	TraceID string `json:"trace_id,omitempty"`
	// Data is the event's data; nil when its schema contains_sensitive.
	Data []byte `json:"data,omitempty"`
	// Routing is the decision for each subscription of the schema that
	// took the event, and for those that did not, up to a bound: every
	// one when the schema has few subscriptions, the ones the event was
	// addressed to when it has many (RoutingOmitted counts the rest).
	Routing []Route `json:"routing,omitempty"`
	// RoutingOmitted counts the subscriptions of the schema that did not
	// take the event and are not in Routing: those whose filter's key
	// names another value (another tenant's subscriptions), and refusals
	// past the bound (runtime/processor's routingListed).
	RoutingOmitted int       `json:"routing_omitted,omitempty"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"` // TTL
}

// Delivery statuses (DESIGN.md, public interface).
const (
	DeliveryPending      = "pending"
	DeliveryRetrying     = "retrying"
	DeliveryDelivered    = "delivered"
	DeliveryHeld         = "held"
	DeliveryDeadLettered = "dead_lettered"
	DeliveryCancelled    = "cancelled"
)

// DeliveryStatuses are the statuses above, in a delivery's order.
var DeliveryStatuses = []string{DeliveryPending, DeliveryRetrying, DeliveryHeld, DeliveryDelivered, DeliveryDeadLettered, DeliveryCancelled}

// DeliveryKey names a delivery's item: its event's ID and its own.
type DeliveryKey struct{ EventID, ID string }

// DeliveryState is what GetDeliveryState reads.
type DeliveryState struct {
	// Delivered: the ledger holds a live entry under the key asked for.
	Delivered bool
	// Status is the delivery's item; Found is false when there is none.
	Status Delivery
	Found  bool
}

// Delivery is a delivery item of event_delivery_status (partition key
// WEBHOOK_EVENT_UUID, sort key DELIVERY#id): one event to one subscription,
// with every attempt. GSIs give history by partner and by schema.
type Delivery struct {
	EventID        string `json:"event_id"`
	ID             string `json:"id"`
	SubscriptionID string `json:"subscription_id"`
	PartnerID      string `json:"partner_id"`
	SchemaID       string `json:"schema_id"`
	Status         string `json:"status"`
	// Reason says why the delivery is in its status, where that needs
	// saying: why it was dead-lettered or cancelled, or what holds it
	// (a paused partner, an open breaker, a rate limit, an earlier
	// delivery of its key). Empty once it is pending, retrying or
	// delivered: the attempts tell those.
	Reason string `json:"reason,omitempty"`
	// Replay is the id of the replay that made this delivery, if any.
	Replay        string    `json:"replay,omitempty"`
	Attempts      []Attempt `json:"attempts"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	// Topic, Partition and Offset locate the delivery's record: the
	// egress (or retry) record it was last attempted from, and once it
	// is dead-lettered its record in the dead-letter queue
	// (wh.dlq.{event}), which a redrive of it reads.
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // TTL
}

// Attempt is one POST to a partner.
type Attempt struct {
	N          int       `json:"n"`
	At         time.Time `json:"at"`
	URL        string    `json:"url"`
	StatusCode int       `json:"status_code,omitempty"`
	Latency    Duration  `json:"latency"`
	// Error explains a failure without a response (timeout, refused…).
	Error string `json:"error,omitempty"`
	// RequestHeaders are the headers sent, secrets redacted.
	RequestHeaders map[string]string `json:"request_headers,omitempty"`
	// ResponseExcerpt is the start of the response body, bounded.
	ResponseExcerpt string `json:"response_excerpt,omitempty"`
}

// Duration is a time.Duration that encodes as milliseconds in JSON.
type Duration time.Duration

// MarshalJSON encodes milliseconds with microsecond precision.
func (d Duration) MarshalJSON() ([]byte, error) {
	ms := float64(time.Duration(d).Microseconds()) / 1000
	return []byte(formatFloat(ms)), nil
}

// UnmarshalJSON decodes milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	ms, err := parseFloat(string(b))
	if err != nil {
		return err
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// Idempotency is an item of idempotency_ledger: a key seen within its TTL
// and what was answered for it. Expired items are treated as absent.
type Idempotency struct {
	Key       string    `json:"key"`
	Value     []byte    `json:"value"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"` // TTL
	// Rev counts writes, for PutIdempotencyIf.
	Rev int64 `json:"rev"`
}

// Decision is one entry of the approvals audit log: who approved or
// rejected which subscription, when, why, and what they reviewed.
type Decision struct {
	SubscriptionID string `json:"subscription_id"`
	PartnerID      string `json:"partner_id"`
	Status         string `json:"status"` // Approved or Rejected
	By             string `json:"by"`
	Reason         string `json:"reason,omitempty"`
	ConfigHash     string `json:"config_hash,omitempty"`
	// URL and AuthKind are the delivery settings decided on, so a later
	// review can show what changed since.
	URL      string    `json:"url,omitempty"`
	AuthKind string    `json:"auth_kind,omitempty"`
	At       time.Time `json:"at"`
}

// Page asks for one page of a query, newest first.
type Page struct {
	Limit  int    // at most this many items; 0 means 50
	Cursor string // from the previous page's Next; "" starts at the newest
	// Status, if set, keeps the deliveries in that status. The statuses
	// StatusIndexed names are read from an index of their own, so a page
	// holds up to Limit of them however rare they are in the history; any
	// other status filters a page of the history, which may then hold
	// fewer than Limit, or none, with Next set while there is more.
	Status string
	// Before, if set, starts the history at the deliveries created before
	// it, rather than at the newest (a Cursor, when set, goes on from where
	// its page ended instead).
	Before time.Time
}

// StatusIndexed reports whether the history keeps an index of the
// deliveries in status, by partner and by schema, for Page.Status to read.
//
// It indexes the statuses an operator searches for because something
// needs attention — retrying, held, dead-lettered, cancelled: rare beside
// the delivered ones, so found among millions only through an index of
// their own, and rarely written, so the index costs the hot path nothing.
// Delivered and pending deliveries, which every delivery passes through,
// are not indexed: the delivered are most of any page of history, and the
// pending the newest of it.
func StatusIndexed(status string) bool {
	switch status {
	case DeliveryRetrying, DeliveryHeld, DeliveryDeadLettered, DeliveryCancelled:
		return true
	}
	return false
}

// AttentionStatuses are the indexed statuses that need an operator now —
// retrying, held, dead-lettered (cancelled ones need none) — as the
// console and whp status count them by partner, in that order.
var AttentionStatuses = []string{DeliveryRetrying, DeliveryHeld, DeliveryDeadLettered}

// DeliveryPage is one page of delivery history.
type DeliveryPage struct {
	Deliveries []Delivery
	Next       string // "" when there is nothing more
}

// Store is the platform's state. All methods are safe for concurrent use.
type Store interface {
	// PutSchema creates or replaces a schema.
	PutSchema(ctx context.Context, s Schema) error
	GetSchema(ctx context.Context, id string) (Schema, error)
	// ListSchemas returns every schema, sorted by ID.
	ListSchemas(ctx context.Context) ([]Schema, error)
	// SchemasByStatus queries status-index, sorted by ID.
	SchemasByStatus(ctx context.Context, status string) ([]Schema, error)

	// PutSubscription writes s if the stored item's Rev equals s.Rev (or
	// s.Rev is 0 and none is stored); otherwise ErrConflict. It returns the
	// item as stored, with its new Rev.
	PutSubscription(ctx context.Context, s Subscription) (Subscription, error)
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	// ListSubscriptions returns every subscription, sorted by ID.
	ListSubscriptions(ctx context.Context) ([]Subscription, error)
	// SubscriptionsForSchema queries schema-index, sorted by ID. The
	// slice may be shared with other callers (the embedded store caches
	// it until a subscription is written): read it, do not modify it.
	SubscriptionsForSchema(ctx context.Context, schemaID string) ([]Subscription, error)

	// PutSubscriptionKafka writes topic metadata, keeping the counters.
	PutSubscriptionKafka(ctx context.Context, k SubscriptionKafka) error
	GetSubscriptionKafka(ctx context.Context, subscriptionID string) (SubscriptionKafka, error)
	// ListSubscriptionKafka returns every subscription's item, counters
	// included, sorted by subscription ID: one scan, where a Get each
	// was a round trip per subscription (the console's partner list).
	ListSubscriptionKafka(ctx context.Context) ([]SubscriptionKafka, error)
	// AddCounts adds to the counters atomically, creating the item if
	// needed.
	AddCounts(ctx context.Context, subscriptionID string, c Counts) error

	// CreateEvents writes each event that does not exist yet and leaves
	// existing ones untouched: the first record of an event wins.
	CreateEvents(ctx context.Context, es []Event) error
	GetEvent(ctx context.Context, id string) (Event, error)
	// CreateDeliveries writes each delivery that does not exist yet and
	// leaves existing ones untouched, so a replayed processor never resets
	// a delivery's progress.
	CreateDeliveries(ctx context.Context, ds []Delivery) error
	// PutDeliveries creates or replaces each delivery, in one batch.
	PutDeliveries(ctx context.Context, ds []Delivery) error
	GetDelivery(ctx context.Context, eventID, deliveryID string) (Delivery, error)
	// GetDeliveries reads many deliveries at once (one transaction on the
	// embedded store; on DynamoDB, BatchGetItem, 100 keys a request, some
	// at once): the i-th is keys[i]'s, with an empty ID if it has none.
	GetDeliveries(ctx context.Context, keys []DeliveryKey) ([]Delivery, error)
	// GetDeliveryState reads what a dispatcher needs before an attempt in
	// one round trip: whether the ledger holds a live ledgerKey, and the
	// delivery's status item.
	GetDeliveryState(ctx context.Context, ledgerKey, eventID, deliveryID string) (DeliveryState, error)
	// Deliveries returns an event's deliveries, sorted by ID.
	Deliveries(ctx context.Context, eventID string) ([]Delivery, error)
	// DeliveriesByPartner and DeliveriesBySchema page through history,
	// most recently created first (GSIs partner-index and schema-index):
	// an update does not move a delivery, so paging is stable while
	// deliveries are retried.
	DeliveriesByPartner(ctx context.Context, partnerID string, p Page) (DeliveryPage, error)
	DeliveriesBySchema(ctx context.Context, schemaID string, p Page) (DeliveryPage, error)
	// CountDeliveries counts the deliveries in status, one StatusIndexed
	// names (any other is an error), by partner: from the status index,
	// without reading a delivery — the console's count of dead letters
	// waiting, and which partners they are of. A partner with none is not
	// in the map.
	CountDeliveries(ctx context.Context, status string) (map[string]int, error)

	// CreateIdempotency writes rec unless a live (unexpired) item has its
	// key; then it returns that item and ErrConflict.
	CreateIdempotency(ctx context.Context, rec Idempotency) (Idempotency, error)
	// GetIdempotency returns a live item or ErrNotFound.
	GetIdempotency(ctx context.Context, key string) (Idempotency, error)
	PutIdempotency(ctx context.Context, rec Idempotency) error
	// PutLedger creates or replaces each record, in one batch (the
	// dispatcher's delivered-ledger entries of a finished batch).
	PutLedger(ctx context.Context, recs []Idempotency) error
	// PutIdempotencyIf writes rec if the stored item's Rev equals rec.Rev
	// (0: no live item), else ErrConflict; it returns the item as stored,
	// with its new Rev. The ordering gates of ordered subscriptions use it.
	//
	// The items in with are created or replaced before rec is: in the same
	// transaction where the store has them (the embedded store: with rec
	// in conflict, none is written), one after the other where not
	// (DynamoDB: with first, then rec; with rec in conflict they stay
	// written). Either way rec, once written, never names an item of with
	// not written yet: an ordering gate counts the queue's items so.
	PutIdempotencyIf(ctx context.Context, rec Idempotency, with ...Idempotency) (Idempotency, error)
	DeleteIdempotency(ctx context.Context, key string) error

	// AppendDecision adds to the approvals audit log; entries are never
	// changed or expired.
	AppendDecision(ctx context.Context, d Decision) error
	// Decisions returns the audit log, newest first, at most limit
	// entries (0: 100).
	Decisions(ctx context.Context, limit int) ([]Decision, error)

	Close() error
}
