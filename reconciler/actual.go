package reconciler

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/whp-dev/whp/store"
)

// TopicState is a topic as a cluster has it.
type TopicState struct {
	Name       string
	Cluster    string
	Partitions int32
	Configs    map[string]string
}

// Actual is the running platform's state, as far as the reconciler owns it.
type Actual struct {
	Schemas       map[string]store.Schema
	Subscriptions map[string]store.Subscription
	Topics        map[string]TopicState // every wh.* topic of both clusters
}

// managedPrefix marks the topics the reconciler may manage.
const managedPrefix = "wh."

// ReadActual reads the store's items and both clusters' wh.* topics with
// the configs the reconciler owns.
func (a *Applier) ReadActual(ctx context.Context) (Actual, error) {
	act := Actual{Schemas: map[string]store.Schema{}, Subscriptions: map[string]store.Subscription{}, Topics: map[string]TopicState{}}
	schemas, err := a.Store.ListSchemas(ctx)
	if err != nil {
		return act, fmt.Errorf("list schemas: %w", err)
	}
	for _, s := range schemas {
		act.Schemas[s.ID] = s
	}
	subs, err := a.Store.ListSubscriptions(ctx)
	if err != nil {
		return act, fmt.Errorf("list subscriptions: %w", err)
	}
	for _, s := range subs {
		act.Subscriptions[s.ID] = s
	}
	for _, cl := range []struct {
		name string
		cl   *kgo.Client
	}{{ClusterIngress, a.Ingress}, {ClusterEgress, a.Egress}} {
		if err := readTopics(ctx, cl.cl, cl.name, act.Topics); err != nil {
			return act, fmt.Errorf("%s cluster: %w", cl.name, err)
		}
	}
	return act, nil
}

// readTopics lists topics with a direct Metadata request: kadm's listing
// comes from kgo's metadata cache, which may be seconds old, and a topic
// created a moment ago would be planned again.
func readTopics(ctx context.Context, cl *kgo.Client, cluster string, into map[string]TopicState) error {
	req := kmsg.NewPtrMetadataRequest()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var names []string
	for _, t := range resp.Topics {
		if t.Topic == nil || t.ErrorCode != 0 || t.IsInternal || !strings.HasPrefix(*t.Topic, managedPrefix) {
			continue
		}
		names = append(names, *t.Topic)
		into[*t.Topic] = TopicState{Name: *t.Topic, Cluster: cluster, Partitions: int32(len(t.Partitions)), Configs: map[string]string{}}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	configs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return fmt.Errorf("describe topic configs: %w", err)
	}
	for _, rc := range configs {
		if rc.Err != nil {
			return fmt.Errorf("describe configs of %s: %w", rc.Name, rc.Err)
		}
		t := into[rc.Name]
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" && c.Value != nil {
				t.Configs[c.Key] = *c.Value
			}
		}
		into[rc.Name] = t
	}
	return nil
}
