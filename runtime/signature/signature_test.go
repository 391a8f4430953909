package signature

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
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

// A Signer shared by many goroutines (the dispatcher's, one per
// subscription) signs each message as a Signer of its own would: the
// HMACs it keeps between signatures carry nothing from one to the next
// (the reference: a fresh HMAC per message, mac).
func TestSignConcurrently(t *testing.T) {
	secrets := []string{NewSecret(), NewSecret()}
	shared, err := NewSigner(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1614265330, 0)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id, body := fmt.Sprintf("msg_%d_%d", g, i), []byte(strings.Repeat("x", g*i%300))
				var want []string
				for _, sec := range secrets {
					k, _ := Key(sec)
					want = append(want, "v1,"+base64.StdEncoding.EncodeToString(mac(k, id, "1614265330", body)))
				}
				if got := shared.Sign(id, ts, body); got != strings.Join(want, " ") {
					errs <- fmt.Sprintf("%s: shared signer %q, want %q", id, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
