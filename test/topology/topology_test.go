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
	"strings"
	"sync"
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
	t       *testing.T
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

func TestProductionTopology(t *testing.T) {
	ctx := context.Background()
	clusters, err := embedkafka.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer clusters.Close()
	ingress := strings.Join(clusters.Ingress.ListenAddrs(), ",")
	egress := strings.Join(clusters.Egress.ListenAddrs(), ",")
	db := dynalitetest.Start(t)
	endpoint := *db.Options().BaseEndpoint
	if _, err := dynamo.CreateTables(ctx, db, "topo"); err != nil {
		t.Fatal(err)
	}

	// The partner verifies every signature with the secret whp signs with.
	secret := signature.NewSecret()
	var mu sync.Mutex
	got := map[string]int{} // webhook-id → times
	orders := map[string]bool{}
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := signature.Verify(r.Header, body, time.Now(), signature.DefaultTolerance, secret); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p struct {
			Data struct {
				OrderID string `json:"order_id"`
			} `json:"data"`
		}
		json.Unmarshal(body, &p)
		mu.Lock()
		got[r.Header.Get(signature.HeaderID)]++
		orders[p.Data.OrderID] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer partner.Close()
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog")
	os.MkdirAll(cat, 0o755)
	os.WriteFile(filepath.Join(cat, "c.cue"), []byte(`package whp
schemas: shop: "order.created": "1": {owner: "t", payload: {order_id: string}}
partners: alpha: {name: "A", url: "`+partner.URL+`", signing_secret: "partners/alpha/signing", contact: "x"}
subscriptions: "alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
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
	roles := map[string]*proc{}
	for _, name := range []string{"ingest", "processor", "dispatcher"} {
		args := append([]string(nil), backend...)
		if name == "dispatcher" {
			args = append(args, "--secrets", secrets, "--dev-delivery", "loopback")
		}
		roles[name] = &proc{t: t, name: name, args: args, addr: proctest.FreeAddr(t), metrics: proctest.FreeAddr(t), log: logf(name)}
		roles[name].start()
		defer roles[name].kill()
	}

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
		body := fmt.Sprintf(`{"domain":"shop","event":"order.created","version":"1","data":{"order_id":"o%d"}}`, i)
		for {
			req, _ := http.NewRequest(http.MethodPost, "http://"+roles["ingest"].addr+"/v1/events", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("o%d", i))
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		mu.Lock()
		delivered := len(orders)
		mu.Unlock()
		if delivered == n {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "dispatcher.log"))
			t.Fatalf("delivered %d of %d; dispatcher log tail:\n%s", delivered, n, tail(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	mu.Unlock()
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
