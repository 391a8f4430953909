package envelope

import "testing"

// BenchmarkDeliveryID derives a delivery id (UUIDv5 of event and
// subscription), once per delivery on the processor's hot path.
func BenchmarkDeliveryID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		DeliveryID("0193f3a2-5c1e-7b7a-9d2e-4f1a2b3c4d5e", "acme#orders#order.created#1")
	}
}
