// Package catalog loads the GitOps catalog — event schemas, partners and
// subscriptions written in CUE — checks it against schemas.cue, and compiles
// each event schema once into a JSON Schema validator for the ingest path.
//
// A catalog is a directory tree of .cue files of package whp. Load reads
// them all (skipping testdata and dot-directories) together with the
// definitions of schemas.cue, and reports every problem as file:line:col.
package catalog

import (
	"encoding/json"
	"sort"
	"strings"
)

// Schema statuses, as stored in event_schema.
const (
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
)

// Catalog is one loaded, valid revision of the catalog.
type Catalog struct {
	// Schemas, Partners and Subscriptions are sorted by ID.
	Schemas       []*Schema
	Partners      []*Partner
	Subscriptions []*Subscription
	// Digest identifies the catalog's content: "sha256:" over every file's
	// name and bytes. It is the revision when the catalog is not read from Git.
	Digest string

	schemas  map[string]*Schema
	partners map[string]*Partner
}

// Schema is one version of one event type.
type Schema struct {
	Domain            string
	Event             string
	Version           string
	Status            string
	ContainsSensitive bool
	Description       string
	Owner             string
	Compatibility     string // BACKWARD, FORWARD, FULL or NONE
	Topic             TopicConfig
	// JSONSchema is the JSON Schema 2020-12 document generated from the
	// CUE payload; it is what ingest validates against and what partners read.
	JSONSchema []byte
	// CUESource is the payload's CUE, formatted.
	CUESource string
	// SensitivePaths are the data paths of fields marked @sensitive(),
	// dotted ("card.last4"); a list's items share their field's path.
	SensitivePaths []string
	Pos            Pos

	validator *Validator
}

// TopicConfig is what a schema version asks of its ingress topic.
type TopicConfig struct {
	Partitions     int32 `json:"partitions"`
	RetentionHours int   `json:"retention_hours"`
}

// ID is the schema's key in event_schema: DOMAIN#EVENT#VERSION.
func (s *Schema) ID() string { return SchemaID(s.Domain, s.Event, s.Version) }

// Validator returns the compiled validator of the schema's payload.
func (s *Schema) Validator() *Validator { return s.validator }

// Partner receives webhooks.
type Partner struct {
	ID            string
	Name          string
	URL           string
	Auth          Auth
	SigningSecret string // a secret reference, never a value
	Contact       string
	Metadata      map[string]string
	RateLimit     *RateLimit
	// MaxInFlight bounds the partner's deliveries in flight at once, per
	// dispatcher process; 0: the dispatcher's default.
	MaxInFlight int
	Pos         Pos
}

// RateLimit caps deliveries to a partner: a token bucket of Burst tokens
// refilled at PerSecond.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst,omitempty"`
}

// Auth is how deliveries authenticate to the partner beyond the signature.
type Auth struct {
	Kind     string   // none, header, oauth2, mtls
	Header   string   // for kind header
	Secret   string   // a secret reference
	TokenURL string   // for kind oauth2
	ClientID string   // for kind oauth2
	Scopes   []string // for kind oauth2
}

// Subscription asks for one schema version to be delivered to one partner.
type Subscription struct {
	Name        string // the key it is declared under in the catalog
	PartnerID   string
	Domain      string
	Event       string
	Version     string
	Description string
	Mode        string // unordered or ordered
	Retry       *RetryPolicy
	// Filter is the filter expression as JSON, nil for none.
	Filter json.RawMessage
	// Transform reshapes data for the partner, as JSON; nil for none.
	Transform      json.RawMessage
	Metadata       map[string]string
	AllowSensitive bool
	Pos            Pos
}

// RetryPolicy overrides the default retry policy of a subscription.
type RetryPolicy struct {
	MaxAttempts int      `json:"max_attempts,omitempty"`
	MaxAge      string   `json:"max_age,omitempty"`
	Schedule    []string `json:"schedule,omitempty"`
}

// SchemaID is the schema the subscription is for.
func (s *Subscription) SchemaID() string { return SchemaID(s.Domain, s.Event, s.Version) }

// ID is the subscription's key in partner_event_subscription:
// PARTNER_ID#EVENT_SCHEMA_ID.
func (s *Subscription) ID() string { return SubscriptionID(s.PartnerID, s.SchemaID()) }

// SchemaID builds the event_schema key PRODUCER_DOMAIN#EVENT_NAME#VERSION.
func SchemaID(domain, event, version string) string {
	return domain + "#" + event + "#" + version
}

// SubscriptionID builds the partner_event_subscription key
// PARTNER_ID#EVENT_SCHEMA_ID.
func SubscriptionID(partnerID, schemaID string) string {
	return partnerID + "#" + schemaID
}

// SplitSchemaID is the inverse of SchemaID.
func SplitSchemaID(id string) (domain, event, version string, ok bool) {
	parts := strings.Split(id, "#")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Schema returns the schema with the given ID, or nil.
func (c *Catalog) Schema(id string) *Schema { return c.schemas[id] }

// Partner returns the partner with the given ID, or nil.
func (c *Catalog) Partner(id string) *Partner { return c.partners[id] }

func (c *Catalog) index() {
	sort.Slice(c.Schemas, func(i, j int) bool { return c.Schemas[i].ID() < c.Schemas[j].ID() })
	sort.Slice(c.Partners, func(i, j int) bool { return c.Partners[i].ID < c.Partners[j].ID })
	sort.Slice(c.Subscriptions, func(i, j int) bool { return c.Subscriptions[i].ID() < c.Subscriptions[j].ID() })
	c.schemas = make(map[string]*Schema, len(c.Schemas))
	for _, s := range c.Schemas {
		c.schemas[s.ID()] = s
	}
	c.partners = make(map[string]*Partner, len(c.Partners))
	for _, p := range c.Partners {
		c.partners[p.ID] = p
	}
}
