package transform_test

import (
	"encoding/json"
	"testing"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/catalog/transform"
)

// TestExampleCatalogTransforms applies the example catalog's transforms
// and sensitive fields to sample events of their schemas.
func TestExampleCatalogTransforms(t *testing.T) {
	c, err := catalog.Load("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		subscription, in, want string
	}{
		{"acme.order-created", `{"order_id":"ord_1","customer_id":"cus_1","amount":150,"currency":"EUR","items":[]}`,
			`{"amount":150,"client_id":"cus_1","currency":"EUR","items":[],"order_id":"ord_1"}`},
		{"demo.payment-captured", `{"payment_id":"pay_1","order_id":"ord_1","amount":5,"currency":"EUR","card":{"brand":"visa","last4":"4242"}}`,
			`{"amount":5,"card":{"brand":"visa"},"currency":"EUR","order_id":"ord_1","payment_id":"pay_1"}`},
	} {
		var sub *catalog.Subscription
		for _, s := range c.Subscriptions {
			if s.Name == tc.subscription {
				sub = s
			}
		}
		if sub == nil {
			t.Fatalf("no subscription %s in the example catalog", tc.subscription)
		}
		tr, err := transform.Compile(sub.Transform)
		if err != nil {
			t.Fatal(err)
		}
		var in any
		json.Unmarshal([]byte(tc.in), &in)
		sensitive := c.Schema(sub.SchemaID()).SensitivePaths
		if sub.AllowSensitive {
			sensitive = nil
		}
		out, _ := json.Marshal(tr.Apply(in, sensitive))
		if string(out) != tc.want {
			t.Errorf("%s: %s, want %s", tc.subscription, out, tc.want)
		}
	}
}
