package reconciler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// SignatureHeader carries the push webhook's HMAC, in GitHub's format:
// "sha256=" and the hex HMAC-SHA256 of the body with the shared secret.
const SignatureHeader = "X-Hub-Signature-256"

// Register serves the reconciler's HTTP API on mux:
//
//	GET  /v1/reconcile/status   the status, as JSON
//	POST /v1/reconcile/trigger  reconcile now (a Git push webhook)
//
// The trigger is served only with a webhookSecret, and only to requests
// whose body carries a valid HMAC: an unauthenticated trigger would let
// anyone make the reconciler poll the repository at will.
func (r *Reconciler) Register(mux *http.ServeMux, webhookSecret string) {
	mux.HandleFunc("GET /v1/reconcile/status", func(w http.ResponseWriter, req *http.Request) {
		st, err := r.Status.Load(req.Context())
		if err != nil {
			r.Log.Error("load reconciler status", "error", err)
			http.Error(w, `{"code":"unavailable","message":"the reconciler status is unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	if webhookSecret == "" {
		return
	}
	mux.HandleFunc("POST /v1/reconcile/trigger", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if !validSignature(webhookSecret, body, req.Header.Get(SignatureHeader)) {
			http.Error(w, `{"code":"invalid_signature","message":"missing or invalid `+SignatureHeader+`"}`, http.StatusUnauthorized)
			return
		}
		r.Trigger()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"reconcile requested"}`+"\n")
	})
}

// Sign returns the SignatureHeader value for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func validSignature(secret string, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(sig, m.Sum(nil))
}
