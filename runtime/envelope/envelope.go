// Package envelope defines the records that travel through Kafka between
// the roles — the accepted event on ingress topics and the delivery on
// egress topics — and the delivery ID that makes re-publishing harmless.
package envelope

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/whp-dev/whp/store"
)

// Event is the value of an ingress record: an accepted, validated event.
type Event struct {
	ID             string          `json:"id"` // UUIDv7
	Domain         string          `json:"domain"`
	Event          string          `json:"event"`
	Version        string          `json:"version"`
	Key            string          `json:"key,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	AcceptedAt     time.Time       `json:"accepted_at"`
	Data           json.RawMessage `json:"data"`
}

// Delivery is the value of an egress record: one event for one
// subscription, with the exact body the partner receives.
type Delivery struct {
	ID             string `json:"id"`
	EventID        string `json:"event_id"`
	SubscriptionID string `json:"subscription_id"`
	PartnerID      string `json:"partner_id"`
	SchemaID       string `json:"schema_id"`
	Event          string `json:"event"` // event name, for retry and DLQ topics
	// Replay is the id of the replay this delivery belongs to, if any.
	Replay string `json:"replay,omitempty"`
	// Key is the event's partition key; ordered subscriptions deliver the
	// deliveries of one key one after the other.
	Key        string    `json:"key,omitempty"`
	AcceptedAt time.Time `json:"accepted_at"`
	CreatedAt  time.Time `json:"created_at"`
	// Body is the JSON POSTed to the partner and signed byte for byte.
	Body json.RawMessage `json:"body"`
	// Resume marks a retry record that is not an attempt: it carries an
	// ordered key's finished blocker, and drains the key's queue on
	// (runtime/dispatch, order.go).
	Resume bool `json:"resume,omitempty"`
	// Trace is the W3C traceparent of the delivery's own trace, kept with
	// a delivery that waits in an ordered key's queue (a store item, not
	// a Kafka record, whose headers carry it otherwise), so that the
	// drain makes it in its own trace.
	Trace string `json:"trace,omitempty"`
}

// DeadLetter is the value of a wh.dlq.{event} record: a delivery that
// failed for good, why, and its last attempt.
type DeadLetter struct {
	Delivery    Delivery       `json:"delivery"`
	Reason      string         `json:"reason"`
	LastAttempt *store.Attempt `json:"last_attempt,omitempty"`
	Attempts    int            `json:"attempts"`
	FailedAt    time.Time      `json:"failed_at"`
}

// Payload is the body a partner receives, in the Standard Webhooks shape
// (type, timestamp, data) plus the ids a receiver needs. Data is the
// producer's data, reshaped only by the subscription's transform; what
// whp adds (the partner's and subscription's metadata) goes beside it.
type Payload struct {
	ID           string          `json:"id"` // the event ID
	Type         string          `json:"type"`
	Domain       string          `json:"domain"`
	Version      string          `json:"version"`
	Timestamp    time.Time       `json:"timestamp"`
	Data         json.RawMessage `json:"data"`
	Partner      Party           `json:"partner"`
	Subscription Party           `json:"subscription"`
}

// Party names the partner or the subscription a delivery is for, with
// the metadata the catalog declares for it.
type Party struct {
	ID       string            `json:"id"`
	Name     string            `json:"name,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// deliveryNamespace scopes delivery IDs (a random, fixed UUID).
var deliveryNamespace = uuid.MustParse("5f0f5c1e-3d1c-4f55-9a8e-7c1c2e6b9b21")

// DeliveryID derives the delivery ID from the event and subscription
// (UUIDv5), so a processor that re-publishes after a crash produces the same
// ID and the dispatcher's ledger drops the duplicate.
func DeliveryID(eventID, subscriptionID string) string {
	return uuid.NewSHA1(deliveryNamespace, []byte(eventID+"\x00"+subscriptionID)).String()
}

// NewEventID returns a UUIDv7: time-ordered, so IDs sort by acceptance.
func NewEventID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}
