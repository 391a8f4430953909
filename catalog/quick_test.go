package catalog

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// quickSchema uses every keyword the quick check knows, with bounds it
// must compare exactly (0.1 is not a float64).
const quickSchema = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
"required":["id","n"],"additionalProperties":{"type":["string","null"],"maxLength":3},
"properties":{
 "id":{"type":"string","pattern":"^e_[a-z]{2,8}$","minLength":4,"maxLength":10},
 "n":{"type":"integer","minimum":1,"exclusiveMaximum":100},
 "price":{"type":"number","exclusiveMinimum":0,"maximum":0.1},
 "big":{"type":"integer","maximum":1e20},
 "kind":{"enum":["a","b"]},
 "fixed":{"const":"x"},
 "flag":{"type":"boolean"},
 "tags":{"type":"array","minItems":1,"maxItems":2,"items":{"type":"string","minLength":1}},
 "inner":{"type":"object","additionalProperties":false,"properties":{"v":true}},
 "open":{"description":"anything"}
}}`

// quickSeeds are documents for quickSchema, valid and not, on either side
// of each keyword's edge.
var quickSeeds = []string{
	`{"id":"e_ab","n":1}`,
	`{"id":"e_ab","n":99,"price":0.1,"big":100000000000000000000,"kind":"b","fixed":"x","flag":true,"tags":["t","u"],"inner":{"v":[1]},"open":{"x":1},"z":"abc","y":null}`,
	`{"id":"e_ab","n":1.0}`, `{"id":"e_ab","n":1e0}`, `{"id":"e_ab","n":100}`, `{"id":"e_ab","n":0}`, `{"id":"e_ab","n":-0}`,
	`{"id":"e_ab","n":1,"price":0}`, `{"id":"e_ab","n":1,"price":0.1000000000000000001}`, `{"id":"e_ab","n":1,"price":1e-400}`,
	`{"id":"e_ab","n":1,"big":100000000000000000001}`, `{"id":"e_ab","n":1,"big":1e20}`, `{"id":"e_ab","n":1,"big":99999999999999999999.5}`,
	`{"id":"e_a","n":1}`, `{"id":"e_abcdefghi","n":1}`, `{"id":"E_ab","n":1}`, `{"id":"e_ab"}`, `{"n":1}`,
	`{"id":"e_ab","n":1,"kind":"c"}`, `{"id":"e_ab","n":1,"fixed":"y"}`, `{"id":"e_ab","n":1,"flag":"true"}`,
	`{"id":"e_ab","n":1,"tags":[]}`, `{"id":"e_ab","n":1,"tags":["a","b","c"]}`, `{"id":"e_ab","n":1,"tags":[""]}`,
	`{"id":"e_ab","n":1,"inner":{"w":1}}`, `{"id":"e_ab","n":1,"z":"abcd"}`, `{"id":"e_ab","n":1,"z":"äöü"}`, `{"id":"e_ab","n":1,"z":1}`,
	`[]`, `"e_ab"`, `null`, `1`,
}

// quickValidators are the validators the quick check is fuzzed with:
// quickSchema's (every keyword it knows) and the example catalog's order.
func quickValidators(tb testing.TB) []*Validator {
	v, err := NewValidator([]byte(quickSchema))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := Load(".")
	if err != nil {
		tb.Fatal(err)
	}
	order := c.Schema("orders#order.created#1").Validator()
	if v.quick == nil || order.quick == nil {
		tb.Fatal("no quick check for schemas of known keywords")
	}
	return []*Validator{v, order}
}

// Whatever the quick check calls valid, the full validator calls valid: it
// only ever lets valid events skip the full validation. It is sure of the
// common valid events, or it would save nothing.
func FuzzQuick(f *testing.F) {
	for _, s := range quickSeeds {
		f.Add(s)
	}
	f.Add(string(orderEvent))
	validators := quickValidators(f)
	f.Fuzz(func(t *testing.T, doc string) {
		x, err := Decode([]byte(doc))
		if err != nil {
			return
		}
		for _, v := range validators {
			if v.quick.valid(x) && v.schema.Validate(x) != nil {
				t.Errorf("quick check passes %s, the schema refuses it: %v", doc, v.schema.Validate(x))
			}
		}
	})
}

// The quick check is sure of valid events, not of invalid ones or the
// numbers it cannot compare exactly; those go to the full validator, so
// the answer is the same either way.
func TestQuick(t *testing.T) {
	v, err := NewValidator([]byte(quickSchema))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		doc         string
		quick, full bool
	}{
		{quickSeeds[0], true, true},
		{quickSeeds[1], true, true},
		{`{"id":"e_ab","n":1.0}`, false, true},                              // integral, not an integer literal
		{`{"id":"e_ab","n":1,"price":0.1000000000000000001}`, false, false}, // just above 0.1
		{`{"id":"e_ab","n":1,"big":99999999999999999999.5}`, false, false},  // not an integer
		{`{"id":"e_ab","n":1,"big":100000000000000000000}`, true, true},     // = 1e20, exactly
		{`{"id":"e_ab","n":1,"z":"äöü"}`, true, true},                       // 3 characters, 6 bytes
		{`{"id":"e_ab","n":100}`, false, false},
		{`{"id":"e_ab","n":1,"inner":{"w":1}}`, false, false},
	} {
		x, err := Decode([]byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := v.quick.valid(x); got != tc.quick {
			t.Errorf("%s: quick %v, want %v", tc.doc, got, tc.quick)
		}
		if vs := v.ValidateValue(x); (len(vs) == 0) != tc.full {
			t.Errorf("%s: valid %v, want %v (%v)", tc.doc, len(vs) == 0, tc.full, vs)
		}
	}
	for _, s := range []string{`{"anyOf":[{"type":"string"}]}`, `{"type":"string","format":"date-time"}`,
		`{"properties":{"a":{"$ref":"#"}}}`, `{"items":[{"type":"string"}]}`, `{"enum":[1,2]}`, `{"exclusiveMinimum":true}`, `false`} {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		if quickOf(doc) != nil {
			t.Errorf("a quick check for %s, whose keywords it does not know", s)
		}
	}
	c, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"orders#order.created#1", "orders#order.created#2", "orders#order.cancelled#1", "payments#payment.captured#1"} {
		if c.Schema(id).Validator().quick == nil {
			t.Errorf("%s: no quick check", id)
		}
	}
	if x, _ := Decode(orderEvent); !c.Schema("orders#order.created#1").Validator().quick.valid(x) {
		t.Error("the quick check is not sure of a valid order")
	}
}

// Whatever the quick check on bytes calls valid, Decode reads as JSON and
// the quick check on the decoded value calls valid (and so the full
// validator: FuzzQuick): it only ever lets valid JSON and valid events
// skip decoding. And where it is not unsure by design (no escape, no
// property named twice), it is as sure as the decoded check.
func FuzzQuickDoc(f *testing.F) {
	for _, s := range quickSeeds {
		f.Add(s)
	}
	for _, s := range quickDocSeeds {
		f.Add(s)
	}
	f.Add(string(orderEvent))
	validators := quickValidators(f)
	f.Fuzz(func(t *testing.T, doc string) {
		x, err := Decode([]byte(doc))
		for _, v := range validators {
			fast := v.quick.validDoc([]byte(doc))
			if fast && err != nil {
				t.Fatalf("quick check on bytes passes %q, Decode refuses it: %v", doc, err)
			}
			if err != nil {
				continue
			}
			slow := v.quick.valid(x)
			if fast && !slow {
				t.Errorf("quick check on bytes passes %q, on its value it does not", doc)
			}
			if slow && !fast && !strings.Contains(doc, `\`) && !namesTwice(doc) && json.Valid([]byte(doc)) && utf8.ValidString(doc) {
				t.Errorf("quick check on its value passes %q, on bytes it does not", doc)
			}
		}
	})
}

// namesTwice reports whether some object of doc (valid JSON) names a
// property twice.
func namesTwice(doc string) bool {
	dec := json.NewDecoder(strings.NewReader(doc))
	var stack []map[string]bool
	expectKey := func() bool { return len(stack) > 0 && stack[len(stack)-1] != nil }
	var inArray []bool
	keyNext := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				stack, inArray = append(stack, map[string]bool{}), append(inArray, false)
				keyNext = true
				continue
			case '[':
				stack, inArray = append(stack, nil), append(inArray, true)
			case '}', ']':
				stack, inArray = stack[:len(stack)-1], inArray[:len(inArray)-1]
			}
		case string:
			if keyNext && expectKey() {
				if stack[len(stack)-1][tok] {
					return true
				}
				stack[len(stack)-1][tok] = true
				keyNext = false
				continue
			}
		}
		keyNext = len(inArray) > 0 && !inArray[len(inArray)-1]
	}
}

// quickDocSeeds are documents whose bytes the quick check must read as
// JSON does: malformed ones, escapes, duplicates, depth, whitespace.
var quickDocSeeds = []string{
	` {"id":"e_ab","n":1} `, `{"id":"e_ab","n":1}x`, `{"id":"e_ab","n":1,}`, `{"id":"e_ab" "n":1}`, `{"id":"e_ab","n":01}`,
	`{"id":"e_ab","n":1.}`, `{"id":"e_ab","n":-}`, `{"id":"e_ab","n":1e}`, `{"id":"e_ab","n":1,"z":"a\u0062"}`,
	`{"id":"e_ab","n":1,"z":"\x"}`, `{"id":"e_ab","n":1,"z":"` + "\x01" + `"}`, `{"id":"e_ab","n":1,"z":"` + "\xff" + `"}`,
	`{"id":"e_ab","n":1,"n":2}`, `{"i\u0064":"e_ab","n":1}`, `{"id":"e_ab","n":1,"inner":{"v":[[[[[[1]]]]]]}}`,
	`{"id":"e_ab","n":1,"tags":["a",]}`, `{"id":"e_ab","n":1,"flag":tru}`, `{"id":"e_ab","n":1,"y":nul}`, `{"id":"e_ab","n":1}}`,
	"{\"id\":\"e_ab\",\n\t\"n\":1}", `{"id":"e_ab","n":1,"open":"\"quoted\" \/ \n"}`,
}

// The quick check on bytes is sure of what the decoded check is sure of,
// escapes aside, and refuses malformed documents.
func TestQuickDoc(t *testing.T) {
	v, err := NewValidator([]byte(quickSchema))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		doc  string
		want bool
	}{
		{quickSeeds[0], true},
		{quickSeeds[1], true},
		{` {"id":"e_ab","n":1} `, true},
		{"{\"id\":\"e_ab\",\n\t\"n\":1}", true},
		{`{"id":"e_ab","n":1,"z":"äöü"}`, true},
		{`{"id":"e_ab","n":1,"open":"\"quoted\" \/ \n"}`, true}, // escaped, but nothing looks at its value
		{`{"id":"e_ab","n":1,"z":"a\u0062"}`, false},            // escaped, and maxLength reads it
		{`{"id":"e_ab","n":1,"n":2}`, false},                    // named twice
		{`{"id":"e_ab","n":1.0}`, false},
		{`{"id":"e_ab","n":100}`, false},
		{`{"id":"e_ab"}`, false},
		{`{"id":"e_ab","n":1}x`, false},
		{`{"id":"e_ab","n":1,}`, false},
		{`{"id":"e_ab","n":01}`, false},
		{`{"id":"e_ab","n":1,"z":"` + "\x01" + `"}`, false},
		{`{"id":"e_ab","n":1,"z":"` + "\xff" + `"}`, false},
		{`{"id":"e_ab","n":1,"tags":["a",]}`, false},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), false},
	} {
		if got := v.quick.validDoc([]byte(tc.doc)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.doc, got, tc.want)
		}
		// Either way, Validate answers as the full validator does.
		vs, err := v.Validate([]byte(tc.doc))
		x, derr := Decode([]byte(tc.doc))
		if (err != nil) != (derr != nil) || derr == nil && (len(vs) == 0) != (v.schema.Validate(x) == nil) {
			t.Errorf("%q: Validate %v, %v; decoded %v, full validator %v", tc.doc, vs, err, derr, v.schema.Validate(x))
		}
	}
	c, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Schema("orders#order.created#1").Validator().quick.validDoc(orderEvent) {
		t.Error("the quick check on bytes is not sure of a valid order")
	}
}

// A number written with a huge exponent is refused where it is, before
// either validator compares it with a bound (as a rational of a million
// digits: tens of milliseconds a number); 1e1000 is still read.
func TestHugeExponent(t *testing.T) {
	v, err := NewValidator([]byte(quickSchema))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		doc      string
		pointers []string
	}{
		{`{"id":"e_ab","n":1,"price":1e-999999}`, []string{"/price"}},
		{`{"id":"e_ab","n":1,"big":1E+1001,"inner":{"v":[2,-3e99999999999]}}`, []string{"/big", "/inner/v/1"}},
		{`{"id":"e_ab","n":1,"price":1e-1000}`, nil},
		{`{"id":"e_ab","n":1,"big":-1e1000}`, nil},
	} {
		vs, err := v.Validate([]byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		var pointers []string
		for _, v := range vs {
			pointers = append(pointers, v.Pointer)
			if tc.pointers != nil && !strings.Contains(v.Message, "exponent beyond ±1000") {
				t.Errorf("%s: %s", v.Pointer, v.Message)
			}
		}
		if strings.Join(pointers, " ") != strings.Join(tc.pointers, " ") {
			t.Errorf("%s: violations %v, want at %v", tc.doc, vs, tc.pointers)
		}
	}
}
