package dispatch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/whp-dev/whp/store"
)

// credentials caches what partner auth needs across deliveries: OAuth2
// token sources (a token is reused until it expires) and HTTP clients
// holding a client certificate. Entries are keyed by a digest of the
// credential, so a rotated secret gets a fresh entry at once.
type credentials struct {
	mu      sync.Mutex
	tokens  map[string]oauth2.TokenSource
	clients map[string]*http.Client
}

func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// tokenSource returns the cached client-credentials token source of a
// subscription. Tokens are fetched through base, the guarded client, so
// the token endpoint passes the SSRF guard too.
func (c *credentials) tokenSource(sub store.Subscription, clientSecret string, base *http.Client) oauth2.TokenSource {
	key := digest(append([]string{sub.AuthTokenURL, sub.AuthClientID, clientSecret}, sub.AuthScopes...)...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil {
		c.tokens = map[string]oauth2.TokenSource{}
	}
	if ts, ok := c.tokens[key]; ok {
		return ts
	}
	cfg := clientcredentials.Config{ClientID: sub.AuthClientID, ClientSecret: clientSecret, TokenURL: sub.AuthTokenURL,
		Scopes: sub.AuthScopes, AuthStyle: oauth2.AuthStyleInHeader}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	ts := oauth2.ReuseTokenSource(nil, cfg.TokenSource(ctx))
	c.tokens[key] = ts
	return ts
}

// mtlsClient returns an HTTP client presenting the certificate of a PEM
// bundle (certificate chain and private key), built on base's settings.
func (c *credentials) mtlsClient(bundle string, base *http.Client, baseTLS *tls.Config) (*http.Client, error) {
	key := digest(bundle)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clients == nil {
		c.clients = map[string]*http.Client{}
	}
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	cert, err := tls.X509KeyPair([]byte(bundle), []byte(bundle))
	if err != nil {
		// The parse error never quotes the key.
		return nil, fmt.Errorf("mtls: the secret is not a PEM certificate chain and private key: %w", errBadCredential)
	}
	tr := base.Transport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if baseTLS != nil {
		cfg = baseTLS.Clone()
	}
	cfg.Certificates = []tls.Certificate{cert}
	tr.TLSClientConfig = cfg
	cl := &http.Client{Transport: tr, Timeout: base.Timeout, CheckRedirect: base.CheckRedirect}
	c.clients[key] = cl
	return cl, nil
}

// tokenError explains a failure to get a token without the response body,
// which may echo what was sent.
func tokenError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\nResponse:"); i >= 0 {
		msg = msg[:i]
	}
	return "oauth2 token: " + msg
}
