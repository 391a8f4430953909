package secret

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// SecretsManagerAPI is the part of the AWS Secrets Manager client the
// provider uses (*secretsmanager.Client satisfies it).
type SecretsManagerAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// AWS resolves references as Secrets Manager secret names (or ARNs), in
// production. Values are cached for TTL. During a rotation — the current
// version younger than Overlap — the previous version (AWSPREVIOUS) is
// returned too, oldest first, so every active secret signs and receivers
// can move over. If Secrets Manager cannot be reached, a cached value is
// served for up to StaleFor past its TTL rather than failing deliveries.
type AWS struct {
	Client SecretsManagerAPI
	// TTL of a cached value. Default 5 min.
	TTL time.Duration
	// Overlap after a rotation during which the previous version stays
	// active. Default 24 h.
	Overlap time.Duration
	// StaleFor: how long past its TTL a value may serve while Secrets
	// Manager fails. Default 1 h.
	StaleFor time.Duration
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	values []string
	at     time.Time
}

func (a *AWS) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Secrets returns the active values of ref, newest last.
func (a *AWS) Secrets(ctx context.Context, ref string) ([]string, error) {
	now := a.clock()
	a.mu.Lock()
	c, ok := a.cache[ref]
	a.mu.Unlock()
	if ok && now.Sub(c.at) < orDefault(a.TTL, 5*time.Minute) {
		return append([]string(nil), c.values...), nil
	}
	values, err := a.fetch(ctx, ref, now)
	if err != nil {
		if ok && !errors.Is(err, ErrNotFound) && now.Sub(c.at) < orDefault(a.TTL, 5*time.Minute)+orDefault(a.StaleFor, time.Hour) {
			return append([]string(nil), c.values...), nil
		}
		return nil, err
	}
	a.mu.Lock()
	if a.cache == nil {
		a.cache = map[string]cached{}
	}
	a.cache[ref] = cached{values: values, at: now}
	a.mu.Unlock()
	return append([]string(nil), values...), nil
}

func (a *AWS) fetch(ctx context.Context, ref string, now time.Time) ([]string, error) {
	cur, err := a.Client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ref), VersionStage: aws.String("AWSCURRENT")})
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
		}
		// The SDK's error names the secret, never its value.
		return nil, fmt.Errorf("secrets manager %s: %w", ref, err)
	}
	if cur.SecretString == nil {
		return nil, fmt.Errorf("secrets manager %s: the secret has no string value", ref)
	}
	values := []string{*cur.SecretString}
	if cur.CreatedDate != nil && now.Sub(*cur.CreatedDate) < orDefault(a.Overlap, 24*time.Hour) {
		prev, err := a.Client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ref), VersionStage: aws.String("AWSPREVIOUS")})
		if err == nil && prev.SecretString != nil && *prev.SecretString != *cur.SecretString {
			values = []string{*prev.SecretString, *cur.SecretString}
		}
	}
	return values, nil
}
