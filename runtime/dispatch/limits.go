package dispatch

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/whp-dev/whp/store"
)

// maxInlineWait is the longest a delivery waits in place for a rate-limit
// token; a longer wait is not spent holding a delivery slot other
// partners need.
const maxInlineWait = 50 * time.Millisecond

// limiters holds one token bucket per partner, from the catalog's
// rate_limit (carried on each subscription of the partner).
//
// A partner's deliveries take their tokens in one of two places. Run's
// first attempts take theirs before they start (stream.runChain, take):
// one whose token is further off than maxInlineWait steps aside, its
// records left where they are — in the stream, and past the partner's
// backlog mark in Kafka (stream.countBacklog) — until the token is due.
// Every other pass (a retry, a Lambda batch's record, an ordered key's
// drain) reserves its token in the delivery (reserve) and, when that is
// further off, is held through the retry tiers until exactly then, its
// token kept for it: the pass that comes back sends without taking
// another (run: its status says it was held for the limit). Before, a
// held delivery gave its token back and was held for as long as the next
// token was away; a burst of 4,000 to a partner limited to 200 a second
// came back every few milliseconds, all of it at once, and made 52,183
// held passes — a status write and a retry record each — for 4,000
// deliveries (docs/benchmarks.md, "A partner with a rate limit").
type limiters struct {
	mu sync.Mutex
	m  map[string]*partnerLimit
}

type partnerLimit struct {
	perSecond float64
	burst     int
	l         *rate.Limiter
}

// learn sets partner's bucket as sub configures it (none without a
// limit), at share of its rate and burst: this dispatcher's share of the
// partner's partitions (shares.of). A changed limit or share starts a
// new, full bucket.
func (ls *limiters) learn(sub store.Subscription, share float64) *rate.Limiter {
	burst := sub.RateLimitBurst
	if burst <= 0 {
		burst = max(1, int(sub.RateLimitPerSecond))
	}
	perSecond := sub.RateLimitPerSecond * share
	burst = max(1, int(math.Round(float64(burst)*share)))
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if sub.RateLimitPerSecond <= 0 {
		delete(ls.m, sub.PartnerID)
		return nil
	}
	if ls.m == nil {
		ls.m = map[string]*partnerLimit{}
	}
	pl := ls.m[sub.PartnerID]
	if pl == nil || pl.perSecond != perSecond || pl.burst != burst {
		pl = &partnerLimit{perSecond: perSecond, burst: burst, l: rate.NewLimiter(rate.Limit(perSecond), burst)}
		ls.m[sub.PartnerID] = pl
	}
	return pl.l
}

// reserve takes a token for the subscription's partner (at share of its
// limit, as learn) and returns how long from now it is due; 0 with no
// limit. The token is the caller's whatever the wait: one that does not
// wait in place (the wait is above maxInlineWait) makes its attempt when
// the token is due.
func (ls *limiters) reserve(sub store.Subscription, share float64, now time.Time) time.Duration {
	l := ls.learn(sub, share)
	if l == nil {
		return 0
	}
	return l.ReserveN(now, 1).DelayFrom(now)
}

// take is Run's: a token for partner from the bucket its subscriptions
// last configured (learn). limited is false for a partner without one.
// Otherwise wait is how long from now the token is due, and it is taken
// when that is maxInlineWait or less; when it is more, it is not, and the
// caller comes back after wait.
func (ls *limiters) take(partner string, now time.Time) (wait time.Duration, limited bool) {
	ls.mu.Lock()
	pl := ls.m[partner]
	ls.mu.Unlock()
	if pl == nil {
		return 0, false
	}
	r := pl.l.ReserveN(now, 1)
	wait = r.DelayFrom(now)
	if wait > maxInlineWait {
		r.CancelAt(now)
	}
	return wait, true
}

// tokenKey marks a delivery's context whose rate-limit token was taken
// before the delivery started (take).
type tokenKey struct{}

func withToken(ctx context.Context) context.Context { return context.WithValue(ctx, tokenKey{}, true) }

func hasToken(ctx context.Context) bool { v, _ := ctx.Value(tokenKey{}).(bool); return v }
