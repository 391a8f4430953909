package console

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/whp-dev/whp/store"
)

// A review shows what changed since the subscription's last approval, from
// the settings the audit log kept; a rejection is not an approval.
func TestChanges(t *testing.T) {
	sub := store.Subscription{ID: "s", URL: "https://new.example/h", AuthKind: "oauth2", ConfigHash: "h2"}
	log := []store.Decision{
		{SubscriptionID: "s", Status: store.SubscriptionRejected, URL: "https://x.example", By: "bob"},
		{SubscriptionID: "other", Status: store.SubscriptionApproved, URL: "https://y.example"},
		{SubscriptionID: "s", Status: store.SubscriptionApproved, URL: "https://old.example/h", ConfigHash: "h1", By: "ann"},
	}
	for name, c := range map[string]struct {
		sub  store.Subscription
		log  []store.Decision
		want []string
	}{
		"url and auth": {sub, log, []string{"URL: https://old.example/h → https://new.example/h", "auth: none → oauth2"}},
		"hash only": {store.Subscription{ID: "s", URL: "https://old.example/h", ConfigHash: "h2"}, log,
			[]string{"the delivery settings (filter, transform, sensitive fields or credentials) changed since ann approved them"}},
		"never": {sub, log[:2], []string{"new: never approved"}},
	} {
		if diff := cmp.Diff(c.want, changes(c.sub, c.log)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
