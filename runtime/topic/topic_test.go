package topic

import "testing"

func TestEgressPartner(t *testing.T) {
	for name, want := range map[string]string{
		Egress("acme", "order.created"):    "acme",
		Egress("acme-eu", "order.created"): "acme-eu",
		"wh.egress.acme":                   "",
		"wh.egress..x":                     "",
		Ingress("orders", "order.created"): "",
		DLQ("order.created"):               "",
	} {
		got, ok := EgressPartner(name)
		if got != want || ok != (want != "") {
			t.Errorf("EgressPartner(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}
