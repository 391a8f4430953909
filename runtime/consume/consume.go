// Package consume holds what the platform's consumer-group roles share:
// the kgo options that make a group consume at-least-once with manual
// commits, and the rewind that retries an uncommitted batch.
package consume

import (
	"context"
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// GroupOptions configures a client to consume every topic whose name
// starts with prefix, in group, from the start of a topic the group has no
// offset for. Rebalances wait for the caller's AllowRebalance, so a batch
// is never processed after its partitions moved away. Topics created later
// are found within the metadata refresh interval. The caller chooses how
// offsets are committed (kgo.DisableAutoCommit with explicit commits, or
// kgo.AutoCommitMarks) — never plain autocommit, which could commit what
// was not processed.
func GroupOptions(group, prefix string) []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics("^" + regexp.QuoteMeta(prefix)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(10 * time.Second),
		kgo.MetadataMaxAge(10 * time.Second),
		kgo.FetchMaxWait(250 * time.Millisecond),
		// A role handles at most a poll's worth of records at a time;
		// fetching further ahead (kgo's defaults are 50 MiB a fetch and
		// 1 MiB a partition, held decompressed until polled) only costs
		// memory.
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(fetchMaxPartitionBytes),
	}
}

// fetchMaxBytes bounds one fetch response (per broker), and
// fetchMaxPartitionBytes one partition's share of it (a broker still
// returns a first batch larger than either, so nothing is stuck). Counted
// compressed: on MSK, where producers compress, what is held decompressed
// is several times more (the embedded clusters' batches are uncompressed,
// so there the limits count what is held: embedkafka.ClientOpts). At
// fan-out 16 in `whp bench`, 1 MiB and 256 KiB against 4 MiB and kgo's
// 1 MiB hold ≈ 40 MiB less at the peak (anonymous 98–122 against 142–163
// MiB) for ≈ 3 % fewer deliveries a second — the better trade for pods
// with memory limits; fan-out 1 did not move (docs/benchmarks.md, round
// 5).
const (
	fetchMaxBytes          = 1 << 20
	fetchMaxPartitionBytes = 256 << 10
)

// Rewind seeks back to the first record of each partition of recs, so an
// uncommitted batch is consumed again.
func Rewind(cl *kgo.Client, recs []*kgo.Record) {
	first := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range recs {
		if first[r.Topic] == nil {
			first[r.Topic] = map[int32]kgo.EpochOffset{}
		}
		if _, ok := first[r.Topic][r.Partition]; !ok {
			first[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	cl.SetOffsets(first)
}

// Pause waits for d and reports false if ctx ended first.
func Pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
