package dispatch

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/whp-dev/whp/store"
)

// maxInlineWait is the longest a delivery waits in place for a rate-limit
// token; a longer wait is deferred through the retry tiers instead, so a
// slow partner does not hold the delivery slots other partners need.
const maxInlineWait = 50 * time.Millisecond

// limiters holds one token bucket per partner, from the catalog's
// rate_limit (carried on each subscription of the partner).
type limiters struct {
	mu sync.Mutex
	m  map[string]*partnerLimit
}

type partnerLimit struct {
	perSecond float64
	burst     int
	l         *rate.Limiter
}

// reserve takes a token for the subscription's partner. It returns how
// long to wait for it; 0 with no limit. A wait above maxInlineWait is not
// taken: the caller defers the delivery for that long.
func (ls *limiters) reserve(sub store.Subscription, now time.Time) time.Duration {
	if sub.RateLimitPerSecond <= 0 {
		return 0
	}
	burst := sub.RateLimitBurst
	if burst <= 0 {
		burst = max(1, int(sub.RateLimitPerSecond))
	}
	ls.mu.Lock()
	if ls.m == nil {
		ls.m = map[string]*partnerLimit{}
	}
	pl := ls.m[sub.PartnerID]
	if pl == nil || pl.perSecond != sub.RateLimitPerSecond || pl.burst != burst {
		pl = &partnerLimit{perSecond: sub.RateLimitPerSecond, burst: burst, l: rate.NewLimiter(rate.Limit(sub.RateLimitPerSecond), burst)}
		ls.m[sub.PartnerID] = pl
	}
	ls.mu.Unlock()
	r := pl.l.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d > maxInlineWait {
		r.CancelAt(now)
	}
	return d
}
