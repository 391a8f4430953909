package envelope

import (
	"testing"

	"github.com/google/uuid"
)

func TestDeliveryID(t *testing.T) {
	a := DeliveryID("0193a1b2-0000-7000-8000-000000000001", "acme#orders#order.created#1")
	if again := DeliveryID("0193a1b2-0000-7000-8000-000000000001", "acme#orders#order.created#1"); again != a {
		t.Errorf("DeliveryID is not stable: %s then %s", a, again)
	}
	for _, other := range []string{
		DeliveryID("0193a1b2-0000-7000-8000-000000000002", "acme#orders#order.created#1"),
		DeliveryID("0193a1b2-0000-7000-8000-000000000001", "beta#orders#order.created#1"),
	} {
		if other == a {
			t.Errorf("different inputs gave the same delivery id %s", a)
		}
	}
	if u, err := uuid.Parse(a); err != nil || u.Version() != 5 {
		t.Errorf("DeliveryID = %s, want a UUIDv5", a)
	}
}

func TestNewEventID(t *testing.T) {
	prev := ""
	for range 100 {
		id, err := NewEventID()
		if err != nil {
			t.Fatal(err)
		}
		if u := uuid.MustParse(id); u.Version() != 7 {
			t.Fatalf("event id %s is not a UUIDv7", id)
		}
		if id <= prev {
			t.Fatalf("event ids not increasing: %s after %s", id, prev)
		}
		prev = id
	}
}
