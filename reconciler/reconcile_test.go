package reconciler

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/whp-dev/whp/internal/gittest"
	"github.com/whp-dev/whp/reconciler/artifact"
	"github.com/whp-dev/whp/reconciler/source"
	"github.com/whp-dev/whp/store"
)

const (
	gitSchemaV1 = `package whp
schemas: shop: "order.placed": "1": {owner: "team-shop", payload: {id: string, amount: number & >0}}
`
	gitSchemaV2 = `schemas: shop: "order.placed": "2": {owner: "team-shop", payload: {id: string, amount: number & >0, note?: string}}
`
	gitSchemaV3Breaking = `schemas: shop: "order.placed": "3": {owner: "team-shop", payload: {id: string, amount: number & >0, note?: string, channel: string}}
`
	gitPartner = `package whp
partners: acme: {name: "Acme", url: "https://acme.example/hook", signing_secret: "acme/signing", contact: "ops@acme.example"}
subscriptions: "acme.placed": {partner: "acme", domain: "shop", event: "order.placed", version: "1"}
`
)

func condition(t *testing.T, st Status, typ string) Condition {
	t.Helper()
	c, ok := st.Condition(typ)
	if !ok {
		t.Fatalf("no %s condition in %+v", typ, st.Conditions)
	}
	return c
}

// TestReconcileGitHistory follows a catalog repository through a sequence
// of commits: add a schema, add a compatible version, a breaking version
// is refused while the previous revision keeps serving (and its drift is
// repaired), a URL change sends the approved subscription back to Pending.
func TestReconcileGitHistory(t *testing.T) {
	ctx := context.Background()
	repo := gittest.New(t)
	repo.Write("README.md", "the catalog\n")
	repo.Write("catalog/shop.cue", gitSchemaV1).Write("catalog/partners.cue", gitPartner)
	c1 := repo.Commit("shop: order.placed v1, acme subscribes")

	a, st := newApplier(t)
	r := &Reconciler{
		Source:  source.Git{URL: repo.Dir, Branch: "main", Path: "catalog"},
		Applier: a, Status: StatusFile{Path: filepath.Join(t.TempDir(), "status.json")},
		Interval: time.Minute, Log: a.Log, Now: time.Now,
	}

	s, err := r.ReconcileOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "main@sha1:" + c1; s.LastAppliedRevision != want || condition(t, s, ConditionReady).Status != "True" {
		t.Fatalf("after c1: applied %q, ready %+v; want %s ready", s.LastAppliedRevision, s.Conditions, want)
	}
	if _, err := Decide(ctx, st, Decision{SubscriptionID: "acme#shop#order.placed#1", Status: store.SubscriptionApproved, By: "alice", Reason: "reviewed", At: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// Idempotent: the same revision again changes nothing.
	s, err = r.ReconcileOnce(ctx)
	if err != nil || !strings.HasSuffix(condition(t, s, ConditionReady).Message, c1) {
		t.Fatalf("second reconcile of c1: %v, %+v", err, s.Conditions)
	}

	// A compatible version 2.
	repo.Write("catalog/shop.cue", gitSchemaV1+gitSchemaV2)
	c2 := repo.Commit("shop: order.placed v2")
	if s, err = r.ReconcileOnce(ctx); err != nil || s.LastAppliedRevision != "main@sha1:"+c2 {
		t.Fatalf("after c2: %v, %s", err, s.LastAppliedRevision)
	}
	if _, err := st.GetSchema(ctx, "shop#order.placed#2"); err != nil {
		t.Errorf("v2 not in the store: %v", err)
	}

	// A breaking version 3: Stalled, v2's revision keeps serving, and its
	// drift (a deleted topic) is still repaired.
	repo.Write("catalog/shop.cue", gitSchemaV1+gitSchemaV2+gitSchemaV3Breaking)
	c3 := repo.Commit("shop: order.placed v3 (breaking)")
	if _, err := kadm.NewClient(a.Egress).DeleteTopic(ctx, "wh.egress.acme.order.placed"); err != nil {
		t.Fatal(err)
	}
	s, err = r.ReconcileOnce(ctx)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("breaking c3: err %v, want ErrStalled", err)
	}
	if c := condition(t, s, ConditionStalled); c.Status != "True" || c.Reason != ReasonValidationFailed {
		t.Errorf("stalled condition = %+v", c)
	}
	if c := condition(t, s, ConditionReady); c.Status != "False" || !strings.Contains(c.Message, "still serving main@sha1:"+c2) {
		t.Errorf("ready condition = %+v, want False naming the serving revision", c)
	}
	if s.LastAttemptedRevision != "main@sha1:"+c3 || s.LastAppliedRevision != "main@sha1:"+c2 {
		t.Errorf("revisions: attempted %s applied %s", s.LastAttemptedRevision, s.LastAppliedRevision)
	}
	if len(s.Problems) == 0 || !strings.Contains(s.Problems[0], "shop.cue:4") || !strings.Contains(s.Problems[0], "data/channel") {
		t.Errorf("problems = %q, want the breaking field with its place", s.Problems)
	}
	if _, err := st.GetSchema(ctx, "shop#order.placed#3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the invalid revision's v3 reached the store: %v", err)
	}
	act, _ := a.ReadActual(ctx)
	if _, ok := act.Topics["wh.egress.acme.order.placed"]; !ok {
		t.Error("drift of the last good revision was not repaired while stalled")
	}

	// The fix, with a new delivery URL: back to Pending.
	repo.Write("catalog/shop.cue", gitSchemaV1+gitSchemaV2)
	repo.Write("catalog/partners.cue", strings.Replace(gitPartner, "acme.example/hook", "acme.example/v2/hook", 1))
	c4 := repo.Commit("drop v3; acme moves its endpoint")
	s, err = r.ReconcileOnce(ctx)
	if err != nil || s.LastAppliedRevision != "main@sha1:"+c4 {
		t.Fatalf("after c4: %v, %s", err, s.LastAppliedRevision)
	}
	if _, ok := s.Condition(ConditionStalled); ok {
		t.Errorf("still stalled after a good revision: %+v", s.Conditions)
	}
	sub, _ := st.GetSubscription(ctx, "acme#shop#order.placed#1")
	if sub.Status != store.SubscriptionPending || sub.URL != "https://acme.example/v2/hook" {
		t.Errorf("after the URL change: %s %s, want Pending", sub.Status, sub.URL)
	}

	// The status survives: a new reconciler reads it back.
	again, err := r.Status.Load(ctx)
	if err != nil || again.LastAppliedRevision != s.LastAppliedRevision || len(again.Inventory) == 0 {
		t.Errorf("stored status = %+v, %v", again, err)
	}
	var b bytes.Buffer
	again.Render(&b)
	if !strings.Contains(b.String(), "last applied revision:   main@sha1:"+c4) {
		t.Errorf("rendered status:\n%s", b.String())
	}
}

// TestGitSourceRefs: a tag, a commit and a branch each pin the revision.
func TestGitSourceRefs(t *testing.T) {
	ctx := context.Background()
	repo := gittest.New(t)
	repo.Write("cat/shop.cue", gitSchemaV1)
	c1 := repo.Commit("v1")
	repo.Tag("release-1")
	repo.Write("cat/shop.cue", gitSchemaV1+gitSchemaV2)
	c2 := repo.Commit("v2")
	for _, tc := range []struct {
		src  source.Git
		rev  string
		want int // schema versions
	}{
		{source.Git{URL: repo.Dir, Tag: "release-1", Path: "cat"}, "release-1@sha1:" + c1, 1},
		{source.Git{URL: repo.Dir, Commit: c1, Path: "cat"}, c1 + "@sha1:" + c1, 1},
		{source.Git{URL: "file://" + repo.Dir, Branch: "main", Path: "/cat/"}, "main@sha1:" + c2, 2},
	} {
		art, err := tc.src.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if art.Revision != tc.rev || strings.Count(string(art.Files["shop.cue"]), "schemas:") != tc.want {
			t.Errorf("%+v: revision %s with %d schemas, want %s with %d", tc.src, art.Revision, strings.Count(string(art.Files["shop.cue"]), "schemas:"), tc.rev, tc.want)
		}
	}
	if _, err := (source.Git{URL: repo.Dir, Path: "nope"}).Fetch(ctx); !source.IsNotFound(err) {
		t.Errorf("missing sub-path: %v", err)
	}
}

// TestTrigger: a push webhook with a valid HMAC triggers a reconcile; an
// unsigned or wrongly signed one is refused.
func TestTrigger(t *testing.T) {
	r := &Reconciler{Status: StatusFile{Path: filepath.Join(t.TempDir(), "s.json")}}
	mux := http.NewServeMux()
	r.Register(mux, "hook-secret")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	body := []byte(`{"ref":"refs/heads/main"}`)
	for _, tc := range []struct {
		name, sig string
		want      int
	}{
		{"valid", Sign("hook-secret", body), http.StatusAccepted},
		{"wrong secret", Sign("other", body), http.StatusUnauthorized},
		{"unsigned", "", http.StatusUnauthorized},
		{"malformed", "sha256=zz", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/reconcile/trigger", bytes.NewReader(body))
		if tc.sig != "" {
			req.Header.Set(SignatureHeader, tc.sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	select {
	case <-r.trigger:
	default:
		t.Error("a valid webhook did not trigger a reconcile")
	}
	// Without a secret there is no trigger endpoint at all.
	bare := http.NewServeMux()
	(&Reconciler{Status: r.Status}).Register(bare, "")
	rec := httptest.NewRecorder()
	bare.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/reconcile/trigger", bytes.NewReader(body)))
	if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("trigger without a secret = %d, want it absent", rec.Code)
	}
}

type failingSource struct{ err error }

func (f failingSource) Fetch(context.Context) (source.Artifact, error) {
	return source.Artifact{}, f.err
}

// TestTransientFailure: a fetch failure is transient — Ready False with
// the reason, the previous revision still recorded as applied.
func TestTransientFailure(t *testing.T) {
	ctx := context.Background()
	a, _ := newApplier(t)
	status := StatusFile{Path: filepath.Join(t.TempDir(), "status.json")}
	if err := status.Save(ctx, Status{LastAppliedRevision: "main@sha1:abc"}); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Source: failingSource{errors.New("connection refused")}, Applier: a, Status: status, Interval: time.Minute, Log: a.Log, Now: time.Now}
	s, err := r.ReconcileOnce(ctx)
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("err = %v, want ErrTransient", err)
	}
	c := condition(t, s, ConditionReady)
	if c.Status != "False" || c.Reason != ReasonFetchFailed || !strings.Contains(c.Message, "connection refused") {
		t.Errorf("ready = %+v", c)
	}
	if s.LastAppliedRevision != "main@sha1:abc" {
		t.Errorf("applied revision lost: %q", s.LastAppliedRevision)
	}
	if _, ok := s.Condition(ConditionReconciling); ok {
		t.Error("Reconciling left set after the attempt")
	}
}

// TestPruneTopics: with pruning on, topics no longer in the catalog are
// deleted; with it off (the default) they stay.
func TestPruneTopics(t *testing.T) {
	ctx := context.Background()
	a, _ := newApplier(t)
	if _, err := a.Apply(ctx, load(t, base), "r1"); err != nil {
		t.Fatal(err)
	}
	smaller := strings.Replace(base, `subscriptions: "acme.paid": {partner: "acme", domain: "shop", event: "order.paid", version: "1"}`+"\n", "", 1)
	if _, err := a.Apply(ctx, load(t, smaller), "r2"); err != nil {
		t.Fatal(err)
	}
	act, _ := a.ReadActual(ctx)
	if _, ok := act.Topics["wh.egress.acme.order.paid"]; !ok {
		t.Fatal("a topic was deleted with pruning off")
	}
	a.PruneTopics = true
	res, err := a.Apply(ctx, load(t, smaller), "r2")
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, c := range res.Plan.Changes {
		if c.Action == DeleteTopic {
			deleted = append(deleted, c.ID)
		}
	}
	want := []string{"wh.dlq.order.paid", "wh.egress.acme.order.paid", "wh.retry.order.paid"}
	if strings.Join(deleted, ",") != strings.Join(want, ",") {
		t.Errorf("pruned %v, want %v", deleted, want)
	}
	act, _ = a.ReadActual(ctx)
	if _, ok := act.Topics["wh.egress.acme.order.paid"]; ok {
		t.Error("pruned topic still exists")
	}
	if _, ok := act.Topics["wh.ingress.shop.order.paid"]; !ok {
		t.Error("the ingress topic of a schema still in the catalog was pruned")
	}
}

// TestStatusObject: the status round-trips through an object store, and a
// missing object is an empty status.
func TestStatusObject(t *testing.T) {
	ctx := context.Background()
	o := StatusObject{Store: artifact.Dir{Path: t.TempDir()}, Key: "reconciler/status.json",
		IsNotFound: func(err error) bool { return errors.Is(err, artifact.ErrNotFound) }}
	if s, err := o.Load(ctx); err != nil || s.LastAppliedRevision != "" {
		t.Fatalf("empty load = %+v, %v", s, err)
	}
	want := Status{LastAppliedRevision: "main@sha1:abc", Conditions: []Condition{{Type: ConditionReady, Status: "True"}}}
	if err := o.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := o.Load(ctx); err != nil || got.LastAppliedRevision != want.LastAppliedRevision || len(got.Conditions) != 1 {
		t.Errorf("round trip = %+v, %v", got, err)
	}
}
