package store

import (
	"slices"
	"sync"
	"time"
)

// SubscriptionsCache keeps a store's answers to SubscriptionsForSchema.
// The processor asks for a schema's subscriptions every batch, and with a
// subscription per tenant each answer is thousands of items: at 1,000
// tenants decoding them was a tenth of the embedded platform's CPU, and
// against DynamoDB each batch would read them all again (≈ 125 read units
// a batch for 1,000 subscriptions).
//
// The store invalidates it after each of its own subscription writes
// commits; an answer read in a transaction that began before such a write
// is not kept (generations). A store that other processes write too sets
// TTL: their writes — an approval in the console, a reconcile — are seen
// within it.
type SubscriptionsCache struct {
	// TTL bounds how long an answer is kept; 0: until the next write
	// through this store (a store no other process writes).
	TTL time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time

	mu       sync.Mutex
	gen      uint64
	bySchema map[string]cachedSubs
}

type cachedSubs struct {
	subs []Subscription
	at   time.Time
}

func (c *SubscriptionsCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Invalidate drops every answer; a store calls it after a subscription's
// write commits (or fails: it may have committed).
func (c *SubscriptionsCache) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.bySchema)
}

// Load returns the answer kept for schemaID if it is fresh, else read's,
// which it keeps unless a write came in while read ran. Callers of
// SubscriptionsForSchema share the slice.
func (c *SubscriptionsCache) Load(schemaID string, read func() ([]Subscription, error)) ([]Subscription, error) {
	subs, gen, ok := c.get(schemaID)
	if ok {
		return subs, nil
	}
	readAt := c.now()
	subs, err := read()
	if err != nil {
		return nil, err
	}
	subs = slices.Clip(subs)
	c.put(schemaID, gen, subs, readAt)
	return subs, nil
}

// get returns the answer kept for schemaID, if any is fresh; else the
// generation to hand put with the answer the store reads.
func (c *SubscriptionsCache) get(schemaID string) ([]Subscription, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.bySchema[schemaID]
	if ok && c.TTL > 0 && c.now().Sub(e.at) >= c.TTL {
		ok = false
	}
	return e.subs, c.gen, ok
}

// put keeps subs, read since get returned gen, unless a write came in
// between.
func (c *SubscriptionsCache) put(schemaID string, gen uint64, subs []Subscription, readAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.bySchema == nil {
		c.bySchema = map[string]cachedSubs{}
	}
	c.bySchema[schemaID] = cachedSubs{subs: subs, at: readAt}
}
