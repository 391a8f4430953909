package retry

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestTierFor(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int32
	}{
		{0, 0}, {999 * time.Millisecond, 0}, {time.Second, 1}, {1999 * time.Millisecond, 1},
		{2 * time.Second, 2}, {5 * time.Second, 3}, {5 * time.Minute, 9}, {24 * time.Hour, 17},
		{36*time.Hour + 25*time.Minute, 18}, {100 * time.Hour, 18},
	} {
		if got := TierFor(tc.d); got != tc.want {
			t.Errorf("TierFor(%s) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestNoHeadOfLineBlocking checks the property the tiers exist for, on
// random schedules: in any tier, a record behind the head is never due
// before the head leaves the tier.
func TestNoHeadOfLineBlocking(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	start := time.Unix(1_800_000_000, 0)
	for range 10_000 {
		// Two records written to the same tier, a before b.
		tA := start.Add(time.Duration(rnd.Int64N(int64(time.Hour))))
		waitA := time.Duration(rnd.Int64N(int64(48 * time.Hour)))
		tier := TierFor(waitA)
		if tier == 0 || tier == Tiers-1 {
			continue // tier 0 is taken at due time; the last is open-ended
		}
		lo, hi := floor(tier), floor(tier+1)
		tB := tA.Add(time.Duration(rnd.Int64N(int64(time.Hour))))
		waitB := lo + time.Duration(rnd.Int64N(int64(hi-lo)))
		if TierFor(waitB) != tier {
			t.Fatalf("bad test: %s not in tier %d", waitB, tier)
		}
		dueA, dueB := tA.Add(waitA), tB.Add(waitB)
		if leaveA := LeaveAt(dueA, tier); leaveA.After(dueB) {
			t.Fatalf("tier %d: head due %s leaves at %s, after the next record is due (%s)", tier, dueA, leaveA, dueB)
		}
	}
}

func TestPolicyNext(t *testing.T) {
	accepted := time.Unix(1_800_000_000, 0)
	p := Default()
	prev := p.Schedule[0] / 2 // the first step's floor
	for n := 2; n <= p.MaxAttempts; n++ {
		for range 50 {
			wait, ok := p.Next(n, accepted, accepted, 0)
			hi := p.Schedule[n-2]
			if !ok || wait < prev || wait > hi {
				t.Fatalf("attempt %d: wait %s ok %v, want within [%s, %s]", n, wait, ok, prev, hi)
			}
		}
		prev = p.Schedule[n-2]
	}
	if _, ok := p.Next(p.MaxAttempts+1, accepted, accepted, 0); ok {
		t.Error("an attempt beyond MaxAttempts was scheduled")
	}
	// MaxAge: a retry that would land after it is not scheduled.
	late := accepted.Add(p.MaxAge - time.Minute)
	if _, ok := p.Next(6, accepted, late, 0); ok {
		t.Error("a retry past MaxAge was scheduled")
	}
	// Retry-After is honoured when it asks for more, up to MaxRetryAfter.
	if wait, _ := p.Next(2, accepted, accepted, 30*time.Second); wait != 30*time.Second {
		t.Errorf("Retry-After 30 s gave %s", wait)
	}
	if wait, _ := p.Next(2, accepted, accepted, 48*time.Hour); wait != p.MaxRetryAfter {
		t.Errorf("Retry-After 48 h gave %s, want the bound %s", wait, p.MaxRetryAfter)
	}
	if wait, _ := p.Next(3, accepted, accepted, time.Second); wait < 5*time.Second {
		t.Errorf("a short Retry-After shortened the schedule: %s", wait)
	}
}

func TestPolicyWith(t *testing.T) {
	p, err := Default().With([]byte(`{"max_attempts":5,"max_age":"6h","schedule":["1s","1m"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxAttempts != 5 || p.MaxAge != 6*time.Hour || len(p.Schedule) != 2 || p.Schedule[1] != time.Minute {
		t.Errorf("override = %+v", p)
	}
	// The last step repeats.
	if wait, ok := p.Next(5, time.Now(), time.Now(), 0); !ok || wait < time.Second || wait > time.Minute {
		t.Errorf("attempt 5 under a 2-step schedule: %s, %v", wait, ok)
	}
	if _, err := Default().With([]byte(`{"max_age":"3 days"}`)); err == nil {
		t.Error("a bad duration was accepted")
	}
	if q, err := Default().With(nil); err != nil || q.MaxAttempts != 10 {
		t.Errorf("no override = %+v, %v", q, err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "120": 2 * time.Minute, "-5": 0, "soon": 0,
		now.Add(90 * time.Second).Format(time.RFC1123): 90 * time.Second,
		now.Add(-time.Minute).Format(time.RFC1123):     0,
		// RFC 9110's three HTTP-date formats.
		"Sat, 28 Nov 2026 12:02:00 GMT":    2 * time.Minute,
		"Saturday, 28-Nov-26 12:02:00 GMT": 2 * time.Minute,
		"Sat Nov 28 12:02:00 2026":         2 * time.Minute,
		// Seconds that would overflow a Duration read as 30 days.
		"99999999999": 30 * 24 * time.Hour, "99999999999999999999999": 30 * 24 * time.Hour,
		"+5": 0, " 5": 0,
	} {
		if got := ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}
