package console

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"

	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/runtime/jobs"
)

// redriveJobs runs the console's redrives in the background.
type redriveJobs = jobs.Registry[dlq.Progress]

func newRedriveJobs(log *slog.Logger) *redriveJobs { return jobs.New[dlq.Progress]("redrive", log) }

// dlqModel is the DLQ page: the most recent dlqRows of the Total entries
// that match the filter, and the subscriptions of them all.
type dlqModel struct {
	Filter        dlq.Filter
	Entries       []dlq.Entry
	Total         int
	Subscriptions []string
	CanRedrive    bool
}

// dlqRows bounds the rows the DLQ page shows: after an outage the queue
// can hold tens of thousands, a page of megabytes no one reads row by
// row. The rest are reached by the filter, and redriven whole by
// subscription.
const dlqRows = 200

func (s *Server) dlqPage(w http.ResponseWriter, r *http.Request, ss session) {
	if s.cfg.DLQ == nil {
		s.fail(w, r, http.StatusNotFound, "the dead-letter queue is not reachable from this console")
		return
	}
	q := r.URL.Query()
	f := dlq.Filter{SubscriptionID: q.Get("subscription"), PartnerID: q.Get("partner"), All: q.Get("all") == "true"}
	entries, err := s.cfg.DLQ.List(r.Context(), f)
	if err != nil {
		s.unavailable(w, r, "the dead-letter queue", err)
		return
	}
	m := dlqModel{Filter: f, Entries: entries[:min(len(entries), dlqRows)], Total: len(entries), CanRedrive: admins.allows(ss.Role)}
	subs := map[string]bool{}
	for _, e := range entries {
		subs[e.SubscriptionID] = true
	}
	m.Subscriptions = slices.Sorted(maps.Keys(subs))
	s.render(w, r, http.StatusOK, dlqPage(s.page(ss, "dlq"), m))
}

// redrive starts a redrive of the selected entries, or of every entry of
// a subscription, and shows its progress.
func (s *Server) redrive(w http.ResponseWriter, r *http.Request, ss session) {
	if s.cfg.DLQ == nil {
		s.fail(w, r, http.StatusNotFound, "the dead-letter queue is not reachable from this console")
		return
	}
	r.ParseForm()
	f := dlq.Filter{DeliveryIDs: r.PostForm["delivery_id"], SubscriptionID: r.PostFormValue("subscription")}
	if len(f.DeliveryIDs) == 0 && f.SubscriptionID == "" {
		s.fail(w, r, http.StatusBadRequest, "select the dead letters to redrive, or a subscription")
		return
	}
	q := s.cfg.DLQ
	job := s.redrives.Start(f, func(ctx context.Context, progress func(dlq.Progress)) (dlq.Progress, error) {
		return q.Redrive(ctx, f, progress)
	})
	s.cfg.Log.Info("console redrive", "user", ss.User, "job", job.ID, "subscription_id", f.SubscriptionID, "deliveries", len(f.DeliveryIDs))
	http.Redirect(w, r, "/console/dlq/jobs/"+job.ID, http.StatusSeeOther)
}

// redriveJob shows a redrive's progress: a whole page, or with htmx the
// progress fragment, which polls itself until the job ends.
func (s *Server) redriveJob(w http.ResponseWriter, r *http.Request, ss session) {
	j, ok := s.redrives.Get(r.PathValue("id"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, "no such redrive (they are kept an hour after they end)")
		return
	}
	if r.Header.Get("HX-Request") == "true" {
		s.render(w, r, http.StatusOK, redriveProgress(j))
		return
	}
	s.render(w, r, http.StatusOK, redrivePage(s.page(ss, "dlq"), j))
}
