package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/runtime/kafkaconn"
	"github.com/whp-dev/whp/runtime/opevents"
	"github.com/whp-dev/whp/runtime/secret"
	"github.com/whp-dev/whp/runtime/signature"
	"github.com/whp-dev/whp/runtime/ssrf"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/dynamo"
	"github.com/whp-dev/whp/store/embedded"
)

// backend is how a role reaches its state and the two Kafka clusters:
// the flags every role shares.
type backend struct {
	storeKind, dataDir, endpoint, env, region string
	ingress, egress                           string
	secrets                                   string
	kafka                                     kafkaconn.Config
}

func (b *backend) register(fs *flag.FlagSet) {
	fs.StringVar(&b.storeKind, "store", "embedded", "state store: embedded (in --data-dir, one process only) or dynamodb")
	fs.StringVar(&b.dataDir, "data-dir", ".whp", "data dir of the embedded store")
	fs.StringVar(&b.endpoint, "dynamodb-endpoint", "", "DynamoDB endpoint override, e.g. dynalite's (default: AWS)")
	fs.StringVar(&b.env, "env", "dev", "environment: DynamoDB tables are webhooks-{env}-{table}")
	fs.StringVar(&b.region, "region", "us-east-1", "AWS region")
	fs.StringVar(&b.ingress, "ingress-brokers", "", "ingress cluster seed brokers, comma-separated")
	fs.StringVar(&b.egress, "egress-brokers", "", "egress cluster seed brokers, comma-separated")
	fs.StringVar(&b.secrets, "secrets", "", "secrets provider: a JSON file path, or aws for AWS Secrets Manager")
	fs.BoolVar(&b.kafka.TLS, "kafka-tls", false, "connect to Kafka over TLS (MSK)")
	fs.StringVar(&b.kafka.MinTLSVersion, "kafka-tls-min-version", "1.2", "lowest TLS version: 1.2 or 1.3")
	fs.StringVar(&b.kafka.CAFile, "kafka-ca-file", "", "PEM CA bundle for Kafka instead of the system's")
	fs.StringVar(&b.kafka.SASL, "kafka-sasl", "", "SASL mechanism: aws-msk-iam (credentials from the AWS default chain), or none")
	fs.StringVar(&b.kafka.Compression, "kafka-compression", "snappy", "produced batch compression: snappy, lz4, zstd, gzip or none")
}

// kafkaOpts are the client options every Kafka client of the role uses.
func (b *backend) kafkaOpts(ctx context.Context) ([]kgo.Opt, error) {
	return kafkaconn.Opts(ctx, b.kafka)
}

func (b *backend) awsConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(b.region))
	if err != nil {
		return cfg, fmt.Errorf("AWS configuration: %w", err)
	}
	return cfg, nil
}

// dynamoIdleConns is how many idle connections to DynamoDB a process
// keeps.
const dynamoIdleConns = 64

// openStore opens the configured store.
func (b *backend) openStore(ctx context.Context) (store.Store, error) {
	switch b.storeKind {
	case "embedded":
		return embedded.Open(filepath.Join(b.dataDir, "store"))
	case "dynamodb":
		cfg, err := b.awsConfig(ctx)
		if err != nil {
			return nil, err
		}
		db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
			if b.endpoint != "" {
				o.BaseEndpoint = aws.String(b.endpoint)
			}
			// The store has many requests in flight (conditional puts,
			// batch reads and writes, several at once each): the SDK's
			// default keeps 10 idle connections a host and closes the
			// rest after each burst, a TLS handshake each next time.
			o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) { t.MaxIdleConnsPerHost = dynamoIdleConns })
		})
		return dynamo.New(db, b.env), nil
	}
	return nil, usageError{fmt.Sprintf("--store %q: want embedded or dynamodb", b.storeKind)}
}

// brokers returns the seed brokers of the clusters a role needs.
func (b *backend) brokers(needIngress, needEgress bool) (in, eg []string, err error) {
	in, eg = splitList(b.ingress), splitList(b.egress)
	if needIngress && len(in) == 0 {
		err = errors.Join(err, usageError{"--ingress-brokers is required"})
	}
	if needEgress && len(eg) == 0 {
		err = errors.Join(err, usageError{"--egress-brokers is required"})
	}
	return in, eg, err
}

// secretsProvider returns the configured secrets provider.
func (b *backend) secretsProvider(ctx context.Context) (interface {
	Secrets(ctx context.Context, ref string) ([]string, error)
}, error) {
	switch b.secrets {
	case "":
		return nil, usageError{"--secrets is required: a JSON file, or aws"}
	case "aws":
		cfg, err := b.awsConfig(ctx)
		if err != nil {
			return nil, err
		}
		return &secret.AWS{Client: secretsmanager.NewFromConfig(cfg)}, nil
	default:
		return secret.OpenFile(b.secrets), nil
	}
}

// opsFlags are the flags of the operational events webhook.
type opsFlags struct {
	url, secretRef string
	bind           func()
}

func (o *opsFlags) register(add func(name, value, usage string) *string) {
	url := add("ops-webhook-url", "", "URL that receives operational events (attempts failing or exhausted, subscriptions disabled, breakers, stalled reconciles); empty: the log only")
	ref := add("ops-webhook-secret", "ops/webhook/signing", "secret reference (in --secrets) of the whsec_ key that signs the operational events")
	o.bind = func() { o.url, o.secretRef = *url, *ref }
}

// publisher builds the operational events publisher: to the log, and to
// the webhook through guard (https, public addresses) if a URL is set.
func (o *opsFlags) publisher(ctx context.Context, b *backend, guard *ssrf.Guard, log *slog.Logger) (*opevents.Publisher, error) {
	o.bind()
	if o.url == "" {
		return opevents.New(opevents.Config{}, log), nil
	}
	if err := guard.CheckURL(o.url); err != nil {
		return nil, usageError{fmt.Sprintf("--ops-webhook-url: %v", err)}
	}
	secrets, err := b.secretsProvider(ctx)
	if err != nil {
		return nil, err
	}
	vals, err := secrets.Secrets(ctx, o.secretRef)
	if err != nil {
		return nil, fmt.Errorf("--ops-webhook-secret %s: %w", o.secretRef, err)
	}
	signer, err := signature.NewSigner(vals...)
	if err != nil {
		return nil, fmt.Errorf("--ops-webhook-secret %s: %w", o.secretRef, err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil,
		DialContext: guard.DialContext(&net.Dialer{Timeout: 5 * time.Second})}}
	return opevents.New(opevents.Config{URL: o.url, Signer: signer, Client: client}, log), nil
}
