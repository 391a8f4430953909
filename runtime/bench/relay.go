package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The relay (Config.Relay) is the delivered rate's ceiling on the machine
// of the run: a webhooks platform that does no work of its own. It
// answers each event 202 as the baseline does, then POSTs it to the
// event's partners at the receiver — no validation, no durable write,
// no signing, no status, no retry — relaySenders deliveries at once on
// keep-alive connections. Every event costs it two HTTP exchanges
// (the producer's and the delivery's), as it costs any platform at
// fan-out 1, on the same cores as the load generator and the receiver;
// what the platform delivers over what the relay delivers is the share of
// the reachable it reaches, with the speed of the machine of the moment
// cancelled out, as the baseline cancels it for ingest.

// relayQueue is how many events the relay holds accepted but not yet
// sent: a full queue holds the producer's answer back, as a platform's
// backpressure would, so the relay cannot run ahead of its deliveries.
const relayQueue = 1024

// relay is the relay's handler; its senders POST what it queued.
type relay struct {
	queue    chan relayed
	client   *http.Client
	partners func(body []byte) []string // the receiver's URLs the event is owed at
	seq      atomic.Int64
	// ids prefixes its deliveries' webhook-ids: the receiver's duplicate
	// check spans the run, so each relay has ids of its own.
	ids string
}

type relayed struct {
	n    int64
	body []byte
}

// newRelay relays to the receiver at receiverURL the way the platform's
// catalog routes (Catalog): fanout partners p0… for each tenant, the
// event's tenant read from its body.
func newRelay(s processSpec) (*relay, error) {
	tr := &http.Transport{MaxIdleConns: relaySenders, MaxIdleConnsPerHost: relaySenders, IdleConnTimeout: time.Minute,
		DisableCompression: true, ForceAttemptHTTP2: true}
	if s.PartnerCA != "" {
		var err error
		if tr.TLSClientConfig, err = partnerRoots(s.PartnerCA); err != nil {
			return nil, err
		}
	}
	fanout, tenants := max(s.Fanout, 1), max(s.Tenants, 1)
	urls := make([]string, fanout*tenants)
	for i := range urls {
		urls[i] = s.ReceiverURL + "/p" + strconv.Itoa(i)
	}
	ids := "relay-"
	if s.RelayKafka {
		ids = "kafka-relay-"
	}
	return &relay{queue: make(chan relayed, relayQueue), ids: ids, client: &http.Client{Timeout: 30 * time.Second, Transport: tr},
		partners: func(body []byte) []string {
			t, _ := tenantOf(body) // 0 without one
			t = min(max(t, 0), tenants-1)
			return urls[t*fanout : (t+1)*fanout]
		}}, nil
}

// relaySenders is how many deliveries the relay makes at once — as many
// as the load generator's default connections, four times the
// connections the platform's dispatcher keeps busy at fan-out 1 — so
// that the relay's rate is bounded by the CPU, not by round trips.
const relaySenders = 64

func (rl *relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	select {
	case rl.queue <- relayed{n: rl.seq.Add(1), body: body}:
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"id":"x"}`))
}

// send makes the relay's deliveries until ctx ends.
func (rl *relay) send(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-rl.queue:
			for i, u := range rl.partners(e.body) {
				rl.post(ctx, u, e.n, i, e.body)
			}
		}
	}
}

// post makes one delivery: event n's body to its i-th partner at u, with a
// webhook-id of its own (the receiver's duplicate check), once — a failure
// is not retried: what never arrived is missing from the receiver's count,
// as a platform's lost delivery would be.
func (rl *relay) post(ctx context.Context, u string, n int64, i int, body []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", rl.ids+strconv.FormatInt(n, 10)+"-"+strconv.Itoa(i))
	resp, err := rl.client.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// serveRelay serves the relay for s, its senders running until the
// returned stop.
func serveRelay(s processSpec) (string, func(), error) {
	rl, err := newRelay(s)
	if err != nil {
		return "", nil, err
	}
	srv, err := serve(rl)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range relaySenders {
		wg.Go(func() { rl.send(ctx) })
	}
	return srv.URL, func() {
		srv.Close()
		cancel()
		wg.Wait()
		rl.client.CloseIdleConnections()
	}, nil
}

// relayPhase measures the relay: the throughput phase's load against it,
// then the deliveries' rate from the first to arrive to the last, as the
// platform's delivered rate is measured, and the relay's process's CPU
// over the events it accepted — the two exchanges' share (the server's
// side of one, the client's of the other) of what an event costs the
// platform. recv is reset before and after, and its connection counts
// after, which are the platform's.
//
// With kafka, it measures the Kafka relay (kafkarelay.go) instead.
func relayPhase(ctx context.Context, cfg Config, recv *receiver, receiverURL string, kafka bool) (perSec, cpuMS float64, err error) {
	p, err := startProcess(ctx, cfg.Command, processSpec{Relay: true, RelayKafka: kafka, ReceiverURL: receiverURL, Fanout: cfg.Fanout, Tenants: cfg.Tenants, PartnerCA: cfg.partnerCA})
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	recv.reset()
	if _, err := p.call(processRequest{Op: "measure"}); err != nil {
		return 0, 0, err
	}
	phase := "relay"
	if kafka {
		phase = "kafka relay"
	}
	accepted, _, err := closedLoop(ctx, p.URL+"/v1/events", cfg, cfg.numbered(phase), phase)
	if err != nil {
		return 0, 0, err
	}
	recv.await(ctx, accepted*int64(cfg.Fanout), 5*time.Second, func(done float64) { cfg.Progress(phase+" drain", done) })
	usage, err := p.call(processRequest{Op: "result"})
	if err != nil {
		return 0, 0, err
	}
	first, last, got, _ := recv.window()
	if got > 0 && last.After(first) {
		perSec = float64(got) / last.Sub(first).Seconds()
	}
	if accepted > 0 {
		cpuMS = usage.CPUSeconds / float64(accepted) * 1000
	}
	if err := p.Close(); err != nil {
		return 0, 0, err
	}
	recv.reset()
	recv.conns.reset()
	return perSec, cpuMS, nil
}
