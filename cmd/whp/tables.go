package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/whp-dev/whp/store/dynamo"
)

// runTables is `whp tables create`: the store's DynamoDB tables for dev
// and tests (production tables are Terraform's), and the indexes a later
// version added to tables made before it.
func runTables(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usageError{"whp tables: expected the subcommand create"}
	}
	fs := newFlags("tables create", stderr)
	env := fs.String("env", "dev", "environment: tables are named webhooks-{env}-{table}")
	endpoint := fs.String("endpoint", "", "DynamoDB endpoint, e.g. http://127.0.0.1:8000 for dynalite (default: AWS)")
	region := fs.String("region", "us-east-1", "AWS region")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(*region))
	if err != nil {
		return fmt.Errorf("AWS configuration: %w", err)
	}
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if *endpoint != "" {
			o.BaseEndpoint = aws.String(*endpoint)
		}
	})
	created, err := dynamo.CreateTables(ctx, db, *env)
	for _, name := range created {
		fmt.Fprintln(stdout, "created", name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d tables created; %d already existed\n", len(created), len(dynamo.Tables)-len(created))
	added, err := dynamo.AddIndexes(ctx, db, *env, 5*time.Second)
	for _, name := range added {
		fmt.Fprintln(stdout, "added index", name)
	}
	return err
}
