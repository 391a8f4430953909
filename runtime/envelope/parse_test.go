package envelope

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/whp-dev/whp/internal/fastjson"
)

// slow is what ParseDelivery answered before it read the layout itself.
func slow(value []byte) (Delivery, error) {
	var d Delivery
	err := fastjson.Unmarshal(value, &d)
	return d, err
}

func parseCases() []Delivery {
	at := time.Date(2026, 11, 30, 10, 7, 58, 123456789, time.UTC)
	base := Delivery{ID: "d_2KWPBgLlAfxdpx2AI54pPJ85f4W", EventID: "01937a6e-7c2a-7000-8000-000000000001", SubscriptionID: "p0.things",
		PartnerID: "p0", SchemaID: "bench/thing.happened/1", Event: "thing.happened", AcceptedAt: at, CreatedAt: at.Add(time.Millisecond),
		Body: json.RawMessage(`{"id":"e1","data":{"s":"a \"quoted\" } brace","n":[1,{"x":"]"}]}}`)}
	var out []Delivery
	for _, f := range []func(d *Delivery){
		func(*Delivery) {},
		func(d *Delivery) { d.Replay, d.Key = "r1", "k1" },
		func(d *Delivery) { d.Resume = true },
		func(d *Delivery) { d.Trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
		func(d *Delivery) {
			d.Resume, d.Trace, d.Key = true, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "k"
		},
		func(d *Delivery) { d.AcceptedAt = at.In(time.FixedZone("", 2*3600)) },
		func(d *Delivery) { d.Body = json.RawMessage(`{"trace":"x","resume":true}`) },
		func(d *Delivery) { d.Body = json.RawMessage(`{"s":"\\"}`) },                  // a body string ending in an escaped backslash
		func(d *Delivery) { d.Key = "<tenant & co>" },                                 // escaped: decoded the slow way
		func(d *Delivery) { d.PartnerID = "naïve" },                                   // UTF-8 without escapes
		func(d *Delivery) { d.Trace = "00-x\"y" },                                     // a quote in the trace: the slow way
		func(d *Delivery) { d.Body = json.RawMessage(` {"padded": true} `) },          // not the layout: the slow way
		func(d *Delivery) { d.Body = json.RawMessage(`{"a":{"b":[[],{}]},"c":"}"}`) }, // nesting
	} {
		d := base
		f(&d)
		out = append(out, d)
	}
	return out
}

// ParseDelivery answers what fastjson does, for records in the layout
// (read directly, the body a slice of the value), records out of it, and
// records of versions that wrote them with json.Marshal.
func TestParseDelivery(t *testing.T) {
	for i, d := range parseCases() {
		for name, value := range map[string][]byte{"AppendJSON": d.JSON(), "json.Marshal": must(json.Marshal(d))} {
			got, err := ParseDelivery(value)
			want, wantErr := slow(value)
			if err != nil || wantErr != nil {
				t.Fatalf("case %d, %s: %v / %v\n%s", i, name, err, wantErr, value)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("case %d, %s:\n got %+v\nwant %+v", i, name, got, want)
			}
		}
	}
	// The layout's own records are read directly, their body not copied.
	d := parseCases()[4]
	value := d.JSON()
	got, ok := parseDelivery(value)
	if !ok {
		t.Fatalf("AppendJSON's layout not read directly: %s", value)
	}
	if i := strings.Index(string(value), `"body":`) + len(`"body":`); &got.Body[0] != &value[i] {
		t.Error("the body is a copy, not a slice of the value")
	}
	// A field after the body that this version does not know (a later
	// version's) is not taken into the body.
	extra := []byte(strings.TrimSuffix(string(value), "}") + `,"later":{"x":1}}`)
	if _, ok := parseDelivery(extra); ok {
		t.Errorf("read directly with an unknown field after the body: %s", extra)
	}
	if got, err := ParseDelivery(extra); err != nil || string(got.Body) != string(d.Body) {
		t.Errorf("with an unknown field: %v, body %s", err, got.Body)
	}
	for _, bad := range []string{``, `{`, `{"id":"a"`, `{"id":"a","event_id":1}`, `{"id":"a","event_id":"b","subscription_id":"c","partner_id":"d","schema_id":"e","event":"f","accepted_at":"2026-11-30T10:07:58Z","created_at":"not a time","body":{}}`} {
		if _, err := ParseDelivery([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// Wherever the layout is read directly, fastjson decodes the same value
// to the same delivery — given a body that is JSON, which the layout
// trusts the processor for.
func FuzzParseDelivery(f *testing.F) {
	for _, d := range parseCases() {
		f.Add(d.JSON())
		f.Add(must(json.Marshal(d)))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		got, ok := parseDelivery(value)
		if !ok || !json.Valid(got.Body) {
			return
		}
		want, err := slow(value)
		if err != nil {
			t.Fatalf("read directly, but fastjson: %v\n%s", err, value)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("\n got %+v\nwant %+v\n%s", got, want, value)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkParseDelivery decodes an egress record's value of a 1 KiB and
// a 256 KiB body, as fastjson did (a copy of the body) and as
// ParseDelivery does (a slice of the value).
func BenchmarkParseDelivery(b *testing.B) {
	for _, size := range []int{1 << 10, 256 << 10} {
		d := parseCases()[0]
		d.Body = json.RawMessage(`{"pad":"` + strings.Repeat("x", size) + `"}`)
		value := d.JSON()
		for name, parse := range map[string]func([]byte) (Delivery, error){"fastjson": slow, "ParseDelivery": ParseDelivery} {
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(value)))
				for b.Loop() {
					if _, err := parse(value); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
