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
		cl, err := kgo.NewClient(kgo.SeedBrokers(a.of.ListenAddrs()...))
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
