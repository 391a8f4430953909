package catalog

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// TestLoadExample loads the example catalog the repository ships: it must be
// valid and hold what the README and `whp dev` rely on.
func TestLoadExample(t *testing.T) {
	c, err := Load(".")
	if err != nil {
		t.Fatalf("example catalog: %v", err)
	}
	domains := map[string]bool{}
	versions := map[string]int{}
	for _, s := range c.Schemas {
		domains[s.Domain] = true
		versions[s.Domain+"/"+s.Event]++
		if s.Validator() == nil || len(s.JSONSchema) == 0 {
			t.Errorf("schema %s was not compiled", s.ID())
		}
	}
	if len(domains) < 2 || len(c.Schemas) < 3 || len(c.Partners) < 2 || len(c.Subscriptions) < 3 {
		t.Errorf("example catalog too small: %d domains, %d schemas, %d partners, %d subscriptions",
			len(domains), len(c.Schemas), len(c.Partners), len(c.Subscriptions))
	}
	if versions["orders/order.created"] != 2 {
		t.Errorf("orders/order.created has %d versions, want 2", versions["orders/order.created"])
	}
	demo := c.Partner("demo")
	if demo == nil || demo.URL != "http://127.0.0.1:8080/demo/webhooks" {
		t.Fatalf("demo partner = %+v, want URL on the default demo base", demo)
	}
	if got, want := demo.Pos.String(), "partners/demo.cue:6:11"; got != want {
		t.Errorf("demo partner position = %s, want %s", got, want)
	}
	if s := c.Schema("payments#payment.captured#1"); s == nil || !s.ContainsSensitive || s.Compatibility != "FULL" || s.Topic.RetentionHours != 72 {
		t.Errorf("payment.captured = %+v, want contains_sensitive, FULL, 72 h retention", s)
	}
	if s := c.Schema("orders#order.cancelled#1"); s.Owner != "team-checkout" || s.Compatibility != "BACKWARD" || s.Topic != (TopicConfig{Partitions: 3, RetentionHours: 168}) {
		t.Errorf("order.cancelled defaults = owner %q, %s, %+v", s.Owner, s.Compatibility, s.Topic)
	}
	if s := c.Schema("payments#payment.captured#1"); len(s.SensitivePaths) != 1 || s.SensitivePaths[0] != "card.last4" {
		t.Errorf("payment.captured sensitive paths = %v, want [card.last4]", s.SensitivePaths)
	}
	if m := c.Partner("acme").Metadata; m["account_id"] != "ACME-0042" {
		t.Errorf("acme metadata = %v", m)
	}
	if rl := c.Partner("acme").RateLimit; rl == nil || rl.PerSecond != 50 || rl.Burst != 100 {
		t.Errorf("acme rate limit = %+v", rl)
	}
	if n := c.Partner("acme").MaxInFlight; n != 8 {
		t.Errorf("acme max_in_flight = %d, want 8", n)
	}
	for _, sub := range c.Subscriptions {
		switch sub.Name {
		case "acme.order-created":
			if sub.Mode != "ordered" || len(sub.Filter) == 0 || len(sub.Transform) == 0 {
				t.Errorf("%s: mode %q filter %s, want ordered with a filter", sub.Name, sub.Mode, sub.Filter)
			}
		case "acme.order-cancelled":
			if sub.Retry == nil || sub.Retry.MaxAttempts != 5 || sub.Retry.MaxAge != "6h" || sub.Mode != "unordered" {
				t.Errorf("%s: retry %+v mode %q", sub.Name, sub.Retry, sub.Mode)
			}
		}
	}
}

func TestLoadDemoBase(t *testing.T) {
	c, err := Load(".", WithDemoBase("http://127.0.0.1:5555"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Partner("demo").URL, "http://127.0.0.1:5555/demo/webhooks"; got != want {
		t.Errorf("demo URL = %q, want %q", got, want)
	}
	if got, want := c.Partner("acme").URL, "https://hooks.acme.example/whp"; got != want {
		t.Errorf("acme URL = %q, want %q (demo base must not touch other partners)", got, want)
	}
}

// TestLoadInvalid loads each catalog under testdata/invalid and compares
// the problems with the golden file beside it. Run with -update to refresh.
func TestLoadInvalid(t *testing.T) {
	dirs, err := filepath.Glob("testdata/invalid/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, err := Load(dir)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Load(%s) = %v, want Problems", dir, err)
			}
			got := ps.Error() + "\n"
			golden := dir + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./catalog -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("problems differ from %s (-want +got):\n%s", golden, diff)
			}
			for _, p := range ps {
				if p.Pos.Filename == "" || p.Pos.Line == 0 {
					t.Errorf("problem without a position: %q", p)
				}
			}
		})
	}
}

// TestCheckPublished compares testdata/published/head with base.
func TestCheckPublished(t *testing.T) {
	base, err := Load("testdata/published/base")
	if err != nil {
		t.Fatal(err)
	}
	head, err := Load("testdata/published/head")
	if err != nil {
		t.Fatal(err)
	}
	got := CheckPublished(base, head, "main").Error() + "\n"
	golden := "testdata/published.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if ps := CheckPublished(base, base, "main"); len(ps) != 0 {
		t.Errorf("an unchanged catalog has problems: %v", ps)
	}
}
