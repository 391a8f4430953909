package dispatch

import (
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

func TestLimiters(t *testing.T) {
	var ls limiters
	now := time.Unix(1_800_000_000, 0)
	sub := store.Subscription{PartnerID: "acme", RateLimitPerSecond: 2, RateLimitBurst: 3}
	for i := range 3 {
		if d := ls.reserve(sub, now); d != 0 {
			t.Fatalf("token %d of the burst waited %s", i+1, d)
		}
	}
	if d := ls.reserve(sub, now); d < 400*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("fourth token at once: wait %s, want 500ms", d)
	}
	// The long wait was not taken: the next caller sees the same wait.
	if d := ls.reserve(sub, now); d < 400*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("a deferred reservation was kept: wait %s", d)
	}
	if d := ls.reserve(sub, now.Add(time.Second)); d != 0 {
		t.Errorf("after a second: wait %s, want none", d)
	}
	other := store.Subscription{PartnerID: "beta", RateLimitPerSecond: 2, RateLimitBurst: 1}
	if d := ls.reserve(other, now); d != 0 {
		t.Errorf("another partner waited %s for acme's bucket", d)
	}
	if d := ls.reserve(store.Subscription{PartnerID: "free"}, now); d != 0 {
		t.Errorf("an unlimited partner waited %s", d)
	}
}
