package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/whp-dev/whp/catalog"
)

// s3Store serves the S3 protocol in process (gofakes3) on 127.0.0.1 and
// returns a store using the real SDK client against it. The static
// credentials are the fake server's, not secrets.
func s3Store(t *testing.T) S3 {
	t.Helper()
	backend := s3mem.New()
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	if err := backend.CreateBucket("whp-artifacts"); err != nil {
		t.Fatal(err)
	}
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		UsePathStyle: true,
	})
	return S3{Client: client, Bucket: "whp-artifacts", Prefix: "dev"}
}

func TestPublish(t *testing.T) {
	c, err := catalog.Load("../../catalog")
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]Store{"dir": Dir{Path: t.TempDir()}, "s3": s3Store(t)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			written, err := Publish(ctx, st, c, "https://schemas.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if len(written) != len(c.Schemas)+1 {
				t.Errorf("first publish wrote %v, want %d schemas and the index", written, len(c.Schemas))
			}
			b, err := st.Get(ctx, Key("orders", "order.created", "2"))
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc["$id"] != "https://schemas.example.com/schemas/orders/order.created/2.json" || doc["title"] != "orders/order.created version 2" {
				t.Errorf("published document = %v", doc)
			}
			props, _ := doc["properties"].(map[string]any)
			if _, ok := props["coupon"]; !ok {
				t.Errorf("v2's coupon missing from the published schema: %s", b)
			}
			var index struct{ Schemas []IndexEntry }
			if b, err := st.Get(ctx, IndexKey); err != nil || json.Unmarshal(b, &index) != nil || len(index.Schemas) != len(c.Schemas) {
				t.Errorf("index = %s, %v", b, err)
			}
			again, err := Publish(ctx, st, c, "https://schemas.example.com")
			if err != nil || len(again) != 0 {
				t.Errorf("second publish wrote %v, %v; want nothing", again, err)
			}
			if _, err := st.Get(ctx, "schemas/nope.json"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(missing) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDirRefusesEscapingKeys(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	for _, k := range []string{"../x", "a/../../x", ""} {
		if err := d.Put(context.Background(), k, []byte("x")); err == nil {
			t.Errorf("Put(%q) escaped or accepted an empty key", k)
		}
	}
}

// TestS3KeysWithoutPrefix: an empty prefix does not start keys with "/".
func TestS3KeysWithoutPrefix(t *testing.T) {
	st := s3Store(t)
	st.Prefix = ""
	ctx := context.Background()
	if err := st.Put(ctx, "reconciler/status.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if b, err := st.Get(ctx, "reconciler/status.json"); err != nil || string(b) != "{}" {
		t.Errorf("Get = %q, %v", b, err)
	}
	if st.key("a") != "a" {
		t.Errorf("key without prefix = %q", st.key("a"))
	}
}
