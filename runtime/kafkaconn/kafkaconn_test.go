package kafkaconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// serverTLS makes a CA (written to a file) and a server certificate for
// 127.0.0.1 signed by it.
func serverTLS(t *testing.T, maxVersion uint16) (*tls.Config, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafka test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MaxVersion: maxVersion}, caFile
}

func roundTrip(t *testing.T, addrs []string, cfg Config, within time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	opts, err := Opts(ctx, cfg)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("t"), kgo.DefaultProduceTopic("t"))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")}).FirstErr(); err != nil {
		return err
	}
	for {
		f := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, r := range f.Records() {
			if string(r.Value) == "hello" {
				return nil
			}
		}
	}
}

func TestTLS(t *testing.T) {
	srvTLS, caFile := serverTLS(t, tls.VersionTLS13)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srvTLS), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, comp := range []string{"", "zstd", "none"} {
		if err := roundTrip(t, c.ListenAddrs(), Config{TLS: true, MinTLSVersion: "1.3", CAFile: caFile, Compression: comp}, 20*time.Second); err != nil {
			t.Errorf("TLS round trip with compression %q: %v", comp, err)
		}
	}
	if err := roundTrip(t, c.ListenAddrs(), Config{}, 2*time.Second); err == nil {
		t.Error("a client without TLS talked to a TLS-only cluster")
	}
	if err := roundTrip(t, c.ListenAddrs(), Config{TLS: true}, 2*time.Second); err == nil {
		t.Error("a client that does not trust the cluster's CA connected")
	}
}

func TestTLSMinimumVersion(t *testing.T) {
	srvTLS, caFile := serverTLS(t, tls.VersionTLS12)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srvTLS), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(t, c.ListenAddrs(), Config{TLS: true, MinTLSVersion: "1.2", CAFile: caFile}, 20*time.Second); err != nil {
		t.Errorf("TLS 1.2: %v", err)
	}
	if err := roundTrip(t, c.ListenAddrs(), Config{TLS: true, MinTLSVersion: "1.3", CAFile: caFile}, 2*time.Second); err == nil {
		t.Error("a TLS 1.3 floor accepted a TLS 1.2 cluster")
	}
}

// TestMSKIAM: the AWS_MSK_IAM mechanism signs with the credentials given
// (a static stand-in for the AWS chain and STS, which cannot run here).
func TestMSKIAM(t *testing.T) {
	creds := credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secretexample", "sessiontoken")
	m := Mechanism(creds)
	if m.Name() != "AWS_MSK_IAM" {
		t.Fatalf("mechanism %q", m.Name())
	}
	_, msg, err := m.Authenticate(context.Background(), "b-1.ingress.kafka.us-east-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	s := string(msg)
	if !strings.Contains(s, "AKIDEXAMPLE") || !strings.Contains(s, `"action":"kafka-cluster:Connect"`) || strings.Contains(s, "secretexample") {
		t.Errorf("signed payload = %s", s)
	}
	if _, err := Opts(context.Background(), Config{SASL: "aws-msk-iam"}); err == nil {
		t.Error("IAM without TLS was accepted")
	}
	if _, err := Opts(context.Background(), Config{TLS: true, MinTLSVersion: "1.1"}); err == nil {
		t.Error("TLS 1.1 was accepted")
	}
}
