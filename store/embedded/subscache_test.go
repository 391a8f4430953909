package embedded

import (
	"context"
	"sync"
	"testing"

	"github.com/whp-dev/whp/store"
)

// TestSubscriptionsCacheNeverStale: readers racing a writer never leave
// the cache behind it — once PutSubscription returns, every read shows
// the write, however the reads and the commit interleaved — and reads
// between writes share one answer.
func TestSubscriptionsCacheNeverStale(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const schema = "orders#order.created#1"
	sub, err := s.PutSubscription(ctx, store.Subscription{ID: "acme#" + schema, PartnerID: "acme", SchemaID: schema, Status: store.SubscriptionPending})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						s.SubscriptionsForSchema(ctx, schema)
					}
				}
			})
		}
		sub.Status = []string{store.SubscriptionApproved, store.SubscriptionPending}[i%2]
		if sub, err = s.PutSubscription(ctx, sub); err != nil {
			t.Fatal(err)
		}
		got, err := s.SubscriptionsForSchema(ctx, schema)
		close(stop)
		wg.Wait()
		if err != nil || len(got) != 1 || got[0].Rev != sub.Rev || got[0].Status != sub.Status {
			t.Fatalf("write %d: read %+v, %v after writing rev %d (%s)", i, got, err, sub.Rev, sub.Status)
		}
	}
	a, _ := s.SubscriptionsForSchema(ctx, schema)
	b, _ := s.SubscriptionsForSchema(ctx, schema)
	if &a[0] != &b[0] {
		t.Error("reads with no write between them decoded the rows again")
	}

	// The interleaving that matters, made to happen: a write commits
	// after a read's transaction and before its answer is kept.
	s.subs.Invalidate() // the next read goes to the file
	var written store.Subscription
	s.afterSubsRead = func() {
		s.afterSubsRead = nil
		sub.Status = store.SubscriptionCancelled
		if written, err = s.PutSubscription(ctx, sub); err != nil {
			t.Error(err)
		}
	}
	if old, _ := s.SubscriptionsForSchema(ctx, schema); old[0].Rev == written.Rev {
		t.Fatal("the racing read saw the write: the hook ran too early")
	}
	if got, _ := s.SubscriptionsForSchema(ctx, schema); got[0].Rev != written.Rev || got[0].Status != store.SubscriptionCancelled {
		t.Errorf("after the write, read rev %d (%s), want rev %d: the racing read's answer was kept", got[0].Rev, got[0].Status, written.Rev)
	}
}
