package dev

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/runtime/replay"
)

// TestReplayAndBackfill: a replay of alpha over a time range delivers
// exactly that range's events once more, as replays, and nothing to beta;
// approving gamma with backfill_from delivers it everything since then.
func TestReplayAndBackfill(t *testing.T) {
	data := t.TempDir()
	alpha, beta, gamma := newReceiver(t, data, "alpha"), newReceiver(t, data, "beta"), newReceiver(t, data, "gamma")
	p := startPlatform(t, data, testCatalog(t, alpha.srv.URL, beta.srv.URL, gamma.srv.URL))
	b, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	token := strings.TrimSpace(string(b))

	var ids []string
	var at []time.Time
	for i := range 6 {
		id := accept(t, p, orderEvent(600+i))
		ids = append(ids, id)
		mustDelivered(t, p, id, 2)
		v, _ := getEvent(t, p, id)
		at = append(at, v.AcceptedAt)
		time.Sleep(20 * time.Millisecond) // distinct acceptance times
	}
	// Replay events 2, 3 and 4 (from the 2nd acceptance, before the 5th).
	body := `{"subscription":"alpha#shop#order.created#1","from":"` + at[1].Format(time.RFC3339Nano) + `","to":"` + at[4].Format(time.RFC3339Nano) + `","rate_per_second":50}`
	code, resp := adminRequest(t, p, token, http.MethodPost, "/v1/replays", body)
	var job replay.Job
	if err := json.Unmarshal(resp, &job); code != http.StatusAccepted || err != nil {
		t.Fatalf("start replay = %d %s", code, resp)
	}
	eventually(t, "the replay to finish", func() bool {
		_, resp := adminRequest(t, p, token, http.MethodGet, "/v1/replays/"+job.ID, "")
		json.Unmarshal(resp, &job)
		return job.State != "running"
	})
	if job.State != "done" || job.Progress.Replayed != 3 {
		t.Fatalf("replay job = %+v", job)
	}
	for i, id := range ids {
		v, _ := getEvent(t, p, id)
		replays := 0
		for _, d := range v.Deliveries {
			if d.Replay == job.ID {
				replays++
				if d.PartnerID != "alpha" {
					t.Errorf("event %d replayed to %s", i, d.PartnerID)
				}
			}
		}
		want := 0
		if i >= 1 && i <= 3 {
			want = 1
		}
		if replays != want {
			t.Errorf("event %d: %d replayed deliveries, want %d", i, replays, want)
		}
	}
	eventually(t, "the replays to arrive", func() bool { n, _, _ := alpha.counts(); return n == 9 })
	if n, dups, _ := alpha.counts(); n != 9 || dups != 0 {
		t.Errorf("alpha: %d distinct webhooks (%d duplicates), want 6 live + 3 replayed", n, dups)
	}
	if n, _, _ := beta.counts(); n != 6 {
		t.Errorf("beta got %d webhooks; a replay for alpha reached it", n)
	}

	// Backfill: approving gamma with backfill_from replays all six.
	code, resp = adminRequest(t, p, token, http.MethodPost, "/v1/subscriptions/gamma%23shop%23order.created%231/approve",
		`{"by":"carol","reason":"new partner","backfill_from":"`+at[0].Add(-time.Millisecond).Format(time.RFC3339Nano)+`"}`)
	var v struct {
		Status      string
		BackfillJob string `json:"backfill_job"`
	}
	if err := json.Unmarshal(resp, &v); code != 200 || err != nil || v.Status != "Approved" || v.BackfillJob == "" {
		t.Fatalf("approve with backfill = %d %s", code, resp)
	}
	eventually(t, "gamma's backfill to arrive", func() bool { n, _, _ := gamma.counts(); return n == 6 })
	if n, dups, _ := gamma.counts(); n != 6 || dups != 0 {
		t.Errorf("gamma: %d (%d duplicates), want the 6 earlier events once", n, dups)
	}
	if code, _ := adminRequest(t, p, token, http.MethodPost, "/v1/replays", `{"subscription":"alpha#shop#order.created#1","from":"2030-01-01T00:00:00Z","to":"2029-01-01T00:00:00Z"}`); code != http.StatusBadRequest {
		t.Errorf("a backwards range: %d, want 400", code)
	}
}
