package bench

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The ordered phase (Config.Ordered) measures what a buyer asks of
// ordered delivery: does every key's order hold under load and through a
// failure, what does it cost the keys that are not failing, and how long
// does a key held behind a failing delivery take to catch up.
//
// Its events are of their own schema, bench/thing.ordered, delivered to
// Fanout partners o0… of their own by subscriptions in mode "ordered"
// (the other phases' partners never see them). Each event has one of
// Config.Keys partition keys, k0…, and carries in data.seq its key and
// its number among its key's events ("k3.17"). Each key's events are sent
// by a sender of their own, each after the one before was accepted, so a
// key's numbers are the order ingest accepted its events in — the order
// ordered delivery owes. For the middle third of the phase every partner
// answers 503 to k0's deliveries, as an endpoint does when one customer's
// events break it; the others' are answered as always.

// RefusedKey is the key whose deliveries the partners refuse in the
// middle third of the ordered phase.
const RefusedKey = "k0"

// orderedRetry is the retry policy of the bench's ordered subscriptions:
// a retry within a second (the default schedule waits 5 s, then 5 min),
// so that a key's catch-up measures the platform, not the schedule.
const orderedRetry = `{schedule: ["1s"], max_attempts: 100}`

// OrderedResult is what the ordered phase measured.
type OrderedResult struct {
	Seconds float64 `json:"seconds"`
	Rate    int     `json:"rate_per_sec"`
	Keys    int     `json:"keys"`
	// Events is how many were accepted; each is owed to every ordered
	// subscription.
	Events int64 `json:"events"`
	// OutOfOrder counts the deliveries that reached a partner after a
	// later event of the same key had: each is a broken promise.
	OutOfOrder int64 `json:"out_of_order"`
	// The latency (ingest accepted → the partner got it) of the keys the
	// partners never refused, over the whole phase, the refusal included.
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	// RefusedKeyEvents is how many of the refused key's events were
	// accepted while its deliveries were refused: those that waited.
	RefusedKeyEvents int64 `json:"refused_key_events"`
	// FailedAttempts is how many POSTs the partners answered 503: with
	// each key's order kept, the one delivery at the head of the refused
	// key, attempted again, not every delivery behind it.
	FailedAttempts int64 `json:"failed_attempts"`
	// CatchUpSeconds is from the partners' accepting the refused key again
	// to the arrival of the last of its deliveries whose events were
	// accepted before that: how long its backlog took.
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	// NotArrived counts the deliveries that had not arrived when nothing
	// more had for a minute; Duplicates, those that arrived twice.
	NotArrived int64 `json:"not_arrived"`
	Duplicates int64 `json:"duplicates"`
}

// ordered runs the ordered phase against the platform at target.
func ordered(ctx context.Context, target string, cfg Config, recv *receiver) (*OrderedResult, error) {
	res := &OrderedResult{Seconds: cfg.Ordered.Seconds(), Rate: cfg.Rate, Keys: cfg.Keys}
	dups0 := recv.duplicates()
	recv.reset()
	accept := make(chan struct{})
	refusing := time.AfterFunc(cfg.Ordered/3, func() { recv.refuse(RefusedKey) })
	accepting := time.AfterFunc(2*cfg.Ordered/3, func() {
		recv.refuse("")
		close(accept)
	})
	defer refusing.Stop()
	defer accepting.Stop()
	sent, err := keyedLoop(ctx, target+"/v1/events", cfg, func(key string) {
		if k := recv.refusing.Load(); k != nil && *k == key {
			res.RefusedKeyEvents++ // one sender per key: no race
		}
	})
	if err != nil {
		return nil, err
	}
	<-accept
	res.Events = sent
	want := sent * int64(cfg.Fanout)
	recv.await(ctx, want, time.Minute, func(done float64) { cfg.Progress("ordered: catching up", done) })
	o := recv.orderedResult()
	res.OutOfOrder, res.FailedAttempts = o.outOfOrder, recv.failed.Load()
	if o.refusedLast.After(o.accepting) {
		res.CatchUpSeconds = o.refusedLast.Sub(o.accepting).Seconds()
	}
	lat := recv.latencies()
	res.LatencyP50MS, res.LatencyP95MS, res.LatencyP99MS = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	res.NotArrived, res.Duplicates = max(want-recv.count(), 0), recv.duplicates()-dups0
	return res, ctx.Err()
}

// keyedLoop sends the ordered phase's events, cfg.Rate a second in all
// for cfg.Ordered, over cfg.Keys keys: the i-th event of the phase is
// key i mod Keys's, due at i/Rate s. Each key's sender sends its events
// one after the other, waiting for each one's answer, so a key's events
// are accepted in the order of their numbers; one due while the one
// before is unanswered is sent late. accepted is called with the key of
// each event accepted, from its key's sender. It returns how many were.
func keyedLoop(ctx context.Context, url string, cfg Config, accepted func(key string)) (int64, error) {
	c := cfg.poster()
	defer c.cl.CloseIdleConnections()
	interval := time.Second / time.Duration(cfg.Rate)
	total := int(cfg.Ordered / interval)
	var ok, sentN atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for k := range cfg.Keys {
		key := "k" + strconv.Itoa(k)
		wg.Go(func() {
			t := time.NewTimer(0)
			defer t.Stop()
			for n, i := 0, k; i < total && ctx.Err() == nil; n, i = n+1, i+cfg.Keys {
				if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
					t.Reset(wait)
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
				}
				resp, err := c.post(url, int64(i), orderedBody(cfg.PayloadBytes, key, n))
				sentN.Add(1)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					ok.Add(1)
					accepted(key)
				}
			}
		})
	}
	stop := progressEvery(cfg, "ordered", func() float64 { return float64(sentN.Load()) / float64(max(total, 1)) })
	wg.Wait()
	stop()
	if ok.Load() == 0 {
		return 0, noneAccepted("ordered", &firstErr)
	}
	return ok.Load(), ctx.Err()
}

// orderedBody is the n-th event of key: PayloadBytes bytes of
// bench/thing.ordered, its data.seq "key.n".
func orderedBody(size int, key string, n int) []byte {
	seq := key + "." + strconv.Itoa(n)
	head := `{"domain":"bench","event":"thing.ordered","version":"1","key":"` + key + `","data":{"seq":"` + seq + `","pad":"`
	pad := padding()
	b := make([]byte, 0, size)
	b = append(b, head...)
	b = append(b, pad[:min(max(size-len(head)-3, 0), len(pad))]...)
	return append(b, `"}}`...)
}

// seqOf is an ordered delivery's key and number, from its data.seq.
func seqOf(body []byte) (key string, n int64, ok bool) {
	v, ok := stringField(body, `"seq":"`)
	if !ok {
		return "", 0, false
	}
	k, num, found := strings.Cut(string(v), ".")
	if !found {
		return "", 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return k, n, err == nil
}

// orderState is the receiver's record of the ordered phase's deliveries,
// under its mutex.
type orderState struct {
	// last is the highest number arrived of each partner's path and key.
	last       map[string]int64
	outOfOrder int64
	// accepting is when the partners accepted RefusedKey's deliveries
	// again; refusedLast when the last of them whose event was accepted
	// before that arrived.
	accepting, refusedLast time.Time
}

// refuse makes the partners answer 503 to key's ordered deliveries
// ("": to none), counting the refusals afresh when it starts.
func (r *receiver) refuse(key string) {
	if key != "" {
		r.failed.Store(0)
	}
	r.refusing.Store(&key)
	if key == "" {
		r.mu.Lock()
		r.order.accepting = time.Now()
		r.mu.Unlock()
	}
}

// refused reports whether the partners refuse (503) an ordered
// delivery of body: one of the key refuse named. A refusal is counted.
func (r *receiver) refused(body []byte) bool {
	k := r.refusing.Load()
	if k == nil || *k == "" {
		return false
	}
	if key, _, ok := seqOf(body); ok && key == *k {
		r.failed.Add(1)
		return true
	}
	return false
}

// orderedLocked records the arrival at now of an ordered delivery, of an
// event accepted at accepted, not
// seen before (a duplicate neither keeps nor breaks an order), under
// r.mu: whether it came in its key's order at its partner. It reports
// whether its latency counts: not if it is RefusedKey's, whose deliveries
// waited for the partners on purpose.
func (r *receiver) orderedLocked(path string, body []byte, accepted, now time.Time) (timed bool) {
	key, n, ok := seqOf(body)
	if !ok {
		return true
	}
	if r.order.last == nil {
		r.order.last = map[string]int64{}
	}
	at := path + " " + key
	if last, seen := r.order.last[at]; seen && n < last {
		r.order.outOfOrder++
	} else {
		r.order.last[at] = n
	}
	if key == RefusedKey {
		if !r.order.accepting.IsZero() && accepted.Before(r.order.accepting) {
			r.order.refusedLast = now
		}
		return false
	}
	return true
}

func (r *receiver) orderedResult() orderState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order
}
