// Package flags holds the operational switches operators flip at run
// time, without a restart or a catalog change: pause deliveries to a
// partner (held, not lost), pause a schema's ingest (503 with a message),
// and switch a partner's payload transforms off.
//
// Sources: a JSON file (whp dev: .whp/flags.json), or in production AWS
// AppConfig through the AppConfig Agent, which caches and polls AppConfig
// and serves the configuration on localhost (the Lambda extension, or a
// sidecar on EKS). The aws-sdk-go-v2 appconfigdata module is not served by
// the registry this project builds from; the agent is AWS's recommended
// integration for both runtimes anyway.
//
// The document:
//
//	{"partners": {"acme": {"paused": true, "transform": false}},
//	 "schemas":  {"orders#order.created#1": {"ingest_paused": true, "message": "maintenance until 14:00 UTC"}}}
package flags

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whp-dev/whp/store"
)

// Snapshot is the flags in force.
type Snapshot struct {
	Partners map[string]Partner `json:"partners"`
	Schemas  map[string]Schema  `json:"schemas"`
}

// Partner toggles.
type Partner struct {
	// Paused holds every delivery to the partner until unpaused.
	Paused bool `json:"paused"`
	// Transform false sends data without the subscriptions' transforms
	// (sensitive fields are still dropped). Absent or true: as declared.
	Transform *bool `json:"transform,omitempty"`
}

// Schema toggles, by schema id (DOMAIN#EVENT#VERSION).
type Schema struct {
	IngestPaused bool   `json:"ingest_paused"`
	Message      string `json:"message,omitempty"`
}

// PartnerPaused reports whether deliveries to a partner are paused.
func (s Snapshot) PartnerPaused(id string) bool { return s.Partners[id].Paused }

// PausedReason is what a delivery's status and view say of a delivery
// that waits for its partner to be resumed.
const PausedReason = "its partner is paused by an operator"

// ExplainPaused gives each of ds that is pending, with no reason of its
// own, to a partner s pauses, PausedReason: such a delivery waits in the
// dispatcher's stream, its record in Kafka, with the status the
// processor wrote (runtime/dispatch), so its row cannot say why. The
// event's view in the API and the console's event page show it so.
func (s Snapshot) ExplainPaused(ds []store.Delivery) {
	for i, d := range ds {
		if d.Status == store.DeliveryPending && d.Reason == "" && s.PartnerPaused(d.PartnerID) {
			ds[i].Reason = PausedReason
		}
	}
}

// TransformOff reports whether a partner's transforms are switched off.
func (s Snapshot) TransformOff(id string) bool {
	t := s.Partners[id].Transform
	return t != nil && !*t
}

// IngestPaused reports whether a schema's ingest is paused, and why.
func (s Snapshot) IngestPaused(schemaID string) (bool, string) {
	sc := s.Schemas[schemaID]
	return sc.IngestPaused, sc.Message
}

// Parse reads a flags document, as the flags file and the AppConfig
// profile hold it; a field it does not know is an error, so that a
// misspelt flag is not silently ignored.
func Parse(b []byte) (Snapshot, error) {
	var s Snapshot
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return Snapshot{}, fmt.Errorf("flags: %w", err)
	}
	return s, nil
}

// Source yields the current flags. Current is cheap: it reads memory.
type Source interface {
	Current() Snapshot
}

// Static is a fixed set of flags (none, by default).
type Static Snapshot

// Current implements Source.
func (s Static) Current() Snapshot { return Snapshot(s) }

// Poller keeps the flags of a fetch function fresh: it fetches every
// interval; a failed or invalid fetch keeps the last good flags (and is
// logged), so a bad flags document never changes what runs.
type Poller struct {
	fetch    func(ctx context.Context) ([]byte, error)
	interval time.Duration
	log      *slog.Logger
	snap     atomic.Pointer[Snapshot]
	last     []byte
	mu       sync.Mutex
}

// Current implements Source.
func (p *Poller) Current() Snapshot {
	if s := p.snap.Load(); s != nil {
		return *s
	}
	return Snapshot{}
}

// Refresh fetches once.
func (p *Poller) Refresh(ctx context.Context) error {
	b, err := p.fetch(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytes.Equal(b, p.last) && p.snap.Load() != nil {
		return nil
	}
	s, err := Parse(b)
	if err != nil {
		return err
	}
	p.last = b
	p.snap.Store(&s)
	p.log.Info("flags changed", "partners", len(s.Partners), "schemas", len(s.Schemas))
	return nil
}

// Run refreshes every interval until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		if err := p.Refresh(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("flags not refreshed; the previous ones stay in force", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// File polls a JSON file; a missing file means no flags.
func File(path string, interval time.Duration, log *slog.Logger) *Poller {
	return &Poller{interval: interval, log: log, fetch: func(context.Context) ([]byte, error) {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return []byte("{}"), nil
		}
		return b, err
	}}
}

// AppConfigAgent polls the AWS AppConfig Agent's endpoint, e.g.
// http://localhost:2772/applications/whp/environments/prod/configurations/flags.
func AppConfigAgent(url string, interval time.Duration, log *slog.Logger) *Poller {
	client := &http.Client{Timeout: 5 * time.Second}
	return &Poller{interval: interval, log: log, fetch: func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("appconfig agent: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("appconfig agent: %s", resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}}
}
