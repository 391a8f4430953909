// Package adminauth guards the operator APIs (approvals, DLQ) with the
// admin token: Authorization: Bearer <token>, compared in constant time.
package adminauth

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Require serves next only to requests carrying the token; others get 401
// with a JSON problem.
func Require(token string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="whp"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"code":"unauthorized","message":"this API needs the admin token: Authorization: Bearer <token>"}` + "\n"))
			return
		}
		next(w, r)
	}
}
