package dev

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whp-dev/whp/store"
)

// writeSecrets seeds the dev secrets file, as an operator provides
// credentials that whp dev does not generate (client secrets, keys).
func writeSecrets(t *testing.T, data string, values map[string][]string) {
	t.Helper()
	path := filepath.Join(data, "secrets.json")
	all := map[string][]string{}
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &all)
	}
	for k, v := range values {
		all[k] = v
	}
	b, _ := json.Marshal(all)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second) // a new mtime, however fast the rewrite
	os.Chtimes(path, later, later)
}

// TestOAuth2Partner: deliveries carry a bearer token from the partner's
// token endpoint (client credentials), fetched once and reused; the token
// is never stored.
func TestOAuth2Partner(t *testing.T) {
	var tokenCalls atomic.Int32
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		r.ParseForm()
		if !ok || id != "whp-client" || secret != "s3cret-client" || r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("scope") != "webhooks:write" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		tokenCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"tok-abc","token_type":"bearer","expires_in":3600}`))
	}))
	defer tokenSrv.Close()
	var delivered atomic.Int32
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-abc" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer partner.Close()
	data, cat := t.TempDir(), t.TempDir()
	writeSecrets(t, data, map[string][]string{"partners/alpha/client-secret": {"s3cret-client"}})
	src := `package whp
schemas: shop: "order.created": "1": {owner: "t", payload: {order_id: string, amount: number}}
partners: alpha: {name: "A", url: "` + partner.URL + `", signing_secret: "partners/alpha/signing", contact: "x",
	auth: {kind: "oauth2", token_url: "` + tokenSrv.URL + `/token", client_id: "whp-client", scopes: ["webhooks:write"], secret: "partners/alpha/client-secret"}}
subscriptions: "a": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
`
	os.WriteFile(filepath.Join(cat, "c.cue"), []byte(src), 0o644)
	p := startPlatform(t, data, cat, func(c *Config) { c.AutoApprove = []string{"alpha"} })
	var ids []string
	for i := range 3 {
		ids = append(ids, accept(t, p, orderEvent(300+i)))
	}
	for _, id := range ids {
		ds := mustDelivered(t, p, id, 1)
		if h := ds[0].Attempts[0].RequestHeaders["authorization"]; h != "[redacted]" {
			t.Errorf("stored Authorization = %q", h)
		}
	}
	if n := tokenCalls.Load(); n != 1 {
		t.Errorf("token endpoint called %d times for 3 deliveries, want 1 (cached)", n)
	}
	resp, err := http.Get(p.URL + "/v1/events/" + ids[0])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "tok-abc") || strings.Contains(string(body), "s3cret") {
		t.Error("GET /v1/events shows a token or a secret")
	}
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "partner CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// clientBundle issues a client certificate and returns it with its key
// as one PEM bundle, the form the mtls secret takes.
func clientBundle(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "whp"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// TestMTLSPartner: a partner that requires a client certificate gets one
// from the mtls secret; a partner-side check of the certificate passes.
func TestMTLSPartner(t *testing.T) {
	ca, caKey := testCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	var delivered atomic.Int32
	partner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "whp" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	partner.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	partner.StartTLS()
	defer partner.Close()
	roots := x509.NewCertPool()
	roots.AddCert(partner.Certificate())

	data, cat := t.TempDir(), t.TempDir()
	writeSecrets(t, data, map[string][]string{"partners/alpha/client-cert": {clientBundle(t, ca, caKey)}})
	src := `package whp
schemas: shop: "order.created": "1": {owner: "t", payload: {order_id: string, amount: number}}
partners: alpha: {name: "A", url: "` + partner.URL + `", signing_secret: "partners/alpha/signing", contact: "x",
	auth: {kind: "mtls", secret: "partners/alpha/client-cert"}}
subscriptions: "a": {partner: "alpha", domain: "shop", event: "order.created", version: "1"}
`
	os.WriteFile(filepath.Join(cat, "c.cue"), []byte(src), 0o644)
	p := startPlatform(t, data, cat, func(c *Config) {
		c.AutoApprove = []string{"alpha"}
		c.Dispatch.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	})
	id := accept(t, p, orderEvent(310))
	mustDelivered(t, p, id, 1)
	if delivered.Load() != 1 {
		t.Errorf("partner accepted %d deliveries, want 1", delivered.Load())
	}

	// Without a usable certificate the delivery fails for good, and says why.
	writeSecrets(t, data, map[string][]string{"partners/alpha/client-cert": {"not a pem bundle"}})
	bad := accept(t, p, orderEvent(311))
	eventually(t, "the unusable certificate to dead-letter the delivery", func() bool {
		return deliveryOf(t, p, bad, "alpha").Status == store.DeliveryDeadLettered
	})
	if d := deliveryOf(t, p, bad, "alpha"); len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, "not a PEM certificate chain and private key") {
		t.Errorf("attempts = %+v", d.Attempts)
	}
}
