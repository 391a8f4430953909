package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/store/embedded"
)

// /readyz reaches the store and Kafka: ready while both answer, 503 naming
// Kafka once its cluster is gone.
func TestReadiness(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := &role{st: st}
	h := readiness([]check{{"store", r.pingStore}, {"egress kafka", cl.Ping}}, 0)
	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil).WithContext(context.Background()))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, body := probe(); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("both up: %d %q", code, body)
	}
	c.Close()
	code, body := probe()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "egress kafka:") || strings.Contains(body, "store:") {
		t.Fatalf("Kafka gone: %d %q, want 503 naming egress kafka only", code, body)
	}
	st.Close()
	if code, body := probe(); code != http.StatusServiceUnavailable || !strings.Contains(body, "store:") {
		t.Fatalf("store closed too: %d %q, want 503 naming the store", code, body)
	}
}
