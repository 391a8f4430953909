package envelope

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Each AppendJSON writes exactly what json.Marshal writes, for values with
// every exported field set — strings that need escaping, zero values that
// omitempty drops, maps, times — so a field added to a record and not to
// its AppendJSON fails here.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, v := range []interface{ AppendJSON([]byte) []byte }{&Event{}, &Delivery{}, &Payload{}} {
		for range 3000 {
			fill(t, reflect.ValueOf(v).Elem(), rng)
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.AppendJSON(nil); !bytes.Equal(got, want) {
				t.Fatalf("%T:\nAppendJSON %s\njson.Marshal %s", v, got, want)
			}
		}
	}
}

var hostile = []string{"", "plain", `quo"te`, `back\slash`, "ctl\x00\x01\x1f\x7f", "\b\f\n\r\t", "<script>&amp;</script>",
	"line\u2028sep\u2029", "bad\xffutf8\xc3", "\xed\xa0\x80", "émoji 🙂", "orders#order.created#1"}

// Bodies compact and without <, > or &, which json.Marshal would rewrite
// inside a RawMessage (TestAppendJSONKeepsDataBytes).
var bodies = []string{`{"a":[1,2.5e3,"x y",true,null],"b":{}}`, `"s"`, `[]`, `0`}

// fill sets every exported field of v (a struct) at random; about one in
// four left at its zero value.
func fill(t *testing.T, v reflect.Value, rng *rand.Rand) {
	for i := range v.NumField() {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() {
			continue
		}
		if rng.IntN(4) == 0 {
			f.SetZero()
			continue
		}
		switch x := f.Addr().Interface().(type) {
		case *string:
			*x = hostile[rng.IntN(len(hostile))]
		case *time.Time:
			*x = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("", (rng.IntN(48)-24)*1800))
		case *json.RawMessage:
			*x = json.RawMessage(bodies[rng.IntN(len(bodies))])
		case *map[string]string:
			m := map[string]string{}
			for range rng.IntN(4) {
				m[hostile[rng.IntN(len(hostile))]] = hostile[rng.IntN(len(hostile))]
			}
			*x = m
		case *bool:
			*x = true // false is the zero value, left one time in four
		case *Party:
			fill(t, f, rng)
		default:
			t.Fatalf("field %s of %s: type %s has no generator here; add one (and to AppendJSON)", v.Type().Field(i).Name, v.Type(), f.Type())
		}
	}
}

// Data is copied as the producer sent it: whitespace kept, not compacted,
// and <, >, & not rewritten as \u003c… (json.Marshal rewrites both in a
// RawMessage; either way it is the same JSON value).
func TestAppendJSONKeepsDataBytes(t *testing.T) {
	data := json.RawMessage("{ \"a\" :\n [1, \"x<y & z\"] }")
	got := Event{ID: "e", Data: data}.AppendJSON(nil)
	if !bytes.Contains(got, data) || !json.Valid(got) {
		t.Errorf("got %s", got)
	}
	var back Event
	if err := json.Unmarshal(got, &back); err != nil || !bytes.Equal(back.Data, data) {
		t.Errorf("round trip: %v %s", err, back.Data)
	}
}

func BenchmarkEncodeDelivery(b *testing.B) {
	body := []byte(`[` + strings.Repeat(`{"pad":"order shipped invoice paid customer account"},`, 20) + `0]`)
	d := Delivery{ID: DeliveryID("e", "s"), EventID: "0190f1e2-aaaa-7bbb-8ccc-123456789abc", SubscriptionID: "acme.orders", PartnerID: "acme",
		SchemaID: "orders#order.created#1", Event: "order.created", Key: "order-1", AcceptedAt: time.Now(), CreatedAt: time.Now(),
		Body: body}
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		for b.Loop() {
			d.AppendJSON(make([]byte, 0, len(d.Body)+512))
		}
	})
}
