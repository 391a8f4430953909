package catalog

import (
	"encoding/json"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// quick is a schema compiled a second time, for the question ingest asks
// of almost every event: is it valid? It answers yes only when it is sure,
// walking the decoded document once without allocating; anything else —
// a violation, a number it cannot compare exactly, a keyword it does not
// know — is left to the full validator, which finds every violation and
// says where. So it never changes what is valid or what a producer is
// told, only how fast a valid event gets through (FuzzQuick holds it to
// the full validator; BenchmarkValidate measures both).
//
// It knows the keywords whp's CUE-to-JSON-Schema generation writes for
// closed and open structs, scalars, disjunctions of strings, bounds,
// lengths, patterns and lists. A schema with any other keyword has no
// quick check at all.
type quick struct {
	any        bool // the schema `true`
	types      uint8
	properties map[string]*quick
	required   []string
	additional *quick // nil: any other property is allowed
	closed     bool   // additionalProperties: false
	items      *quick
	enum       map[string]bool // string values only
	minLen     int
	maxLen     int // -1: none
	pattern    *regexp.Regexp
	minItems   int
	maxItems   int // -1: none
	bounds     []bound
}

// JSON types, as bits of quick.types (0: any type).
const (
	tNull uint8 = 1 << iota
	tBool
	tObject
	tArray
	tString
	tNumber
	tInteger
)

var typeBits = map[string]uint8{"null": tNull, "boolean": tBool, "object": tObject, "array": tArray,
	"string": tString, "number": tNumber, "integer": tInteger}

// bound is one of minimum, maximum, exclusiveMinimum, exclusiveMaximum.
type bound struct {
	lower, exclusive bool
	rat              *big.Rat
	i                int64 // rat, when isInt
	isInt            bool
}

// annotations are keywords that do not affect validity.
var annotations = map[string]bool{"$schema": true, "title": true, "description": true, "$comment": true,
	"default": true, "examples": true, "deprecated": true, "readOnly": true, "writeOnly": true}

// quickOf compiles a JSON Schema document, decoded with its numbers as
// json.Number (a bound such as 0.1 compared exactly, as the full validator
// compares it, not as the float64 nearest to it), for the quick check; nil
// when it uses a keyword the check does not know.
func quickOf(x any) *quick {
	switch s := x.(type) {
	case bool:
		if s {
			return &quick{any: true}
		}
		return nil // `false`: nothing is valid, for the full validator to say
	case map[string]any:
		q := &quick{maxLen: -1, maxItems: -1}
		for k, v := range s {
			if !q.set(k, v) {
				return nil
			}
		}
		return q
	}
	return nil
}

// set compiles one keyword; false if the check does not know it (or it is
// malformed, which the full validator reports).
func (q *quick) set(k string, v any) bool {
	if annotations[k] {
		return true
	}
	switch k {
	case "type":
		names, ok := v.([]any)
		if !ok {
			names = []any{v}
		}
		for _, n := range names {
			s, _ := n.(string)
			bit, ok := typeBits[s]
			if !ok {
				return false
			}
			q.types |= bit
		}
		return true
	case "properties":
		props, ok := v.(map[string]any)
		if !ok {
			return false
		}
		q.properties = make(map[string]*quick, len(props))
		for name, ps := range props {
			if q.properties[name] = quickOf(ps); q.properties[name] == nil {
				return false
			}
		}
		return true
	case "required":
		names, ok := v.([]any)
		for _, n := range names {
			s, isString := n.(string)
			if !isString {
				return false
			}
			q.required = append(q.required, s)
		}
		return ok
	case "additionalProperties":
		if b, ok := v.(bool); ok {
			q.closed = !b
			return true
		}
		q.additional = quickOf(v)
		return q.additional != nil
	case "items":
		q.items = quickOf(v)
		return q.items != nil
	case "enum", "const":
		values, ok := v.([]any)
		if k == "const" {
			values, ok = []any{v}, true
		}
		q.enum = map[string]bool{}
		for _, e := range values {
			s, isString := e.(string)
			if !isString {
				return false
			}
			q.enum[s] = true
		}
		return ok
	case "minLength", "maxLength", "minItems", "maxItems":
		n, _ := v.(json.Number)
		i, err := strconv.Atoi(string(n))
		if err != nil || i < 0 {
			return false
		}
		switch k {
		case "minLength":
			q.minLen = i
		case "maxLength":
			q.maxLen = i
		case "minItems":
			q.minItems = i
		default:
			q.maxItems = i
		}
		return true
	case "pattern":
		s, ok := v.(string)
		if !ok {
			return false
		}
		re, err := regexp.Compile(s) // the full validator's engine too
		q.pattern = re
		return err == nil
	case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
		n, _ := v.(json.Number)
		r, ok := new(big.Rat).SetString(string(n))
		if !ok {
			return false
		}
		b := bound{lower: k == "minimum" || k == "exclusiveMinimum", exclusive: strings.HasPrefix(k, "exclusive"), rat: r}
		if b.rat.IsInt() && b.rat.Num().IsInt64() {
			b.i, b.isInt = b.rat.Num().Int64(), true
		}
		q.bounds = append(q.bounds, b)
		return true
	}
	return false
}

// valid reports whether x (as Decode returns it) is surely valid.
func (q *quick) valid(x any) bool {
	if q.any {
		return true
	}
	switch v := x.(type) {
	case nil:
		return q.is(tNull) && q.enum == nil
	case bool:
		return q.is(tBool) && q.enum == nil
	case string:
		return q.is(tString) && q.validString(v)
	case json.Number:
		return q.validNumber(v)
	case map[string]any:
		return q.is(tObject) && q.enum == nil && q.validObject(v)
	case []any:
		if !q.is(tArray) || q.enum != nil || len(v) < q.minItems || (q.maxItems >= 0 && len(v) > q.maxItems) {
			return false
		}
		if q.items != nil {
			for _, e := range v {
				if !q.items.valid(e) {
					return false
				}
			}
		}
		return true
	}
	return false
}

func (q *quick) is(t uint8) bool { return q.types == 0 || q.types&t != 0 }

func (q *quick) validString(s string) bool {
	if q.enum != nil && !q.enum[s] {
		return false
	}
	if q.minLen > 0 || q.maxLen >= 0 {
		n := utf8.RuneCountInString(s)
		if n < q.minLen || (q.maxLen >= 0 && n > q.maxLen) {
			return false
		}
	}
	return q.pattern == nil || q.pattern.MatchString(s)
}

func (q *quick) validObject(m map[string]any) bool {
	for _, r := range q.required {
		if _, ok := m[r]; !ok {
			return false
		}
	}
	for k, v := range m {
		if ps, ok := q.properties[k]; ok {
			if !ps.valid(v) {
				return false
			}
			continue
		}
		if q.closed || (q.additional != nil && !q.additional.valid(v)) {
			return false
		}
	}
	return true
}

// validNumber is sure only of integer literals against integer bounds,
// and of other numbers it can read exactly.
func (q *quick) validNumber(n json.Number) bool {
	if q.enum != nil {
		return false
	}
	s := string(n)
	integral := !strings.ContainsAny(s, ".eE")
	if !(q.is(tNumber) || (integral && q.is(tInteger))) {
		return false // also a non-integral literal of an integer value (1.0): the full validator decides
	}
	if len(q.bounds) == 0 {
		return true
	}
	i, err := strconv.ParseInt(s, 10, 64)
	isInt := integral && err == nil
	var r *big.Rat
	for _, b := range q.bounds {
		var c int
		if isInt && b.isInt {
			c = cmpInt(i, b.i)
		} else {
			if r == nil {
				if hugeExponent(s) {
					return false // not read here: ValidateValue refuses it
				}
				var ok bool
				if r, ok = new(big.Rat).SetString(s); !ok {
					return false
				}
			}
			c = r.Cmp(b.rat)
		}
		switch {
		case b.lower && (c < 0 || (b.exclusive && c == 0)):
			return false
		case !b.lower && (c > 0 || (b.exclusive && c == 0)):
			return false
		}
	}
	return true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
