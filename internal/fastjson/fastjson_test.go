package fastjson_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/whp-dev/whp/internal/fastjson"
	"github.com/whp-dev/whp/runtime/envelope"
	"github.com/whp-dev/whp/store"
)

// The flags set by value do what the Decoder's methods do: numbers stay
// json.Number, unknown fields are refused, trailing data is an error.
func TestFlags(t *testing.T) {
	doc := []byte(`{"n":12345678901234567890.5,"a":[1,{"b":2e-3}]}`)
	x, err := fastjson.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	d := gojson.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var want any
	if err := d.Decode(&want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x, want) {
		t.Errorf("Decode %#v, Decoder with UseNumber %#v", x, want)
	}
	if n, ok := x.(map[string]any)["n"].(gojson.Number); !ok || n.String() != "12345678901234567890.5" {
		t.Errorf("number decoded as %T %v", x.(map[string]any)["n"], x.(map[string]any)["n"])
	}
	var v struct {
		A int `json:"a"`
	}
	if err := fastjson.UnmarshalStrict([]byte(`{"a":1}`), &v); err != nil || v.A != 1 {
		t.Errorf("known field: %v %+v", err, v)
	}
	if err := fastjson.UnmarshalStrict([]byte(`{"a":1,"b":2}`), &v); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("unknown field: %v", err)
	}
	for _, bad := range []string{`{"a":1} x`, `{"a":1}{}`, `{"a":`, ``} {
		if _, err := fastjson.Decode([]byte(bad)); err == nil {
			t.Errorf("fastjson.Decode(%q) accepted", bad)
		}
		if err := fastjson.UnmarshalStrict([]byte(bad), &v); err == nil {
			t.Errorf("fastjson.UnmarshalStrict(%q) accepted", bad)
		}
	}
	// And the json.Number is encoding/json's type (the validator and the
	// transforms test for it).
	if reflect.TypeOf(gojson.Number("")) != reflect.TypeOf(json.Number("")) {
		t.Error("goccy's Number is not encoding/json's")
	}
}

// Unmarshal reads the records the roles exchange as encoding/json does:
// whatever it accepts, encoding/json accepts with the same values.
func FuzzUnmarshal(f *testing.F) {
	d := envelope.Delivery{ID: "d", EventID: "e", SubscriptionID: "s", PartnerID: "p", SchemaID: "a#b#1", Event: "b", Key: "k<&>",
		AcceptedAt: time.Unix(1700000000, 5).UTC(), CreatedAt: time.Unix(1700000001, 0).In(time.FixedZone("", 3600)),
		Body: json.RawMessage(`{"data":{"a":[1,"é\u2028",null]}}`)}
	f.Add(d.JSON())
	f.Add(envelope.Event{ID: "e", Domain: "d", Event: "e", Version: "1", AcceptedAt: time.Now(), Data: json.RawMessage(`[1,2]`)}.JSON())
	for _, s := range []string{`{"id":"x","body":{"a":1}`, `{"id":1}`, `{"accepted_at":"not a time"}`, `{"body":nul}`, `{"ID":"case"}`,
		`{"id":"a","id":"b"}`, "{\"id\":\"\xff\"}", `{"id":"\ud800"}`, `{"body":` + strings.Repeat("[", 300) + `]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var fast, std envelope.Delivery
		if fastjson.Unmarshal(doc, &fast) != nil {
			return
		}
		if err := json.Unmarshal(doc, &std); err != nil {
			t.Fatalf("%q: fastjson accepts what encoding/json refuses: %v", doc, err)
		}
		if !fast.AcceptedAt.Equal(std.AcceptedAt) || !fast.CreatedAt.Equal(std.CreatedAt) {
			t.Fatalf("%q: times differ", doc)
		}
		fast.AcceptedAt, fast.CreatedAt, std.AcceptedAt, std.CreatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("%q: fastjson %+v, encoding/json %+v", doc, fast, std)
		}
	})
}

// Marshal writes what encoding/json writes, byte for byte, for the rows
// the embedded store keeps: strings that need escaping or are not UTF-8,
// raw bytes, times, omitted and zero fields, maps, custom marshalers.
func FuzzMarshal(f *testing.F) {
	f.Add("e_1", "<a>&\u2028", []byte(`{"a":1}`), int64(1500), int64(1700000000))
	f.Add("\xff\xfe", "", []byte(nil), int64(0), int64(0))
	f.Add("\"\\\n\t\x00", "ü€𝄞", []byte{0, 1, 2, 255}, int64(-1), int64(-62135596800))
	f.Fuzz(func(t *testing.T, s1, s2 string, raw []byte, n, unix int64) {
		at := time.Unix(unix%(1<<40), n%1e9).UTC()
		rows := []any{
			store.Delivery{EventID: s1, ID: s2, SubscriptionID: s1 + s2, Status: s2, Replay: s1, NextAttemptAt: at, Offset: n,
				Attempts: []store.Attempt{{N: int(n % 100), At: at, URL: s1, StatusCode: int(n % 600), Latency: store.Duration(n),
					Error: s2, RequestHeaders: map[string]string{s1: s2, s2: s1, "webhook-id": s1}, ResponseExcerpt: s2}},
				CreatedAt: at, UpdatedAt: at},
			store.Event{ID: s1, SchemaID: s2, Key: s2, AcceptedAt: at, Offset: n, TraceID: s1, Data: raw,
				Routing: []store.Route{{SubscriptionID: s1, PartnerID: s2, Matched: n%2 == 0, Reason: s2}}},
			store.Idempotency{Key: s1, Value: raw, CreatedAt: at, ExpiresAt: at, Rev: n},
		}
		for _, v := range rows {
			want, wantErr := json.Marshal(v)
			got, err := fastjson.Marshal(v)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("%T: Marshal %s (%v), encoding/json %s (%v)", v, got, err, want, wantErr)
			}
		}
	})
}
