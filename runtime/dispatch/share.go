package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/topic"
)

// shares is which of each egress topic's partitions this dispatcher
// consumes. A partner's rate_limit is the partner's, not each process's:
// with several dispatchers in the group, each keeps to the share of the
// limit that its share of the partner's partitions is (a third each of
// three partitions over three dispatchers; all of it for one that
// consumes them all) — the events' keys spread them over the partitions,
// and so over the dispatchers, as evenly. Before, each process kept to
// the whole limit, and a partner limited to 100 a second got up to 300
// from three dispatchers.
type shares struct {
	mu     sync.Mutex
	owned  map[string]map[int32]bool // topic → its partitions consumed here
	totals map[string]int            // topic → its partitions
	topics map[string][]string       // partner → its topics in totals
}

// sharesLookup bounds the metadata read of the topics assigned.
const sharesLookup = 5 * time.Second

// assigned is the partitions-assigned hook: it adds them, and reads how
// many partitions their topics have (a metadata request, once a topic).
func (s *shares) assigned(ctx context.Context, cl *kgo.Client, got map[string][]int32, log *slog.Logger) {
	s.mu.Lock()
	if s.owned == nil {
		s.owned, s.totals = map[string]map[int32]bool{}, map[string]int{}
	}
	var unknown []string
	for t, ps := range got {
		if s.owned[t] == nil {
			s.owned[t] = map[int32]bool{}
		}
		for _, p := range ps {
			s.owned[t][p] = true
		}
		if s.totals[t] == 0 {
			unknown = append(unknown, t)
		}
	}
	s.mu.Unlock()
	if len(unknown) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sharesLookup)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx, unknown...)
	if err != nil {
		// Until a later assignment reads them, those topics' partners keep
		// to their whole limit here, as before shares.
		log.Warn("reading the egress topics' partitions failed; their partners' rate limits are not split among the dispatchers", "error", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, td := range details {
		if td.Err == nil && len(td.Partitions) > 0 {
			s.totals[t] = len(td.Partitions)
			if p, ok := topic.EgressPartner(t); ok {
				if s.topics == nil {
					s.topics = map[string][]string{}
				}
				s.topics[p] = append(s.topics[p], t)
			}
		}
	}
}

// revoked is the partitions-revoked (and -lost) hook.
func (s *shares) revoked(lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range lost {
		for _, p := range ps {
			delete(s.owned[t], p)
		}
	}
}

// of is partner's share of its rate limit in this dispatcher: the share of
// the partitions of its egress topics it consumes. 1 where that is not
// known — a dispatcher that consumes nothing itself (NewBatch: on Lambda
// the limit is each invocation's), or before the topics' partitions are
// read. One that consumes none of them still makes the partner's retries
// that come due in its retry tiers: it has one partition's share.
func (s *shares) of(partner string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	owned, total, fewest := 0, 0, 0
	for _, t := range s.topics[partner] {
		n := s.totals[t]
		owned += len(s.owned[t])
		total += n
		if fewest == 0 || n < fewest {
			fewest = n
		}
	}
	switch {
	case total == 0:
		return 1
	case owned == 0:
		return 1 / float64(fewest)
	}
	return float64(owned) / float64(total)
}
