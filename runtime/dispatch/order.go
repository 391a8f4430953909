package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"

	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Ordered subscriptions deliver the deliveries of one partition key in
// order, and a failing one holds back later ones of the same key only.
//
// Each (subscription, key) with a delivery in trouble has a gate in the
// ledger table, updated by compare-and-swap: the blocker (the delivery
// being retried) and the queue of deliveries waiting behind it. The queue
// is items of their own, one per waiting delivery (waitKey), numbered
// from the gate's head to its tail: the gate stays a few hundred bytes
// however long the queue, and a delivery joining it writes its own item
// with the gate (one transaction on the embedded store), not the whole
// queue again. (Until round 11 the queue was
// a list inside the gate: a key held for an hour at a few events a second
// made a gate of megabytes, rewritten whole by every delivery joining it,
// and past 400 KB — about 300 events of 1 KiB — DynamoDB refuses the
// item, so the key's deliveries could no longer be queued at all.)
//
// A delivery that finds a gate with another blocker joins the queue
// (held). When the blocker is delivered, dead-lettered or cancelled, the
// queue is drained where that happened: its deliveries are made one after
// the other, in order, until it is empty — and the gate is open again —
// or one of them fails, which becomes the blocker with its retry
// scheduled. What they leave (statuses, ledger entries, counters) is
// written as a batch's is, with the gate's head, every drainCheckpoint. (Until round 11 each waiting delivery went through the
// retry topics in turn, one trip each: a held key caught up at about 18
// deliveries a second, slower than many keys receive them.)
//
// While it drains, the finished blocker stays the gate's blocker, so that
// deliveries arriving meanwhile queue behind the drain; a lease in the
// gate (drainer, drain_until) keeps a second drainer out. A drain lasts
// at most drainBudget, then hands over to a resume record (a retry record
// of the blocker marked Resume, due at once) and returns, so that it
// holds up neither the retry scheduler (which waits for its step's
// deliveries) nor a rebalance for long. If the process dies mid-drain,
// the record whose processing was draining is not committed and is read
// again: the blocker is then found delivered already, and that finding
// resumes the drain (resumeIfBlocker).
//
// Other keys never look at this gate. The egress consumer sees one key's
// records in order (same key, same partition) and handles a key's records
// one after the other, so a key's queue has one writer at its tail.

// gateTTL bounds how long a gate, and a waiting delivery's item, lives
// without a write.
const gateTTL = 30 * 24 * time.Hour

// drainBudget bounds one drain.
const drainBudget = 500 * time.Millisecond

// drainLease is how long a drain's lease keeps other drainers out: its
// budget, one attempt's time-out (an attempt started at the budget's end
// finishes within it) and a margin for the store's writes.
func (d *Dispatcher) drainLease() time.Duration { return drainBudget + d.cfg.Timeout + 5*time.Second }

type gate struct {
	Blocker      string `json:"blocker"`
	BlockerEvent string `json:"blocker_event"`
	// Head and Tail number the waiting deliveries' items: [Head, Tail).
	Head int64 `json:"head,omitempty"`
	Tail int64 `json:"tail,omitempty"`
	// Drainer holds the drain's lease until DrainUntil.
	Drainer    string    `json:"drainer,omitempty"`
	DrainUntil time.Time `json:"drain_until,omitzero"`
	// Waiting is the queue as gates kept it before round 11, in the gate
	// itself: drained first, never added to.
	Waiting []waitingRecord `json:"waiting,omitempty"`
}

type waitingRecord struct {
	ID      string          `json:"id"`
	EventID string          `json:"event_id"`
	Value   json.RawMessage `json:"value"` // the envelope.Delivery
}

func (g gate) empty() bool { return g.Head >= g.Tail && len(g.Waiting) == 0 }

func gateKey(subID, key string) string { return "order#" + subID + "#" + key }

// waitKey is the item of the i-th delivery queued at a gate. The number
// comes first: a subscription ID's parts and a key may hold '#'.
func waitKey(subID, key string, i int64) string {
	return "order-wait#" + strconv.FormatInt(i, 10) + "#" + subID + "#" + key
}

func (d *Dispatcher) loadGate(ctx context.Context, k string) (gate, store.Idempotency, error) {
	rec, err := d.st.GetIdempotency(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return gate{}, store.Idempotency{Key: k}, nil
	}
	if err != nil {
		return gate{}, rec, err
	}
	var g gate
	if err := json.Unmarshal(rec.Value, &g); err != nil {
		return gate{}, rec, fmt.Errorf("gate %s: %w", k, err)
	}
	return g, rec, nil
}

func (d *Dispatcher) saveGate(ctx context.Context, rec store.Idempotency, g gate, with ...store.Idempotency) error {
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	now := d.now()
	rec.Value, rec.ExpiresAt = v, now.Add(gateTTL)
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	_, err = d.st.PutIdempotencyIf(ctx, rec, with...)
	return err
}

// updateGate applies fn to the gate until the compare-and-swap holds.
// fn returns false to leave the gate as it is. fn may be called more
// than once.
func (d *Dispatcher) updateGate(ctx context.Context, k string, fn func(*gate) (bool, error)) (gate, error) {
	return d.updateGateWith(ctx, k, func(g *gate) (bool, []store.Idempotency, error) {
		write, err := fn(g)
		return write, nil, err
	})
}

// updateGateWith is updateGate whose fn also returns ledger items to
// write with the gate (before it, in the same transaction where the
// store can: PutIdempotencyIf).
func (d *Dispatcher) updateGateWith(ctx context.Context, k string, fn func(*gate) (bool, []store.Idempotency, error)) (gate, error) {
	for range 20 {
		g, rec, err := d.loadGate(ctx, k)
		if err != nil {
			return g, err
		}
		write, with, err := fn(&g)
		if err != nil || !write {
			return g, err
		}
		err = d.saveGate(ctx, rec, g, with...)
		if !errors.Is(err, store.ErrConflict) {
			return g, err
		}
	}
	return gate{}, fmt.Errorf("gate %s: too many concurrent updates", k)
}

func (g gate) waits(id string) bool {
	return slices.ContainsFunc(g.Waiting, func(w waitingRecord) bool { return w.ID == id })
}

// admit decides whether an ordered delivery may be attempted now. It
// returns false when the delivery was queued behind its key's blocker (or
// already is); the caller then records it as held.
func (d *Dispatcher) admit(ctx context.Context, msg envelope.Delivery) (bool, error) {
	k := gateKey(msg.SubscriptionID, msg.Key)
	admitted := false
	var blocker string
	_, err := d.updateGateWith(ctx, k, func(g *gate) (bool, []store.Idempotency, error) {
		switch {
		case g.Blocker == "" && g.empty(), g.Blocker == msg.ID:
			admitted = true
			return false, nil, nil
		case len(g.Waiting) > 0 && g.Waiting[0].ID == msg.ID && (g.Blocker == "" || d.finished(ctx, g.BlockerEvent, g.Blocker)):
			// A gate of before round 11, whose release scheduled the
			// front of its queue and was cut short by a crash before it
			// made it the blocker: take it.
			admitted = true
			g.Blocker, g.BlockerEvent, g.Waiting = msg.ID, msg.EventID, g.Waiting[1:]
			return true, nil, nil
		case g.waits(msg.ID):
			return false, nil, nil
		default:
			// The item with the gate that counts it (before it, where the
			// store has no transactions: the queue's one writer, the
			// key's consumer, writes the same item again if the gate's
			// write must be tried again). One write, not two: a key's
			// records are queued one after the other, and at 250 a second
			// two writes each fell behind (docs/benchmarks.md, "Ordered
			// delivery").
			// The item keeps the delivery's trace: its drain makes it
			// in it, not in the blocker's that the drain runs in.
			queued := msg
			queued.Trace = telemetry.Traceparent(ctx)
			item := store.Idempotency{Key: waitKey(msg.SubscriptionID, msg.Key, g.Tail), Value: queued.JSON(), CreatedAt: d.now(), ExpiresAt: d.now().Add(gateTTL)}
			blocker = g.Blocker
			g.Tail++
			return true, []store.Idempotency{item}, nil
		}
	})
	if err == nil && !admitted && blocker != "" {
		d.log.Info("ordered delivery held behind its key's failing delivery", "delivery_id", msg.ID, "blocked_by", blocker)
	}
	return admitted, err
}

// finished reports whether a delivery reached a final status.
func (d *Dispatcher) finished(ctx context.Context, eventID, deliveryID string) bool {
	st, err := d.st.GetDelivery(ctx, eventID, deliveryID)
	return err == nil && finalStatus(st.Status)
}

// finalStatus reports whether a delivery status is one no attempt follows.
func finalStatus(status string) bool {
	switch status {
	case store.DeliveryDelivered, store.DeliveryDeadLettered, store.DeliveryCancelled:
		return true
	}
	return false
}

// draining is what a drain tells the attempts it makes (through their
// context): the gate is the drain's, so they neither queue nor drain, and
// blocked is set when the delivery it makes failed and became the
// blocker.
type draining struct {
	blocked bool
}

type drainingKey struct{}

func drainingOf(ctx context.Context) *draining {
	dr, _ := ctx.Value(drainingKey{}).(*draining)
	return dr
}

// block makes msg its key's blocker before its retry is scheduled, so
// later deliveries of the key queue behind it. A delivery a drain is
// making tells the drain, which takes it off the queue and ends.
func (d *Dispatcher) block(ctx context.Context, msg envelope.Delivery) error {
	_, err := d.updateGate(ctx, gateKey(msg.SubscriptionID, msg.Key), func(g *gate) (bool, error) {
		if g.Blocker == msg.ID {
			return false, nil
		}
		g.Blocker, g.BlockerEvent = msg.ID, msg.EventID
		return true, nil
	})
	if dr := drainingOf(ctx); err == nil && dr != nil {
		dr.blocked = true
	}
	return err
}

// pop takes the front off g's queue.
func pop(g *gate) {
	if len(g.Waiting) > 0 {
		g.Waiting = g.Waiting[1:]
		return
	}
	g.Head++
}

// resumeIfBlocker drains msg's key if msg, found delivered already, is
// still its gate's blocker: its drain was cut short by a crash, and this
// is its record read again.
func (d *Dispatcher) resumeIfBlocker(ctx context.Context, log *slog.Logger, msg envelope.Delivery) {
	if msg.Key == "" || drainingOf(ctx) != nil {
		return
	}
	sub, err := d.subscription(ctx, msg.SubscriptionID)
	if err != nil || sub.Mode != "ordered" {
		return
	}
	d.drain(ctx, log, msg)
}

// errDrainBusy: another drain holds the gate's lease.
var errDrainBusy = errors.New("dispatch: another drain holds the ordering gate")

// drainCheckpoint is how many deliveries a drain makes between writes of
// the gate (and of their statuses): each write is a commit to the store,
// and one per delivery bounded a drain at about 100 a second here. A
// drain cut short before its checkpoint makes its deliveries since the
// last one again, and the ledger drops those made already.
const drainCheckpoint = 64

// drain is called once blocker, an ordered delivery that held its key,
// is final: it makes the deliveries queued behind it, one after the other
// (see the top of this file). Whatever stops it before the queue is empty
// — another drain holding the key, an error, the budget running out —
// leaves a resume record behind, so the drain goes on later.
func (d *Dispatcher) drain(ctx context.Context, log *slog.Logger, blocker envelope.Delivery) {
	k := gateKey(blocker.SubscriptionID, blocker.Key)
	bg := context.WithoutCancel(ctx)
	lease := uuid.NewString()
	mine := false
	g, err := d.updateGate(bg, k, func(g *gate) (bool, error) {
		mine = false
		switch {
		case g.Blocker != blocker.ID:
			return false, nil // the key has moved on
		case g.Drainer != "" && g.Drainer != lease && d.now().Before(g.DrainUntil):
			return false, errDrainBusy
		}
		mine = true
		g.Drainer, g.DrainUntil = lease, d.now().Add(d.drainLease())
		return true, nil
	})
	switch {
	case errors.Is(err, errDrainBusy):
		// Another drain ends within its lease; a delivery of the queue
		// that failed and held the key may also be done before the drain
		// that made it has let go.
		d.resumeLater(bg, log, blocker, retry.TransientDelay)
		return
	case err != nil:
		log.Error("ordering gate unavailable; its queue is drained later", "error", err)
		d.resumeLater(bg, log, blocker, retry.TransientDelay)
		return
	case !mine:
		return
	}
	// The deliveries made since the last checkpoint: popped off the
	// local view (cursor) only, their statuses and items with them.
	var (
		cursor   = g
		popped   int
		statuses []store.Delivery
		items    []string
	)
	// settle writes the statuses, then takes what was made off the gate's
	// queue (and, with open, opens the gate if its queue is empty, or
	// with release gives up the lease), then deletes the items made. If
	// the statuses cannot be written, the gate is left as it was: what
	// was made stays at the queue's front, and the drain that takes it up
	// again finds it made in the ledger and records it delivered (a gate
	// moved past it would have left it "held" for good).
	col := newCollector()
	// carried is what a settle could not write but the collector's (the
	// ledger entries of a drain in a batch, NewBatch's, whose ledger is
	// written with its statuses): the next settle writes it.
	var carried batchWrites
	settle := func(open, release bool) (gate, error) {
		// Their statuses, counters and ledger entries (the ledger lane's,
		// when it runs, written by now), as a batch's are.
		w := col.take()
		w.statuses = append(append(carried.statuses, w.statuses...), statuses...)
		w.ledger = append(carried.ledger, w.ledger...)
		if d.ledger != nil {
			w.ledgerUpTo = d.ledger.mark()
		}
		if !w.empty() || w.ledgerUpTo > 0 {
			if err := d.writeBatches(bg, []batchWrites{w}); err != nil {
				carried = batchWrites{statuses: w.statuses[:len(w.statuses)-len(statuses)], ledger: w.ledger}
				return gate{}, fmt.Errorf("writing the statuses of %d deliveries a drain made: %w", len(w.statuses), err)
			}
		}
		carried = batchWrites{}
		g, err := d.updateGate(bg, k, func(g *gate) (bool, error) {
			if g.Drainer != lease {
				return false, errDrainBusy
			}
			for range popped {
				pop(g)
			}
			g.DrainUntil = d.now().Add(d.drainLease())
			switch {
			case open && g.empty() && g.Blocker == blocker.ID:
				*g = gate{Head: g.Head, Tail: g.Tail}
			case release:
				g.Drainer, g.DrainUntil = "", time.Time{}
			}
			return true, nil
		})
		if err == nil {
			d.deleteItems(bg, log, items)
			popped, statuses, items = 0, statuses[:0], items[:0]
		}
		return g, err
	}
	// The subscription read once, its request prepared once; ledger
	// entries and counters gathered as a batch's are, and written at the
	// checkpoints: one store write per delivery (the ledger's, the
	// counter's) held a drain to ≈ 400 a second.
	ctx = withMemo(context.WithValue(ctx, collectorKey{}, col))
	end := d.now().Add(drainBudget)
	for {
		if cursor.empty() {
			if g, err = settle(true, false); err != nil {
				break
			}
			if g.Drainer != lease {
				return // open
			}
			cursor = g // a delivery joined the queue meanwhile
			continue
		}
		if ctx.Err() != nil || !d.now().Before(end) {
			// Out of time (or shutting down): hand over to a resume
			// record, the lease given up first so that it finds none.
			if _, err = settle(false, true); err != nil {
				break
			}
			d.resumeLater(bg, log, blocker, 0)
			return
		}
		var front *envelope.Delivery
		var item string
		if front, item, err = d.front(bg, cursor, blocker); err != nil {
			break
		}
		if front != nil {
			dr := &draining{}
			// In the delivery's own trace (its queue item's), linked to
			// the drain's.
			fctx, span := d.cfg.Tracing.Resume(ctx, front.Trace, "ordered queue drain", attribute.String("whp.event_id", front.EventID),
				attribute.String("whp.delivery_id", front.ID), attribute.String("whp.partner_id", front.PartnerID))
			front.Trace = ""
			st, res := d.run(context.WithValue(fctx, drainingKey{}, dr), *front, 1, nil)
			d.record(fctx, *front, st, res)
			span.End()
			if res == retryBatch {
				// Not attempted (the store unavailable, say), or made the
				// blocker without its retry scheduled: the key goes back
				// to this drain's blocker, and the drain resumes later.
				log.Warn("a queued ordered delivery could not be attempted; its queue is drained later", "delivery_id", front.ID)
				if dr.blocked {
					if _, err := d.updateGate(bg, k, func(g *gate) (bool, error) {
						if g.Blocker != front.ID {
							return false, nil
						}
						g.Blocker, g.BlockerEvent = blocker.ID, blocker.EventID
						return true, nil
					}); err != nil {
						log.Error("ordering gate unavailable; the key waits for its blocker's next retry", "error", err)
					}
				}
				err = errNotAttempted
				break
			}
			if res == write || res == rewrite {
				statuses = append(statuses, st)
			}
			if dr.blocked {
				// It failed and holds the key now, its retry scheduled:
				// it leaves the queue, and the drain ends.
				popped++
				items = append(items, item)
				if _, err := settle(false, true); err != nil && !errors.Is(err, errDrainBusy) {
					log.Error("ordering gate unavailable; delivered entries of its queue are read again", "error", err)
				}
				return
			}
		}
		pop(&cursor)
		popped++
		items = append(items, item)
		if popped >= drainCheckpoint {
			if cursor, err = settle(false, false); err != nil {
				break
			}
		}
	}
	// A store error (or the lease lost) cut the drain short. What it made
	// since its last checkpoint is recorded, and the lease given up, if
	// the store allows; if not, what it made is read again (the ledger
	// drops it) once the lease has run out.
	if errors.Is(err, errDrainBusy) {
		log.Warn("an ordered key's drain lost its lease; the key is drained by another", "blocker", blocker.ID)
		return
	}
	log.Error("draining an ordered key's queue failed; it is drained later", "error", err)
	settle(false, true)
	d.resumeLater(bg, log, blocker, retry.TransientDelay)
}

// deleteItems deletes drained queue items, a few at a time (each is a
// write of its own); one not deleted expires.
func (d *Dispatcher) deleteItems(ctx context.Context, log *slog.Logger, keys []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, key := range keys {
		if key == "" {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.st.DeleteIdempotency(ctx, key); err != nil {
				log.Warn("deleting a drained queue item failed; it expires", "error", err)
			}
		})
	}
	wg.Wait()
}

// front is the delivery at the front of g's queue and its item's key
// ("" for a gate's own list). It is nil, with no error, when the item is
// gone — expired, or deleted by a drain cut short after it had popped
// it — and there is nothing to make.
func (d *Dispatcher) front(ctx context.Context, g gate, blocker envelope.Delivery) (*envelope.Delivery, string, error) {
	var value []byte
	key := ""
	if len(g.Waiting) > 0 {
		value = g.Waiting[0].Value
	} else {
		key = waitKey(blocker.SubscriptionID, blocker.Key, g.Head)
		item, err := d.st.GetIdempotency(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, key, nil
		}
		if err != nil {
			return nil, key, err
		}
		value = item.Value
	}
	var msg envelope.Delivery
	if err := fastjson.Unmarshal(value, &msg); err != nil {
		// Not a delivery: nothing can make it; drop it rather than hold
		// the key for ever.
		d.log.Error("skipping a malformed queued ordered delivery", "gate", gateKey(blocker.SubscriptionID, blocker.Key), "error", err)
		return nil, key, nil
	}
	return &msg, key, nil
}

// resumeLater schedules blocker's resume record: a retry record of it,
// marked Resume, due after wait, whose processing drains the key again
// (DeliverRetry).
func (d *Dispatcher) resumeLater(ctx context.Context, log *slog.Logger, blocker envelope.Delivery, wait time.Duration) {
	blocker.Resume = true
	// Keyed apart from the blocker's own retries, which the scheduler
	// takes one of when several are due at once.
	rec := retry.NewRecord(topic.Retry(blocker.Event), []byte("resume#"+blocker.ID), blocker.JSON(), d.now().Add(wait), 1, d.now())
	if err := d.retryProd.ProduceSync(ctx, rec).FirstErr(); err != nil {
		// The key's deliveries stay queued until its blocker's record is
		// read again (a restart reads what was not committed).
		log.Error("scheduling the ordered queue's drain failed; it stays queued", "blocker", blocker.ID, "error", err)
	}
}
