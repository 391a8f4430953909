package dispatch

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClassify(t *testing.T) {
	for code, want := range map[int]outcome{
		200: success, 202: success, 204: success, 299: success,
		301: final, 302: final, 304: final, 307: final,
		400: final, 401: final, 403: final, 404: final, 410: final, 422: final,
		408: retryable, 409: retryable, 425: retryable, 429: retryable,
		500: retryable, 502: retryable, 503: retryable, 504: retryable,
	} {
		if got := classify(code); got != want {
			t.Errorf("classify(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Acme-Key", "s3cr3t-api-key")
	h.Set("Authorization", "Bearer tok")
	h.Set("Webhook-Id", "d1")
	got := redact(h, "x-acme-key")
	want := map[string]string{"content-type": "application/json", "x-acme-key": "[redacted]", "authorization": "[redacted]", "webhook-id": "d1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("redact (-want +got):\n%s", diff)
	}
}
