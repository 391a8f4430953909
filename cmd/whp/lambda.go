package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/whp-dev/whp/runtime/lambdahttp"
)

// onLambda reports whether this process is a Lambda function: the runtime
// sets AWS_LAMBDA_RUNTIME_API for the bootstrap it starts.
func onLambda() bool { return os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" }

// runLambda serves the role WHP_ROLE names as a Lambda function. Its
// configuration is the role's own, from WHP_* environment variables
// (docs/configuration.md).
//
// Built so far: ingest, behind an API Gateway HTTP API (payload format
// 2.0), serving the same handler as `whp ingest`. The processor and
// dispatcher (MSK event source mappings) and the reconciler (a schedule)
// run on EKS until their handlers exist; asking for them here fails at
// start with that said, rather than starting something half-built.
func runLambda(ctx context.Context, roleName string, stderr io.Writer) error {
	switch roleName {
	case "ingest":
		r := &role{name: "ingest"}
		if err := r.flags(nil, stderr, nil); err != nil {
			return err
		}
		mux, reg, closeProd, err := r.ingestAPI(ctx, stderr)
		if err != nil {
			return err
		}
		defer closeProd()
		// Between invocations the sandbox is frozen and this goroutine
		// with it; it refreshes the schemas whenever the function runs.
		go reg.Run(ctx, 5*time.Second)
		lambda.StartWithOptions(lambdahttp.Handler(mux), lambda.WithContext(ctx))
		return nil
	case "":
		return fmt.Errorf("on Lambda, WHP_ROLE must name the role to run (ingest)")
	default:
		return fmt.Errorf("WHP_ROLE=%q: the Lambda runtime serves ingest only so far; run %s on EKS (deploy/)", roleName, roleName)
	}
}
