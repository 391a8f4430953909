// Package topology runs whp as it runs in production: ingest, processor
// and dispatcher as separate processes, two Kafka clusters reached over
// TCP (kfake, in this test's process) and DynamoDB (dynalite). Events flow
// end to end while the dispatcher, then the processor, is SIGKILLed and
// restarted.
//
//	go test -count=1 -v ./test/topology
package topology

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/internal/proctest"
	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/embedkafka"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/dynamo"
)

var bin string

func TestMain(m *testing.M) { proctest.Main(m, &bin) }

// proc is one role process.
type proc struct {
	t       testing.TB
	name    string
	args    []string
	addr    string
	metrics string // --metrics-addr
	cmd     *exec.Cmd
	log     *os.File
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(bin, append([]string{p.name, "--addr", p.addr, "--metrics-addr", p.metrics}, p.args...)...)
	// dynalite checks a signature's form only: these are no one's keys.
	p.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=dynalite", "AWS_SECRET_ACCESS_KEY=dynalite", "AWS_REGION=us-east-1")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	proctest.WaitOK(p.t, "http://"+p.addr+"/readyz", p.log.Name())
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// topology is whp's three roles as processes on two kfake clusters and
// dynalite, with a catalog of one partner, alpha.
type topology struct {
	dir   string
	st    *dynamo.Store
	roles map[string]*proc
	flags string // the roles' --flags-file
}

// setFlags replaces the roles' flags file at once, as a ConfigMap's
// update does.
func (tp *topology) setFlags(t testing.TB, doc string) {
	t.Helper()
	if err := os.WriteFile(tp.flags+".tmp", []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tp.flags+".tmp", tp.flags); err != nil {
		t.Fatal(err)
	}
}

// startTopology applies a catalog whose partner alpha receives at
// partnerURL, signing with secret, schema shop/order.created v1 of
// payload, subscribed with the extra subscription fields sub (CUE,
// ", mode: …" or ""); approves the subscription; and starts the roles,
// killed when the test ends.
func startTopology(t testing.TB, secret, partnerURL, payload, sub string) *topology {
	t.Helper()
	ctx := context.Background()
	clusters, err := embedkafka.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clusters.Close() })
	ingress := strings.Join(clusters.Ingress.ListenAddrs(), ",")
	egress := strings.Join(clusters.Egress.ListenAddrs(), ",")
	db := dynalitetest.Start(t)
	endpoint := *db.Options().BaseEndpoint
	if _, err := dynamo.CreateTables(ctx, db, "topo"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog")
	os.MkdirAll(cat, 0o755)
	os.WriteFile(filepath.Join(cat, "c.cue"), []byte(`package whp
schemas: shop: "order.created": "1": {owner: "t", payload: `+payload+`}
partners: alpha: {name: "A", url: "`+partnerURL+`", signing_secret: "partners/alpha/signing", contact: "x"}
subscriptions: "alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1"`+sub+`}
`), 0o644)
	secrets := filepath.Join(dir, "secrets.json")
	os.WriteFile(secrets, []byte(`{"partners/alpha/signing": ["`+secret+`"]}`), 0o600)

	backend := []string{"--store", "dynamodb", "--dynamodb-endpoint", endpoint, "--env", "topo", "--ingress-brokers", ingress, "--egress-brokers", egress}
	rec := exec.Command(bin, append([]string{"reconcile", "--once", "--catalog", cat, "--data-dir", filepath.Join(dir, "status")}, backend...)...)
	rec.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=dynalite", "AWS_SECRET_ACCESS_KEY=dynalite")
	if out, err := rec.CombinedOutput(); err != nil {
		t.Fatalf("whp reconcile: %v\n%s", err, out)
	}
	st := dynamo.New(db, "topo")
	if _, err := reconciler.Decide(ctx, st, reconciler.Decision{SubscriptionID: "alpha#shop#order.created#1", Status: store.SubscriptionApproved, By: "test", Reason: "topology", At: time.Now()}); err != nil {
		t.Fatal(err)
	}

	logf := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tp := &topology{dir: dir, st: st, roles: map[string]*proc{}}
	// Every role reads the operators' flags from one file, as each pod
	// would from one ConfigMap or the AppConfig Agent beside it.
	tp.flags = filepath.Join(dir, "flags.json")
	for _, name := range []string{"ingest", "processor", "dispatcher"} {
		args := append(append([]string(nil), backend...), "--flags-file", tp.flags)
		if name == "dispatcher" {
			args = append(args, "--secrets", secrets, "--dev-delivery", "loopback")
		}
		p := &proc{t: t, name: name, args: args, addr: proctest.FreeAddr(t), metrics: proctest.FreeAddr(t), log: logf(name)}
		p.start()
		t.Cleanup(p.kill)
		tp.roles[name] = p
	}
	return tp
}

// post sends body to ingest until it is accepted.
func (tp *topology) post(t testing.TB, client *http.Client, body, idempotencyKey string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, "http://"+tp.roles["ingest"].addr+"/v1/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if idempotencyKey != "" {
			req.Header.Set("Idempotency-Key", idempotencyKey)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not accepted in 60 s: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// partner is alpha's endpoint: it verifies every signature with the
// secret whp signs with, answers 503 to the deliveries refuse picks (by
// their order_id), and records the others.
type partner struct {
	srv *httptest.Server

	mu       sync.Mutex
	got      map[string]int // webhook-id → times
	arrivals []string       // order_id of each delivery's first arrival, in order
}

func newPartner(t testing.TB, secret string, refuse func(orderID string) bool) *partner {
	p := &partner{got: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := signature.Verify(r.Header, body, time.Now(), signature.DefaultTolerance, secret); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var d struct {
			Data struct {
				OrderID string `json:"order_id"`
			} `json:"data"`
		}
		json.Unmarshal(body, &d)
		if refuse != nil && refuse(d.Data.OrderID) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		id := r.Header.Get(signature.HeaderID)
		if p.got[id] == 0 {
			p.arrivals = append(p.arrivals, d.Data.OrderID)
		}
		p.got[id]++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// arrived is the order IDs arrived with prefix, in order.
func (p *partner) arrived(prefix string) (got []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.arrivals {
		if strings.HasPrefix(o, prefix) {
			got = append(got, o)
		}
	}
	return got
}

// duplicates counts the deliveries that arrived more than once.
func (p *partner) duplicates() (n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.got {
		n += c - 1
	}
	return n
}

func TestProductionTopology(t *testing.T) {
	secret := signature.NewSecret()
	pt := newPartner(t, secret, nil)
	tp := startTopology(t, secret, pt.srv.URL, "{order_id: string}", "")
	roles, dir := tp.roles, tp.dir

	const n = 120
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range n {
		if i == n/3 {
			roles["dispatcher"].kill()
			roles["dispatcher"].start()
		}
		if i == 2*n/3 {
			roles["processor"].kill()
			roles["processor"].start()
		}
		tp.post(t, client, fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"o%d"}}`, i), fmt.Sprintf("o%d", i))
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		distinct := map[string]bool{}
		for _, o := range pt.arrived("o") {
			distinct[o] = true
		}
		delivered := len(distinct)
		if delivered == n {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "dispatcher.log"))
			t.Fatalf("delivered %d of %d; dispatcher log tail:\n%s", delivered, n, tail(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := pt.duplicates()
	t.Logf("topology: sent %d, delivered %d, lost 0, duplicated %d (dispatcher and processor each SIGKILLed once)", n, n, dups)
	if dups > 64 {
		t.Errorf("%d duplicates: more than the delivery window allows for one dispatcher kill", dups)
	}

	// Each role serves its own metrics on its metrics address, apart from
	// the API: ingest counted every event valid (it was never restarted),
	// the restarted dispatcher counts what it delivered since, the
	// processor reports its group's lag.
	for role, want := range map[string]string{
		"ingest":     fmt.Sprintf(`whp_ingest_validations_total{result="valid",schema="shop#order.created#1"} %d`, n),
		"dispatcher": `whp_deliveries_total{outcome="delivered",partner="alpha"}`,
		"processor":  `whp_consumer_lag{group="whp-processor"`,
	} {
		body := get(t, "http://"+roles[role].metrics+"/metrics")
		if !strings.Contains(body, want) {
			t.Errorf("%s /metrics has no %s", role, want)
		}
	}
	if body := get(t, "http://"+roles["ingest"].addr+"/metrics"); !strings.Contains(body, "404") {
		t.Errorf("ingest serves /metrics on its API address")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + "\n" + string(b)
}

func tail(b []byte) string {
	s := string(b)
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return s
}

// TestProductionOrderedBacklog: on DynamoDB, 300 deliveries of 1 KiB of
// one key of an ordered subscription wait behind the key's first, which
// the partner refuses; another key's go through meanwhile. The partner
// takes the key again and its 301 deliveries arrive once each, in order.
// (Until round 11 the queue was a list inside its gate item: past ≈ 300
// deliveries of 1 KiB the item is larger than DynamoDB's 400 KB, the
// dispatcher could queue no more of the key, and this test timed out.)
func TestProductionOrderedBacklog(t *testing.T) {
	const n = 300
	secret := signature.NewSecret()
	var refuse atomic.Bool
	refuse.Store(true)
	pt := newPartner(t, secret, func(orderID string) bool { return strings.HasPrefix(orderID, "A") && refuse.Load() })
	tp := startTopology(t, secret, pt.srv.URL, "{order_id: string, pad: string}", `, mode: "ordered", retry: {schedule: ["1s"], max_attempts: 100}`)

	pad := strings.Repeat("x", 1000)
	client := &http.Client{Timeout: 5 * time.Second}
	event := func(key string, i int) string {
		return fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","key":%q,"data":{"order_id":"%s%d","pad":%q}}`, key, key, i, pad)
	}
	for i := 0; i <= n; i++ {
		tp.post(t, client, event("A", i), "")
		if i%10 == 0 {
			tp.post(t, client, event("B", i/10), "")
		}
	}
	arrived := pt.arrived
	ctx := context.Background()
	deadline := time.Now().Add(120 * time.Second)
	for {
		rec, err := tp.st.GetIdempotency(ctx, "order#alpha#shop#order.created#1#A")
		var g struct{ Head, Tail int64 }
		if err == nil {
			json.Unmarshal(rec.Value, &g)
		}
		if g.Tail-g.Head == n && len(arrived("B")) == n/10+1 {
			if len(rec.Value) > 1024 {
				t.Errorf("the gate of %d waiting deliveries is %d bytes", n, len(rec.Value))
			}
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(tp.dir, "dispatcher.log"))
			t.Fatalf("key A's queue holds %d of %d (%v), key B delivered %d of %d; dispatcher log tail:\n%s", g.Tail-g.Head, n, err, len(arrived("B")), n/10+1, tail(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if a := arrived("A"); len(a) != 0 {
		t.Fatalf("key A delivered while its first was refused: %v", a)
	}
	refuse.Store(false)
	for len(arrived("A")) < n+1 {
		if time.Now().After(deadline.Add(60 * time.Second)) {
			b, _ := os.ReadFile(filepath.Join(tp.dir, "dispatcher.log"))
			t.Fatalf("key A: %d of %d arrived; dispatcher log tail:\n%s", len(arrived("A")), n+1, tail(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := make([]string, n+1)
	for i := range want {
		want[i] = fmt.Sprintf("A%d", i)
	}
	if a := arrived("A"); strings.Join(a, ",") != strings.Join(want, ",") {
		t.Errorf("key A arrived out of order: %v", a)
	}
	if dups := pt.duplicates(); dups != 0 {
		t.Errorf("%d deliveries arrived twice", dups)
	}
}

// TestProductionOperatorFlags: the roles as production runs them read
// the operators' flags (--flags-file, each second): a schema's ingest
// paused answers 503 with the operator's message, and a partner paused
// receives nothing until it is resumed, then every event once — without
// a restart of any role.
func TestProductionOperatorFlags(t *testing.T) {
	secret := signature.NewSecret()
	pt := newPartner(t, secret, nil)
	tp := startTopology(t, secret, pt.srv.URL, "{order_id: string}", "")
	client := &http.Client{Timeout: 5 * time.Second}
	event := func(i int) string {
		return fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"P%d"}}`, i)
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(tp.dir, "dispatcher.log"))
				t.Fatalf("timed out waiting for %s; dispatcher log tail:\n%s", what, tail(b))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	tp.setFlags(t, `{"schemas":{"shop#order.created#1":{"ingest_paused":true,"message":"maintenance until 14:00 UTC"}}}`)
	eventually("ingest to answer 503 with the operator's message", func() bool {
		// Accepted until ingest reads the flags: "probe", not counted below.
		probe := `{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"probe"}}`
		resp, err := client.Post("http://"+tp.roles["ingest"].addr+"/v1/events", "application/json", strings.NewReader(probe))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "maintenance until 14:00 UTC")
	})

	tp.setFlags(t, `{"partners":{"alpha":{"paused":true}}}`)
	const n = 20
	for i := 1; i <= n; i++ {
		tp.post(t, client, event(i), "") // accepted once ingest has read the new flags
	}
	// What waits for the resume is counted by the dispatcher: every event
	// read and held, none sent (and a probe, if one was still on its way
	// when alpha was paused).
	waiting := regexp.MustCompile(`whp_deliveries_waiting\{for="resume",partner="alpha"\} (\d+)`)
	eventually("the dispatcher to hold every delivery for the resume", func() bool {
		held := 0
		if m := waiting.FindStringSubmatch(get(t, "http://"+tp.roles["dispatcher"].metrics+"/metrics")); m != nil {
			held, _ = strconv.Atoi(m[1])
		}
		return held >= n
	})
	if got := pt.arrived("P"); len(got) != 0 {
		t.Fatalf("paused alpha received %v", got)
	}
	tp.setFlags(t, `{}`)
	eventually("every event delivered after the resume", func() bool { return len(pt.arrived("P")) == n })
	if dups := pt.duplicates(); dups != 0 {
		t.Errorf("%d deliveries arrived twice", dups)
	}
}
