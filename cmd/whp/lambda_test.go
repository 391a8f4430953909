package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/internal/gittest"
	"github.com/whp-dev/whp/reconciler"
	"github.com/whp-dev/whp/runtime/embedkafka"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/lambdakafka"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/dynamo"
)

// Asking for no role, an unknown one, or a reconciler that would keep its
// state on the function's passing disk fails at start, saying what to set.
func TestLambdaRoleSelection(t *testing.T) {
	for role, want := range map[string][]string{
		"":          {"WHP_ROLE must name the role to run: ingest, processor, dispatcher or reconcile"},
		"console":   {`WHP_ROLE="console"`, "serves ingest, processor, dispatcher or reconcile"},
		"reconcile": {"WHP_INGRESS_BROKERS", "WHP_STORE must be dynamodb", "WHP_STATUS must be s3://", "WHP_REPO"},
	} {
		_, _, err := lambdaHandler(context.Background(), role, io.Discard, io.Discard)
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("WHP_ROLE=%q: %v, want an error with %q", role, err, w)
			}
		}
	}
}

// receiver is the partner: it verifies each signature and counts what it
// got per order; it answers 503 to the first request for failOnce.
type receiver struct {
	mu       sync.Mutex
	secret   string
	failOnce string
	got      map[string]int // order_id → requests
	ids      map[string]int // webhook-id → 2xx answers
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := signature.Verify(r.Header, body, time.Now(), signature.DefaultTolerance, rc.secret); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p struct {
		Data struct {
			OrderID string `json:"order_id"`
		} `json:"data"`
	}
	json.Unmarshal(body, &p)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got[p.Data.OrderID]++
	if p.Data.OrderID == rc.failOnce && rc.got[p.Data.OrderID] == 1 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	rc.ids[r.Header.Get(signature.HeaderID)]++
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) count(order string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got[order]
}

// TestLambdaFunctions runs the processor, dispatcher and reconciler as
// their Lambda functions are built (lambdaHandler, configured by WHP_*
// variables) against two Kafka clusters, DynamoDB (dynalite), S3 (gofakes3,
// for the reconciler's status) and a real receiver, feeding each the JSON
// its trigger sends: a scheduled event, and MSK event source mapping events
// (testdata/lambda, then ones built from the egress records as the mapping
// would). It checks what reaches Kafka, the store and the receiver:
// delivery once although every invocation is handed twice, partial batch
// failures, and a retry made by a scheduled invocation, nothing sleeping.
func TestLambdaFunctions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clusters, err := embedkafka.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer clusters.Close()
	db := dynalitetest.Start(t)
	if _, err := dynamo.CreateTables(ctx, db, "lam"); err != nil {
		t.Fatal(err)
	}
	s3 := s3mem.New()
	s3srv := httptest.NewServer(gofakes3.New(s3).Server())
	defer s3srv.Close()
	if err := s3.CreateBucket("whp-status"); err != nil {
		t.Fatal(err)
	}
	rc := &receiver{secret: signature.NewSecret(), failOnce: "o-retry", got: map[string]int{}, ids: map[string]int{}}
	partner := httptest.NewServer(rc)
	defer partner.Close()

	repo := gittest.New(t)
	rev := repo.Write("catalog/c.cue", `package whp
schemas: shop: "order.created": "1": {owner: "t", payload: {order_id: string, total?: number}}
partners: alpha: {name: "A", url: "`+partner.URL+`", signing_secret: "partners/alpha/signing", contact: "x"}
subscriptions: "alpha.created": {partner: "alpha", domain: "shop", event: "order.created", version: "1", retry: {schedule: ["2s"]}}
`).Commit("catalog")
	secrets := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(secrets, []byte(`{"partners/alpha/signing": ["`+rc.secret+`"]}`), 0o600)
	for k, v := range map[string]string{
		// dynalite and gofakes3 check a signature's form only: these are
		// no one's keys.
		"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
		"AWS_ENDPOINT_URL_S3": s3srv.URL,
		"WHP_STORE":           "dynamodb", "WHP_DYNAMODB_ENDPOINT": *db.Options().BaseEndpoint, "WHP_ENV": "lam",
		"WHP_INGRESS_BROKERS": strings.Join(clusters.Ingress.ListenAddrs(), ","),
		"WHP_EGRESS_BROKERS":  strings.Join(clusters.Egress.ListenAddrs(), ","),
		"WHP_SECRETS":         secrets, "WHP_DEV_DELIVERY": "loopback", "WHP_RETRY_WINDOW": "8s",
		"WHP_REPO": repo.Dir, "WHP_STATUS": "s3://whp-status/reconciler.json",
	} {
		t.Setenv(k, v)
	}
	scheduled := readFile(t, "testdata/lambda/scheduled-event.json")
	var emf bytes.Buffer // stdout: the functions' metrics, as CloudWatch embedded metric format

	// The reconciler, on its schedule, applies the catalog: tables, topics,
	// and its status in S3.
	recH, closeRec, err := lambdaHandler(ctx, "reconcile", &emf, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRec()
	reconcile := recH.(func(context.Context, json.RawMessage) (any, error))
	out, err := reconcile(ctx, scheduled)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if s := out.(reconciler.Status); s.LastAppliedRevision != "main@sha1:"+rev {
		t.Fatalf("applied revision %q, want main@sha1:%s", s.LastAppliedRevision, rev)
	}
	if _, err := s3.HeadObject("whp-status", "reconciler.json"); err != nil {
		t.Errorf("no status in S3: %v", err)
	}
	st := dynamo.New(db, "lam")
	if _, err := reconciler.Decide(ctx, st, reconciler.Decision{SubscriptionID: "alpha#shop#order.created#1", Status: store.SubscriptionApproved,
		By: "test", Reason: "lambda", At: time.Now()}); err != nil {
		t.Fatal(err)
	}

	procH, closeProc, err := lambdaHandler(ctx, "processor", &emf, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer closeProc()
	process := procH.(func(context.Context, events.KafkaEvent) (lambdakafka.Response, error))
	dispH, closeDisp, err := lambdaHandler(ctx, "dispatcher", &emf, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDisp()
	dispatch := dispH.(func(context.Context, json.RawMessage) (any, error))

	// The processor is handed the mapping's event twice (Lambda redelivers):
	// the same delivery is published, under the same ID.
	var ingressEvent events.KafkaEvent
	if err := json.Unmarshal(readFile(t, "testdata/lambda/msk-ingress-event.json"), &ingressEvent); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		resp, err := process(ctx, ingressEvent)
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("processor: %+v, %v", resp, err)
		}
	}
	egress := readTopic(t, clusters.Egress.ListenAddrs(), "wh.egress.alpha.order.created", 2)
	var d0, d1 envelope.Delivery
	json.Unmarshal(egress[0].Value, &d0)
	json.Unmarshal(egress[1].Value, &d1)
	if d0.ID == "" || d0.ID != d1.ID || d0.EventID != "0193f3a2-5c1e-7b7a-9d2e-4f1a2b3c4d5e" || string(egress[0].Key) != "cust-42" {
		t.Fatalf("egress records: %+v / %+v (key %q)", d0, d1, egress[0].Key)
	}
	if ev, err := st.GetEvent(ctx, d0.EventID); err != nil || ev.IdempotencyKey != "order-1001" {
		t.Errorf("event recorded: %+v, %v", ev, err)
	}

	// The dispatcher's invocation times out before it starts: every record
	// is reported, by the lowest offset of its partition, and nothing is sent.
	batch := mskEvent(t, egress)
	dead, stop := context.WithCancel(ctx)
	stop()
	out, err = dispatch(dead, batch)
	if err != nil {
		t.Fatal(err)
	}
	resp := out.(lambdakafka.Response)
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier !=
		(lambdakafka.Item{TopicPartition: "wh.egress.alpha.order.created-" + itoa(egress[0].Partition), Offset: egress[0].Offset}) {
		t.Fatalf("partial batch response %+v, want the first record's partition and offset", resp)
	}
	if n := rc.count("o-1001"); n != 0 {
		t.Fatalf("%d requests sent by an invocation that had no time", n)
	}
	// Handed the batch again, twice: one delivery, made once.
	for range 2 {
		out, err = dispatch(ctx, batch)
		if err != nil || len(out.(lambdakafka.Response).BatchItemFailures) != 0 {
			t.Fatalf("dispatcher: %+v, %v", out, err)
		}
	}
	if n := rc.count("o-1001"); n != 1 {
		t.Errorf("the receiver got %d requests for o-1001, want 1", n)
	}
	if d, err := st.GetDelivery(ctx, d0.EventID, d0.ID); err != nil || d.Status != store.DeliveryDelivered {
		t.Errorf("delivery status: %+v, %v", d, err)
	}

	// A delivery the partner refuses once waits in the retry tiers, and a
	// scheduled invocation of the dispatcher makes the retry.
	retryEvent := withOrder(t, ingressEvent, "0193f3a2-5c1e-7b7a-9d2e-00000000beef", "o-retry", 1)
	if resp, err := process(ctx, retryEvent); err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("processor: %+v, %v", resp, err)
	}
	egress = readTopic(t, clusters.Egress.ListenAddrs(), "wh.egress.alpha.order.created", 3)
	if out, err := dispatch(ctx, mskEvent(t, egress[2:])); err != nil || len(out.(lambdakafka.Response).BatchItemFailures) != 0 {
		t.Fatalf("dispatcher: %+v, %v", out, err)
	}
	var dr envelope.Delivery
	json.Unmarshal(egress[2].Value, &dr)
	if d, err := st.GetDelivery(ctx, dr.EventID, dr.ID); err != nil || d.Status != store.DeliveryRetrying || rc.count("o-retry") != 1 {
		t.Fatalf("after a 503: %+v, %v, %d requests", d, err, rc.count("o-retry"))
	}
	lambdaCtx, done := context.WithTimeout(ctx, 60*time.Second) // the function's timeout
	defer done()
	if _, err := dispatch(lambdaCtx, scheduled); err != nil {
		t.Fatalf("scheduled dispatcher: %v", err)
	}
	if n := rc.count("o-retry"); n != 2 {
		t.Errorf("the receiver got %d requests for o-retry, want 2 (the 503, then the retry)", n)
	}
	if d, err := st.GetDelivery(ctx, dr.EventID, dr.ID); err != nil || d.Status != store.DeliveryDelivered || len(d.Attempts) != 2 {
		t.Errorf("after the scheduled retry: %+v, %v", d, err)
	}
	if _, err := dispatch(ctx, json.RawMessage(`{"Records":[{"eventSource":"aws:sqs"}]}`)); err == nil {
		t.Error("an SQS event was taken by the dispatcher")
	}

	// Each invocation wrote what it did since the last as EMF: two
	// deliveries to alpha delivered in all (none counted twice), one
	// retry, the attempts' latency as a distribution, one reconcile.
	sums := map[string]float64{}
	var sawDistribution bool
	for _, line := range strings.Split(strings.TrimSpace(emf.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("stdout line is not EMF JSON: %s", line)
		}
		aws, _ := l["_aws"].(map[string]any)
		cwm, _ := aws["CloudWatchMetrics"].([]any)
		if len(cwm) != 1 || cwm[0].(map[string]any)["Namespace"] != "whp" {
			t.Fatalf("no EMF directive in %s", line)
		}
		name := cwm[0].(map[string]any)["Metrics"].([]any)[0].(map[string]any)["Name"].(string)
		switch v := l[name].(type) {
		case float64:
			key := name
			for _, dim := range []string{"partner", "outcome", "result"} {
				if s, ok := l[dim].(string); ok {
					key += " " + dim + "=" + s
				}
			}
			sums[key] += v
		case map[string]any:
			if name == "whp.delivery.attempt.duration" && len(v["Values"].([]any)) > 0 && len(v["Counts"].([]any)) == len(v["Values"].([]any)) {
				sawDistribution = true
			}
		}
	}
	for key, want := range map[string]float64{
		"whp.deliveries partner=alpha outcome=delivered":       2,
		"whp.deliveries partner=alpha outcome=retry_scheduled": 1,
		// The batch of the two records of one delivery, handed twice:
		// one delivered, three dropped by the ledger.
		"whp.deliveries partner=alpha outcome=duplicate_dropped": 3,
		"whp.delivery.retries partner=alpha":                     1,
		"whp.reconcile.runs result=applied":                      1,
	} {
		if sums[key] != want {
			t.Errorf("EMF %s = %v, want %v (all: %v)", key, sums[key], want, sums)
		}
	}
	if !sawDistribution {
		t.Error("no attempt latency distribution in the EMF output")
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }

// readTopic reads a topic's first n records.
func readTopic(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records, want %d", topic, len(recs), n)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// mskEvent is the event an MSK event source mapping sends for recs.
func mskEvent(t *testing.T, recs []*kgo.Record) json.RawMessage {
	t.Helper()
	ev := events.KafkaEvent{EventSource: "aws:kafka", EventSourceARN: "arn:aws:kafka:us-east-1:123456789012:cluster/webhooks-dev-egress/x",
		Records: map[string][]events.KafkaRecord{}}
	for _, r := range recs {
		kr := events.KafkaRecord{Topic: r.Topic, Partition: int64(r.Partition), Offset: r.Offset, TimestampType: "CREATE_TIME",
			Timestamp: events.MilliSecondsEpochTime{Time: r.Timestamp},
			Key:       base64.StdEncoding.EncodeToString(r.Key), Value: base64.StdEncoding.EncodeToString(r.Value)}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, map[string]events.JSONNumberBytes{h.Key: h.Value})
		}
		k := r.Topic + "-" + itoa(r.Partition)
		ev.Records[k] = append(ev.Records[k], kr)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withOrder is ev with its one record replaced by another event, for
// order, at offset.
func withOrder(t *testing.T, ev events.KafkaEvent, id, order string, offset int64) events.KafkaEvent {
	t.Helper()
	var out events.KafkaEvent
	b, _ := json.Marshal(ev)
	json.Unmarshal(b, &out)
	for k, recs := range out.Records {
		r := recs[0]
		raw, _ := base64.StdEncoding.DecodeString(r.Value)
		var e envelope.Event
		json.Unmarshal(raw, &e)
		e.ID, e.IdempotencyKey, e.Data = id, order, json.RawMessage(`{"order_id":"`+order+`"}`)
		v, _ := json.Marshal(e)
		r.Value, r.Offset = base64.StdEncoding.EncodeToString(v), offset
		out.Records[k] = []events.KafkaRecord{r}
	}
	return out
}
