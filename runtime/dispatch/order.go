package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/retry"
	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
)

// Ordered subscriptions deliver the deliveries of one partition key in
// order, and a failing one holds back later ones of the same key only.
//
// Each (subscription, key) with a delivery in trouble has a gate in the
// ledger table, updated by compare-and-swap: the blocker (the delivery
// being retried) and the deliveries waiting behind it, in arrival order.
// A delivery that finds a gate with another blocker joins the queue (held);
// when the blocker is delivered, dead-lettered or cancelled, the next one
// is released into the retry tiers, due at once, and becomes the blocker.
// Other keys never look at this gate. The egress consumer sees one key's
// records in order (same key, same partition) and handles a key's records
// one after the other within a batch.

// gateTTL bounds how long a gate lives without a write.
const gateTTL = 30 * 24 * time.Hour

type gate struct {
	Blocker      string          `json:"blocker"`
	BlockerEvent string          `json:"blocker_event"`
	Waiting      []waitingRecord `json:"waiting"`
}

type waitingRecord struct {
	ID      string          `json:"id"`
	EventID string          `json:"event_id"`
	Value   json.RawMessage `json:"value"` // the envelope.Delivery
}

func gateKey(subID, key string) string { return "order#" + subID + "#" + key }

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

func (d *Dispatcher) saveGate(ctx context.Context, rec store.Idempotency, g gate) error {
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	now := d.now()
	rec.Value, rec.ExpiresAt = v, now.Add(gateTTL)
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	_, err = d.st.PutIdempotencyIf(ctx, rec)
	return err
}

// updateGate applies fn to the gate until the compare-and-swap holds.
// fn returns false to leave the gate as it is.
func (d *Dispatcher) updateGate(ctx context.Context, k string, fn func(*gate) bool) (gate, error) {
	for range 20 {
		g, rec, err := d.loadGate(ctx, k)
		if err != nil {
			return g, err
		}
		if !fn(&g) {
			return g, nil
		}
		err = d.saveGate(ctx, rec, g)
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
	_, err := d.updateGate(ctx, k, func(g *gate) bool {
		switch {
		case g.Blocker == "" && len(g.Waiting) == 0, g.Blocker == msg.ID:
			admitted = true
			return false
		case g.Blocker == "" || g.waits(msg.ID) && d.finished(ctx, g.BlockerEvent, g.Blocker):
			// Released (or the release was cut short by a crash after the
			// next one was scheduled): take the front of the queue.
			admitted = true
			g.Blocker, g.BlockerEvent = msg.ID, msg.EventID
			g.Waiting = slices.DeleteFunc(g.Waiting, func(w waitingRecord) bool { return w.ID == msg.ID })
			return true
		case g.waits(msg.ID):
			return false
		default:
			g.Waiting = append(g.Waiting, waitingRecord{ID: msg.ID, EventID: msg.EventID, Value: msg.JSON()})
			blocker = g.Blocker
			return true
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
	if err != nil {
		return false
	}
	switch st.Status {
	case store.DeliveryDelivered, store.DeliveryDeadLettered, store.DeliveryCancelled:
		return true
	}
	return false
}

// block makes msg its key's blocker before its retry is scheduled, so
// later deliveries of the key queue behind it.
func (d *Dispatcher) block(ctx context.Context, msg envelope.Delivery) error {
	_, err := d.updateGate(ctx, gateKey(msg.SubscriptionID, msg.Key), func(g *gate) bool {
		if g.Blocker == msg.ID {
			return false
		}
		g.Blocker, g.BlockerEvent = msg.ID, msg.EventID
		return true
	})
	return err
}

// release hands the key to the next waiting delivery once msg is final:
// the next one is scheduled first (due at once), then made the blocker; a
// crash between the two is mended by admit.
func (d *Dispatcher) release(ctx context.Context, log *slog.Logger, msg envelope.Delivery) {
	k := gateKey(msg.SubscriptionID, msg.Key)
	g, _, err := d.loadGate(ctx, k)
	if err != nil || g.Blocker != msg.ID {
		return
	}
	if len(g.Waiting) > 0 {
		next := g.Waiting[0]
		rec := retry.NewRecord(topic.Retry(msg.Event), []byte(next.ID), next.Value, d.now(), 1, d.now())
		if err := d.retryProd.ProduceSync(ctx, rec).FirstErr(); err != nil {
			log.Error("releasing the next ordered delivery failed; it stays queued", "next", next.ID, "error", err)
			return
		}
	}
	_, err = d.updateGate(ctx, k, func(g *gate) bool {
		if g.Blocker != msg.ID {
			return false
		}
		g.Blocker, g.BlockerEvent = "", ""
		if len(g.Waiting) > 0 {
			g.Blocker, g.BlockerEvent, g.Waiting = g.Waiting[0].ID, g.Waiting[0].EventID, g.Waiting[1:]
		}
		return true
	})
	if err != nil {
		log.Error("updating the ordering gate failed", "error", err)
	}
}
