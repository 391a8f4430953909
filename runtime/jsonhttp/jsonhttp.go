// Package jsonhttp writes the JSON answers of the operator APIs
// (approvals, DLQ, replays): a value, or a problem with a stable code and
// a sentence for people.
package jsonhttp

import (
	"encoding/json"
	"net/http"
)

// Write answers v as JSON with the status code.
func Write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Problem answers {"code": …, "message": …}.
func Problem(w http.ResponseWriter, status int, code, message string) {
	Write(w, status, map[string]string{"code": code, "message": message})
}
