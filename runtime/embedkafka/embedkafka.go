// Package embedkafka runs the two Kafka clusters of the embedded platform
// — ingress and egress, as on MSK — in process, with franz-go's kfake,
// persisted under the data dir. Clients reach them over TCP on 127.0.0.1
// with kgo exactly as they reach MSK; only the addresses differ.
package embedkafka

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Clusters are the ingress and egress clusters.
type Clusters struct {
	Ingress *kfake.Cluster
	Egress  *kfake.Cluster
	// Admin clients of each, for Trim.
	ingressAdm, egressAdm *kadm.Client
}

// Start starts both clusters with their data in dataDir/ingress and
// dataDir/egress; what a previous run wrote there (records, topics,
// committed offsets) is loaded again. Extra options apply to both (tests
// use them for fault injection settings).
func Start(dataDir string, opts ...kfake.Opt) (*Clusters, error) {
	in, err := start(filepath.Join(dataDir, "ingress"), "whp-ingress", opts)
	if err != nil {
		return nil, err
	}
	eg, err := start(filepath.Join(dataDir, "egress"), "whp-egress", opts)
	if err != nil {
		in.Close()
		return nil, err
	}
	c := &Clusters{Ingress: in, Egress: eg}
	for _, a := range []struct {
		into **kadm.Client
		of   *kfake.Cluster
	}{{&c.ingressAdm, in}, {&c.egressAdm, eg}} {
		cl, err := kgo.NewClient(append(ClientOpts(), kgo.SeedBrokers(a.of.ListenAddrs()...))...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("embedded kafka admin client: %w", err)
		}
		*a.into = kadm.NewClient(cl)
	}
	return c, nil
}

func start(dir, id string, extra []kfake.Opt) (*kfake.Cluster, error) {
	opts := append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID(id),
		kfake.DataDir(dir),
		kfake.DefaultNumPartitions(3),
		kfake.GroupMinSessionTimeout(0),
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.Itoa(segmentBytes)}),
	}, extra...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka %s in %s: %w", id, dir, err)
	}
	return c, nil
}

// ClientOpts are the options every client of the embedded clusters adds to
// its own: production clients (MSK) keep kgo's defaults.
//
//   - Batches are produced uncompressed. Over loopback compression buys
//     nothing on the wire; what it does change is how much a poll holds:
//     the fetch limits (consume.GroupOptions) count compressed bytes, so
//     at ≈ 3× compression a role held three times the records the limits
//     mean to bound. Uncompressed, `whp bench`'s default run peaked at
//     118–139 MiB of RSS, median 125, against 129–151, median 140
//     (thirteen runs each, alternating; the store's file less resident at the
//     peak), at the same deliveries a second and CPU an event within the
//     noise; at fan-out 16, 12–16 MiB lower (178 against 190–194) for
//     3–6 % fewer deliveries a second and 4 % more CPU an event (kfake's
//     log and the fetches carry three times the bytes). The embedded
//     Kafka's files are ≈ 2× larger, bounded by its trimming
//     (--kafka-keep-mib).
//   - Client metrics (KIP-714) are not pushed: kfake subscribes every
//     client to them and discards what it gets, and each push (every 30 s
//     a client) compresses with lz4 into 4 MiB blocks — 16 MiB allocated
//     in a bench run of 15 s.
func ClientOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.DisableClientMetrics(),
	}
}

// Close stops both clusters, flushing their data to disk.
func (c *Clusters) Close() {
	for _, a := range []*kadm.Client{c.ingressAdm, c.egressAdm} {
		if a != nil {
			a.Close()
		}
	}
	c.Egress.Close()
	c.Ingress.Close()
}
