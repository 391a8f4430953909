// Package ingest is the producers' HTTP API: POST /v1/events validates an
// event against its compiled schema and answers 202 only once the ingress
// cluster has acknowledged it (acks=all); GET /v1/events/{id} shows the
// event and every delivery of it with its attempts.
package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/runtime/flags"
	"github.com/whp-dev/whp/runtime/registry"
	"github.com/whp-dev/whp/runtime/telemetry"
	"github.com/whp-dev/whp/store"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes   = 256 << 10
	DefaultIdempotencyTTL = 24 * time.Hour
	DefaultProduceTimeout = 10 * time.Second
	maxKeyLen             = 256
	maxIdempotencyKeyLen  = 255
)

// Schemas finds a schema version by ID.
type Schemas interface {
	Lookup(id string) (*registry.Entry, bool)
}

// Producer writes records to the ingress cluster (kgo's client, with
// acks from every in-sync replica): promise is called once with the
// outcome. It keeps no reference to a record's key or value after that
// (kgo's client does not): their buffers are reused.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Store is the part of the state ingest uses.
type Store interface {
	CreateIdempotency(ctx context.Context, rec store.Idempotency) (store.Idempotency, error)
	PutIdempotency(ctx context.Context, rec store.Idempotency) error
	DeleteIdempotency(ctx context.Context, key string) error
	GetEvent(ctx context.Context, id string) (store.Event, error)
	Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error)
}

// Config configures the API.
type Config struct {
	// MaxBodyBytes bounds a request body; larger ones get 413.
	// Default 256 KiB.
	MaxBodyBytes int64
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	// Default 24 h.
	IdempotencyTTL time.Duration
	// ProduceTimeout bounds a POST's wait for the ingress ack; after it,
	// the POST answers 503 while the producer keeps trying. Default 10 s.
	ProduceTimeout time.Duration
	// Flags can pause a schema's ingest. Default: none.
	Flags flags.Source
	// Metrics records validation results (nil: none).
	Metrics *telemetry.Metrics
	// RecordAfterAnswer writes a keyed request's outcome — its
	// Idempotency-Key done, naming the event — once its 202 is written,
	// not before: the producer does not wait for that store write (on
	// DynamoDB a round trip; on the embedded store a commit), only for
	// the key's claim and the event's produce. The crash window is the
	// same either way: a process that dies between the produce and that
	// write leaves the key claimed, and a retry after the lease publishes
	// the event again (docs/reliability.md). A retry that reaches the same
	// process in the write's millisecond is answered the event's 202 from
	// memory (API.answered); one that reaches another process gets 409 "in
	// progress" and retries again. Only for a server that outlives its
	// answers (whp dev, whp ingest), which calls Wait before closing the
	// store; a Lambda, frozen once it has answered, keeps it false.
	RecordAfterAnswer bool
}

// API serves /v1/events.
type API struct {
	cfg     Config
	schemas Schemas
	prod    Producer
	st      Store
	log     *slog.Logger
	now     func() time.Time
	// recording counts the outcomes being written after their answers
	// (Config.RecordAfterAnswer).
	recording sync.WaitGroup
	// answered holds, while its outcome is being written after its 202,
	// each keyed request's answer (ledger key → answer): a retry that
	// reads the key still claimed is the same request if its body is, and
	// is answered the 202 given, not 409 "in progress" (claim).
	answered sync.Map
}

// answer is a keyed request's accepted event and its body's fingerprint.
type answer struct{ fp, id string }

// New returns the API; zero Config fields take their defaults.
func New(cfg Config, schemas Schemas, prod Producer, st Store, log *slog.Logger) *API {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = DefaultProduceTimeout
	}
	if cfg.Flags == nil {
		cfg.Flags = flags.Static{}
	}
	return &API{cfg: cfg, schemas: schemas, prod: prod, st: st, log: log, now: time.Now}
}

// Wait returns once the outcomes written after their answers
// (Config.RecordAfterAnswer) are written: call it after the HTTP server
// has shut down, before the store is closed.
func (a *API) Wait() { a.recording.Wait() }

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/events", a.post)
	mux.HandleFunc("GET /v1/events/{id}", a.get)
}

// unknownSchema labels validation results of requests that name no
// registered schema: producers choose those names, so they never become
// label values.
const unknownSchema = "unknown"

// request is the envelope a producer posts.
type request struct {
	Domain  *string         `json:"domain"`
	Event   *string         `json:"event"`
	Version *string         `json:"version"`
	Key     *string         `json:"key"`
	Data    json.RawMessage `json:"data"`
}

// ledgerKeyOf is where the ledger keeps a producer's Idempotency-Key.
func ledgerKeyOf(idempotencyKey string) string { return "ingest#" + idempotencyKey }

// AcceptedEventID returns the event accepted under a producer's
// Idempotency-Key while the ledger remembers it; store.ErrNotFound if none
// was (or its request is still in flight).
func AcceptedEventID(ctx context.Context, st interface {
	GetIdempotency(ctx context.Context, key string) (store.Idempotency, error)
}, idempotencyKey string) (string, error) {
	rec, err := st.GetIdempotency(ctx, ledgerKeyOf(idempotencyKey))
	if err != nil {
		return "", err
	}
	var state idempotencyState
	if json.Unmarshal(rec.Value, &state) != nil || !state.Done || state.ID == "" {
		return "", store.ErrNotFound
	}
	return state.ID, nil
}

// idempotencyState is what the ledger keeps for an Idempotency-Key.
type idempotencyState struct {
	Done        bool   `json:"done"`
	Fingerprint string `json:"fingerprint"`
	ID          string `json:"id,omitempty"`
}

func (a *API) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" { // parsing allocates; most producers send exactly this
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeProblem(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the event as application/json")
			return
		}
	}
	bodyBuf := getBuffer()
	defer putBuffer(bodyBuf)
	body, err := readBody(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes), r.ContentLength, a.cfg.MaxBodyBytes, *bodyBuf)
	*bodyBuf = body
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("the request body is larger than the limit of %d bytes", a.cfg.MaxBodyBytes))
			return
		}
		writeProblem(w, http.StatusBadRequest, "unreadable_body", "the request body could not be read")
		return
	}
	req, vs := decodeRequest(body)
	if len(vs) > 0 {
		a.cfg.Metrics.Validation(r.Context(), unknownSchema, false)
		writeProblem(w, http.StatusBadRequest, "invalid_request", "the request is not a valid event envelope", vs...)
		return
	}
	schemaID := catalog.SchemaID(*req.Domain, *req.Event, *req.Version)
	entry, ok := a.schemas.Lookup(schemaID)
	if !ok {
		a.cfg.Metrics.Validation(r.Context(), unknownSchema, false)
		writeProblem(w, http.StatusNotFound, "unknown_schema",
			fmt.Sprintf("no schema %s/%s version %s is registered", *req.Domain, *req.Event, *req.Version))
		return
	}
	if !entry.Active() {
		a.cfg.Metrics.Validation(r.Context(), schemaID, false)
		writeProblem(w, http.StatusNotFound, "inactive_schema",
			fmt.Sprintf("schema %s/%s version %s is INACTIVE and accepts no events", *req.Domain, *req.Event, *req.Version))
		return
	}
	if paused, msg := a.cfg.Flags.Current().IngestPaused(schemaID); paused {
		if msg == "" {
			msg = "paused by an operator"
		}
		w.Header().Set("Retry-After", "60")
		writeProblem(w, http.StatusServiceUnavailable, "ingest_paused",
			fmt.Sprintf("ingest of %s/%s version %s is paused: %s; retry later", *req.Domain, *req.Event, *req.Version, msg))
		return
	}
	violations, err := entry.Validator.Validate(req.Data)
	a.cfg.Metrics.Validation(r.Context(), schemaID, err == nil && len(violations) == 0)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid_request", "data is not valid JSON", catalog.Violation{Pointer: "/data", Message: err.Error()})
		return
	}
	if len(violations) > 0 {
		for i := range violations {
			violations[i].Pointer = "/data" + violations[i].Pointer
		}
		writeProblem(w, http.StatusBadRequest, "schema_violation",
			fmt.Sprintf("data does not match schema %s/%s version %s", *req.Domain, *req.Event, *req.Version), violations...)
		return
	}

	idemKey := r.Header.Get("Idempotency-Key")
	var ledgerKey, fp string // fp: the body's fingerprint, for a key's claim and outcome
	if idemKey != "" {
		if len(idemKey) > maxIdempotencyKeyLen || strings.ContainsFunc(idemKey, func(c rune) bool { return c < 0x20 || c > 0x7e }) {
			writeProblem(w, http.StatusBadRequest, "invalid_idempotency_key",
				fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyKeyLen))
			return
		}
		ledgerKey, fp = ledgerKeyOf(idemKey), fingerprint(body)
		if done := a.claim(w, r.Context(), ledgerKey, fp); done {
			return
		}
	}

	id, err := envelope.NewEventID()
	if err != nil {
		a.fail(w, r.Context(), ledgerKey, "new event id", err)
		return
	}
	ev := envelope.Event{ID: id, Domain: *req.Domain, Event: *req.Event, Version: *req.Version,
		IdempotencyKey: idemKey, AcceptedAt: a.now().UTC(), Data: req.Data}
	if req.Key != nil {
		ev.Key = *req.Key
	}
	valueBuf := getBuffer()
	value := ev.AppendJSON((*valueBuf)[:0])
	*valueBuf = value
	key := ev.Key
	if key == "" {
		key = id
	}
	// The record carries the request's trace (the produce span and the
	// traceparent header are added by the client's hooks).
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("whp.event_id", id), attribute.String("whp.schema_id", schemaID))
	// The produce outlives a client that hangs up: once started, the
	// event may be accepted, and the idempotency record must say so.
	ctx := telemetry.Detached(r.Context())
	rec := &kgo.Record{Topic: entry.Topic, Key: []byte(key), Value: value, Context: ctx}
	acked := make(chan error, 1)
	a.prod.Produce(ctx, rec, func(_ *kgo.Record, err error) { acked <- err })
	timer := getTimer(a.cfg.ProduceTimeout)
	defer putTimer(timer)
	select {
	case err = <-acked:
		putBuffer(valueBuf) // the producer is done with the record
	case <-timer.C:
		// Not acknowledged in time, the cluster unreachable: kgo's
		// idempotent producer does not give up a record it may have sent,
		// so the event may still be accepted. The producer is told to
		// retry with its key, which stays claimed until the outcome is
		// known and then names the event, or is freed.
		a.log.Error("ingress produce not acknowledged in time", "event_id", id, "schema_id", schemaID, "topic", entry.Topic,
			"timeout", a.cfg.ProduceTimeout.String(), "trace_id", telemetry.TraceID(r.Context()))
		go a.settle(ledgerKey, fp, id, acked)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the event log did not acknowledge the event in time; it may still be accepted: retry with the same Idempotency-Key")
		return
	}
	if err != nil {
		a.log.Error("ingress produce failed", "event_id", id, "schema_id", schemaID, "topic", entry.Topic, "trace_id", telemetry.TraceID(r.Context()), "error", err)
		if ledgerKey != "" {
			a.st.DeleteIdempotency(ctx, ledgerKey)
		}
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the event was not accepted: the event log is unavailable; retry with the same Idempotency-Key")
		return
	}
	if a.log.Enabled(r.Context(), slog.LevelDebug) { // the trace ID is formatted for nothing else
		a.log.Debug("accepted", "event_id", id, "schema_id", schemaID, "trace_id", telemetry.TraceID(r.Context()))
	}
	if ledgerKey != "" {
		if a.cfg.RecordAfterAnswer {
			given := answer{fp, id}
			a.answered.Store(ledgerKey, given)
			a.recording.Go(func() {
				a.accepted(ctx, ledgerKey, fp, id)
				a.answered.CompareAndDelete(ledgerKey, given)
			})
		} else {
			a.accepted(ctx, ledgerKey, fp, id)
		}
	}
	w.Header().Set("Location", "/v1/events/"+id)
	writeAccepted(w, id)
}

// accepted records that the request holding ledgerKey was accepted as
// event id.
func (a *API) accepted(ctx context.Context, ledgerKey, fp, id string) {
	st, _ := json.Marshal(idempotencyState{Done: true, Fingerprint: fp, ID: id})
	now := a.now()
	if err := a.st.PutIdempotency(ctx, store.Idempotency{Key: ledgerKey, Value: st, CreatedAt: now, ExpiresAt: now.Add(a.cfg.IdempotencyTTL)}); err != nil {
		// The event is durable; only a retry with this key could now
		// publish it twice. Say so in the log, answer the truth.
		a.log.Error("idempotency record not updated after accept", "event_id", id, "trace_id", telemetry.TraceID(ctx), "error", err)
	}
}

// settle waits for the outcome of a produce whose POST timed out, and
// records it against the request's Idempotency-Key (if it had one): the
// producer's retry then gets the event's 202, or is accepted anew.
//
// kgo's idempotent producer may take longer than the key's lease (twice
// ProduceTimeout) to get a record through — as long as the cluster stays
// unreachable. Until the outcome is known the claim is renewed every half
// ProduceTimeout, so a retry keeps getting 409 "in progress" instead of
// taking the key over and publishing the event a second time under a new
// id once the first produce goes through (TestLateAckBeyondLease; found
// by TestKafkaFaults). Only a process that dies with the produce
// unsettled stops renewing, and then the lease lets a retry take over.
func (a *API) settle(ledgerKey, fp, id string, acked <-chan error) {
	ctx := context.Background()
	// Unconditional, as the claim's takeover is: a retry takes the key
	// over only once the claim is older than the lease, which renewing now
	// (the claim is one ProduceTimeout old) and every half ProduceTimeout
	// prevents while this process lives.
	renewLease := func() {
		if err := a.st.PutIdempotency(ctx, a.pendingClaim(ledgerKey, fp, a.now())); err != nil {
			a.log.Warn("idempotency key lease not renewed; will try again", "event_id", id, "error", err)
		}
	}
	var renew <-chan time.Time
	if ledgerKey != "" {
		select {
		case err := <-acked: // settled meanwhile: nothing to renew
			a.settled(ctx, ledgerKey, fp, id, err)
			return
		default:
		}
		renewLease()
		t := time.NewTicker(a.cfg.ProduceTimeout / 2)
		defer t.Stop()
		renew = t.C
	}
	for {
		select {
		case err := <-acked:
			a.settled(ctx, ledgerKey, fp, id, err)
			return
		case <-renew:
			renewLease()
		}
	}
}

// settled records the late outcome err of event id's produce.
func (a *API) settled(ctx context.Context, ledgerKey, fp, id string, err error) {
	switch {
	case err != nil:
		a.log.Warn("ingress produce failed after its request timed out", "event_id", id, "error", err)
		if ledgerKey != "" {
			a.st.DeleteIdempotency(ctx, ledgerKey)
		}
	default:
		a.log.Warn("event accepted after its request timed out", "event_id", id, "idempotency_key_held", ledgerKey != "")
		if ledgerKey != "" {
			a.accepted(ctx, ledgerKey, fp, id)
		}
	}
}

// pendingClaim is the ledger item by which a request with body
// fingerprint fp holds key while it is unfinished: its lease (twice
// ProduceTimeout, see claim) runs from now.
func (a *API) pendingClaim(key, fp string, now time.Time) store.Idempotency {
	v, _ := json.Marshal(idempotencyState{Fingerprint: fp})
	return store.Idempotency{Key: key, Value: v, CreatedAt: now, ExpiresAt: now.Add(a.cfg.IdempotencyTTL)}
}

// claim reserves an Idempotency-Key. It returns true when it has answered
// the request itself: a replay of a finished request, a conflicting reuse,
// or a request still in progress.
func (a *API) claim(w http.ResponseWriter, ctx context.Context, key, fp string) bool {
	now := a.now()
	pending := a.pendingClaim(key, fp, now)
	existing, err := a.st.CreateIdempotency(ctx, pending)
	if err == nil {
		return false
	}
	if !errors.Is(err, store.ErrConflict) {
		a.log.Error("idempotency ledger unavailable", "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the idempotency ledger is unavailable; retry")
		return true
	}
	var st idempotencyState
	if json.Unmarshal(existing.Value, &st) != nil {
		writeProblem(w, http.StatusConflict, "idempotency_conflict", "this Idempotency-Key was used by another request")
		return true
	}
	switch {
	case st.Fingerprint != fp:
		writeProblem(w, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was already used with a different request body")
	case !st.Done && a.answeredAs(key, fp) != "":
		// Answered by this process, its outcome still being written (for
		// as long as that takes: a store that refuses the write does not
		// let a retry take the key over and publish the event again).
		replay(w, a.answeredAs(key, fp))
	case !st.Done && now.Sub(existing.CreatedAt) > 2*a.cfg.ProduceTimeout:
		// The request that claimed the key never finished (its process
		// died): after the lease, a retry takes the key over. If that
		// request had been written before dying, the event is now accepted
		// twice, under two ids — the one window of Idempotency-Key.
		a.log.Warn("idempotency key taken over after an unfinished request", "age", now.Sub(existing.CreatedAt).String())
		if err := a.st.PutIdempotency(ctx, pending); err != nil {
			writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the idempotency ledger is unavailable; retry")
			return true
		}
		return false
	case !st.Done:
		writeProblem(w, http.StatusConflict, "idempotency_in_progress",
			"a request with this Idempotency-Key is still in progress; retry shortly")
	default:
		replay(w, st.ID)
	}
	return true
}

// answeredAs is the event this process answered 202 for a request with
// key and body fingerprint fp whose outcome it is still writing, or "".
func (a *API) answeredAs(key, fp string) string {
	if v, ok := a.answered.Load(key); ok && v.(answer).fp == fp {
		return v.(answer).id
	}
	return ""
}

// replay answers a keyed request with the 202 its key's first request got.
func replay(w http.ResponseWriter, id string) {
	w.Header().Set("Idempotent-Replayed", "true")
	w.Header().Set("Location", "/v1/events/"+id)
	writeAccepted(w, id)
}

func (a *API) fail(w http.ResponseWriter, ctx context.Context, ledgerKey, what string, err error) {
	a.log.Error("ingest failed", "step", what, "error", err)
	if ledgerKey != "" {
		a.st.DeleteIdempotency(context.WithoutCancel(ctx), ledgerKey)
	}
	writeProblem(w, http.StatusInternalServerError, "internal", "internal error; the event was not accepted")
}

func fingerprint(body []byte) string {
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:])
}

// readBody reads a request body into buf (grown if it is too small) in
// one read when its length is declared (and within the limit, which rd
// enforces either way), instead of io.ReadAll's doubling from 512 bytes.
func readBody(rd io.Reader, declared, limit int64, buf []byte) ([]byte, error) {
	if declared <= 0 || declared > limit {
		return readAll(rd, buf[:0])
	}
	if int64(cap(buf)) < declared+1 {
		buf = make([]byte, 0, declared+1)
	}
	b := buf[:declared]
	if _, err := io.ReadFull(rd, b); err != nil {
		return nil, err // a body shorter than declared, as io.ReadAll would say
	}
	// net/http ends the body at its Content-Length; another reader's
	// longer body is read all the same, within the limit.
	var one [1]byte
	switch _, err := io.ReadFull(rd, one[:]); {
	case errors.Is(err, io.EOF):
		return b, nil
	case err != nil:
		return nil, err
	}
	return readAll(rd, append(b, one[0]))
}

// readAll appends what rd has left to b, as io.ReadAll does to nil.
func readAll(rd io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

// timers recycles the produce waits' timers: since Go 1.23 a stopped
// timer's channel holds no stale tick, so a timer from the pool, Reset,
// fires only for its new wait.
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

func getTimer(d time.Duration) *time.Timer {
	t := timers.Get().(*time.Timer)
	t.Reset(d)
	return t
}

func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// maxPooled is the largest buffer kept for reuse: bodies and records of
// events up to it (most events are a few KiB) cost no allocation, and a
// rare large one does not stay pinned in the pool.
const maxPooled = 64 << 10

// buffers recycles the request body and the record value of each POST:
// the envelope's fields and data are decoded into copies, and the
// producer keeps no record after its promise is called — a record still
// unacknowledged when its POST times out keeps its buffer.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

func getBuffer() *[]byte { return buffers.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		buffers.Put(b)
	}
}

// decodeRequest parses the envelope strictly and reports every problem
// with the JSON pointer of its field.
//
// An envelope is parsed first with goccy/go-json, about twice as fast as
// encoding/json on an event's body; what it refuses is parsed again with
// encoding/json, whose errors say which field is wrong and how. Both
// accept and refuse the same bodies and read the same fields
// (TestDecodeRequestFastPathAgrees).
func decodeRequest(body []byte) (request, []catalog.Violation) {
	req, ok := decodeFast(body)
	if !ok {
		req = request{}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, []catalog.Violation{decodeViolation(err)}
		}
		if dec.More() {
			return req, []catalog.Violation{{Pointer: "", Message: "malformed JSON: unexpected data after the event object"}}
		}
	}
	var vs []catalog.Violation
	for _, f := range []struct {
		name string
		v    *string
	}{{"domain", req.Domain}, {"event", req.Event}, {"version", req.Version}} {
		switch {
		case f.v == nil:
			vs = append(vs, catalog.Violation{Pointer: "/" + f.name, Message: "required"})
		case *f.v == "":
			vs = append(vs, catalog.Violation{Pointer: "/" + f.name, Message: "must not be empty"})
		}
	}
	if req.Key != nil && len(*req.Key) > maxKeyLen {
		vs = append(vs, catalog.Violation{Pointer: "/key", Message: fmt.Sprintf("longer than %d bytes", maxKeyLen)})
	}
	if len(req.Data) == 0 || string(req.Data) == "null" {
		vs = append(vs, catalog.Violation{Pointer: "/data", Message: "required"})
	}
	return req, vs
}

// decodeFast is the envelope parsed by goccy/go-json, or false for any
// body it does not accept as it is (a decoder panic included: fastjson
// makes it an error). Invalid UTF-8 goes to encoding/json, which replaces
// it in strings as it always has.
//
// It reads the three names into plain strings, one allocation for the
// lot rather than one per pointer, and leaves an envelope missing one (or
// with one empty) to encoding/json, which tells which.
func decodeFast(body []byte) (request, bool) {
	f := new(struct {
		Domain  string          `json:"domain"`
		Event   string          `json:"event"`
		Version string          `json:"version"`
		Key     *string         `json:"key"`
		Data    json.RawMessage `json:"data"`
	})
	if fastjson.UnmarshalStrict(body, f) != nil || f.Domain == "" || f.Event == "" || f.Version == "" || !utf8.Valid(body) {
		return request{}, false
	}
	return request{Domain: &f.Domain, Event: &f.Event, Version: &f.Version, Key: f.Key, Data: f.Data}, true
}

func decodeViolation(err error) catalog.Violation {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return catalog.Violation{Pointer: "", Message: fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, syn.Error())}
	case errors.As(err, &typ) && typ.Field == "":
		return catalog.Violation{Pointer: "", Message: fmt.Sprintf("an event must be a JSON object, not a JSON %s", typ.Value)}
	case errors.As(err, &typ):
		field := "/" + strings.ReplaceAll(typ.Field, ".", "/")
		return catalog.Violation{Pointer: field, Message: fmt.Sprintf("must be a %s, not a JSON %s", goTypeName(typ.Type.String()), typ.Value)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return catalog.Violation{Pointer: "", Message: "malformed JSON: the body ends before the event object does"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return catalog.Violation{Pointer: "/" + name, Message: "unknown field (an event has domain, event, version, key and data)"}
	default:
		return catalog.Violation{Pointer: "", Message: "malformed JSON"}
	}
}

func goTypeName(t string) string {
	switch t {
	case "*string", "string":
		return "string"
	default:
		return "JSON value of another type"
	}
}
