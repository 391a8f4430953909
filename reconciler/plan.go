package reconciler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/store"
)

// Action is what a change does.
type Action string

// Actions of a plan.
const (
	Create        Action = "create"
	Update        Action = "update"
	Deactivate    Action = "deactivate"     // a schema removed from the catalog
	Reactivate    Action = "reactivate"     // an INACTIVE schema back in the catalog
	ResetApproval Action = "reset"          // delivery settings changed: back to Pending
	Cancel        Action = "cancel"         // a subscription removed from the catalog
	AddPartitions Action = "add-partitions" // partitions only grow
	AlterConfig   Action = "alter-config"
	DeleteTopic   Action = "delete" // only with topic pruning on
)

// Kinds of object a plan changes.
const (
	KindSchema       = "schema"
	KindSubscription = "subscription"
	KindTopic        = "topic"
)

// Change is one item of a plan.
type Change struct {
	Kind   string
	ID     string
	Action Action
	// Details are the field changes, "field: old → new".
	Details []string

	schema *store.Schema
	sub    *store.Subscription
	topic  *TopicSpec
}

// Plan is what applying a catalog revision would change. It is data:
// Apply executes exactly the plan that --dry-run prints.
type Plan struct {
	Revision string
	Changes  []Change
	// Kept lists wh.* topics no longer in the catalog that stay because
	// topic pruning is off.
	Kept []string
}

// Empty reports whether applying would change nothing.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Compute plans the changes that make actual match desired. prune allows
// deleting wh.* topics the catalog no longer has.
func Compute(revision string, d Desired, act Actual, prune bool) Plan {
	p := Plan{Revision: revision}
	p.schemas(d, act)
	p.subscriptions(d, act)
	p.topics(d, act, prune)
	order := map[string]int{KindSchema: 0, KindSubscription: 1, KindTopic: 2}
	sort.SliceStable(p.Changes, func(i, j int) bool {
		a, b := p.Changes[i], p.Changes[j]
		if a.Kind != b.Kind {
			return order[a.Kind] < order[b.Kind]
		}
		return a.ID < b.ID
	})
	sort.Strings(p.Kept)
	return p
}

func (p *Plan) schemas(d Desired, act Actual) {
	for id, want := range d.Schemas {
		have, ok := act.Schemas[id]
		if !ok {
			w := want
			p.Changes = append(p.Changes, Change{Kind: KindSchema, ID: id, Action: Create, schema: &w,
				Details: []string{"status: " + want.Status}})
			continue
		}
		details := schemaDiff(have, want)
		if len(details) == 0 {
			continue
		}
		action := Update
		if have.Status == catalog.StatusInactive && want.Status == catalog.StatusActive {
			action = Reactivate
		}
		w := want
		p.Changes = append(p.Changes, Change{Kind: KindSchema, ID: id, Action: action, Details: details, schema: &w})
	}
	for id, have := range act.Schemas {
		if _, ok := d.Schemas[id]; ok || have.Status == catalog.StatusInactive {
			continue
		}
		h := have
		h.Status = catalog.StatusInactive
		p.Changes = append(p.Changes, Change{Kind: KindSchema, ID: id, Action: Deactivate, schema: &h,
			Details: []string{"status: ACTIVE → INACTIVE (removed from the catalog)"}})
	}
}

// fieldDiff collects "field: old → new" lines.
type fieldDiff []string

func (d *fieldDiff) str(name, old, new string) {
	if old != new {
		*d = append(*d, fmt.Sprintf("%s: %q → %q", name, old, new))
	}
}

func schemaDiff(have, want store.Schema) []string {
	var d fieldDiff
	str := d.str
	str("status", have.Status, want.Status)
	str("description", have.Description, want.Description)
	str("owner", have.Owner, want.Owner)
	str("compatibility", have.Compatibility, want.Compatibility)
	str("sensitive fields", strings.Join(have.SensitivePaths, ","), strings.Join(want.SensitivePaths, ","))
	if have.ContainsSensitive != want.ContainsSensitive {
		d = append(d, fmt.Sprintf("contains_sensitive: %v → %v", have.ContainsSensitive, want.ContainsSensitive))
	}
	if !bytes.Equal(have.JSONSchema, want.JSONSchema) || have.CUESource != want.CUESource {
		d = append(d, "payload schema changed")
	}
	return d
}

func (p *Plan) subscriptions(d Desired, act Actual) {
	for id, want := range d.Subscriptions {
		have, ok := act.Subscriptions[id]
		switch {
		case !ok:
			w := want
			w.Status = store.SubscriptionPending
			p.Changes = append(p.Changes, Change{Kind: KindSubscription, ID: id, Action: Create, sub: &w,
				Details: []string{"status: Pending (waits for an approver)", "url: " + want.URL}})
		case have.Status == store.SubscriptionCancelled:
			w := want
			w.Status, w.Rev = store.SubscriptionPending, have.Rev
			p.Changes = append(p.Changes, Change{Kind: KindSubscription, ID: id, Action: ResetApproval, sub: &w,
				Details: []string{"status: Cancelled → Pending (back in the catalog)"}})
		default:
			details := subscriptionDiff(have, want)
			if len(details) == 0 {
				continue
			}
			w := want
			w.Rev = have.Rev
			action := Update
			if have.ConfigHash != want.ConfigHash {
				action = ResetApproval
				if have.Status != store.SubscriptionPending {
					details = append(details, fmt.Sprintf("status: %s → Pending (delivery settings changed)", have.Status))
				}
				w.Status = store.SubscriptionPending
			} else {
				w.Status, w.DecidedBy, w.DecidedAt, w.Reason = have.Status, have.DecidedBy, have.DecidedAt, have.Reason
			}
			p.Changes = append(p.Changes, Change{Kind: KindSubscription, ID: id, Action: action, Details: details, sub: &w})
		}
	}
	for id, have := range act.Subscriptions {
		if _, ok := d.Subscriptions[id]; ok || have.Status == store.SubscriptionCancelled {
			continue
		}
		h := have
		h.Status, h.Reason = store.SubscriptionCancelled, "removed from the catalog"
		p.Changes = append(p.Changes, Change{Kind: KindSubscription, ID: id, Action: Cancel, sub: &h,
			Details: []string{fmt.Sprintf("status: %s → Cancelled (removed from the catalog)", have.Status)}})
	}
}

func subscriptionDiff(have, want store.Subscription) []string {
	var d fieldDiff
	str := d.str
	str("name", have.Name, want.Name)
	str("url", have.URL, want.URL)
	str("auth", have.AuthKind, want.AuthKind)
	str("auth header", have.AuthHeader, want.AuthHeader)
	str("auth secret", have.AuthSecretRef, want.AuthSecretRef)
	str("auth token url", have.AuthTokenURL, want.AuthTokenURL)
	str("auth client id", have.AuthClientID, want.AuthClientID)
	str("auth scopes", strings.Join(have.AuthScopes, " "), strings.Join(want.AuthScopes, " "))
	str("signing secret", have.SigningSecretRef, want.SigningSecretRef)
	str("mode", have.Mode, want.Mode)
	str("retry", string(have.Retry), string(want.Retry))
	if !jsonEqual(have.Transform, want.Transform) {
		d = append(d, fmt.Sprintf("transform: %s → %s", orNone(have.Transform), orNone(want.Transform)))
	}
	if have.AllowSensitive != want.AllowSensitive {
		d = append(d, fmt.Sprintf("allow_sensitive: %v → %v", have.AllowSensitive, want.AllowSensitive))
	}
	str("metadata", fmt.Sprint(have.Metadata), fmt.Sprint(want.Metadata))
	str("partner metadata", fmt.Sprint(have.PartnerMetadata), fmt.Sprint(want.PartnerMetadata))
	if !jsonEqual(have.Filter, want.Filter) {
		d = append(d, fmt.Sprintf("filter: %s → %s", orNone(have.Filter), orNone(want.Filter)))
	}
	if have.RateLimitPerSecond != want.RateLimitPerSecond || have.RateLimitBurst != want.RateLimitBurst {
		d = append(d, fmt.Sprintf("rate limit: %s → %s", rateText(have), rateText(want)))
	}
	if have.MaxInFlight != want.MaxInFlight {
		d = append(d, fmt.Sprintf("max in flight: %s → %s", inFlightText(have.MaxInFlight), inFlightText(want.MaxInFlight)))
	}
	return d
}

func inFlightText(n int) string {
	if n == 0 {
		return "the dispatcher's default"
	}
	return strconv.Itoa(n)
}

func rateText(s store.Subscription) string {
	switch {
	case s.RateLimitPerSecond == 0:
		return "none"
	case s.RateLimitBurst == 0:
		return fmt.Sprintf("%v/s", s.RateLimitPerSecond)
	default:
		return fmt.Sprintf("%v/s (burst %d)", s.RateLimitPerSecond, s.RateLimitBurst)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func orNone(b json.RawMessage) string {
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

func (p *Plan) topics(d Desired, act Actual, prune bool) {
	for name, want := range d.Topics {
		have, ok := act.Topics[name]
		w := want
		if !ok || have.Cluster != want.Cluster {
			p.Changes = append(p.Changes, Change{Kind: KindTopic, ID: name, Action: Create, topic: &w,
				Details: []string{fmt.Sprintf("cluster %s, %d partitions, retention.ms %s", want.Cluster, want.Partitions, want.Configs["retention.ms"])}})
			continue
		}
		if want.Partitions > have.Partitions {
			p.Changes = append(p.Changes, Change{Kind: KindTopic, ID: name, Action: AddPartitions, topic: &w,
				Details: []string{fmt.Sprintf("partitions: %d → %d", have.Partitions, want.Partitions)}})
		}
		var details []string
		for _, k := range slices.Sorted(maps.Keys(want.Configs)) {
			if have.Configs[k] != want.Configs[k] {
				details = append(details, fmt.Sprintf("%s: %s → %s", k, orDefault(have.Configs[k]), want.Configs[k]))
			}
		}
		if len(details) > 0 {
			p.Changes = append(p.Changes, Change{Kind: KindTopic, ID: name, Action: AlterConfig, Details: details, topic: &w})
		}
	}
	for name, have := range act.Topics {
		if _, ok := d.Topics[name]; ok {
			continue
		}
		if prune {
			h := TopicSpec{Name: name, Cluster: have.Cluster}
			p.Changes = append(p.Changes, Change{Kind: KindTopic, ID: name, Action: DeleteTopic, topic: &h,
				Details: []string{"no longer in the catalog (topic pruning is on): its records are deleted"}})
		} else {
			p.Kept = append(p.Kept, name)
		}
	}
}

func orDefault(s string) string {
	if s == "" {
		return "(cluster default)"
	}
	return s
}

var symbols = map[Action]string{
	Create: "+", Update: "~", Reactivate: "~", ResetApproval: "~", AddPartitions: "~", AlterConfig: "~",
	Deactivate: "-", Cancel: "-", DeleteTopic: "-",
}

// Render writes the plan for people, like a terraform plan: one line per
// change with its symbol (+ create, ~ change, - deactivate/cancel/delete),
// the field changes under it, and a summary. The order is stable, so the
// output can be pasted into a review.
func (p Plan) Render(w io.Writer) {
	fmt.Fprintf(w, "Plan for catalog revision %s\n\n", p.Revision)
	if p.Empty() {
		fmt.Fprintln(w, "  No changes: the platform matches the catalog.")
	}
	counts := map[string]int{}
	for _, c := range p.Changes {
		fmt.Fprintf(w, "  %s %-12s %s (%s)\n", symbols[c.Action], c.Kind, describe(c), c.Action)
		for _, d := range c.Details {
			fmt.Fprintf(w, "        %s\n", d)
		}
		switch symbols[c.Action] {
		case "+":
			counts["create"]++
		case "~":
			counts["change"]++
		default:
			counts["remove"]++
		}
	}
	for _, k := range p.Kept {
		fmt.Fprintf(w, "  # topic %s is no longer in the catalog; kept (topic pruning is off)\n", k)
	}
	fmt.Fprintf(w, "\nPlan: %d to create, %d to change, %d to deactivate, cancel or delete.\n", counts["create"], counts["change"], counts["remove"])
}

// describe names an object for people: orders/order.created v2,
// acme → orders/order.created v2, or the topic name.
func describe(c Change) string {
	switch c.Kind {
	case KindSchema:
		if d, e, v, ok := catalog.SplitSchemaID(c.ID); ok {
			return fmt.Sprintf("%s/%s v%s", d, e, v)
		}
	case KindSubscription:
		if partner, schema, ok := strings.Cut(c.ID, "#"); ok {
			if d, e, v, ok := catalog.SplitSchemaID(schema); ok {
				return fmt.Sprintf("%s → %s/%s v%s", partner, d, e, v)
			}
		}
	}
	return c.ID
}
