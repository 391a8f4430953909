package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Partners over HTTPS (Config.PartnerTLS). The partners a platform
// delivers to in production are HTTPS endpoints, and what a buyer asks is
// what TLS costs a delivery and whether the platform keeps its
// connections (a full handshake, TLS 1.3 with a P-256 certificate, costs
// ≈ 0.8 ms of CPU on this machine, both ends together: some three
// deliveries' worth of the platform's CPU). The receiver serves HTTPS with a
// certificate made for the run, which the embedded platform's dispatcher
// trusts (dispatch.Config.TLS, its roots: the certificate alone), and
// counts the connections it opens and the protocol of each delivery.
// The producer's side stays plain HTTP, as behind a load balancer that
// ends TLS, and so does the baseline.

// The values of Config.PartnerTLS.
const (
	PartnerTLSNone  = ""
	PartnerTLSHTTP2 = "h2"    // HTTPS, offering HTTP/2 and HTTP/1.1 (ALPN), as most endpoints do
	PartnerTLSHTTP1 = "http1" // HTTPS, HTTP/1.1 alone
)

// ValidPartnerTLS is nil for the values Config.PartnerTLS takes.
func ValidPartnerTLS(v string) error {
	switch v {
	case PartnerTLSNone, PartnerTLSHTTP2, PartnerTLSHTTP1:
		return nil
	}
	return fmt.Errorf("%q: want %q or %q", v, PartnerTLSHTTP2, PartnerTLSHTTP1)
}

// partnerCert makes a self-signed certificate for host (an IP address or
// a name), valid for a day, and returns it with its PEM, the platform's
// one root.
func partnerCert(host string) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "whp bench partner"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// partnerRoots is the dispatcher's TLS configuration for a run whose
// receiver's certificate is caPEM.
func partnerRoots(caPEM string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("bench: the partner's certificate is not PEM")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// connCounter counts the connections a server accepts, those that carried
// a request, and the requests it serves by protocol. (An HTTP/2 client
// dials for each request that finds no connection up, then closes those
// it does not need before sending anything on them: opened counts them
// all, used what carried the deliveries.)
type connCounter struct {
	conns, used, http1, http2 atomic.Int64
	active                    sync.Map // net.Conn → struct{}: carried a request, still open
}

func (c *connCounter) connState(conn net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.conns.Add(1)
	case http.StateActive:
		if _, seen := c.active.LoadOrStore(conn, struct{}{}); !seen {
			c.used.Add(1)
		}
	case http.StateClosed, http.StateHijacked:
		c.active.Delete(conn)
	}
}

// reset starts the counts afresh (the connections still open are not
// counted again).
func (c *connCounter) reset() {
	c.conns.Store(0)
	c.used.Store(0)
	c.http1.Store(0)
	c.http2.Store(0)
}

// requests is how many requests were served since the last reset.
func (c *connCounter) requests() int64 { return c.http1.Load() + c.http2.Load() }

func (c *connCounter) request(r *http.Request) {
	if r.ProtoMajor == 2 {
		c.http2.Add(1)
	} else {
		c.http1.Add(1)
	}
}

// serveReceiver serves the receiver on cfg.ReceiverAddr: plain HTTP, or
// HTTPS as cfg.PartnerTLS asks, with its certificate's PEM (else "").
func serveReceiver(cfg Config, recv *receiver) (*server, string, error) {
	addr := cfg.ReceiverAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: recv, ReadHeaderTimeout: 10 * time.Second, ConnState: recv.conns.connState}
	if cfg.PartnerTLS == PartnerTLSNone {
		go srv.Serve(ln)
		return &server{URL: "http://" + ln.Addr().String(), srv: srv}, "", nil
	}
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	cert, caPEM, err := partnerCert(host)
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(cfg.PartnerTLS == PartnerTLSHTTP2)
	go srv.ServeTLS(ln, "", "")
	return &server{URL: "https://" + ln.Addr().String(), srv: srv}, caPEM, nil
}
