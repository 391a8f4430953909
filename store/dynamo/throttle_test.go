package dynamo

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/store"
)

// throttle answers the first n requests with a throttling error of kind
// err, after the SDK's retry step, so the retryer sees them as DynamoDB's.
func throttle(n int32, err error, calls *atomic.Int32) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("inject-throttling",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if calls.Add(1) <= n {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, err
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}

// TestThrottlingRetried: ProvisionedThroughputExceeded and
// RequestLimitExceeded answers are retried (the SDK's standard retryer,
// with its jittered backoff), and the store's call succeeds.
func TestThrottlingRetried(t *testing.T) {
	base := dynalitetest.Start(t)
	ctx := context.Background()
	if _, err := CreateTables(ctx, base, "th"); err != nil {
		t.Fatal(err)
	}
	for name, injected := range map[string]error{
		"provisioned throughput": &types.ProvisionedThroughputExceededException{Message: aws.String("injected")},
		"request limit":          &types.RequestLimitExceeded{Message: aws.String("injected")},
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			db := dynamodb.New(base.Options(), func(o *dynamodb.Options) {
				o.APIOptions = append(o.APIOptions, throttle(2, injected, &calls))
			})
			s := New(db, "th")
			if err := s.PutSchema(ctx, store.Schema{ID: "a#b.c#1", Status: "ACTIVE"}); err != nil {
				t.Fatalf("PutSchema under throttling: %v", err)
			}
			if n := calls.Load(); n != 3 {
				t.Errorf("%d attempts, want 2 throttled then 1 through", n)
			}
		})
	}
}
