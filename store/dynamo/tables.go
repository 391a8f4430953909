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
	"slices"
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

// API is the part of the DynamoDB client CreateTables and AddIndexes use.
type API interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTable(ctx context.Context, in *dynamodb.UpdateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// AddIndexes adds to the existing tables of env the indexes Tables names
// that they lack — those a later version added (the status indexes) —
// one at a time, as DynamoDB requires, each built by DynamoDB from the
// items that have its keys while the table serves, and waits for each to
// be active (poll is how often it asks; every few seconds against
// DynamoDB, whose build of an index over a large table takes minutes).
// It returns the indexes added, as "table/index". Tables that do not exist
// are CreateTables's, and are skipped.
func AddIndexes(ctx context.Context, db API, env string, poll time.Duration) ([]string, error) {
	var added []string
	for _, t := range Tables {
		name := store.TableName(env, t.Name)
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		var nf *types.ResourceNotFoundException
		switch {
		case errors.As(err, &nf):
			continue
		case err != nil:
			return added, fmt.Errorf("describe %s: %w", name, err)
		}
		has := map[string]bool{}
		for _, ix := range out.Table.GlobalSecondaryIndexes {
			has[aws.ToString(ix.IndexName)] = true
		}
		for _, ix := range t.Indexes {
			if has[ix.Name] {
				continue
			}
			gsi, defs := gsiOf(ix)
			create := &types.CreateGlobalSecondaryIndexAction{IndexName: gsi.IndexName, KeySchema: gsi.KeySchema, Projection: gsi.Projection}
			if pt := out.Table.ProvisionedThroughput; pt != nil && aws.ToInt64(pt.ReadCapacityUnits) > 0 {
				// A provisioned table's index is provisioned too: with the
				// table's capacity, which its auto-scaling then owns.
				create.ProvisionedThroughput = &types.ProvisionedThroughput{ReadCapacityUnits: pt.ReadCapacityUnits, WriteCapacityUnits: pt.WriteCapacityUnits}
			}
			_, err := db.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String(name), AttributeDefinitions: defs,
				GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: create}}})
			if err != nil {
				return added, fmt.Errorf("add index %s to %s: %w (%s)", ix.Name, name, err, cannotAddIndex)
			}
			if err := waitIndexActive(ctx, db, name, ix.Name, poll); err != nil {
				return added, err
			}
			added = append(added, name+"/"+ix.Name)
		}
	}
	return added, nil
}

// cannotAddIndex is what to do where UpdateTable cannot add an index.
const cannotAddIndex = "an endpoint that cannot add an index to a table, as dynalite cannot, needs the table deleted and made again by whp tables create"

// waitIndexActive waits until the table's index is active. An index the
// table does not list after UpdateTable was not added.
func waitIndexActive(ctx context.Context, db API, table, index string, poll time.Duration) error {
	for {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return fmt.Errorf("describe %s: %w", table, err)
		}
		i := slices.IndexFunc(out.Table.GlobalSecondaryIndexes, func(ix types.GlobalSecondaryIndexDescription) bool {
			return aws.ToString(ix.IndexName) == index
		})
		if i < 0 {
			return fmt.Errorf("%s: index %s was not added (%s)", table, index, cannotAddIndex)
		}
		if out.Table.GlobalSecondaryIndexes[i].IndexStatus == types.IndexStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("index %s of %s: %w", index, table, ctx.Err())
		case <-time.After(poll):
		}
	}
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

// errorCode is the code of an error DynamoDB answered, "" for another.
func errorCode(err error) string {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// isValidation reports a request DynamoDB refused as invalid.
func isValidation(err error) bool { return errorCode(err) == "ValidationException" }

func isUnknownOperation(err error) bool {
	return errorCode(err) == "UnknownOperationException" || isValidation(err)
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
		gsi, ixDefs := gsiOf(ix)
		for _, d := range ixDefs {
			attrs[aws.ToString(d.AttributeName)] = true
		}
		gsis = append(gsis, gsi)
	}
	return &dynamodb.CreateTableInput{TableName: aws.String(name), KeySchema: keys, AttributeDefinitions: stringAttrs(sortedKeys(attrs)...),
		GlobalSecondaryIndexes: gsis, BillingMode: types.BillingModePayPerRequest}
}

// gsiOf is ix as DynamoDB describes it, projecting every attribute, and
// the definitions of its key attributes (strings).
func gsiOf(ix Index) (types.GlobalSecondaryIndex, []types.AttributeDefinition) {
	ks := []types.KeySchemaElement{{AttributeName: aws.String(ix.PartitionKey), KeyType: types.KeyTypeHash}}
	defs := stringAttrs(ix.PartitionKey)
	if ix.SortKey != "" {
		ks = append(ks, types.KeySchemaElement{AttributeName: aws.String(ix.SortKey), KeyType: types.KeyTypeRange})
		defs = append(defs, stringAttrs(ix.SortKey)...)
	}
	return types.GlobalSecondaryIndex{IndexName: aws.String(ix.Name), KeySchema: ks,
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}}, defs
}

// stringAttrs defines each name as a string attribute.
func stringAttrs(names ...string) []types.AttributeDefinition {
	var defs []types.AttributeDefinition
	for _, a := range names {
		defs = append(defs, types.AttributeDefinition{AttributeName: aws.String(a), AttributeType: types.ScalarAttributeTypeS})
	}
	return defs
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
