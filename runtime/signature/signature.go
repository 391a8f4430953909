// Package signature signs and verifies webhooks per the Standard Webhooks
// specification: headers webhook-id, webhook-timestamp and
// webhook-signature, the last holding "v1,<base64 HMAC-SHA256>" over
// "{id}.{timestamp}.{body}" for each active secret, space-separated, so a
// receiver keeps verifying during a secret rotation.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names of the specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret; the rest is base64 of the key.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a webhook-timestamp may be from the
// receiver's clock before Verify rejects it (replay protection).
const DefaultTolerance = 5 * time.Minute

var (
	// ErrNoMatch means no signature matched any secret.
	ErrNoMatch = errors.New("signature: no matching signature")
	// ErrTimestamp means the timestamp is missing, malformed or outside
	// the tolerance.
	ErrTimestamp = errors.New("signature: timestamp outside tolerance")
	// ErrMissing means a required header is absent.
	ErrMissing = errors.New("signature: missing webhook headers")
	// ErrBadSecret means a secret is not a whsec_ secret.
	ErrBadSecret = errors.New("signature: not a whsec_ secret")
)

// NewSecret returns a fresh whsec_ secret with a 32-byte key.
func NewSecret() string {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// Key decodes a whsec_ secret into its HMAC key.
func Key(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: the whsec_ prefix is missing", ErrBadSecret)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("%w: not base64 of at least 16 bytes", ErrBadSecret)
	}
	return key, nil
}

// Signer signs with one or more keys, decoded once. It is safe for
// concurrent use.
type Signer struct {
	keys [][]byte
	// macs holds, per key, HMACs ready for use (*macState): an HMAC made
	// for a key keeps its key schedule — the inner and outer pads already
	// hashed — across Reset, so a signature costs the message's hashing
	// alone.
	macs []sync.Pool
}

// macState is one key's HMAC with the buffer its message's prefix is
// written from.
type macState struct {
	h      hash.Hash
	prefix []byte
}

// NewSigner decodes the secrets; every one of them signs.
func NewSigner(secrets ...string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret", ErrBadSecret)
	}
	s := &Signer{macs: make([]sync.Pool, len(secrets))}
	for i, sec := range secrets {
		k, err := Key(sec)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, k)
		s.macs[i].New = func() any { return &macState{h: hmac.New(sha256.New, k)} }
	}
	return s, nil
}

// sigLen is one signature's length in the header: "v1," and the base64
// of a SHA-256 HMAC.
var sigLen = len("v1,") + base64.StdEncoding.EncodedLen(sha256.Size)

// Sign returns the webhook-signature header value for one message.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	out := make([]byte, 0, len(s.keys)*(sigLen+1))
	var sum [sha256.Size]byte
	for i := range s.keys {
		m := s.macs[i].Get().(*macState)
		m.h.Reset()
		m.prefix = append(strconv.AppendInt(append(append(m.prefix[:0], id...), '.'), ts.Unix(), 10), '.')
		m.h.Write(m.prefix)
		m.h.Write(body)
		if i > 0 {
			out = append(out, ' ')
		}
		out = base64.StdEncoding.AppendEncode(append(out, "v1,"...), m.h.Sum(sum[:0]))
		s.macs[i].Put(m)
	}
	return string(out)
}

// Values are the three Standard Webhooks headers' values for one
// message, in the order of HeaderID, HeaderTimestamp and HeaderSignature:
// for a caller that keeps the headers itself (the dispatcher sets them in
// a copy of a subscription's headers).
func (s *Signer) Values(id string, ts time.Time, body []byte) (webhookID, timestamp, signature string) {
	return id, strconv.FormatInt(ts.Unix(), 10), s.Sign(id, ts, body)
}

// SetHeaders sets the three Standard Webhooks headers on h.
func (s *Signer) SetHeaders(h http.Header, id string, ts time.Time, body []byte) {
	id, unix, sig := s.Values(id, ts, body)
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, unix)
	h.Set(HeaderSignature, sig)
}

func mac(key []byte, id, unix string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(unix))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a received webhook against any of the secrets, as a
// receiver would: the timestamp within tolerance of now, and at least one
// v1 signature matching.
func Verify(h http.Header, body []byte, now time.Time, tolerance time.Duration, secrets ...string) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissing
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not a unix time", ErrTimestamp, ts)
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	for _, sec := range secrets {
		k, err := Key(sec)
		if err != nil {
			return err
		}
		want := mac(k, id, ts, body)
		for _, sig := range strings.Fields(sigs) {
			v, b64, ok := strings.Cut(sig, ",")
			if !ok || v != "v1" {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(b64)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoMatch
}
