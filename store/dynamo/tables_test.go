package dynamo

import (
	"context"
	"sort"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/whp-dev/whp/internal/dynalitetest"
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
