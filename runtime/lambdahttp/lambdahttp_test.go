package lambdahttp_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/ingest"
	"github.com/whp-dev/whp/runtime/lambdahttp"
	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/embedded"
)

const topic = "wh.ingress.orders.order.created"

// TestIngestOnLambda feeds API Gateway's format 2.0 event (testdata, as
// API Gateway sends it: base64 body, lower-case headers) to the ingest API
// served through Handler, on kfake and the embedded store, and checks what
// reaches Kafka: one record for the event, none more when Lambda redelivers
// the same invocation, and a precise 400 for a bad body.
func TestIngestOnLambda(t *testing.T) {
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutSchema(ctx, store.Schema{ID: "orders#order.created#1", Domain: "orders", Event: "order.created", Version: "1",
		Status: "ACTIVE", JSONSchema: []byte(`{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"string"}}}`)}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := registry.New(st, log)
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ingest.New(ingest.Config{ProduceTimeout: 5 * time.Second}, reg, cl, st, log).Register(mux)
	handle := lambdahttp.Handler(mux)

	raw, err := os.ReadFile("testdata/apigw-v2-post-event.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	invoke := func(ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, map[string]any) {
		t.Helper()
		resp, err := handle(ctx, ev)
		if err != nil {
			t.Fatalf("invocation failed: %v", err)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
			t.Fatalf("response body %q: %v", resp.Body, err)
		}
		return resp, body
	}

	first, body := invoke(ev)
	if first.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", first.StatusCode, first.Body)
	}
	id, _ := body["id"].(string)
	if id == "" {
		t.Fatalf("no event id in %s", first.Body)
	}
	if !strings.Contains(first.Headers["Content-Type"], "json") {
		t.Errorf("content type %q", first.Headers["Content-Type"])
	}
	// Lambda retries an invocation whose response was lost: the same
	// Idempotency-Key answers with the same event and produces nothing new.
	again, body := invoke(ev)
	if again.StatusCode >= 300 || body["id"] != id {
		t.Errorf("redelivered invocation: %d %s, want the event %s again", again.StatusCode, again.Body, id)
	}

	bad := ev
	bad.IsBase64Encoded = false
	bad.Headers = map[string]string{"content-type": "application/json"}
	bad.Body = `{"domain":"orders","event":"order.created","version":"1","data":{"order_id":7}}`
	resp, body := invoke(bad)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, "order_id") {
		t.Errorf("bad body: %d %s, want 400 naming order_id", resp.StatusCode, resp.Body)
	}

	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < 2 && fctx.Err() == nil {
		fs := cl.PollFetches(fctx)
		recs = append(recs, fs.Records()...)
	}
	if len(recs) != 1 {
		t.Fatalf("%d records reached %s, want exactly 1", len(recs), topic)
	}
	if string(recs[0].Key) != "ord_1001" || !strings.Contains(string(recs[0].Value), "cus_42ab") {
		t.Errorf("record key %q value %s", recs[0].Key, recs[0].Value)
	}
}

func TestResponseBinaryBody(t *testing.T) {
	h := http.Header{"Set-Cookie": {"a=1", "b=2"}, "X-A": {"1", "2"}}
	r := lambdahttp.Response(200, h, []byte{0xff, 0xfe})
	if !r.IsBase64Encoded || r.Body != "//4=" || len(r.Cookies) != 2 || r.Headers["X-A"] != "1,2" {
		t.Errorf("response %+v", r)
	}
}
