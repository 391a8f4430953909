// Package fastjson decodes the JSON of the hot path — every event's
// envelope and data — with goccy/go-json, from a byte slice, and encodes
// the embedded store's rows with it.
//
// goccy/go-json offers UseNumber and DisallowUnknownFields on its
// streaming Decoder only, whose buffering (reading 512 bytes at a time and
// growing) costs about as much as parsing an event; its Unmarshal takes the
// same flags through a DecodeOptionFunc, here set by the values of the
// library's internal constants (decoder.UseNumberOption,
// decoder.DisallowUnknownFieldsOption). TestFlags fails if a release of
// the library renumbers them.
package fastjson

import (
	"fmt"

	gojson "github.com/goccy/go-json"
)

var (
	useNumber             gojson.DecodeOptionFunc = func(o *gojson.DecodeOption) { o.Flags |= 1 << 3 }
	disallowUnknownFields gojson.DecodeOptionFunc = func(o *gojson.DecodeOption) { o.Flags |= 1 << 4 }
)

// Decode decodes one JSON document, objects as map[string]any and numbers
// as json.Number, so none loses precision; anything after the document
// but whitespace is an error.
func Decode(doc []byte) (any, error) {
	var x any
	if err := unmarshal(doc, &x, useNumber); err != nil {
		return nil, err
	}
	return x, nil
}

// UnmarshalStrict decodes one JSON document into v, a field of the
// document that v does not have being an error.
func UnmarshalStrict(doc []byte, v any) error { return unmarshal(doc, v, disallowUnknownFields) }

// Unmarshal decodes one JSON document into v, as json.Unmarshal does.
func Unmarshal(doc []byte, v any) error { return unmarshal(doc, v) }

// unmarshal turns a panic of the library on a malformed document into an
// error: what the callers decode comes from outside (a request, a record),
// and a bad one must cost an error, never the process.
func unmarshal(doc []byte, v any, opts ...gojson.DecodeOptionFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed JSON (decoder panic: %v)", p)
		}
	}()
	return gojson.UnmarshalWithOption(doc, v, opts...)
}

// Marshal encodes v as json.Marshal does, byte for byte (FuzzMarshal holds
// it to that for the store's rows), about twice as fast: the embedded
// store encodes every event's and every delivery's row with it. A panic
// of the library is an error.
func Marshal(v any) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("encode JSON (encoder panic: %v)", p)
		}
	}()
	return gojson.Marshal(v)
}
