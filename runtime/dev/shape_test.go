package dev

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/whp-dev/whp/runtime/envelope"
)

// TestEnrichmentAndTransforms: alpha gets the data renamed, without the
// field marked @sensitive(), and its metadata beside the data; beta, which
// is allowed sensitive fields, gets the data whole; the stored event keeps
// the producer's data as it was.
func TestEnrichmentAndTransforms(t *testing.T) {
	data := t.TempDir()
	alpha, beta := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta")
	dir := t.TempDir()
	src := `package whp
schemas: shop: "order.paid": "1": {owner: "t", payload: {
	order_id: string
	customer_id: string
	card: {brand: string, last4: string @sensitive()}
}}
partners: alpha: {name: "A", url: "` + alpha.srv.URL + `", signing_secret: "partners/alpha/signing", contact: "x", metadata: account_id: "ACC-1"}
partners: beta: {name: "B", url: "` + beta.srv.URL + `", signing_secret: "partners/beta/signing", contact: "x"}
subscriptions: {
	"alpha.paid": {partner: "alpha", domain: "shop", event: "order.paid", version: "1",
		metadata: tier: "gold", transform: rename: customer_id: "client_id"}
	"beta.paid": {partner: "beta", domain: "shop", event: "order.paid", version: "1", allow_sensitive: true}
}
`
	if err := os.WriteFile(filepath.Join(dir, "c.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPlatform(t, data, dir)
	in := `{"order_id":"ord_9","customer_id":"cus_7","card":{"brand":"visa","last4":"4242"}}`
	id := accept(t, p, `{"domain":"shop","event":"order.paid","version":"1","data":`+in+`}`)
	mustDelivered(t, p, id, 2)

	got := func(r *receiver) envelope.Payload {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, b := range r.bodies {
			var pl envelope.Payload
			json.Unmarshal(b, &pl)
			return pl
		}
		return envelope.Payload{}
	}
	a, b := got(alpha), got(beta)
	if diff := cmp.Diff(`{"card":{"brand":"visa"},"client_id":"cus_7","order_id":"ord_9"}`, string(a.Data)); diff != "" {
		t.Errorf("alpha's data (-want +got):\n%s", diff)
	}
	if a.Partner.ID != "alpha" || a.Partner.Metadata["account_id"] != "ACC-1" || a.Subscription.Name != "alpha.paid" || a.Subscription.Metadata["tier"] != "gold" {
		t.Errorf("alpha's enrichment: partner %+v, subscription %+v", a.Partner, a.Subscription)
	}
	if string(b.Data) != in {
		t.Errorf("beta's data = %s, want the producer's data whole", b.Data)
	}
	v, _ := getEvent(t, p, id)
	if string(v.Data) != in {
		t.Errorf("stored event data = %s, want untouched", v.Data)
	}
}
