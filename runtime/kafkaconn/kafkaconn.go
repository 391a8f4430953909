// Package kafkaconn turns a deployment's Kafka settings into franz-go
// client options, the same for every role: TLS (a minimum version, an
// optional private CA), SASL AWS_MSK_IAM for Amazon MSK with credentials
// from aws-sdk-go-v2's default chain, and producer batch compression.
// Producers are idempotent with acks=all (franz-go's defaults, kept).
package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	saslaws "github.com/twmb/franz-go/pkg/sasl/aws"
)

// Config is one cluster's connection settings.
type Config struct {
	// TLS turns on TLS (MSK's client traffic is TLS only).
	TLS bool
	// MinTLSVersion is "1.2" (default) or "1.3".
	MinTLSVersion string
	// CAFile is a PEM bundle of CAs to trust instead of the system's.
	CAFile string
	// SASL is "" for none or "aws-msk-iam".
	SASL string
	// Compression of produced batches: "snappy" (default), "lz4",
	// "zstd", "gzip" or "none".
	Compression string
	// Credentials for AWS_MSK_IAM; nil means the AWS default chain.
	Credentials aws.CredentialsProvider
}

// Opts returns the kgo options for cfg.
func Opts(ctx context.Context, cfg Config) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if cfg.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		switch cfg.MinTLSVersion {
		case "", "1.2":
		case "1.3":
			tc.MinVersion = tls.VersionTLS13
		default:
			return nil, fmt.Errorf("kafka: TLS minimum version %q: want 1.2 or 1.3", cfg.MinTLSVersion)
		}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka CA file %s: no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch cfg.SASL {
	case "":
	case "aws-msk-iam":
		if !cfg.TLS {
			return nil, fmt.Errorf("kafka: aws-msk-iam needs TLS")
		}
		creds := cfg.Credentials
		if creds == nil {
			ac, err := awsconfig.LoadDefaultConfig(ctx)
			if err != nil {
				return nil, fmt.Errorf("kafka: AWS credentials: %w", err)
			}
			creds = ac.Credentials
		}
		opts = append(opts, kgo.SASL(Mechanism(creds)))
	default:
		return nil, fmt.Errorf("kafka: SASL %q: want aws-msk-iam or none", cfg.SASL)
	}
	switch cfg.Compression {
	case "", "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression(), kgo.NoCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.NoCompression()))
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression(), kgo.NoCompression()))
	case "none":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	default:
		return nil, fmt.Errorf("kafka: compression %q: want snappy, lz4, zstd, gzip or none", cfg.Compression)
	}
	return opts, nil
}

// Mechanism is SASL AWS_MSK_IAM signing with creds, refreshed as they
// expire (the chain caches them).
func Mechanism(creds aws.CredentialsProvider) sasl.Mechanism {
	return saslaws.ManagedStreamingIAM(func(ctx context.Context) (saslaws.Auth, error) {
		c, err := creds.Retrieve(ctx)
		if err != nil {
			return saslaws.Auth{}, err
		}
		return saslaws.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken, UserAgent: "whp"}, nil
	})
}
