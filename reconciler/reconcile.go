package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/reconciler/artifact"
	"github.com/whp-dev/whp/reconciler/source"
	"github.com/whp-dev/whp/runtime/opevents"
	"github.com/whp-dev/whp/runtime/telemetry"
)

// Source yields the catalog's current revision.
type Source interface {
	Fetch(ctx context.Context) (source.Artifact, error)
}

// StatusStore keeps the reconciler's status between runs.
type StatusStore interface {
	Load(ctx context.Context) (Status, error)
	Save(ctx context.Context, s Status) error
}

var (
	// ErrStalled means the revision is invalid: retrying it cannot help,
	// a new revision is needed. The last good revision keeps serving.
	ErrStalled = errors.New("reconciler: stalled on an invalid revision")
	// ErrTransient means fetching or applying failed in a way that a
	// retry may fix.
	ErrTransient = errors.New("reconciler: transient failure")
)

// Reconciler follows a source and applies each revision, Flux-style.
type Reconciler struct {
	Source  Source
	Applier *Applier
	Status  StatusStore
	// Interval between reconciles when nothing triggers one: a new
	// revision is picked up and drift repaired at least this often.
	Interval time.Duration
	// LoadOptions are passed to catalog.LoadFiles.
	LoadOptions []catalog.Option
	// Artifacts, when set, receives each schema version's JSON Schema
	// after every successful apply, with $id under ArtifactBaseURL.
	Artifacts       artifact.Store
	ArtifactBaseURL string
	// OnApplied runs after each successful apply (dev auto-approval,
	// registry refresh).
	OnApplied func(ctx context.Context, c *catalog.Catalog) error
	Log       *slog.Logger
	Now       func() time.Time
	// Metrics counts runs by result (nil: none).
	Metrics *telemetry.Metrics
	// Ops announces a stalled revision, once per revision (nil: the
	// status and the log only).
	Ops *opevents.Publisher

	trigger  chan struct{}
	initOnce sync.Once
	mu       sync.Mutex
	lastGood *catalog.Catalog
	goodRev  string
	// stalledRev is the invalid revision last announced.
	stalledRev string
}

func (r *Reconciler) init() {
	r.initOnce.Do(func() { r.trigger = make(chan struct{}, 1) })
}

// Trigger asks for a reconcile now (a push webhook, an operator).
func (r *Reconciler) Trigger() {
	r.init()
	select {
	case r.trigger <- struct{}{}:
	default: // one is already pending
	}
}

// Run reconciles at every interval and trigger until ctx ends. Transient
// failures are retried with exponential backoff (1 s up to the interval);
// an invalid revision waits for the next one.
func (r *Reconciler) Run(ctx context.Context) error {
	r.init()
	backoff := time.Second
	for {
		wait := r.Interval
		_, err := r.ReconcileOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrTransient):
			wait = min(backoff, r.Interval)
			backoff = min(backoff*2, r.Interval)
		default:
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.trigger:
			t.Stop()
		case <-t.C:
		}
	}
}

// announce publishes reconcile.stalled the first time a revision is found
// invalid.
func (r *Reconciler) announce(st Status, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if result != "invalid" {
		if result == "applied" {
			r.stalledRev = ""
		}
		return
	}
	if st.LastAttemptedRevision == r.stalledRev {
		return
	}
	r.stalledRev = st.LastAttemptedRevision
	problems := st.Problems
	if len(problems) > 5 {
		problems = append(problems[:5:5], fmt.Sprintf("… and %d more", len(st.Problems)-5))
	}
	r.Ops.Publish(opevents.ReconcileStalled, map[string]any{"revision": st.LastAttemptedRevision,
		"serving": st.LastAppliedRevision, "problems": problems})
}

// ReconcileOnce fetches, validates, plans and applies one revision. The
// status is written on every path. An invalid revision returns
// ErrStalled after repairing drift from the last good revision.
func (r *Reconciler) ReconcileOnce(ctx context.Context) (st Status, err error) {
	r.init()
	now := r.Now().UTC()
	st, err = r.Status.Load(ctx)
	if err != nil {
		return st, fmt.Errorf("%w: %v", ErrTransient, err)
	}
	st.ObservedAt = now
	st.set(ConditionReconciling, "True", ReasonProgressing, "fetching the catalog", now)
	defer func() {
		result := "applied"
		switch {
		case errors.Is(err, ErrStalled):
			result = "invalid"
		case err != nil:
			result = "failed"
		}
		r.Metrics.Reconcile(ctx, result)
		r.announce(st, result)
		st.remove(ConditionReconciling)
		if serr := r.Status.Save(context.WithoutCancel(ctx), st); serr != nil {
			r.Log.Error("saving reconciler status failed", "error", serr)
			if err == nil {
				err = fmt.Errorf("%w: save status: %v", ErrTransient, serr)
			}
		}
	}()

	art, err := r.Source.Fetch(ctx)
	if err != nil {
		st.LastError = err.Error()
		st.set(ConditionReady, "False", ReasonFetchFailed, "fetching the catalog failed: "+err.Error(), now)
		r.Log.Warn("catalog fetch failed; retrying", "error", err)
		return st, fmt.Errorf("%w: %v", ErrTransient, err)
	}
	st.LastAttemptedRevision = art.Revision
	// An unchanged revision is not compiled again (1,000 schemas take
	// seconds): the reconcile is then a drift check of the applied state.
	r.mu.Lock()
	cat := r.lastGood
	if r.goodRev != art.Revision {
		cat = nil
	}
	r.mu.Unlock()
	if cat == nil {
		if cat, err = catalog.LoadFiles(art.Revision, art.Files, r.LoadOptions...); err != nil {
			return r.stalled(ctx, &st, art.Revision, err, now)
		}
	}
	st.Problems = nil
	st.remove(ConditionStalled)
	res, err := r.Applier.Apply(ctx, cat, art.Revision)
	if err != nil {
		st.LastError = err.Error()
		st.set(ConditionReady, "False", ReasonApplyFailed, fmt.Sprintf("applying %s failed after %d of %d changes: %v", art.Revision, res.Applied, len(res.Plan.Changes), err), now)
		r.Log.Warn("apply failed; retrying", "revision", art.Revision, "error", err)
		return st, fmt.Errorf("%w: %v", ErrTransient, err)
	}
	if r.Artifacts != nil {
		written, err := artifact.Publish(ctx, r.Artifacts, cat, r.ArtifactBaseURL)
		if err != nil {
			st.LastError = err.Error()
			st.set(ConditionReady, "False", ReasonApplyFailed, "publishing schema artifacts failed: "+err.Error(), now)
			return st, fmt.Errorf("%w: %v", ErrTransient, err)
		}
		if len(written) > 0 {
			r.Log.Info("schema artifacts published", "count", len(written), "revision", art.Revision)
		}
	}
	if r.OnApplied != nil {
		if err := r.OnApplied(ctx, cat); err != nil {
			st.LastError = err.Error()
			st.set(ConditionReady, "False", ReasonApplyFailed, "after apply: "+err.Error(), now)
			return st, fmt.Errorf("%w: %v", ErrTransient, err)
		}
	}
	r.mu.Lock()
	r.lastGood, r.goodRev = cat, art.Revision
	r.mu.Unlock()
	if st.LastAppliedRevision != art.Revision || !res.Plan.Empty() {
		st.LastAppliedAt = now
		if !res.Plan.Empty() {
			st.LastChanges = summarize(res.Plan)
		}
		r.Log.Info("catalog revision applied", "revision", art.Revision, "changes", len(res.Plan.Changes))
	}
	st.LastAppliedRevision, st.LastError = art.Revision, ""
	st.Inventory = inventory(cat)
	msg := "applied revision " + art.Revision
	if !res.Plan.Empty() {
		msg += fmt.Sprintf(" (%d changes)", len(res.Plan.Changes))
	}
	st.set(ConditionReady, "True", ReasonSucceeded, msg, now)
	return st, nil
}

// stalled records an invalid revision and keeps the last good one applied.
func (r *Reconciler) stalled(ctx context.Context, st *Status, rev string, loadErr error, now time.Time) (Status, error) {
	var ps catalog.Problems
	if errors.As(loadErr, &ps) {
		st.Problems = make([]string, len(ps))
		for i, p := range ps {
			st.Problems[i] = p.String()
		}
	} else {
		st.Problems = []string{loadErr.Error()}
	}
	msg := fmt.Sprintf("revision %s is invalid (%d problems): %s", rev, len(st.Problems), st.Problems[0])
	st.set(ConditionStalled, "True", ReasonValidationFailed, msg, now)
	serving := "; nothing has been applied yet"
	r.mu.Lock()
	good, goodRev := r.lastGood, r.goodRev
	r.mu.Unlock()
	if st.LastAppliedRevision != "" {
		serving = "; still serving " + st.LastAppliedRevision
	}
	st.set(ConditionReady, "False", ReasonValidationFailed, msg+serving, now)
	r.Log.Error("catalog revision is invalid; keeping the last good one", "revision", rev, "problems", len(st.Problems), "first", st.Problems[0])
	if good != nil {
		// Drift repair goes on from the last good revision.
		if _, err := r.Applier.Apply(ctx, good, goodRev); err != nil {
			r.Log.Warn("drift repair of the last good revision failed", "revision", goodRev, "error", err)
		}
	}
	return *st, ErrStalled
}

func summarize(p Plan) []string {
	out := make([]string, 0, len(p.Changes))
	for _, c := range p.Changes {
		out = append(out, fmt.Sprintf("%s %s %s", c.Action, c.Kind, describe(c)))
	}
	return out
}

func inventory(c *catalog.Catalog) []string {
	d := Desire(c)
	var out []string
	for id := range d.Schemas {
		out = append(out, KindSchema+"/"+id)
	}
	for id := range d.Subscriptions {
		out = append(out, KindSubscription+"/"+id)
	}
	for name := range d.Topics {
		out = append(out, KindTopic+"/"+name)
	}
	sort.Strings(out)
	return out
}

// Render writes a status for people.
func (s Status) Render(w interface{ Write([]byte) (int, error) }) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("last applied revision:   %s\n", orDash(s.LastAppliedRevision))
	if !s.LastAppliedAt.IsZero() {
		p("last applied at:         %s\n", s.LastAppliedAt.Format(time.RFC3339))
	}
	p("last attempted revision: %s\n", orDash(s.LastAttemptedRevision))
	if !s.ObservedAt.IsZero() {
		p("observed at:             %s\n", s.ObservedAt.Format(time.RFC3339))
	}
	p("conditions:\n")
	for _, c := range s.Conditions {
		p("  %-11s %-5s %-24s %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	if s.LastError != "" {
		p("last error: %s\n", s.LastError)
	}
	if len(s.Problems) > 0 {
		p("problems of the last attempted revision:\n  %s\n", strings.Join(s.Problems, "\n  "))
	}
	if len(s.LastChanges) > 0 {
		p("last changes applied:\n  %s\n", strings.Join(s.LastChanges, "\n  "))
	}
	p("inventory: %d objects\n", len(s.Inventory))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
