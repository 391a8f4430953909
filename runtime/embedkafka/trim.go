package embedkafka

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Why trimming. kfake keeps a record's bytes in its segment files and an
// index entry for each of its batches in memory (≈ 80 bytes, and each
// produce with linger 0 is a batch of its own), for as long as the topic's
// retention keeps it — seven days by default. A whp dev left running at
// 2,000 events a second grew its live heap by ≈ 0.17 KB an event (its
// resident memory by twice that) and its Kafka data by ≈ 1.6 KB (both
// hops), without a bound (`whp bench --soak`; docs/benchmarks.md, "A long
// run"). MSK pages its logs out of memory and
// has the disk; an in-process broker needs a bound.
//
// The bound keeps what matters: a record a consumer group has not yet
// committed past is never dropped (a partner that is down keeps its
// backlog, however old), and of the records every group is done with, the
// newest are kept, up to a budget in bytes — what resend and replay read in
// dev (they read the ingress topic; an event trimmed away answers as one
// past retention does). A topic no group consumes (dead letters) is left
// to its retention.

// DefaultKeep is the budget of consumed records each cluster keeps when
// whp dev is not told otherwise: at ≈ 0.75 KB a 1 KiB event a hop, about
// 85,000 events — the last day of a developer's events, the last minute
// of a load test.
const DefaultKeep = 64 << 20

// segmentBytes is the size at which the clusters roll a partition's
// segment file. Trimmed records leave the disk with their whole segment,
// so kfake's 100 MiB a partition would hold a trimmed partition's disk for
// long after its records went.
const segmentBytes = 8 << 20

// Trimmed is what one Trim dropped.
type Trimmed struct {
	Records int64 // records dropped
	Bytes   int64 // their bytes, estimated from their partitions' average
}

// Trim drops, in each cluster, the oldest records that every consumer
// group has committed past, until what remains of them is at most keep
// bytes (estimate): each partition keeps the same share of its consumed
// records, the newest, and always its last record. A partition some group
// of its topic has not committed in is left whole (the group will read it
// from its start). Any error reading the groups' offsets drops nothing.
func (c *Clusters) Trim(ctx context.Context, keep int64) (Trimmed, error) {
	var total Trimmed
	for _, cl := range []struct {
		name string
		c    *kfake.Cluster
		adm  *kadm.Client
	}{{"ingress", c.Ingress, c.ingressAdm}, {"egress", c.Egress, c.egressAdm}} {
		t, err := trim(ctx, cl.c, cl.adm, keep)
		total.Records += t.Records
		total.Bytes += t.Bytes
		if err != nil {
			return total, fmt.Errorf("trim embedded kafka %s: %w", cl.name, err)
		}
	}
	return total, nil
}

// KeepTrimmed runs Trim every interval until ctx ends, logging what it
// dropped and why it could not.
func (c *Clusters) KeepTrimmed(ctx context.Context, keep int64, every time.Duration, log *slog.Logger) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			tr, err := c.Trim(ctx, keep)
			if err != nil && ctx.Err() == nil {
				log.Warn("embedded kafka: consumed records not trimmed", "error", err)
			} else if tr.Records > 0 {
				log.Debug("embedded kafka: consumed records trimmed", "records", tr.Records, "bytes", tr.Bytes)
			}
		}
	}
}

// consumed is a partition's records every group is done with,
// [start, upTo) of [start, end), and the bytes kfake counts in it.
type consumed struct {
	topic            string
	partition        int32
	start, upTo, end int64
	partBytes        int64
}

// recordBytes is what a record is taken to weigh when no partition's
// byte count can be trusted (see estimate).
const recordBytes = 1 << 10

// estimate is each partition's consumed bytes: its count of bytes shared
// evenly over its records. kfake's count can be wrong after a restart on
// trimmed segments (it was negative in TestKafkaTrimmedLosesNothing under
// the race detector, which would have stopped every trim): a partition
// whose count is not positive weighs the average record of the others,
// or recordBytes.
func estimate(parts []consumed) []int64 {
	var bytes, records int64
	for _, c := range parts {
		if c.partBytes > 0 {
			bytes += c.partBytes
			records += c.end - c.start
		}
	}
	avg := float64(recordBytes)
	if records > 0 {
		avg = float64(bytes) / float64(records)
	}
	out := make([]int64, len(parts))
	for i, c := range parts {
		if c.partBytes > 0 {
			out[i] = c.partBytes * (c.upTo - c.start) / (c.end - c.start)
		} else {
			out[i] = int64(avg * float64(c.upTo-c.start))
		}
	}
	return out
}

// plan is where to trim each partition to keep keep bytes of what was
// consumed (0 leaves a partition whole), and the consumed bytes estimated.
func plan(parts []consumed, keep int64) (to, bytes []int64) {
	bytes = estimate(parts)
	var total int64
	for _, b := range bytes {
		total += b
	}
	to = make([]int64, len(parts))
	if total <= keep {
		return to, bytes
	}
	share := float64(keep) / float64(total)
	for i, c := range parts {
		records := c.upTo - c.start
		if drop := records - int64(float64(records)*share); drop > 0 {
			to[i] = c.start + drop
		}
	}
	return to, bytes
}

func trim(ctx context.Context, cl *kfake.Cluster, adm *kadm.Client, keep int64) (Trimmed, error) {
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return Trimmed{}, err
	}
	fetched := adm.FetchManyOffsets(ctx, groups.Groups()...)
	if err := fetched.Error(); err != nil {
		return Trimmed{}, err
	}
	// Each topic's groups, each with its commits by partition.
	commits := map[string][]map[int32]int64{}
	for _, g := range fetched {
		for topic, parts := range g.Fetched {
			at := map[int32]int64{}
			for p, o := range parts {
				if o.Err == nil && o.At >= 0 {
					at[p] = o.At
				}
			}
			if len(at) > 0 {
				commits[topic] = append(commits[topic], at)
			}
		}
	}
	var parts []consumed
	for topic, groups := range commits {
	partitions:
		for _, info := range cl.PartitionInfos(topic) {
			// The last record stays, whatever was consumed: kfake
			// restores a partition's offsets from its segments, and a
			// partition trimmed empty would start again at 0 on restart,
			// below every commit (its snapshot is read only beside a
			// segment file).
			upTo := info.HighWatermark - 1
			for _, g := range groups {
				at, ok := g[info.Partition]
				if !ok {
					continue partitions
				}
				upTo = min(upTo, at)
			}
			if upTo > info.LogStartOffset {
				parts = append(parts, consumed{topic: topic, partition: info.Partition, start: info.LogStartOffset, upTo: upTo, end: info.HighWatermark, partBytes: info.NumBytes})
			}
		}
	}
	var dropped Trimmed
	tos, bytes := plan(parts, keep)
	for i, to := range tos {
		c := parts[i]
		if to <= c.start {
			continue
		}
		if err := cl.DeleteRecords(c.topic, c.partition, to); err != nil {
			return dropped, fmt.Errorf("%s[%d] to %d: %w", c.topic, c.partition, to, err)
		}
		dropped.Records += to - c.start
		dropped.Bytes += bytes[i] * (to - c.start) / (c.upTo - c.start)
	}
	return dropped, nil
}
