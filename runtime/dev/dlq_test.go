package dev

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/store"
)

// TestDLQRedrive: deliveries that failed for good are listed with their
// last response; redriving the subscription's entries delivers them once
// the partner is back, and they leave the queue.
func TestDLQRedrive(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL), func(c *Config) { c.AutoApprove = []string{"alpha"} })
	b, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	token := strings.TrimSpace(string(b))

	alpha.answer(400, 400, 400)
	var ids []string
	for i := range 3 {
		ids = append(ids, accept(t, p, orderEvent(60+i)))
	}
	for _, id := range ids {
		eventually(t, "dead-lettering", func() bool { return deliveryOf(t, p, id, "alpha").Status == store.DeliveryDeadLettered })
	}
	// The status index follows the dispatcher's writes: the console's
	// count of dead letters waiting and its search of alpha's.
	deadLettered := func(want int) {
		t.Helper()
		counts, err := p.Store().CountDeliveries(t.Context(), store.DeliveryDeadLettered)
		page, perr := p.Store().DeliveriesByPartner(t.Context(), "alpha", store.Page{Status: store.DeliveryDeadLettered})
		if err != nil || perr != nil || counts["alpha"] != want || len(counts) > min(want, 1) || len(page.Deliveries) != want {
			t.Errorf("dead letters counted %v (%v), alpha's dead-lettered history %d (%v); want %d of alpha's", counts, err, len(page.Deliveries), perr, want)
		}
	}
	deadLettered(3)
	// Their statuses say why, as the console's DLQ page shows them.
	for _, id := range ids {
		if d := deliveryOf(t, p, id, "alpha"); !strings.Contains(d.Reason, "HTTP 400") {
			t.Errorf("a dead letter's status gives the reason %q", d.Reason)
		}
	}
	if code, _ := adminRequest(t, p, "", http.MethodGet, "/v1/dlq", ""); code != http.StatusUnauthorized {
		t.Errorf("DLQ without the token: %d", code)
	}
	code, body := adminRequest(t, p, token, http.MethodGet, "/v1/dlq?subscription=alpha%23shop%23order.created%231", "")
	var list struct {
		Entries []dlq.Entry
		Total   int
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || list.Total != 3 {
		t.Fatalf("list = %d %s", code, body)
	}
	if e := list.Entries[0]; e.LastStatusCode != 400 || e.Attempts != 1 || e.Status != store.DeliveryDeadLettered || !strings.Contains(e.Reason, "HTTP 400") {
		t.Errorf("entry = %+v", e)
	}
	// Unfiltered: from the index, with every partner's count; a limit
	// past a page of the index is refused there, not with all=true.
	code, body = adminRequest(t, p, token, http.MethodGet, "/v1/dlq", "")
	var shape struct {
		Total     int
		Exact     bool
		ByPartner []struct {
			PartnerID string `json:"partner_id"`
			Count     int
		} `json:"by_partner"`
	}
	if err := json.Unmarshal(body, &shape); code != 200 || err != nil || shape.Total != 3 || !shape.Exact || len(shape.ByPartner) != 1 ||
		shape.ByPartner[0].PartnerID != "alpha" || shape.ByPartner[0].Count != 3 {
		t.Errorf("GET /v1/dlq = %d %s", code, body)
	}
	if code, body := adminRequest(t, p, token, http.MethodGet, "/v1/dlq?limit=5000", ""); code != http.StatusBadRequest || !strings.Contains(string(body), "between 1 and 1000") {
		t.Errorf("GET /v1/dlq?limit=5000 = %d %s, want 400", code, body)
	}
	if code, body := adminRequest(t, p, token, http.MethodGet, "/v1/dlq?limit=5000&all=true", ""); code != http.StatusOK {
		t.Errorf("GET /v1/dlq?limit=5000&all=true = %d %s", code, body)
	}
	if code, _ := adminRequest(t, p, token, http.MethodPost, "/v1/dlq/redrive", `{}`); code != http.StatusBadRequest {
		t.Errorf("a redrive of everything without a filter: %d, want 400", code)
	}

	// The partner is back: redrive one dead letter picked by its event
	// and delivery ids — its status says where it is in the queue, and
	// that record alone is read — then the rest of the subscription's.
	redrive := func(filter string) dlq.Job {
		t.Helper()
		code, body := adminRequest(t, p, token, http.MethodPost, "/v1/dlq/redrive", filter)
		var job dlq.Job
		if err := json.Unmarshal(body, &job); code != http.StatusAccepted || err != nil || job.ID == "" {
			t.Fatalf("redrive = %d %s", code, body)
		}
		eventually(t, "the redrive job to finish", func() bool {
			_, body := adminRequest(t, p, token, http.MethodGet, "/v1/dlq/redrive/"+job.ID, "")
			json.Unmarshal(body, &job)
			return job.State != "running"
		})
		return job
	}
	page, err := p.Store().DeliveriesByPartner(t.Context(), "alpha", store.Page{Status: store.DeliveryDeadLettered, Limit: 1})
	if err != nil || len(page.Deliveries) != 1 {
		t.Fatalf("alpha's dead letters: %+v, %v", page, err)
	}
	first := page.Deliveries[0]
	if !strings.HasPrefix(first.Topic, "wh.dlq.") {
		t.Errorf("a dead letter's status locates %s/%d@%d, not its record in the queue", first.Topic, first.Partition, first.Offset)
	}
	if job := redrive(`{"delivery_ids":["` + first.EventID + "/" + first.ID + `"]}`); job.State != "done" || job.Progress.Redriven != 1 || job.Progress.Records != 1 {
		t.Fatalf("the picked one's redrive = %+v; want it redriven, one record read", job)
	}
	if job := redrive(`{"subscription":"alpha#shop#order.created#1"}`); job.State != "done" || job.Progress.Redriven != 2 || job.Progress.Done != 2 || job.Progress.Records != 3 {
		t.Fatalf("the subscription's redrive = %+v; want the other two redriven of the 3 records read", job)
	}
	for _, id := range ids {
		ds := mustDelivered(t, p, id, 1)
		if n := len(ds[0].Attempts); n != 2 || ds[0].Attempts[1].StatusCode != 204 || ds[0].Reason != "" {
			t.Errorf("attempts after redrive = %+v, reason %q", ds[0].Attempts, ds[0].Reason)
		}
	}
	if n, dups, _ := alpha.counts(); n != 3 || dups != 0 {
		t.Errorf("alpha got %d distinct, %d duplicates; want 3, 0", n, dups)
	}
	deadLettered(0)
	_, body = adminRequest(t, p, token, http.MethodGet, "/v1/dlq", "")
	json.Unmarshal(body, &list)
	if list.Total != 0 {
		t.Errorf("queue after redrive holds %d entries", list.Total)
	}
	// With all=true the history is still there.
	_, body = adminRequest(t, p, token, http.MethodGet, "/v1/dlq?all=true&from="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "")
	json.Unmarshal(body, &list)
	if list.Total != 3 || list.Entries[0].Status != store.DeliveryDelivered {
		t.Errorf("all entries = %d, first status %q", list.Total, list.Entries[0].Status)
	}
}
