package signature

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSpecVector checks the example of the Standard Webhooks specification.
func TestSpecVector(t *testing.T) {
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		body   = `{"test": 2432232314}`
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	s, err := NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sign(id, time.Unix(1614265330, 0), []byte(body)); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	old, cur, other := NewSecret(), NewSecret(), NewSecret()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"order.created"}`)
	rotating, _ := NewSigner(old, cur)
	single, _ := NewSigner(cur)
	for _, tc := range []struct {
		name    string
		signer  *Signer
		sentAt  time.Time
		mutate  func(h http.Header, b []byte) []byte
		secrets []string
		want    error
	}{
		{name: "valid", signer: single, sentAt: now, secrets: []string{cur}},
		{name: "rotation: receiver knows only the new secret", signer: rotating, sentAt: now, secrets: []string{cur}},
		{name: "rotation: receiver knows only the old secret", signer: rotating, sentAt: now, secrets: []string{old}},
		{name: "wrong secret", signer: single, sentAt: now, secrets: []string{other}, want: ErrNoMatch},
		{name: "tampered body", signer: single, sentAt: now, secrets: []string{cur}, want: ErrNoMatch,
			mutate: func(_ http.Header, b []byte) []byte { return append(b, ' ') }},
		{name: "tampered id", signer: single, sentAt: now, secrets: []string{cur}, want: ErrNoMatch,
			mutate: func(h http.Header, b []byte) []byte { h.Set(HeaderID, "other"); return b }},
		{name: "too old", signer: single, sentAt: now.Add(-6 * time.Minute), secrets: []string{cur}, want: ErrTimestamp},
		{name: "from the future", signer: single, sentAt: now.Add(6 * time.Minute), secrets: []string{cur}, want: ErrTimestamp},
		{name: "missing headers", signer: single, sentAt: now, secrets: []string{cur}, want: ErrMissing,
			mutate: func(h http.Header, b []byte) []byte { h.Del(HeaderSignature); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			tc.signer.SetHeaders(h, "dlv_1", tc.sentAt, body)
			b := append([]byte(nil), body...)
			if tc.mutate != nil {
				b = tc.mutate(h, b)
			}
			if err := Verify(h, b, now, DefaultTolerance, tc.secrets...); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	if n := len(strings.Fields(rotating.Sign("x", now, body))); n != 2 {
		t.Errorf("rotating signer wrote %d signatures, want 2", n)
	}
}

func TestKeyRejectsBadSecrets(t *testing.T) {
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="} {
		if _, err := Key(s); err == nil {
			t.Errorf("Key(%q) accepted a bad secret", s)
		}
	}
}
