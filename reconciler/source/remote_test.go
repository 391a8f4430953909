package source

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/gitkit"
	"github.com/fluxcd/pkg/gittestserver"
	fluxssh "github.com/fluxcd/pkg/ssh"
)

// TestRemoteGit fetches a catalog over HTTP with basic auth from a real
// Git server on 127.0.0.1 (fluxcd's gittestserver), through fluxcd's git
// client, as whp reconcile --repo https://… does.
func TestRemoteGit(t *testing.T) {
	srv, err := gittestserver.NewTempGitServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(srv.Root()) })
	srv.Auth("whp-bot", "s3cret-token")
	fixture := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fixture, "catalog"), 0o755); err != nil {
		t.Fatal(err)
	}
	const cue = "package whp\nschemas: shop: \"order.placed\": \"1\": {owner: \"t\", payload: {id: string}}\n"
	if err := os.WriteFile(filepath.Join(fixture, "catalog", "shop.cue"), []byte(cue), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.InitRepo(fixture, "main", "org/catalog.git"); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := testCerts(t)
	if err := srv.StartHTTPS(cert, key, ca, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.StopHTTP)
	url := srv.HTTPAddress() + "/org/catalog.git"
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("server address %s is not https", url)
	}

	ctx := context.Background()
	auth := func(password string) map[string][]byte {
		return map[string][]byte{"username": []byte("whp-bot"), "password": []byte(password), "caFile": ca}
	}
	g := Git{URL: url, Branch: "main", Path: "catalog", WorkDir: t.TempDir(), Auth: auth("s3cret-token")}
	art, err := g.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(art.Revision, "main@sha1:") || string(art.Files["shop.cue"]) != cue {
		t.Errorf("fetched %s with %v", art.Revision, art.Files)
	}
	// The same revision again gives the same revision string.
	if again, err := g.Fetch(ctx); err != nil || again.Revision != art.Revision {
		t.Errorf("second fetch: %v, %s", err, again.Revision)
	}

	g.Auth = auth("wrong-password")
	_, err = g.Fetch(ctx)
	if err == nil {
		t.Fatal("fetch with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "wrong-password") || strings.Contains(err.Error(), "s3cret-token") {
		t.Errorf("the error shows a credential: %v", err)
	}
	if _, err := (Git{URL: url, Branch: "no-such-branch", Path: "catalog", WorkDir: t.TempDir(), Auth: auth("s3cret-token")}).Fetch(ctx); err == nil {
		t.Error("fetch of a missing branch succeeded")
	}
}

// testCerts makes a CA and a server certificate for 127.0.0.1, in PEM.
func testCerts(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "whp test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// TestRemoteGitSSH fetches over ssh:// with a private key, checking the
// server's host key against known_hosts, as whp reconcile --ssh-key-file
// --known-hosts-file does. The server's key lookup only admits the key
// made for this test.
func TestRemoteGitSSH(t *testing.T) {
	srv, err := gittestserver.NewTempGitServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(srv.Root()) })
	pair, err := fluxssh.NewEd25519Generator().Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv.KeyDir(srv.Root()).Auth("unused", "unused") // auth on: SSH keys go through the lookup below
	srv.PublicKeyLookupFunc(func(content string) (*gitkit.PublicKey, error) {
		if strings.TrimSpace(content) != strings.TrimSpace(string(pair.PublicKey)) {
			return nil, errors.New("unknown key")
		}
		return &gitkit.PublicKey{Id: "whp-bot"}, nil
	})
	fixture := t.TempDir()
	os.MkdirAll(filepath.Join(fixture, "catalog"), 0o755)
	if err := os.WriteFile(filepath.Join(fixture, "catalog", "shop.cue"), []byte("package whp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.InitRepo(fixture, "main", "org/catalog.git"); err != nil {
		t.Fatal(err)
	}
	if err := srv.ListenSSH(); err != nil {
		t.Fatal(err)
	}
	go srv.StartSSH()
	t.Cleanup(func() { srv.StopSSH() })
	u, err := url.Parse(srv.SSHAddress())
	if err != nil {
		t.Fatal(err)
	}
	knownHosts, err := fluxssh.ScanHostKey(u.Host, 5*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	g := Git{URL: srv.SSHAddress() + "/org/catalog.git", Branch: "main", Path: "catalog", WorkDir: t.TempDir(),
		Auth: map[string][]byte{"identity": pair.PrivateKey, "known_hosts": knownHosts}}
	art, err := g.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(art.Revision, "main@sha1:") || len(art.Files) != 1 {
		t.Errorf("fetched %s, %d files", art.Revision, len(art.Files))
	}
	other, err := fluxssh.NewEd25519Generator().Generate()
	if err != nil {
		t.Fatal(err)
	}
	g.Auth["identity"] = other.PrivateKey
	if _, err := g.Fetch(context.Background()); err == nil {
		t.Error("a key the server does not know was let in")
	}
}
