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

// dlqModel is the DLQ page: the newest dlqRows of the Total entries that
// match the filter, every partner's count, and the subscriptions of the
// entries shown.
type dlqModel struct {
	Filter  dlq.Filter
	Entries []dlq.Entry
	Total   int
	// Exact is false when Total is a lower bound (a subscription's dead
	// letters, counted in the pages of its partner's that were read).
	Exact bool
	// Partial: newer dead letters than the last shown may be left out
	// (dlq.Waiting.Partial); the filter finds them.
	Partial       bool
	ByPartner     []dlq.PartnerCount
	Subscriptions []string
	CanRedrive    bool
}

// dlqRows bounds the rows the DLQ page shows: after an outage the queue
// can hold tens of thousands, a page of megabytes no one reads row by
// row. The rest are reached by the filter, and redriven whole by
// subscription or partner.
const dlqRows = 200

// dlqPage shows the dead letters waiting from the store's index of them
// (dlq.Queue.Waiting: milliseconds however many there are), or, with
// "include redriven", the queue's records themselves (dlq.Queue.List,
// which reads them all, keeping the newest: the archive of what was
// dead-lettered, looked at rarely).
func (s *Server) dlqPage(w http.ResponseWriter, r *http.Request, ss session) {
	if s.cfg.DLQ == nil {
		s.fail(w, r, http.StatusNotFound, "the dead-letter queue is not reachable from this console")
		return
	}
	q := r.URL.Query()
	f := dlq.Filter{SubscriptionID: q.Get("subscription"), PartnerID: q.Get("partner"), All: q.Get("all") == "true"}
	m := dlqModel{Filter: f, CanRedrive: admins.allows(ss.Role)}
	if f.All {
		entries, total, err := s.cfg.DLQ.List(r.Context(), f, dlqRows)
		if err != nil {
			s.unavailable(w, r, "the dead-letter queue", err)
			return
		}
		m.Entries, m.Total, m.Exact = entries, total, true
	} else {
		waiting, err := s.cfg.DLQ.Waiting(r.Context(), f, dlqRows)
		if err != nil {
			s.unavailable(w, r, "the dead-letter queue", err)
			return
		}
		m.Entries, m.Total, m.Exact, m.Partial, m.ByPartner = waiting.Entries, waiting.Total, waiting.Exact, waiting.Partial, waiting.ByPartner
	}
	subs := map[string]bool{}
	for _, e := range m.Entries {
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
	f := dlq.Filter{DeliveryIDs: r.PostForm["delivery_id"], SubscriptionID: r.PostFormValue("subscription"), PartnerID: r.PostFormValue("partner")}
	if len(f.DeliveryIDs) == 0 && f.SubscriptionID == "" && f.PartnerID == "" {
		s.fail(w, r, http.StatusBadRequest, "select the dead letters to redrive, or a subscription or partner")
		return
	}
	q := s.cfg.DLQ
	job := s.redrives.Start(f, func(ctx context.Context, progress func(dlq.Progress)) (dlq.Progress, error) {
		return q.Redrive(ctx, f, progress)
	})
	s.cfg.Log.Info("console redrive", "user", ss.User, "job", job.ID, "subscription_id", f.SubscriptionID, "partner_id", f.PartnerID, "deliveries", len(f.DeliveryIDs))
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
