// Package reconciler makes the running platform match a catalog revision:
// event_schema and partner_event_subscription items in the store, and the
// topics of both Kafka clusters. Applying is idempotent: a second Apply of
// the same revision writes nothing.
//
// Approvals are not the catalog's to give: a subscription new to the
// catalog starts Pending, keeps an approver's decision while its delivery
// settings stay the same, goes back to Pending when they change, and is
// Cancelled when it leaves the catalog.
package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Applier applies catalogs. Its zero value is not usable; fill every field.
type Applier struct {
	Store   store.Store
	Ingress *kadm.Client
	Egress  *kadm.Client
	// Partitions of topics it creates (default 3) and their replication
	// factor (-1: the cluster's default).
	Partitions        int32
	ReplicationFactor int16
	Log               *slog.Logger
	Now               func() time.Time
}

// Result counts what one Apply changed.
type Result struct {
	TopicsCreated        []string
	SchemasWritten       int
	SchemasDeactivated   int
	SubscriptionsWritten int
	SubscriptionsPending int // sent (back) to Pending by this apply
	SubscriptionsCancel  int
}

// Changed reports whether the apply wrote anything.
func (r Result) Changed() bool {
	return len(r.TopicsCreated)+r.SchemasWritten+r.SchemasDeactivated+r.SubscriptionsWritten+r.SubscriptionsCancel > 0
}

// Apply makes the store and both clusters match c at revision.
func (a *Applier) Apply(ctx context.Context, c *catalog.Catalog, revision string) (Result, error) {
	var r Result
	if err := a.topics(ctx, c, &r); err != nil {
		return r, err
	}
	if err := a.schemas(ctx, c, revision, &r); err != nil {
		return r, err
	}
	if err := a.subscriptions(ctx, c, revision, &r); err != nil {
		return r, err
	}
	return r, nil
}

// Topics lists the topics a catalog needs on each cluster, sorted.
func Topics(c *catalog.Catalog) (ingress, egress []string) {
	in, eg := map[string]bool{}, map[string]bool{}
	for _, s := range c.Schemas {
		in[topic.Ingress(s.Domain, s.Event)] = true
	}
	for _, s := range c.Subscriptions {
		eg[topic.Egress(s.PartnerID, s.Event)] = true
		eg[topic.Retry(s.Event)] = true
		eg[topic.DLQ(s.Event)] = true
	}
	return sorted(in), sorted(eg)
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (a *Applier) topics(ctx context.Context, c *catalog.Catalog, r *Result) error {
	in, eg := Topics(c)
	for _, x := range []struct {
		name   string
		adm    *kadm.Client
		topics []string
	}{{"ingress", a.Ingress, in}, {"egress", a.Egress, eg}} {
		created, err := a.ensureTopics(ctx, x.adm, x.topics)
		if err != nil {
			return fmt.Errorf("%s cluster: %w", x.name, err)
		}
		r.TopicsCreated = append(r.TopicsCreated, created...)
	}
	return nil
}

func (a *Applier) ensureTopics(ctx context.Context, adm *kadm.Client, want []string) ([]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	have, err := adm.ListTopics(ctx, want...)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var missing []string
	for _, t := range want {
		if d, ok := have[t]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	parts := a.Partitions
	if parts == 0 {
		parts = 3
	}
	rf := a.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	resp, err := adm.CreateTopics(ctx, parts, rf, nil, missing...)
	if err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	var created []string
	for _, t := range missing {
		res := resp[t]
		switch {
		case res.Err == nil:
			created = append(created, t)
			a.Log.Info("topic created", "topic", t, "partitions", parts)
		case errors.Is(res.Err, kerr.TopicAlreadyExists):
		default:
			return created, fmt.Errorf("create topic %s: %w", t, res.Err)
		}
	}
	return created, nil
}

func (a *Applier) schemas(ctx context.Context, c *catalog.Catalog, revision string, r *Result) error {
	existing, err := a.Store.ListSchemas(ctx)
	if err != nil {
		return fmt.Errorf("list schemas: %w", err)
	}
	have := map[string]store.Schema{}
	for _, s := range existing {
		have[s.ID] = s
	}
	now := a.Now().UTC()
	for _, s := range c.Schemas {
		want := store.Schema{
			ID: s.ID(), Domain: s.Domain, Event: s.Event, Version: s.Version, Status: s.Status,
			ContainsSensitive: s.ContainsSensitive, Description: s.Description,
			JSONSchema: s.JSONSchema, CUESource: s.CUESource, Revision: revision, UpdatedAt: now,
		}
		if old, ok := have[want.ID]; ok && sameSchema(old, want) {
			continue
		}
		if err := a.Store.PutSchema(ctx, want); err != nil {
			return fmt.Errorf("put schema %s: %w", want.ID, err)
		}
		r.SchemasWritten++
	}
	for id, old := range have {
		if c.Schema(id) != nil || old.Status == catalog.StatusInactive {
			continue
		}
		old.Status, old.Revision, old.UpdatedAt = catalog.StatusInactive, revision, now
		if err := a.Store.PutSchema(ctx, old); err != nil {
			return fmt.Errorf("deactivate schema %s: %w", id, err)
		}
		a.Log.Info("schema deactivated: removed from the catalog", "schema_id", id, "revision", revision)
		r.SchemasDeactivated++
	}
	return nil
}

func sameSchema(a, b store.Schema) bool {
	return a.Status == b.Status && a.ContainsSensitive == b.ContainsSensitive && a.Description == b.Description &&
		string(a.JSONSchema) == string(b.JSONSchema) && a.CUESource == b.CUESource
}

// ConfigHash digests the delivery settings an approver approves.
func ConfigHash(p *catalog.Partner) string {
	h := sha256.New()
	for _, f := range []string{p.URL, p.Auth.Kind, p.Auth.Header, p.Auth.Secret, p.SigningSecret} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (a *Applier) subscriptions(ctx context.Context, c *catalog.Catalog, revision string, r *Result) error {
	existing, err := a.Store.ListSubscriptions(ctx)
	if err != nil {
		return fmt.Errorf("list subscriptions: %w", err)
	}
	have := map[string]store.Subscription{}
	for _, s := range existing {
		have[s.ID] = s
	}
	now := a.Now().UTC()
	inCatalog := map[string]bool{}
	for _, cs := range c.Subscriptions {
		p := c.Partner(cs.PartnerID)
		want := store.Subscription{
			ID: cs.ID(), PartnerID: cs.PartnerID, SchemaID: cs.SchemaID(), Name: cs.Name,
			URL: p.URL, AuthKind: p.Auth.Kind, AuthHeader: p.Auth.Header, AuthSecretRef: p.Auth.Secret,
			SigningSecretRef: p.SigningSecret, ConfigHash: ConfigHash(p), Revision: revision, UpdatedAt: now,
		}
		inCatalog[want.ID] = true
		old, ok := have[want.ID]
		switch {
		case !ok:
			want.Status = store.SubscriptionPending
			r.SubscriptionsPending++
			a.Log.Info("subscription pending approval", "subscription_id", want.ID, "revision", revision)
		case old.ConfigHash != want.ConfigHash || old.Status == store.SubscriptionCancelled:
			want.Status, want.Rev = store.SubscriptionPending, old.Rev
			r.SubscriptionsPending++
			a.Log.Info("subscription back to pending: delivery settings changed", "subscription_id", want.ID, "revision", revision)
		default:
			if old.URL == want.URL && old.Name == want.Name && old.AuthKind == want.AuthKind {
				continue // unchanged: keep the decision and write nothing
			}
			want.Status, want.DecidedBy, want.DecidedAt, want.Reason, want.Rev = old.Status, old.DecidedBy, old.DecidedAt, old.Reason, old.Rev
		}
		if _, err := a.Store.PutSubscription(ctx, want); err != nil {
			return fmt.Errorf("put subscription %s: %w", want.ID, err)
		}
		r.SubscriptionsWritten++
		err := a.Store.PutSubscriptionKafka(ctx, store.SubscriptionKafka{
			SubscriptionID: want.ID, EgressTopic: topic.Egress(cs.PartnerID, cs.Event),
			RetryTopic: topic.Retry(cs.Event), DLQTopic: topic.DLQ(cs.Event), UpdatedAt: now,
		})
		if err != nil {
			return fmt.Errorf("put subscription kafka %s: %w", want.ID, err)
		}
	}
	for id, old := range have {
		if inCatalog[id] || old.Status == store.SubscriptionCancelled {
			continue
		}
		old.Status, old.Revision, old.UpdatedAt = store.SubscriptionCancelled, revision, now
		old.Reason = "removed from the catalog"
		if _, err := a.Store.PutSubscription(ctx, old); err != nil {
			return fmt.Errorf("cancel subscription %s: %w", id, err)
		}
		a.Log.Info("subscription cancelled: removed from the catalog", "subscription_id", id, "revision", revision)
		r.SubscriptionsCancel++
	}
	return nil
}

// Decide records an approver's decision on a subscription, conditional on
// the subscription not having changed since it was read.
func Decide(ctx context.Context, st store.Store, id, status, by, reason string, now time.Time) (store.Subscription, error) {
	if status != store.SubscriptionApproved && status != store.SubscriptionRejected {
		return store.Subscription{}, fmt.Errorf("decide %s: status %q is not Approved or Rejected", id, status)
	}
	sub, err := st.GetSubscription(ctx, id)
	if err != nil {
		return store.Subscription{}, err
	}
	if sub.Status == store.SubscriptionCancelled {
		return store.Subscription{}, fmt.Errorf("decide %s: subscription is cancelled", id)
	}
	sub.Status, sub.DecidedBy, sub.DecidedAt, sub.Reason, sub.UpdatedAt = status, by, now.UTC(), reason, now.UTC()
	return st.PutSubscription(ctx, sub)
}
