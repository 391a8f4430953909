package secret

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// fakeSM stands in for AWS Secrets Manager, which cannot run here: it
// answers GetSecretValue from versions by stage, and counts calls.
type fakeSM struct {
	versions map[string]map[string]string // name → stage → value
	created  time.Time                    // of AWSCURRENT
	calls    int
	down     bool
}

func (f *fakeSM) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.calls++
	if f.down {
		return nil, errors.New("connection reset")
	}
	stages, ok := f.versions[*in.SecretId]
	if !ok {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("not found")}
	}
	v, ok := stages[*in.VersionStage]
	if !ok {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("no such stage")}
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(v), CreatedDate: aws.Time(f.created)}, nil
}

func TestAWSProvider(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	sm := &fakeSM{versions: map[string]map[string]string{
		"partners/acme/signing": {"AWSCURRENT": "whsec_new", "AWSPREVIOUS": "whsec_old"},
	}, created: now.Add(-time.Hour)}
	p := &AWS{Client: sm, now: func() time.Time { return now }}

	// A rotation an hour ago: both versions sign, oldest first.
	v, err := p.Secrets(ctx, "partners/acme/signing")
	if err != nil || len(v) != 2 || v[0] != "whsec_old" || v[1] != "whsec_new" {
		t.Fatalf("during the overlap = %v, %v", v, err)
	}
	// Cached: no call within the TTL.
	calls := sm.calls
	if _, err := p.Secrets(ctx, "partners/acme/signing"); err != nil || sm.calls != calls {
		t.Errorf("cached read made %d calls", sm.calls-calls)
	}
	// After the overlap only the current version signs.
	now = now.Add(25 * time.Hour)
	sm.created = now.Add(-25 * time.Hour)
	if v, _ := p.Secrets(ctx, "partners/acme/signing"); len(v) != 1 || v[0] != "whsec_new" {
		t.Errorf("after the overlap = %v", v)
	}
	// Secrets Manager down: the cached value serves past its TTL.
	now = now.Add(10 * time.Minute)
	sm.down = true
	if v, err := p.Secrets(ctx, "partners/acme/signing"); err != nil || len(v) != 1 {
		t.Errorf("stale while down = %v, %v", v, err)
	}
	// ... but not for ever.
	now = now.Add(2 * time.Hour)
	if _, err := p.Secrets(ctx, "partners/acme/signing"); err == nil {
		t.Error("a stale value served hours past its TTL")
	}
	sm.down = false
	if _, err := p.Secrets(ctx, "partners/nobody/signing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing secret: %v, want ErrNotFound", err)
	}
}
