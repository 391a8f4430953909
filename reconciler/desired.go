package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Clusters the reconciler manages topics on.
const (
	ClusterIngress = "ingress"
	ClusterEgress  = "egress"
)

// Topic settings for the topics the catalog does not configure. Retention
// follows the platform plan: egress a week, retries 14 days (longer than
// the longest retry schedule), dead letters 30 days.
const (
	DefaultEgressPartitions = 3
	EgressRetention         = 7 * 24 * time.Hour
	RetryRetention          = 14 * 24 * time.Hour
	DLQRetention            = 30 * 24 * time.Hour
)

// TopicSpec is a topic as the catalog wants it.
type TopicSpec struct {
	Name       string
	Cluster    string
	Partitions int32
	// Configs holds the topic configs the reconciler owns (retention.ms).
	Configs map[string]string
}

// Desired is the state a catalog asks for.
type Desired struct {
	Schemas       map[string]store.Schema
	Subscriptions map[string]store.Subscription // config only: no status or decision
	Topics        map[string]TopicSpec
}

func retentionMS(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Desire computes what c asks for.
func Desire(c *catalog.Catalog) Desired { return desire(c, DefaultEgressPartitions) }

// desire is Desire with egressPartitions for each subscription's egress
// topic (Applier.EgressPartitions).
func desire(c *catalog.Catalog, egressPartitions int32) Desired {
	d := Desired{Schemas: map[string]store.Schema{}, Subscriptions: map[string]store.Subscription{}, Topics: map[string]TopicSpec{}}
	for _, s := range c.Schemas {
		d.Schemas[s.ID()] = store.Schema{
			ID: s.ID(), Domain: s.Domain, Event: s.Event, Version: s.Version, Status: s.Status,
			ContainsSensitive: s.ContainsSensitive, Description: s.Description, Owner: s.Owner,
			Compatibility: s.Compatibility, JSONSchema: s.JSONSchema, CUESource: s.CUESource, SensitivePaths: s.SensitivePaths,
		}
		// All versions share the ingress topic: the largest settings win.
		name := topic.Ingress(s.Domain, s.Event)
		t, ok := d.Topics[name]
		if !ok {
			t = TopicSpec{Name: name, Cluster: ClusterIngress, Configs: map[string]string{}}
		}
		t.Partitions = max(t.Partitions, s.Topic.Partitions)
		ret := time.Duration(s.Topic.RetentionHours) * time.Hour
		if old, _ := strconv.ParseInt(t.Configs["retention.ms"], 10, 64); ret.Milliseconds() > old {
			t.Configs["retention.ms"] = retentionMS(ret)
		}
		d.Topics[name] = t
	}
	for _, cs := range c.Subscriptions {
		p := c.Partner(cs.PartnerID)
		sub := store.Subscription{
			ID: cs.ID(), PartnerID: cs.PartnerID, SchemaID: cs.SchemaID(), Name: cs.Name,
			URL: p.URL, AuthKind: p.Auth.Kind, AuthHeader: p.Auth.Header, AuthSecretRef: p.Auth.Secret,
			AuthTokenURL: p.Auth.TokenURL, AuthClientID: p.Auth.ClientID, AuthScopes: p.Auth.Scopes,
			SigningSecretRef: p.SigningSecret, MaxInFlight: p.MaxInFlight, Mode: cs.Mode, Filter: cs.Filter, ConfigHash: ConfigHash(p, cs.AllowSensitive),
			Transform: cs.Transform, AllowSensitive: cs.AllowSensitive, PartnerMetadata: p.Metadata, Metadata: cs.Metadata,
		}
		if cs.Retry != nil {
			sub.Retry, _ = json.Marshal(cs.Retry)
		}
		if p.RateLimit != nil {
			sub.RateLimitPerSecond, sub.RateLimitBurst = p.RateLimit.PerSecond, p.RateLimit.Burst
		}
		d.Subscriptions[sub.ID] = sub
		for _, t := range []TopicSpec{
			{Name: topic.Egress(cs.PartnerID, cs.Event), Configs: map[string]string{"retention.ms": retentionMS(EgressRetention)}},
			{Name: topic.Retry(cs.Event), Configs: map[string]string{"retention.ms": retentionMS(RetryRetention)}},
			{Name: topic.DLQ(cs.Event), Configs: map[string]string{"retention.ms": retentionMS(DLQRetention)}},
		} {
			t.Cluster, t.Partitions = ClusterEgress, DefaultEgressPartitions
			switch t.Name {
			case topic.Egress(cs.PartnerID, cs.Event):
				t.Partitions = egressPartitions
			case topic.Retry(cs.Event):
				t.Partitions = retry.Tiers // one partition per delay tier
			}
			d.Topics[t.Name] = t
		}
	}
	return d
}

// ConfigHash digests the delivery settings an approver approves: where the
// webhooks go, how whp authenticates to it, and whether sensitive fields
// go too. When it changes, the subscription goes back to Pending.
func ConfigHash(p *catalog.Partner, allowSensitive bool) string {
	h := sha256.New()
	fields := []string{p.URL, p.Auth.Kind, p.Auth.Header, p.Auth.Secret, p.SigningSecret}
	if p.Auth.Kind == "oauth2" {
		// Appended only when used, so the hash of every other partner —
		// and with it every approval — is what it was before oauth2.
		fields = append(append(fields, p.Auth.TokenURL, p.Auth.ClientID), p.Auth.Scopes...)
	}
	if allowSensitive {
		fields = append(fields, "allow_sensitive") // appended only when set, as above
	}
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
