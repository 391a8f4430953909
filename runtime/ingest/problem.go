package ingest

import (
	"encoding/json"
	"net/http"

	"github.com/whp-dev/whp/catalog"
)

// Problem is the body of every error answer: a stable code for programs,
// a sentence for people, and for validation failures each violation with
// the JSON pointer of the offending field in the request body.
type Problem struct {
	Code       string              `json:"code"`
	Message    string              `json:"message"`
	Violations []catalog.Violation `json:"violations,omitempty"`
}

// writeAccepted answers 202 with the event's ID: writeJSON's answer,
// written without encoding/json on every accepted event (an ID is a UUID,
// which needs no escaping).
func writeAccepted(w http.ResponseWriter, id string) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusAccepted)
	b := make([]byte, 0, len(`{"id":""}`)+len(id)+1)
	w.Write(append(append(append(b, `{"id":"`...), id...), "\"}\n"...))
}

// The values of the 202's constant headers, shared by every answer instead
// of one slice each per request: net/http only reads them, and a header
// added to later (Header.Add) is copied by append, as cap == len.
var (
	jsonContentType = []string{"application/json"}
	nosniff         = []string{"nosniff"}
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"code":"internal","message":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeProblem(w http.ResponseWriter, status int, code, msg string, vs ...catalog.Violation) {
	writeJSON(w, status, Problem{Code: code, Message: msg, Violations: vs})
}
