package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/consume"
	"github.com/whp-dev/whp/runtime/embedkafka"
)

// The Kafka relay (Config.KafkaRelay) is the relay with the embedded
// platform's two durable hops and nothing else: the delivered rate's
// ceiling on the machine of the run for any platform built as this one is
// — on two Kafka clusters, each event on disk in the first before its 202
// and in the second before it is sent (DESIGN.md). It runs the embedded
// clusters as whp dev does (embedkafka.Start: kfake with its data on disk,
// the platform's client options) and the platform's three stages without
// their work:
//
//   - ingest: each event produced to an ingress topic, acknowledged by
//     every replica (kgo.AllISRAcks, no linger, keyed by the event) before
//     its 202;
//   - the processor: a consumer group on the ingress topic producing one
//     record per partner to an egress topic, its offsets committed once
//     they are on the egress cluster;
//   - the dispatcher: a consumer group on the egress topic whose
//     relaySenders senders POST each record to its partner, its offsets
//     committed once sent.
//
// No validation, no store, no signing, no tracing, no retry. Its offsets are
// committed every kgo autocommit interval (5 s), where the platform's
// roles commit each batch: it does less than the platform at every step,
// so what it delivers bounds what the platform can, here. The topics have
// the platform's default partitions (3 each).

// The Kafka relay's topics, and its consumer groups' prefixes.
const (
	kafkaRelayIngress = "relay.in"
	kafkaRelayEgress  = "relay.out"
)

// kafkaRelay is the Kafka relay's ingest handler; rl numbers the events.
type kafkaRelay struct {
	rl       *relay
	producer *kgo.Client
}

func (k *kafkaRelay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	key := binary.BigEndian.AppendUint64(nil, uint64(k.rl.seq.Add(1)))
	if err := k.producer.ProduceSync(r.Context(), &kgo.Record{Topic: kafkaRelayIngress, Key: key, Value: body}).FirstErr(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"id":"x"}`))
}

// serveKafkaRelay serves the Kafka relay for s, with its clusters' data in
// a temporary directory, until the returned stop.
func serveKafkaRelay(s processSpec) (_ string, _ func(), err error) {
	rl, err := newRelay(s)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "whp-kafka-relay-")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		kc      *embedkafka.Clusters
		clients []*kgo.Client
		srv     *server
		wg      sync.WaitGroup
	)
	stop := func() {
		if srv != nil {
			srv.Close()
		}
		cancel() // the stages, then what they use
		wg.Wait()
		for _, cl := range clients {
			cl.Close()
		}
		if kc != nil {
			kc.Close()
		}
		rl.client.CloseIdleConnections()
		os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if kc, err = embedkafka.Start(dir); err != nil {
		return "", nil, err
	}
	in, eg := kc.Ingress.ListenAddrs(), kc.Egress.ListenAddrs()
	if err = createTopic(ctx, in, kafkaRelayIngress); err != nil {
		return "", nil, err
	}
	if err = createTopic(ctx, eg, kafkaRelayEgress); err != nil {
		return "", nil, err
	}
	produceTo := func(seeds []string) []kgo.Opt {
		return []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0)}
	}
	consumeFrom := func(seeds []string, prefix string) []kgo.Opt {
		return append(consume.GroupOptions("relay-"+prefix, prefix), kgo.SeedBrokers(seeds...), kgo.AutoCommitMarks())
	}
	for _, opts := range [][]kgo.Opt{produceTo(in), consumeFrom(in, kafkaRelayIngress), produceTo(eg), consumeFrom(eg, kafkaRelayEgress)} {
		cl, err := kgo.NewClient(append(embedkafka.ClientOpts(), opts...)...)
		if err != nil {
			return "", nil, fmt.Errorf("kafka relay: %w", err)
		}
		clients = append(clients, cl)
	}
	ingest, procIn, procOut, dispIn := clients[0], clients[1], clients[2], clients[3]
	wg.Go(func() { relayProcess(ctx, rl, procIn, procOut) })
	sends := make(chan *kgo.Record, relayQueue)
	wg.Go(func() { relayPoll(ctx, dispIn, sends) })
	for range relaySenders {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case r := <-sends:
					n, i, u := relayDelivery(r)
					rl.post(ctx, u, n, i, r.Value)
					dispIn.MarkCommitRecords(r)
				}
			}
		})
	}
	if srv, err = serve(&kafkaRelay{rl: rl, producer: ingest}); err != nil {
		return "", nil, err
	}
	return srv.URL, stop, nil
}

// createTopic creates topic on the cluster at seeds with the platform's
// default partitions.
func createTopic(ctx context.Context, seeds []string, topic string) error {
	cl, err := kgo.NewClient(append(embedkafka.ClientOpts(), kgo.SeedBrokers(seeds...))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := kadm.NewClient(cl).CreateTopic(ctx, reconciler.DefaultEgressPartitions, 1, nil, topic)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return fmt.Errorf("kafka relay: create %s: %w", topic, err)
	}
	return nil
}

// relayProcess is the Kafka relay's processor: each ingress record becomes
// a record per partner on the egress cluster (its key the event's number
// and the partner's index, its value the event), and is marked for commit
// once they are all acknowledged.
func relayProcess(ctx context.Context, rl *relay, in, out *kgo.Client) {
	for ctx.Err() == nil {
		fs := in.PollRecords(ctx, 1000)
		fs.EachRecord(func(r *kgo.Record) {
			us := rl.partners(r.Value)
			left := atomic.Int32{}
			left.Store(int32(len(us)))
			for i, u := range us {
				key := binary.BigEndian.AppendUint32(bytes.Clone(r.Key), uint32(i)) // the event's number, then i
				out.Produce(ctx, &kgo.Record{Topic: kafkaRelayEgress, Key: key, Value: r.Value, Headers: []kgo.RecordHeader{{Key: "url", Value: []byte(u)}}},
					func(_ *kgo.Record, err error) {
						if err == nil && left.Add(-1) == 0 {
							in.MarkCommitRecords(r)
						}
					})
			}
		})
		in.AllowRebalance()
	}
}

// relayPoll hands the Kafka relay's egress records to its senders.
func relayPoll(ctx context.Context, in *kgo.Client, sends chan<- *kgo.Record) {
	for ctx.Err() == nil {
		fs := in.PollRecords(ctx, 1000)
		fs.EachRecord(func(r *kgo.Record) {
			select {
			case sends <- r:
			case <-ctx.Done():
			}
		})
		in.AllowRebalance()
	}
}

// relayDelivery reads an egress record of the Kafka relay: the event's
// number, the partner's index and its URL.
func relayDelivery(r *kgo.Record) (n int64, i int, url string) {
	if len(r.Key) == 12 {
		n, i = int64(binary.BigEndian.Uint64(r.Key)), int(binary.BigEndian.Uint32(r.Key[8:]))
	}
	for _, h := range r.Headers {
		if h.Key == "url" {
			url = string(h.Value)
		}
	}
	return n, i, url
}
