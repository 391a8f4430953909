package fastjson

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"
)

// The flags set by value do what the Decoder's methods do: numbers stay
// json.Number, unknown fields are refused, trailing data is an error.
func TestFlags(t *testing.T) {
	doc := []byte(`{"n":12345678901234567890.5,"a":[1,{"b":2e-3}]}`)
	x, err := Decode(doc)
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
	if err := UnmarshalStrict([]byte(`{"a":1}`), &v); err != nil || v.A != 1 {
		t.Errorf("known field: %v %+v", err, v)
	}
	if err := UnmarshalStrict([]byte(`{"a":1,"b":2}`), &v); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("unknown field: %v", err)
	}
	for _, bad := range []string{`{"a":1} x`, `{"a":1}{}`, `{"a":`, ``} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
		if err := UnmarshalStrict([]byte(bad), &v); err == nil {
			t.Errorf("UnmarshalStrict(%q) accepted", bad)
		}
	}
	// And the json.Number is encoding/json's type (the validator and the
	// transforms test for it).
	if reflect.TypeOf(gojson.Number("")) != reflect.TypeOf(json.Number("")) {
		t.Error("goccy's Number is not encoding/json's")
	}
}
