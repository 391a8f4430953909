package dlq

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/whp-dev/whp/store"
)

// Waiting is what the dead-letter queue holds now, as the console's DLQ
// page shows it: read from the store's index of the deliveries
// dead-lettered (store.Page.Status), not from the queue's topics.
//
// List reads every wh.dlq.* record and then each one's status: after an
// outage of a hundred thousand dead letters, 0.76 s and 380 MB a list on
// the embedded store, and on DynamoDB the whole queue from MSK and a
// thousand BatchGetItems — on every load of the page. Waiting reads the
// count of dead letters by partner (a walk of the index's keys; on
// DynamoDB a scan of the sparse index returning keys alone) and a page of
// the newest per partner: a few milliseconds, whatever the queue holds.
type Waiting struct {
	// Entries are the newest dead letters the filter selects, by their
	// delivery's creation (the order of the history and of the events
	// search), at most the limit asked for.
	Entries []Entry `json:"entries"`
	// Total is how many the filter selects; a lower bound unless Exact.
	Total int  `json:"total"`
	Exact bool `json:"exact"`
	// Partial says Entries may leave out some newer than its last: the
	// queue's dead letters are of more partners than Waiting reads pages
	// of (waitingPartners), or a subscription's were looked for in more
	// of its partner's pages than it reads (waitingPages).
	Partial bool `json:"partial"`
	// ByPartner counts every partner's dead letters, most first: the
	// queue's shape after an outage, whatever the filter.
	ByPartner []PartnerCount `json:"by_partner"`
}

// PartnerCount is one partner's dead letters waiting.
type PartnerCount struct {
	PartnerID string `json:"partner_id"`
	Count     int    `json:"count"`
}

const (
	// waitingPartners bounds the partners an unfiltered Waiting reads a
	// page of: the queue after a wide outage can hold dead letters of
	// hundreds, and their newest come from the partners with the most.
	waitingPartners = 20
	// waitingPages bounds the pages of its partner's dead letters a
	// subscription's are looked for in.
	waitingPages = 10
	// maxWaiting bounds the entries Waiting returns: a page of the
	// store's (DynamoDB's Query, at a few hundred bytes an item, returns
	// at most a megabyte a page).
	maxWaiting = 1000
)

// Waiting returns the newest limit (at most maxWaiting) dead letters
// waiting that f's partner or subscription selects (f's other fields, and
// All, are List's alone: an error here), with their count and every
// partner's.
func (q *Queue) Waiting(ctx context.Context, f Filter, limit int) (Waiting, error) {
	if len(f.DeliveryIDs) > 0 || !f.From.IsZero() || !f.To.IsZero() || f.All {
		return Waiting{}, fmt.Errorf("dlq: Waiting filters by partner and subscription alone")
	}
	limit = min(max(limit, 1), maxWaiting)
	counts, err := q.st.CountDeliveries(ctx, store.DeliveryDeadLettered)
	if err != nil {
		return Waiting{}, fmt.Errorf("dead letters by partner: %w", err)
	}
	w := Waiting{Entries: []Entry{}, ByPartner: []PartnerCount{}}
	for p, n := range counts {
		w.ByPartner = append(w.ByPartner, PartnerCount{p, n})
	}
	slices.SortFunc(w.ByPartner, func(a, b PartnerCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.PartnerID, b.PartnerID))
	})
	partner := f.PartnerID
	if p, _, ok := strings.Cut(f.SubscriptionID, "#"); ok { // PARTNER#SCHEMA_ID
		if partner != "" && partner != p {
			w.Exact = true // of no subscription of the partner's
			return w, nil
		}
		partner = p
	}
	switch {
	case f.SubscriptionID != "":
		// The partner's pages, newest first, filtered: a partner's
		// subscriptions are few, so its dead letters are mostly of the
		// one asked for or a few others.
		var cursor string
		for range waitingPages {
			page, err := q.st.DeliveriesByPartner(ctx, partner, store.Page{Status: store.DeliveryDeadLettered, Limit: limit, Cursor: cursor})
			if err != nil {
				return Waiting{}, fmt.Errorf("dead letters of %s: %w", partner, err)
			}
			for _, d := range page.Deliveries {
				if d.SubscriptionID == f.SubscriptionID {
					w.Total++
					if len(w.Entries) < limit {
						w.Entries = append(w.Entries, entryOf(d))
					}
				}
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		w.Exact = cursor == ""
		w.Partial = !w.Exact && len(w.Entries) < limit
	case partner != "":
		page, err := q.st.DeliveriesByPartner(ctx, partner, store.Page{Status: store.DeliveryDeadLettered, Limit: limit})
		if err != nil {
			return Waiting{}, fmt.Errorf("dead letters of %s: %w", partner, err)
		}
		for _, d := range page.Deliveries {
			w.Entries = append(w.Entries, entryOf(d))
		}
		w.Total, w.Exact = max(counts[partner], len(w.Entries)), true
	default:
		// The newest page of each partner's, merged: of the partners
		// with the most, when there are many.
		read := w.ByPartner[:min(len(w.ByPartner), waitingPartners)]
		pages := make([][]store.Delivery, len(read))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for i, pc := range read {
			g.Go(func() error {
				page, err := q.st.DeliveriesByPartner(gctx, pc.PartnerID, store.Page{Status: store.DeliveryDeadLettered, Limit: limit})
				if err != nil {
					return fmt.Errorf("dead letters of %s: %w", pc.PartnerID, err)
				}
				pages[i] = page.Deliveries
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return Waiting{}, err
		}
		all := slices.Concat(pages...)
		slices.SortFunc(all, func(a, b store.Delivery) int {
			return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.EventID, b.EventID), strings.Compare(a.ID, b.ID))
		})
		for _, d := range all[:min(len(all), limit)] {
			w.Entries = append(w.Entries, entryOf(d))
		}
		for n := range maps.Values(counts) {
			w.Total += n
		}
		w.Total, w.Exact, w.Partial = max(w.Total, len(w.Entries)), true, len(read) < len(w.ByPartner)
	}
	return w, nil
}

// entryOf is the entry of a delivery dead-lettered, from its status: the
// failure's time is the status's, its reason the one the dispatcher
// recorded with it (none for a delivery dead-lettered by a version before
// store.Delivery.Reason: its last attempt says why).
func entryOf(d store.Delivery) Entry {
	e := Entry{DeliveryID: d.ID, EventID: d.EventID, SubscriptionID: d.SubscriptionID, PartnerID: d.PartnerID, SchemaID: d.SchemaID,
		Reason: d.Reason, Attempts: len(d.Attempts), FailedAt: d.UpdatedAt, Status: d.Status}
	if n := len(d.Attempts); n > 0 {
		e.LastStatusCode, e.LastError = d.Attempts[n-1].StatusCode, d.Attempts[n-1].Error
	}
	return e
}
