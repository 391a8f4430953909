// Package jobs runs long operator operations (DLQ redrives, replays) in
// the background and reports their progress to whoever asks, by id. Jobs
// live in this process's memory and are forgotten an hour after they end.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/whp-dev/whp/runtime/jsonhttp"
)

// Job is one run and its progress.
type Job[P any] struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Request  any       `json:"request"`
	State    string    `json:"state"` // running, done, failed
	Progress P         `json:"progress"`
	Error    string    `json:"error,omitempty"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
}

// Registry holds the jobs of one kind.
type Registry[P any] struct {
	kind string
	log  *slog.Logger

	mu   sync.Mutex
	jobs map[string]*Job[P]
}

// New returns an empty registry for jobs of a kind ("redrive", "replay").
func New[P any](kind string, log *slog.Logger) *Registry[P] {
	return &Registry[P]{kind: kind, log: log, jobs: map[string]*Job[P]{}}
}

// Start runs fn in the background; fn reports progress as it goes and
// returns the final progress.
func (r *Registry[P]) Start(request any, fn func(ctx context.Context, progress func(P)) (P, error)) Job[P] {
	raw := make([]byte, 8)
	rand.Read(raw)
	j := &Job[P]{ID: hex.EncodeToString(raw), Kind: r.kind, Request: request, State: "running", Started: time.Now().UTC()}
	r.mu.Lock()
	r.jobs[j.ID] = j
	for id, old := range r.jobs {
		if !old.Ended.IsZero() && time.Since(old.Ended) > time.Hour {
			delete(r.jobs, id)
		}
	}
	snapshot := *j
	r.mu.Unlock()
	go func() {
		p, err := fn(context.Background(), func(p P) {
			r.mu.Lock()
			j.Progress = p
			r.mu.Unlock()
		})
		r.mu.Lock()
		defer r.mu.Unlock()
		j.Progress, j.Ended = p, time.Now().UTC()
		if err != nil {
			j.State, j.Error = "failed", err.Error()
			r.log.Error(r.kind+" failed", "job", j.ID, "error", err)
			return
		}
		j.State = "done"
		r.log.Info(r.kind+" done", "job", j.ID)
	}()
	return snapshot
}

// Handler serves GET …/{job}: the job's progress, or 404.
func (r *Registry[P]) Handler() http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		j, ok := r.Get(req.PathValue("job"))
		if !ok {
			jsonhttp.Problem(w, http.StatusNotFound, "not_found", "no such "+r.kind+" job (jobs are kept for an hour after they end)")
			return
		}
		jsonhttp.Write(w, http.StatusOK, j)
	}
}

// Get returns a copy of a job.
func (r *Registry[P]) Get(id string) (Job[P], bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.jobs[id]
	if !ok {
		return Job[P]{}, false
	}
	return *j, true
}
