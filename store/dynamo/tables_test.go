package dynamo

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/whp-dev/whp/internal/dynalitetest"
	"github.com/whp-dev/whp/store"
)

// TestCreateTables creates the tables on dynalite and checks each one's
// keys and indexes as DynamoDB reports them; a second run creates nothing.
func TestCreateTables(t *testing.T) {
	ctx := context.Background()
	db := dynalitetest.Start(t)
	created, err := CreateTables(ctx, db, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 5 {
		t.Fatalf("created %v, want 5 tables", created)
	}
	for _, tb := range Tables {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("webhooks-test-" + tb.Name)})
		if err != nil {
			t.Fatalf("describe %s: %v", tb.Name, err)
		}
		keys := map[string]string{}
		for _, k := range out.Table.KeySchema {
			keys[*k.AttributeName] = string(k.KeyType)
		}
		if keys[AttrPK] != "HASH" || (tb.SortKey && keys[AttrSK] != "RANGE") || (!tb.SortKey && len(keys) != 1) {
			t.Errorf("%s keys = %v", tb.Name, keys)
		}
		var got, want []string
		for _, ix := range out.Table.GlobalSecondaryIndexes {
			got = append(got, *ix.IndexName)
		}
		for _, ix := range tb.Indexes {
			want = append(want, ix.Name)
		}
		sort.Strings(got)
		sort.Strings(want)
		if len(got) != len(want) {
			t.Errorf("%s indexes = %v, want %v", tb.Name, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s indexes = %v, want %v", tb.Name, got, want)
			}
		}
	}
	again, err := CreateTables(ctx, db, "test")
	if err != nil || len(again) != 0 {
		t.Errorf("second run created %v (%v), want nothing", again, err)
	}
}

// indexAdder is DynamoDB's side of adding an index to a table, which
// dynalite cannot do (it answers UpdateTable without adding the index):
// a table described with the indexes it has, an index added by
// UpdateTable that reports CREATING twice before it is ACTIVE. Every
// other call fails the test.
type indexAdder struct {
	API
	t       *testing.T
	tables  map[string]*types.TableDescription
	updates []*dynamodb.UpdateTableInput
	asked   map[string]int // DescribeTable calls since an index was added
}

func (f *indexAdder) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	td, ok := f.tables[*in.TableName]
	if !ok {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no table")}
	}
	f.asked[*in.TableName]++
	for i := range td.GlobalSecondaryIndexes {
		if td.GlobalSecondaryIndexes[i].IndexStatus == types.IndexStatusCreating && f.asked[*in.TableName] > 2 {
			td.GlobalSecondaryIndexes[i].IndexStatus = types.IndexStatusActive
		}
	}
	return &dynamodb.DescribeTableOutput{Table: td}, nil
}

func (f *indexAdder) UpdateTable(_ context.Context, in *dynamodb.UpdateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error) {
	f.updates = append(f.updates, in)
	td := f.tables[*in.TableName]
	for _, ix := range td.GlobalSecondaryIndexes {
		if ix.IndexStatus != types.IndexStatusActive {
			f.t.Errorf("UpdateTable while index %s is %s: DynamoDB adds one index at a time", *ix.IndexName, ix.IndexStatus)
		}
	}
	for _, u := range in.GlobalSecondaryIndexUpdates {
		td.GlobalSecondaryIndexes = append(td.GlobalSecondaryIndexes, types.GlobalSecondaryIndexDescription{IndexName: u.Create.IndexName,
			KeySchema: u.Create.KeySchema, IndexStatus: types.IndexStatusCreating})
	}
	f.asked[*in.TableName] = 0
	return &dynamodb.UpdateTableOutput{}, nil
}

// AddIndexes adds the indexes a table of an earlier version lacks, one
// UpdateTable each, waiting for each to be active; a provisioned table's
// index gets its capacity; a table with every index, or none yet, is left
// alone.
func TestAddIndexes(t *testing.T) {
	ctx := context.Background()
	deliveries := "webhooks-prod-" + store.TableEventDeliveryStatus
	schemas := "webhooks-prod-" + store.TableEventSchema
	f := &indexAdder{t: t, asked: map[string]int{}, tables: map[string]*types.TableDescription{
		deliveries: {ProvisionedThroughput: &types.ProvisionedThroughputDescription{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(7)},
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndexDescription{
				{IndexName: aws.String("partner-index"), IndexStatus: types.IndexStatusActive},
				{IndexName: aws.String("schema-index"), IndexStatus: types.IndexStatusActive}}},
		schemas: {GlobalSecondaryIndexes: []types.GlobalSecondaryIndexDescription{
			{IndexName: aws.String("status-index"), IndexStatus: types.IndexStatusActive},
			{IndexName: aws.String("contains_sensitive-index"), IndexStatus: types.IndexStatusActive}}},
	}}
	added, err := AddIndexes(ctx, f, "prod", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{deliveries + "/partner-status-index", deliveries + "/schema-status-index"}
	if !slices.Equal(added, want) || len(f.updates) != 2 {
		t.Fatalf("added %v in %d updates, want %v in 2", added, len(f.updates), want)
	}
	for i, u := range f.updates {
		c := u.GlobalSecondaryIndexUpdates[0].Create
		key := *c.KeySchema[0].AttributeName + "," + *c.KeySchema[1].AttributeName
		wantKey := []string{"partner_status,updated_key", "schema_status,updated_key"}[i]
		var defs []string
		for _, d := range u.AttributeDefinitions {
			defs = append(defs, *d.AttributeName)
		}
		if key != wantKey || len(defs) != 2 || c.Projection.ProjectionType != types.ProjectionTypeAll ||
			c.ProvisionedThroughput == nil || *c.ProvisionedThroughput.ReadCapacityUnits != 5 || *c.ProvisionedThroughput.WriteCapacityUnits != 7 {
			t.Errorf("update %d: keys %s, definitions %v, projection %s, throughput %+v", i, key, defs, c.Projection.ProjectionType, c.ProvisionedThroughput)
		}
	}
	if again, err := AddIndexes(ctx, f, "prod", time.Millisecond); err != nil || len(again) != 0 {
		t.Errorf("second run added %v (%v)", again, err)
	}
}

// Against dynalite, which cannot add an index to a table: tables made by
// CreateTables need none; a table of an earlier version is an error that
// says what to do.
func TestAddIndexesDynalite(t *testing.T) {
	ctx := context.Background()
	db := dynalitetest.Start(t)
	if _, err := CreateTables(ctx, db, "new"); err != nil {
		t.Fatal(err)
	}
	if added, err := AddIndexes(ctx, db, "new", time.Millisecond); err != nil || len(added) != 0 {
		t.Errorf("AddIndexes on new tables = %v, %v; want nothing", added, err)
	}
	old := Tables[slices.IndexFunc(Tables, func(t Table) bool { return t.Name == store.TableEventDeliveryStatus })]
	old.Indexes = old.Indexes[:2] // before the status indexes
	if _, err := db.CreateTable(ctx, createInput(store.TableName("old", old.Name), old)); err != nil {
		t.Fatal(err)
	}
	_, err := AddIndexes(ctx, db, "old", time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "index partner-status-index") || !strings.Contains(err.Error(), "table deleted and made again by whp tables create") {
		t.Errorf("AddIndexes on dynalite = %v, want an error saying what to do", err)
	}
}
