package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The lag gauge is end offset minus the group's commit per partition, and
// the DLQ gauge the records kept in wh.dlq.* topics, read from a real
// (in-process) Kafka at scrape time.
func TestObserveKafka(t *testing.T) {
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "wh.egress.a.e", "wh.dlq.e"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 5 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "wh.egress.a.e", Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		cl.ProduceSync(ctx, &kgo.Record{Topic: "wh.dlq.e", Value: []byte("x")})
	}
	adm := kadm.NewClient(cl)
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "wh.egress.a.e", Partition: 0, At: 2, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "whp-dispatcher", offs); err != nil {
		t.Fatal(err)
	}
	tel, err := New(ctx, Options{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.Metrics.ObserveKafka(adm, []string{"whp-dispatcher"}, "wh.dlq.", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`whp_consumer_lag{group="whp-dispatcher",partition="0",topic="wh.egress.a.e"} 3`,
		`whp_dlq_records{topic="wh.dlq.e"} 3`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s in\n%s", want, grepWhp(string(body)))
		}
	}
}

func grepWhp(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "whp_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
