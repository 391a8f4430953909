package dispatch

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/consume"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
)

// Run consumes until ctx ends, with up to Concurrency deliveries in flight
// at all times: there is no batch to finish before the next poll, so a
// partner that answers slowly (or not, until the attempt times out) holds
// its own deliveries only, never those polled with it or after it.
//
// No partner has more deliveries in flight than its bound (partnerLimit:
// the one its answers have set, pace.go, under its max_in_flight, else
// PartnerConcurrency), so one that hangs (each attempt waiting for its
// timeout) leaves the other slots to the others until its breaker opens;
// its further records wait their turn without holding a slot.
// max_in_flight is read from the subscription of each poll's first record
// of the partner. A bound that rises — the catalog's, or the pace's as
// the partner answers — starts more of the partner's waiting chains
// (widen, after each of its deliveries and each poll); one that falls
// lets its chains end until it is kept.
//
// Records of one key (and egress topic) are delivered one after the
// other, in offset order — what ordered subscriptions need. A partition's
// offsets are committed up to the first record not finished yet, once
// what every record before it left (status, ledger entry, counters) is
// written (consume.Pipeline). A record whose state cannot be read is
// tried again in place, with backoff, holding its key and its
// partition's commit. Polling pauses while maxTracked records are polled
// and not yet handed to the pipeline, not counting those of partners
// whose own backlog has their topics paused (backlogHigh): a slow
// partner's backlog waits in Kafka, not in the lookahead all share.
//
// When partitions move to another dispatcher, their records not yet
// started are dropped (the new owner consumes them from the last commit),
// those in flight are finished, and everything they left is written
// before the move completes, so the new owner's ledger lookups see what
// was delivered. On shutdown, attempts in flight are finished and
// recorded; what was not started is consumed again after the restart.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.Close()
	s := d.stream
	s.start(ctx)
	for {
		if !s.room(ctx) {
			break
		}
		fetches := d.cl.PollRecords(ctx, pollRecords)
		if ctx.Err() != nil {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			d.log.Warn("egress fetch error", "topic", t, "partition", p, "error", err)
		})
		if recs := fetches.Records(); len(recs) > 0 {
			s.add(ctx, recs)
		}
		d.cl.AllowRebalance()
	}
	d.cl.AllowRebalance()
	s.stop()
	return nil
}

const (
	// pollRecords bounds one poll.
	pollRecords = 1000
	// A partner whose backlog reaches backlogHigh records has its egress
	// topics paused until the backlog is down to backlogLow, and its
	// records do not count against maxTracked meanwhile: a partner that is
	// slow (and not failing, so its breaker stays closed) keeps its
	// backlog in Kafka instead of filling the lookahead every partner
	// shares.
	backlogHigh = maxTracked / 2
	backlogLow  = maxTracked / 4
	// maxTracked bounds the records polled and not yet handed over to be
	// written and committed. Each pins the fetched batch it came in, so
	// more lookahead than in-flight deliveries need only costs memory (at
	// fan-out 100, 4,000 held a burst's peak at ≈1 GiB; 1,000 at ≈0.6).
	maxTracked = pollRecords
	// stateBackoff is the first pause before a record whose state could not
	// be read is tried again; it doubles up to maxStateBackoff.
	stateBackoff    = time.Second
	maxStateBackoff = 30 * time.Second
)

// stream is Run's state: the records in flight, by key chain and by
// partition, and what finished deliveries left to write.
type stream struct {
	d       *Dispatcher
	col     *collector
	slots   chan struct{} // one per chain running
	kick    chan struct{} // wakes the flusher
	chains  sync.WaitGroup
	flusher sync.WaitGroup
	flushMu sync.Mutex // one flush at a time (the flusher, a revocation)
	// ledgerHanded is the ledger lane's mark last handed to the pipeline
	// (flushMu held).
	ledgerHanded uint64
	done         chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond // tracked shrank, or a partition's in-flight count fell
	queues  map[string]*chain
	parts   map[partition]*partTrack
	tracked int                       // records polled, not yet handed to the pipeline
	ready   map[partition]*kgo.Record // commit points not yet handed over
	nReady  int
	revoked map[partition]bool
	busy    map[string]int      // partner → chains running
	waiting map[string][]*chain // partner → chains waiting for its turn
	// gated is each partner whose chains wait (park): for its next
	// rate-limit token, or to be resumed by an operator.
	gated    map[string]parking
	stopping bool                // stop is waiting for the chains: none may start
	backlog  map[string]int      // partner → records tracked and not done
	held     map[string][]string // partner → egress topics paused for its backlog
}

type partition struct {
	topic string
	p     int32
}

// partTrack is one partition's records in poll order, oldest first, until
// they are committable.
type partTrack struct {
	entries  []*entry
	inflight int // records started and not finished
}

type entry struct {
	rec  *kgo.Record
	memo *memo // of the poll that brought it
	done bool
}

// chain is a key's records waiting behind the one in flight.
type chain struct {
	key, partner string
	pending      []*entry
}

// next takes the chain's first pending record. Its slot is cleared: a
// chain's slice is resliced, not reallocated, for as long as records keep
// coming for its key, and a finished record kept by the backing array
// pins its whole fetched batch (up to 1 MB decompressed).
func (c *chain) next() *entry {
	e := c.pending[0]
	c.pending[0] = nil
	c.pending = c.pending[1:]
	return e
}

func newStream(d *Dispatcher) *stream {
	s := &stream{d: d, col: newCollector(), slots: make(chan struct{}, d.cfg.Concurrency), kick: make(chan struct{}, 1), done: make(chan struct{}),
		queues: map[string]*chain{}, parts: map[partition]*partTrack{}, ready: map[partition]*kgo.Record{}, revoked: map[partition]bool{},
		busy: map[string]int{}, waiting: map[string][]*chain{}, gated: map[string]parking{}, backlog: map[string]int{}, held: map[string][]string{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *stream) start(ctx context.Context) {
	// Wake waiters when ctx ends.
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	s.flusher.Go(func() {
		for {
			select {
			case <-s.kick:
				s.flush()
			case <-s.done:
				return
			}
		}
	})
}

// stop waits for the chains, then hands over what they left.
func (s *stream) stop() {
	s.mu.Lock()
	s.stopping = true // no wake (park) starts a chain during the Wait
	s.mu.Unlock()
	s.chains.Wait()
	close(s.done)
	s.flusher.Wait()
	s.flush()
}

// room waits until fewer than maxTracked records are tracked; false if
// ctx ended first.
func (s *stream) room(ctx context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.tracked-s.heldBacklog() >= maxTracked && ctx.Err() == nil {
		s.cond.Wait()
	}
	return ctx.Err() == nil
}

// heldBacklog is the records of partners whose topics are paused for
// their backlog. s.mu is held.
func (s *stream) heldBacklog() int {
	n := 0
	for partner := range s.held {
		n += s.backlog[partner]
	}
	return n
}

// countBacklog adds n to a partner's backlog and pauses or resumes the
// topic of its record r (or all it paused) at the marks. s.mu is held.
func (s *stream) countBacklog(partner, topicName string, n int) {
	s.backlog[partner] += n
	switch b := s.backlog[partner]; {
	case b >= backlogHigh && !slices.Contains(s.held[partner], topicName):
		s.held[partner] = append(s.held[partner], topicName)
		s.d.holdTopic(topicName)
	case b <= backlogLow && s.held[partner] != nil:
		for _, t := range s.held[partner] {
			s.d.unholdTopic(t)
		}
		delete(s.held, partner)
		s.cond.Broadcast()
	}
	if s.backlog[partner] <= 0 {
		delete(s.backlog, partner)
	}
}

// add tracks a poll's records and starts a chain for each key that has
// none running. The records of one poll share a memo (each subscription
// read once per poll); a chain that lives across polls reads with each
// record's own, so it never keeps a subscription longer than a poll.
func (s *stream) add(ctx context.Context, recs []*kgo.Record) {
	cctx := context.WithValue(ctx, collectorKey{}, s.col)
	m := newMemo()
	mctx := context.WithValue(ctx, memoKey{}, m)
	learned := map[string]bool{} // partners whose bound this poll read
	for _, r := range recs {
		e := &entry{rec: r, memo: m}
		k := chainKey(r)
		partner, _ := topic.EgressPartner(r.Topic)
		fresh := !learned[partner]
		if fresh {
			// Through the poll's memo: the read the poll's deliveries of
			// the subscription make anyway.
			learned[partner] = true
			s.d.learnPartner(mctx, r)
		}
		s.mu.Lock()
		if fresh {
			s.widen(cctx, partner)
		}
		pt := s.parts[partition{r.Topic, r.Partition}]
		if pt == nil {
			pt = &partTrack{}
			s.parts[partition{r.Topic, r.Partition}] = pt
		}
		pt.entries = append(pt.entries, e)
		s.tracked++
		s.countBacklog(partner, r.Topic, 1)
		if c := s.queues[k]; c != nil {
			c.pending = append(c.pending, e)
			s.mu.Unlock()
			continue
		}
		c := &chain{key: k, partner: partner, pending: []*entry{e}}
		s.queues[k] = c
		if s.busy[partner] >= s.d.partnerLimit(partner) || s.isGated(partner) {
			s.waiting[partner] = append(s.waiting[partner], c)
			s.mu.Unlock()
			continue
		}
		s.busy[partner]++
		s.mu.Unlock()
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			// Not started: dropped with its chain, consumed again after
			// the restart.
			s.mu.Lock()
			delete(s.queues, k)
			s.busy[partner]--
			s.mu.Unlock()
			continue
		}
		s.chains.Go(func() {
			defer func() { <-s.slots }()
			s.runChain(cctx, c)
		})
	}
}

// growStack grows the goroutine's stack while it has one frame. A chain
// runs on a goroutine of its own, which starts with a small stack and
// grew it midway through a delivery — in the store's read of its state,
// a timestamp's parse, the trace — copying every frame above. In the
// default bench run's profile (`whp bench --relay=false --duration 6s
// --cpuprofile`) the chains' stack growth went from 2.2 % of the
// platform's CPU to 1.0 % (what is left is the one growth here); the
// run's own figures, and BenchmarkDeliver's, cannot resolve a change that
// small. kgo's brokers do the same (kgo.growStack), as CockroachDB's
// growstack package does.
//
//go:noinline
func growStack() {
	var b [growStackBytes]byte
	b[0] = 1
	runtime.KeepAlive(&b)
}

// growStackBytes is growStack's frame: the stack is 32 KiB after it.
const growStackBytes = 16 << 10

// chainKey is the key whose records are delivered in order: topic and key,
// or the record's own position when it has no key.
func chainKey(r *kgo.Record) string {
	if len(r.Key) == 0 {
		return r.Topic + "\x00\x00" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
	}
	return r.Topic + "\x00" + string(r.Key)
}

// runChain delivers a chain's records one after the other until none is
// left, then runs the partner's next waiting chain, if any, in its place.
func (s *stream) runChain(ctx context.Context, c *chain) {
	growStack()
	for {
		s.mu.Lock()
		if len(c.pending) == 0 || ctx.Err() != nil {
			// Done, or shutting down: what is left is not marked done, so
			// not committed, and consumed again after the restart.
			delete(s.queues, c.key)
			if len(s.waiting[c.partner]) > 0 && ctx.Err() == nil && s.busy[c.partner] <= s.d.partnerLimit(c.partner) && !s.isGated(c.partner) {
				c = s.popWaiting(c.partner)
				s.mu.Unlock()
				continue
			}
			s.busy[c.partner]--
			s.mu.Unlock()
			return
		}
		// A partner paused by an operator: the chain steps aside, its
		// records where they are, and looks again each second (the flags
		// are read each second). Held through the retry tiers instead,
		// every delivery came back every 5 s for as long as the pause
		// lasted (BenchmarkPausedBacklog).
		if s.d.cfg.Flags.Current().PartnerPaused(c.partner) {
			s.park(ctx, c, pausedLook, telemetry.WaitsForResume)
			s.mu.Unlock()
			return
		}
		// A partner with a rate limit: the delivery takes its token now,
		// and waits for it here if it is due within maxInlineWait; if it
		// is further off, the chain steps aside until it is due, and its
		// slot goes to other partners meanwhile (limits.go).
		wait, limited := s.d.limits.take(c.partner, s.d.now())
		if limited && wait > maxInlineWait {
			s.park(ctx, c, wait, telemetry.WaitsForRateLimit)
			s.mu.Unlock()
			return
		}
		e := c.next()
		s.widen(ctx, c.partner)
		part := partition{e.rec.Topic, e.rec.Partition}
		if s.revoked[part] {
			s.mu.Unlock()
			continue
		}
		pt := s.parts[part]
		pt.inflight++
		s.mu.Unlock()

		rctx := context.WithValue(ctx, memoKey{}, e.memo)
		if limited {
			time.Sleep(wait)
			rctx = withToken(rctx)
		}
		res := s.d.deliverRecord(rctx, e.rec)
		for wait := stateBackoff; res == retryBatch; wait = min(wait*2, maxStateBackoff) {
			if !consume.Pause(ctx, wait) {
				break
			}
			rctx = withMemo(ctx) // read afresh
			res = s.d.deliverRecord(rctx, e.rec)
		}

		s.mu.Lock()
		pt.inflight--
		if res != retryBatch {
			e.done = true
			s.advance(part, pt)
			s.countBacklog(c.partner, e.rec.Topic, -1)
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		if res != retryBatch {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}
}

// park sets c aside, first among its partner's waiting chains (it was
// running), for wait: until the partner's next rate-limit token is due,
// or its pause is looked at again (why says which). Until then none of the
// partner's chains starts (isGated). Its slot and its place in the
// partner's bound go to others meanwhile, and its records stay tracked,
// counted in the partner's backlog: past the backlog's mark the partner's
// topics pause, and the rest waits in Kafka. s.mu is held; ctx is the one
// chains run in.
func (s *stream) park(ctx context.Context, c *chain, wait time.Duration, why string) {
	p := c.partner
	s.waiting[p] = slices.Insert(s.waiting[p], 0, c)
	s.busy[p]--
	until := s.d.now().Add(wait)
	if g, ok := s.gated[p]; ok && !until.After(g.until) {
		return // the wake already armed comes later
	}
	s.gated[p] = parking{until, why}
	time.AfterFunc(wait, func() { s.wake(ctx, p, until) })
}

// wake ends partner p's wait that park armed for until, and starts its
// chains. If no slot is free for any of them (other partners' chains hold
// all of them), it looks again after slotRetry: with every chain of the
// partner set aside, nothing else would start them — its own chains start
// its waiting ones as they end, and a partner whose backlog paused its
// topics brings no poll.
func (s *stream) wake(ctx context.Context, p string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.gated[p]
	if s.stopping || !ok || !g.until.Equal(until) {
		return // stopping, or a later park armed its own wake
	}
	delete(s.gated, p)
	s.widen(ctx, p)
	if s.busy[p] == 0 && len(s.waiting[p]) > 0 && ctx.Err() == nil {
		next := s.d.now().Add(slotRetry)
		s.gated[p] = parking{next, g.why}
		time.AfterFunc(slotRetry, func() { s.wake(ctx, p, next) })
	}
}

// parking is why a partner's chains wait, and until when (park).
type parking struct {
	until time.Time
	why   string // telemetry.WaitsFor…
}

const (
	// pausedLook is how often a paused partner's waiting chains look at
	// the flags again: as often as they are read.
	pausedLook = time.Second
	// slotRetry is how soon a wake that found no free slot looks again.
	slotRetry = 20 * time.Millisecond
)

// isGated reports whether partner's chains wait (park). s.mu is held.
func (s *stream) isGated(partner string) bool {
	_, ok := s.gated[partner]
	return ok
}

// popWaiting takes the first of partner's waiting chains (there is one).
// s.mu is held.
func (s *stream) popWaiting(partner string) *chain {
	w := s.waiting[partner]
	c := w[0]
	w[0] = nil // as in chain.next
	s.waiting[partner] = w[1:]
	return c
}

// widen starts more of partner's waiting chains while it has fewer in
// flight than its bound and a slot is free: its bound rose (a poll read a
// larger max_in_flight than the one its chains were queued under, or its
// pace grew with its answers). It does not wait for a slot: the next
// poll's call, or the next delivery's of the partner, tries again. s.mu
// is held; ctx is the one chains run in (the collector's).
func (s *stream) widen(ctx context.Context, partner string) {
	for len(s.waiting[partner]) > 0 && s.busy[partner] < s.d.partnerLimit(partner) && !s.isGated(partner) {
		select {
		case s.slots <- struct{}{}:
		default:
			return
		}
		c := s.popWaiting(partner)
		s.busy[partner]++
		s.chains.Go(func() {
			defer func() { <-s.slots }()
			s.runChain(ctx, c)
		})
	}
}

// advance moves a partition's commit point past its finished records.
// s.mu is held.
func (s *stream) advance(part partition, pt *partTrack) {
	n := 0
	for n < len(pt.entries) && pt.entries[n].done {
		n++
	}
	if n == 0 {
		return
	}
	s.ready[part] = pt.entries[n-1].rec
	s.nReady += n
	// Cleared, or the backing array keeps them, and the fetched batch
	// each pins, until appends outgrow it: at fan-out 16 that was most of
	// a burst's records (peak anonymous memory ≈ 200 MiB against ≈ 150).
	clear(pt.entries[:n])
	pt.entries = pt.entries[n:]
}

// flush hands what finished deliveries left, and the commit points they
// reached, to the pipeline. A commit point is taken before the writes, so
// everything before it is among them (or was handed over before).
func (s *stream) flush() {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	var recs []*kgo.Record
	for part, r := range s.ready {
		recs = append(recs, r)
		delete(s.ready, part)
	}
	n := s.nReady
	s.nReady = 0
	s.mu.Unlock()
	w := s.col.take()
	// Taken after the statuses: the entries of their deliveries, added
	// before each status, are below it.
	w.ledgerUpTo = s.d.ledger.mark()
	if len(recs) > 0 || !w.empty() || w.ledgerUpTo > s.ledgerHanded {
		s.ledgerHanded = w.ledgerUpTo
		s.d.pipe.Submit(w, recs)
	}
	if n > 0 {
		s.mu.Lock()
		s.tracked -= n
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// revoke is the partitions-revoked (and -lost) hook: records of those
// partitions not started are dropped, those in flight finished, and what
// they left written before the partitions move.
func (s *stream) revoke(ctx context.Context, lost map[string][]int32) {
	s.mu.Lock()
	var parts []partition
	for t, ps := range lost {
		for _, p := range ps {
			part := partition{t, p}
			parts = append(parts, part)
			s.revoked[part] = true
		}
	}
	// Wait for the records in flight (they finish on their own; a
	// partner that hangs is cut by the attempt timeout).
	for ctx.Err() == nil {
		busy := false
		for _, part := range parts {
			if pt := s.parts[part]; pt != nil && pt.inflight > 0 {
				busy = true
			}
		}
		if !busy {
			break
		}
		s.cond.Wait()
	}
	s.mu.Unlock()
	s.flush()
	s.d.pipe.Drain(ctx)
	s.mu.Lock()
	for _, part := range parts {
		if pt := s.parts[part]; pt != nil {
			s.tracked -= len(pt.entries)
			for _, e := range pt.entries {
				if !e.done {
					partner, _ := topic.EgressPartner(e.rec.Topic)
					s.countBacklog(partner, e.rec.Topic, -1)
				}
			}
			delete(s.parts, part)
		}
		delete(s.revoked, part)
	}
	// Records of these partitions still queued behind a key are dropped
	// now, so a partition assigned back starts clean.
	for _, c := range s.queues {
		kept := c.pending[:0]
		for _, e := range c.pending {
			if !slices.Contains(lost[e.rec.Topic], e.rec.Partition) {
				kept = append(kept, e)
			}
		}
		c.pending = kept
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}
