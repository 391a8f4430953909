package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Condition types, as in Flux.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// Condition reasons.
const (
	ReasonSucceeded        = "ReconciliationSucceeded"
	ReasonProgressing      = "Progressing"
	ReasonFetchFailed      = "FetchFailed"
	ReasonValidationFailed = "ValidationFailed"
	ReasonApplyFailed      = "ApplyFailed"
)

// Condition is one observed aspect of the reconciler's state.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"` // "True" or "False"
	Reason             string    `json:"reason"`
	Message            string    `json:"message"`
	LastTransitionTime time.Time `json:"last_transition_time"`
}

// Status is what the reconciler last did: stored after every attempt and
// shown by `whp reconcile status`, GET /v1/reconcile/status and the console.
type Status struct {
	LastAttemptedRevision string      `json:"last_attempted_revision,omitempty"`
	LastAppliedRevision   string      `json:"last_applied_revision,omitempty"`
	LastAppliedAt         time.Time   `json:"last_applied_at,omitzero"`
	ObservedAt            time.Time   `json:"observed_at,omitzero"`
	Conditions            []Condition `json:"conditions"`
	// Problems are the validation problems of the last attempted
	// revision, when it was invalid.
	Problems []string `json:"problems,omitempty"`
	// LastError is the last transient failure, if the last attempt failed.
	LastError string `json:"last_error,omitempty"`
	// LastChanges summarises the last non-empty plan applied.
	LastChanges []string `json:"last_changes,omitempty"`
	// Inventory is every object the applied revision manages: schema/ID,
	// subscription/ID, topic/NAME.
	Inventory []string `json:"inventory,omitempty"`
}

// Condition returns the condition of a type, if set.
func (s Status) Condition(typ string) (Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return Condition{}, false
}

// set records a condition, keeping its transition time when the status
// does not change.
func (s *Status) set(typ, status, reason, msg string, now time.Time) {
	for i, c := range s.Conditions {
		if c.Type == typ {
			if c.Status != status {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason, c.Message = status, reason, msg
			s.Conditions[i] = c
			return
		}
	}
	s.Conditions = append(s.Conditions, Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: now})
}

func (s *Status) remove(typ string) {
	out := s.Conditions[:0]
	for _, c := range s.Conditions {
		if c.Type != typ {
			out = append(out, c)
		}
	}
	s.Conditions = out
}

// StatusFile stores the status as JSON in a file (the data dir locally).
type StatusFile struct {
	Path string
}

// StatusFileIn is where a data dir keeps the status: whp dev and whp
// reconcile write it there, and whp reconcile status --data-dir reads it.
func StatusFileIn(dataDir string) StatusFile {
	return StatusFile{Path: filepath.Join(dataDir, "reconciler-status.json")}
}

// Load reads the status; a missing file is an empty status.
func (f StatusFile) Load(context.Context) (Status, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Status{}, nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("read reconciler status: %w", err)
	}
	return decodeStatus(b, f.Path)
}

// Save writes the status atomically.
func (f StatusFile) Save(_ context.Context, s Status) error {
	b, err := encodeStatus(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	tmp := f.Path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write reconciler status: %w", err)
	}
	return os.Rename(tmp, f.Path)
}

// ObjectStore is where StatusObject keeps the status (artifact.Dir,
// artifact.S3).
type ObjectStore interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, body []byte) error
}

// StatusObject stores the status as a JSON object, in S3 in production
// where roles have no disk of their own.
type StatusObject struct {
	Store ObjectStore
	Key   string
	// IsNotFound tells a missing object from a failure.
	IsNotFound func(error) bool
}

// Load reads the status; a missing object is an empty status.
func (o StatusObject) Load(ctx context.Context) (Status, error) {
	b, err := o.Store.Get(ctx, o.Key)
	if err != nil {
		if o.IsNotFound != nil && o.IsNotFound(err) {
			return Status{}, nil
		}
		return Status{}, fmt.Errorf("read reconciler status %s: %w", o.Key, err)
	}
	return decodeStatus(b, o.Key)
}

// Save writes the status.
func (o StatusObject) Save(ctx context.Context, s Status) error {
	b, err := encodeStatus(s)
	if err != nil {
		return err
	}
	return o.Store.Put(ctx, o.Key, b)
}

// encodeStatus and decodeStatus are the one stored form of the status,
// whichever StatusStore keeps it: indented JSON, for people reading it.
func encodeStatus(s Status) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	return append(b, '\n'), err
}

func decodeStatus(b []byte, where string) (Status, error) {
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("reconciler status %s: %w", where, err)
	}
	return s, nil
}
