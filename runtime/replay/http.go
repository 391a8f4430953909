package replay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/whp-dev/whp/runtime/adminauth"
	"github.com/whp-dev/whp/runtime/jobs"
	"github.com/whp-dev/whp/runtime/jsonhttp"
)

// Job is one replay.
type Job = jobs.Job[Progress]

// API serves replays to operators and the console (admin token):
//
//	POST /v1/replays        start a replay: {"subscription", "from", "to", "rate_per_second"}; 202 with the job
//	GET  /v1/replays/{job}  its progress
type API struct {
	r     *Replayer
	token string
	jobs  *jobs.Registry[Progress]
}

// NewAPI returns the API.
func NewAPI(r *Replayer, token string, log *slog.Logger) *API {
	return &API{r: r, token: token, jobs: jobs.New[Progress]("replay", log)}
}

// Register adds the routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/replays", adminauth.Require(a.token, a.start))
	mux.HandleFunc("GET /v1/replays/{job}", adminauth.Require(a.token, a.jobs.Handler()))
}

// Start begins a replay job and returns it. The job's id also marks the
// replay's deliveries.
func (a *API) Start(req Request) Job {
	ready := make(chan string, 1)
	job := a.jobs.Start(req, func(ctx context.Context, progress func(Progress)) (Progress, error) {
		return a.r.Run(ctx, <-ready, req, progress)
	})
	ready <- job.ID
	return job
}

// Backfill replays a newly approved subscription from a time until now;
// it returns the job id.
func (a *API) Backfill(subscriptionID string, from time.Time) string {
	return a.Start(Request{SubscriptionID: subscriptionID, From: from}).ID
}

func (a *API) start(w http.ResponseWriter, r *http.Request) {
	var req Request
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.SubscriptionID == "" || req.From.IsZero() {
		jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", `the body is {"subscription": "...", "from": "RFC 3339", "to": "RFC 3339 (optional)", "rate_per_second": 100}`)
		return
	}
	if !req.To.IsZero() && !req.From.Before(req.To) {
		jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", "from must be before to")
		return
	}
	if req.RatePerSecond < 0 || req.RatePerSecond > 10000 {
		jsonhttp.Problem(w, http.StatusBadRequest, "invalid_request", "rate_per_second must be between 1 and 10000")
		return
	}
	if _, err := a.r.st.GetSubscription(r.Context(), req.SubscriptionID); err != nil {
		jsonhttp.Problem(w, http.StatusNotFound, "not_found", "no such subscription (ids look like partner#domain#event#version)")
		return
	}
	job := a.Start(req)
	w.Header().Set("Location", "/v1/replays/"+job.ID)
	jsonhttp.Write(w, http.StatusAccepted, job)
}

// IsInvalid reports whether a replay failed for its request, not the system.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalid) }
