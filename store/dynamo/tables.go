// Package dynamo is the DynamoDB side of the store: the five tables of
// DESIGN.md with their keys, indexes and TTL attributes, named
// webhooks-{env}-{table}. Production tables are Terraform's (infra/);
// CreateTables makes the same tables for dev and tests, and infra's policy
// tests check both agree.
//
// Every table's partition key is the attribute "pk"; event_delivery_status
// adds the sort key "sk" (EVENT, or DELIVERY#{delivery id}). TTL lives in
// "expires_at_epoch" (seconds).
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/whp-dev/whp/store"
)

// Attribute names of keys and TTL.
const (
	AttrPK  = "pk"
	AttrSK  = "sk"
	AttrTTL = "expires_at_epoch"
)

// Index is a global secondary index.
type Index struct {
	Name         string
	PartitionKey string
	SortKey      string // "" for none
}

// Table describes one table.
type Table struct {
	Name    string // without the environment prefix
	SortKey bool   // has the "sk" sort key
	Indexes []Index
	TTL     bool
}

// Tables are the five tables of the store.
var Tables = []Table{
	{Name: store.TableEventSchema, Indexes: []Index{
		{Name: "status-index", PartitionKey: "status", SortKey: AttrPK},
		{Name: "contains_sensitive-index", PartitionKey: "contains_sensitive", SortKey: AttrPK},
	}},
	{Name: store.TablePartnerEventSubscription, Indexes: []Index{
		{Name: "schema-index", PartitionKey: "schema_id", SortKey: AttrPK},
	}},
	{Name: store.TableEventSubscriptionKafka},
	{Name: store.TableEventDeliveryStatus, SortKey: true, TTL: true, Indexes: []Index{
		// updated_key holds the delivery's creation time (historyKey).
		{Name: "partner-index", PartitionKey: "partner_id", SortKey: "updated_key"},
		{Name: "schema-index", PartitionKey: "schema_id", SortKey: "updated_key"},
		// Sparse: only deliveries in a status store.StatusIndexed names
		// have these keys (store.go's attrPartnerStatus).
		{Name: "partner-status-index", PartitionKey: "partner_status", SortKey: "updated_key"},
		{Name: "schema-status-index", PartitionKey: "schema_status", SortKey: "updated_key"},
	}},
	{Name: store.TableIdempotencyLedger, TTL: true},
}

// API is the part of the DynamoDB client CreateTables uses.
type API interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// CreateTables creates the tables of env that do not exist yet (on-demand
// capacity), waits until they are active, and returns those it created.
func CreateTables(ctx context.Context, db API, env string) ([]string, error) {
	var created []string
	for _, t := range Tables {
		name := store.TableName(env, t.Name)
		_, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		var nf *types.ResourceNotFoundException
		switch {
		case err == nil:
			continue
		case !errors.As(err, &nf):
			return created, fmt.Errorf("describe %s: %w", name, err)
		}
		if _, err := db.CreateTable(ctx, createInput(name, t)); err != nil {
			return created, fmt.Errorf("create %s: %w", name, err)
		}
		if err := waitActive(ctx, db, name); err != nil {
			return created, err
		}
		if t.TTL {
			_, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(name),
				TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrTTL), Enabled: aws.Bool(true)}})
			// dynalite has no TTL: the embedded store's sweep stands in for
			// it in tests, DynamoDB's own TTL in production.
			var unknown *types.ResourceNotFoundException
			if err != nil && !errors.As(err, &unknown) && !isUnknownOperation(err) {
				return created, fmt.Errorf("ttl of %s: %w", name, err)
			}
		}
		created = append(created, name)
	}
	return created, nil
}

func isUnknownOperation(err error) bool {
	var ae interface{ ErrorCode() string }
	return errors.As(err, &ae) && (ae.ErrorCode() == "UnknownOperationException" || ae.ErrorCode() == "ValidationException")
}

func createInput(name string, t Table) *dynamodb.CreateTableInput {
	attrs := map[string]bool{AttrPK: true}
	keys := []types.KeySchemaElement{{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash}}
	if t.SortKey {
		attrs[AttrSK] = true
		keys = append(keys, types.KeySchemaElement{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange})
	}
	var gsis []types.GlobalSecondaryIndex
	for _, ix := range t.Indexes {
		attrs[ix.PartitionKey] = true
		ks := []types.KeySchemaElement{{AttributeName: aws.String(ix.PartitionKey), KeyType: types.KeyTypeHash}}
		if ix.SortKey != "" {
			attrs[ix.SortKey] = true
			ks = append(ks, types.KeySchemaElement{AttributeName: aws.String(ix.SortKey), KeyType: types.KeyTypeRange})
		}
		gsis = append(gsis, types.GlobalSecondaryIndex{IndexName: aws.String(ix.Name), KeySchema: ks,
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}})
	}
	var defs []types.AttributeDefinition
	for _, a := range sortedKeys(attrs) {
		defs = append(defs, types.AttributeDefinition{AttributeName: aws.String(a), AttributeType: types.ScalarAttributeTypeS})
	}
	return &dynamodb.CreateTableInput{TableName: aws.String(name), KeySchema: keys, AttributeDefinitions: defs,
		GlobalSecondaryIndexes: gsis, BillingMode: types.BillingModePayPerRequest}
}

func waitActive(ctx context.Context, db API, name string) error {
	for range 600 {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err == nil && out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("table %s did not become active", name)
}
