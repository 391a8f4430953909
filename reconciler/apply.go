// Package reconciler makes the running platform match a catalog revision:
// event_schema and partner_event_subscription items in the store, and the
// topics of both Kafka clusters. It works as Flux controllers do: compute
// a plan (desired minus actual), apply it, record the status; a second
// apply of the same revision finds an empty plan and writes nothing.
//
// Approvals are not the catalog's to give: a subscription new to the
// catalog starts Pending, keeps an approver's decision while its delivery
// settings stay the same, goes back to Pending when they change, and is
// Cancelled when it leaves the catalog.
package reconciler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Applier plans and applies catalogs. Fill every field but the optional ones.
type Applier struct {
	Store store.Store
	// Ingress and Egress are clients of the two clusters.
	Ingress *kgo.Client
	Egress  *kgo.Client
	// ReplicationFactor of topics it creates (0: the cluster's default).
	ReplicationFactor int16
	// PruneTopics deletes wh.* topics no longer in the catalog. Off by
	// default: deleting a topic deletes its records.
	PruneTopics bool
	// EgressPartitions is the partitions of each subscription's egress
	// topic (wh.egress.{partner}.{event}); 0: DefaultEgressPartitions. The
	// egress cluster's partitions grow with the subscriptions, so a
	// platform with thousands of partners sets it lower (docs/reconciler.md,
	// "Many partners"). Partitions only grow: raising it adds partitions
	// to every egress topic, lowering it changes only topics created after.
	EgressPartitions int32
	Log              *slog.Logger
	Now              func() time.Time
}

// Plan computes what applying c at revision would change.
func (a *Applier) Plan(ctx context.Context, c *catalog.Catalog, revision string) (Plan, error) {
	act, err := a.ReadActual(ctx)
	if err != nil {
		return Plan{Revision: revision}, err
	}
	return Compute(revision, desire(c, cmp.Or(a.EgressPartitions, DefaultEgressPartitions)), act, a.PruneTopics), nil
}

// Result is what one Apply did.
type Result struct {
	Plan    Plan
	Applied int // changes applied (all of the plan unless Err)
}

// applyConcurrency bounds the changes of one kind applied at once. One
// at a time, a catalog of 1,000 partners took 5 s to apply on the
// embedded store and Kafka (a store commit and a topic creation each, in
// turn) and would take minutes against DynamoDB and MSK, whose every call
// is a network round trip; the embedded store commits concurrent writes
// together, DynamoDB and Kafka's controller take them in parallel.
const applyConcurrency = 16

// Apply plans and applies c at revision: the plan's schemas, then its
// subscriptions, then its topics, each kind's changes applyConcurrency at
// a time. It stops at the first failing change (the changes in flight
// then finish); the next Apply plans what is left.
func (a *Applier) Apply(ctx context.Context, c *catalog.Catalog, revision string) (Result, error) {
	p, err := a.Plan(ctx, c, revision)
	res := Result{Plan: p}
	if err != nil {
		return res, err
	}
	var applied atomic.Int64
	for start := 0; start < len(p.Changes); {
		end := start + 1
		for end < len(p.Changes) && p.Changes[end].Kind == p.Changes[start].Kind {
			end++
		}
		// Not errgroup.WithContext: a change in flight when another fails
		// finishes (a subscription's two writes are not cut between them);
		// no change starts after.
		var g errgroup.Group
		var failed atomic.Bool
		g.SetLimit(applyConcurrency)
		for _, ch := range p.Changes[start:end] {
			g.Go(func() error {
				if failed.Load() {
					return nil
				}
				if err := a.execute(ctx, ch, revision); err != nil {
					failed.Store(true)
					return fmt.Errorf("%s %s %s: %w", ch.Action, ch.Kind, ch.ID, err)
				}
				applied.Add(1)
				a.Log.Info("applied", "kind", ch.Kind, "id", ch.ID, "action", string(ch.Action), "revision", revision)
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			res.Applied = int(applied.Load())
			return res, err
		}
		start = end
	}
	res.Applied = int(applied.Load())
	return res, nil
}

func (a *Applier) execute(ctx context.Context, ch Change, revision string) error {
	now := a.Now().UTC()
	switch ch.Kind {
	case KindSchema:
		s := *ch.schema
		s.Revision, s.UpdatedAt = revision, now
		return a.Store.PutSchema(ctx, s)
	case KindSubscription:
		s := *ch.sub
		s.Revision, s.UpdatedAt = revision, now
		// Its topics' row first: the plan compares subscriptions only, so
		// a row left unwritten after the subscription's would never be
		// planned again; written before it (keeping the counters), a
		// failure between the two leaves the subscription to plan again.
		if ch.Action != Cancel {
			_, event, _, _ := catalog.SplitSchemaID(s.SchemaID)
			if err := a.Store.PutSubscriptionKafka(ctx, store.SubscriptionKafka{
				SubscriptionID: s.ID, EgressTopic: topic.Egress(s.PartnerID, event),
				RetryTopic: topic.Retry(event), DLQTopic: topic.DLQ(event), UpdatedAt: now,
			}); err != nil {
				return err
			}
		}
		if _, err := a.Store.PutSubscription(ctx, s); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("changed while planning (an approval?); it is planned again at the next reconcile: %w", err)
			}
			return err
		}
		return nil
	case KindTopic:
		return a.topic(ctx, ch)
	}
	return fmt.Errorf("unknown kind %q", ch.Kind)
}

func (a *Applier) admin(cluster string) *kadm.Client {
	if cluster == ClusterIngress {
		return kadm.NewClient(a.Ingress)
	}
	return kadm.NewClient(a.Egress)
}

func (a *Applier) topic(ctx context.Context, ch Change) error {
	t := ch.topic
	adm := a.admin(t.Cluster)
	switch ch.Action {
	case Create:
		rf := a.ReplicationFactor
		if rf == 0 {
			rf = -1
		}
		configs := map[string]*string{}
		for k, v := range t.Configs {
			configs[k] = &v
		}
		resp, err := adm.CreateTopic(ctx, t.Partitions, rf, configs, t.Name)
		if err != nil {
			return err
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return resp.Err
		}
		return nil
	case AddPartitions:
		resp, err := adm.UpdatePartitions(ctx, int(t.Partitions), t.Name)
		if err != nil {
			return err
		}
		return resp.Error()
	case AlterConfig:
		var alters []kadm.AlterConfig
		for k, v := range t.Configs {
			alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
		}
		resp, err := adm.AlterTopicConfigs(ctx, alters, t.Name)
		if err != nil {
			return err
		}
		for _, r := range resp {
			if r.Err != nil {
				return r.Err
			}
		}
		return nil
	case DeleteTopic:
		resp, err := adm.DeleteTopic(ctx, t.Name)
		if err != nil {
			return err
		}
		return resp.Err
	}
	return fmt.Errorf("unknown topic action %q", ch.Action)
}

// Errors of Decide.
var (
	// ErrCancelled: the subscription left the catalog.
	ErrCancelled = errors.New("the subscription was removed from the catalog and cannot be decided on")
	// ErrChangedSinceReview: its delivery settings are not those reviewed.
	ErrChangedSinceReview = errors.New("the subscription's delivery settings changed since they were reviewed")
)

// SubscriptionStore is what Decide needs of the store.
type SubscriptionStore interface {
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	PutSubscription(ctx context.Context, s store.Subscription) (store.Subscription, error)
	AppendDecision(ctx context.Context, d store.Decision) error
}

// Decision is an approver's verdict on a subscription.
type Decision struct {
	SubscriptionID string
	Status         string // Approved or Rejected
	By, Reason     string
	// ConfigHash, when set, must be the subscription's current one: the
	// decision applies only to the delivery settings that were reviewed.
	ConfigHash string
	At         time.Time
}

// Decide records a decision, conditional on the subscription not changing
// between the read and the write (store.ErrConflict otherwise), and adds
// it to the audit log. The subscription is written first: a decision in
// the log is one that took effect. Should the log write fail after it, the
// subscription still names who decided, when and why, and the error says
// the log missed it.
func Decide(ctx context.Context, st SubscriptionStore, d Decision) (store.Subscription, error) {
	if d.Status != store.SubscriptionApproved && d.Status != store.SubscriptionRejected {
		return store.Subscription{}, fmt.Errorf("decide %s: status %q is not Approved or Rejected", d.SubscriptionID, d.Status)
	}
	sub, err := st.GetSubscription(ctx, d.SubscriptionID)
	if err != nil {
		return store.Subscription{}, err
	}
	switch {
	case sub.Status == store.SubscriptionCancelled:
		return store.Subscription{}, ErrCancelled
	case d.ConfigHash != "" && d.ConfigHash != sub.ConfigHash:
		return store.Subscription{}, ErrChangedSinceReview
	}
	at := d.At.UTC()
	sub.Status, sub.DecidedBy, sub.DecidedAt, sub.Reason, sub.UpdatedAt = d.Status, d.By, at, d.Reason, at
	saved, err := st.PutSubscription(ctx, sub)
	if err != nil {
		return store.Subscription{}, err
	}
	if err := st.AppendDecision(ctx, store.Decision{SubscriptionID: sub.ID, PartnerID: sub.PartnerID, Status: d.Status,
		By: d.By, Reason: d.Reason, ConfigHash: sub.ConfigHash, URL: sub.URL, AuthKind: sub.AuthKind, At: at}); err != nil {
		return saved, fmt.Errorf("decision on %s took effect, but the audit log missed it: %w", sub.ID, err)
	}
	return saved, nil
}
