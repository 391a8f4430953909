package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/whp-dev/whp/runtime/adminauth"
	"github.com/whp-dev/whp/runtime/jobs"
	"github.com/whp-dev/whp/runtime/jsonhttp"
)

// API serves the DLQ to operators and the console (admin token):
//
//	GET  /v1/dlq                   entries; ?subscription= &partner= &delivery_id= &from= &to= (RFC 3339) &all=true &limit=
//	POST /v1/dlq/redrive           start a redrive of a Filter (JSON body); 202 with a job id
//	GET  /v1/dlq/redrive/{job}     the job's progress
//	POST /v1/dlq/reindex           start a reindex (Queue.Reindex, an upgrade's step); 202 with a job id
//	GET  /v1/dlq/reindex/{job}     the job's progress
//
// GET /v1/dlq with no more than a partner or a subscription answers from
// the store's index of dead letters (Queue.Waiting): the newest limit (at
// most maxWaiting) by their delivery's creation, the total, and every
// partner's count ("by_partner") — milliseconds however large the queue.
// With delivery_id, from, to or all=true it reads the queue's records
// (Queue.List): the newest limit (at most 10,000) of the entries that
// match, the most recent failure first, and how many match — for
// delivery ids given as EVENT_ID/DELIVERY_ID, the records their statuses
// say are theirs alone.
//
// A job's progress (Progress) is how much of the queue it has read —
// "scanned" of "records", the records of the dead-letter topics its
// filter can select from when it started — and what it found and did so
// far: "total" entries selected, "done", "redriven", "skipped" (with
// "notes" saying why), final once the job's state is done.
type API struct {
	q     *Queue
	token string
	log   *slog.Logger
	jobs  *jobs.Registry[Progress]
	// reindexes are Reindex's jobs.
	reindexes *jobs.Registry[Progress]
}

// Job is one redrive.
type Job = jobs.Job[Progress]

// NewAPI returns the API.
func NewAPI(q *Queue, token string, log *slog.Logger) *API {
	return &API{q: q, token: token, log: log, jobs: jobs.New[Progress]("dlq redrive", log), reindexes: jobs.New[Progress]("dlq reindex", log)}
}

// Register adds the routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/dlq", adminauth.Require(a.token, a.list))
	mux.HandleFunc("POST /v1/dlq/redrive", adminauth.Require(a.token, a.redrive))
	mux.HandleFunc("POST /v1/dlq/reindex", adminauth.Require(a.token, a.reindex))
	mux.HandleFunc("GET /v1/dlq/reindex/{job}", adminauth.Require(a.token, a.reindexes.Handler()))
	mux.HandleFunc("GET /v1/dlq/redrive/{job}", adminauth.Require(a.token, a.jobs.Handler()))
}

// FilterFromQuery reads a Filter from URL parameters.
func FilterFromQuery(q map[string][]string) (Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := Filter{SubscriptionID: get("subscription"), PartnerID: get("partner"), All: get("all") == "true"}
	if id := get("delivery_id"); id != "" {
		f.DeliveryIDs = strings.Split(id, ",")
	}
	for k, dst := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if v := get(k); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, &paramError{k}
			}
			*dst = t
		}
	}
	return f, nil
}

type paramError struct{ name string }

func (e *paramError) Error() string {
	return e.name + " must be an RFC 3339 time, like 2026-11-28T12:00:00Z"
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	f, err := FilterFromQuery(r.URL.Query())
	if err != nil {
		jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	waiting := len(f.DeliveryIDs) == 0 && f.From.IsZero() && f.To.IsZero() && !f.All
	limit, most := 100, 10000
	if waiting {
		most = maxWaiting
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > most {
			jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("limit must be between 1 and %d", most))
			return
		}
	}
	unavailable := func(err error) {
		a.log.Error("list dlq", "error", err)
		jsonhttp.Problem(w, http.StatusServiceUnavailable, "unavailable", "the dead-letter queue cannot be read now; retry")
	}
	if waiting {
		wt, err := a.q.Waiting(r.Context(), f, limit)
		if err != nil {
			unavailable(err)
			return
		}
		jsonhttp.Write(w, http.StatusOK, wt)
		return
	}
	entries, total, err := a.q.List(r.Context(), f, limit)
	if err != nil {
		unavailable(err)
		return
	}
	if entries == nil {
		entries = []Entry{}
	}
	jsonhttp.Write(w, http.StatusOK, map[string]any{"entries": entries, "total": total, "exact": true})
}

func (a *API) redrive(w http.ResponseWriter, r *http.Request) {
	var f Filter
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", `the body is a filter: {"delivery_ids": ["EVENT_ID/DELIVERY_ID" or "DELIVERY_ID", ...], "subscription": "...", "partner": "...", "from": "RFC 3339", "to": "RFC 3339"}`)
		return
	}
	if len(f.DeliveryIDs) == 0 && f.SubscriptionID == "" && f.PartnerID == "" && f.From.IsZero() && f.To.IsZero() {
		jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", "say what to redrive: delivery_ids, a subscription, a partner or a time range")
		return
	}
	f.All = false // only what is still in the queue
	job := a.jobs.Start(f, func(ctx context.Context, progress func(Progress)) (Progress, error) {
		return a.q.Redrive(ctx, f, progress)
	})
	w.Header().Set("Location", "/v1/dlq/redrive/"+job.ID)
	jsonhttp.Write(w, http.StatusAccepted, job)
}

func (a *API) reindex(w http.ResponseWriter, r *http.Request) {
	job := a.reindexes.Start(nil, func(ctx context.Context, progress func(Progress)) (Progress, error) {
		return a.q.Reindex(ctx, progress)
	})
	w.Header().Set("Location", "/v1/dlq/reindex/"+job.ID)
	jsonhttp.Write(w, http.StatusAccepted, job)
}
