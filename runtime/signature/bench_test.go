package signature

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkSign signs a 1 KiB body with one secret, and with two during a
// rotation overlap (every active secret signs).
func BenchmarkSign(b *testing.B) {
	body := make([]byte, 1024)
	for _, n := range []int{1, 2} {
		secrets := make([]string, n)
		for i := range secrets {
			secrets[i] = NewSecret()
		}
		s, err := NewSigner(secrets...)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(map[int]string{1: "one-secret", 2: "rotation-overlap"}[n], func(b *testing.B) {
			b.ReportAllocs()
			h := http.Header{}
			ts := time.Now()
			for b.Loop() {
				s.SetHeaders(h, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", ts, body)
			}
		})
	}
}
