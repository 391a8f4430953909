package catalog

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
	"unsafe"
)

// validDoc is the quick check run on the document's bytes, before
// anything is decoded: it reports whether doc is one JSON value (RFC 8259,
// whitespace around it allowed) that is surely valid. A valid event then
// costs ingest no decoding at all — decoding into maps and strings was
// most of what validation cost (BenchmarkValidate). It is sure of no more
// than valid is, and of less: a string with an escape where its value is
// read (a property name, or a string the schema constrains), an object
// that names a property twice or has more than maxQuickKeys, a nesting
// deeper than maxQuickDepth — it leaves those to Decode and valid, and
// then to the full validator (FuzzQuickDoc holds it to both). The
// strings it reads (property names, values, number literals) point into
// doc and live only as long as the call: nothing it calls keeps them.
func (q *quick) validDoc(doc []byte) bool {
	s := scanner{b: doc}
	s.space()
	if !q.value(&s, 0) {
		return false
	}
	s.space()
	return s.i == len(s.b)
}

const (
	maxQuickDepth = 64
	maxQuickKeys  = 64
)

// scanner reads a JSON document from b at i.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value reads one value at s.i and reports whether it is well formed and
// surely valid against q (nil: any value, its syntax alone checked).
func (q *quick) value(s *scanner, depth int) bool {
	if depth > maxQuickDepth || s.i >= len(s.b) {
		return false
	}
	if q != nil && q.any {
		q = nil // the schema `true`: any value
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return (q == nil || q.is(tObject) && q.enum == nil) && q.object(s, depth)
	case c == '[':
		return (q == nil || q.is(tArray) && q.enum == nil) && q.array(s, depth)
	case c == '"':
		str, escaped, ok := s.string()
		if !ok {
			return false
		}
		if q == nil {
			return true
		}
		if !q.is(tString) {
			return false
		}
		if escaped {
			// Its value is not read here: sure only if the schema
			// does not look at it.
			return q.enum == nil && q.minLen <= 0 && q.maxLen < 0 && q.pattern == nil
		}
		return q.validString(unsafe.String(unsafe.SliceData(str), len(str)))
	case c == '-' || c >= '0' && c <= '9':
		lit, ok := s.number()
		if !ok {
			return false
		}
		return q == nil || q.validNumber(json.Number(lit))
	case c == 't':
		return s.literal("true") && (q == nil || q.is(tBool) && q.enum == nil)
	case c == 'f':
		return s.literal("false") && (q == nil || q.is(tBool) && q.enum == nil)
	case c == 'n':
		return s.literal("null") && (q == nil || q.is(tNull) && q.enum == nil)
	}
	return false
}

func (q *quick) object(s *scanner, depth int) bool {
	s.i++ // {
	var keys [maxQuickKeys][]byte
	n := 0
	var required uint64 // bit i: q.required[i] seen
	if q != nil && len(q.required) > 64 {
		return false
	}
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return q == nil || len(q.required) == 0
	}
	for {
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != '"' || n == maxQuickKeys {
			return false
		}
		key, escaped, ok := s.string()
		if !ok || escaped {
			return false
		}
		for _, k := range keys[:n] {
			if bytes.Equal(k, key) {
				return false // named twice: the decoded object keeps the last
			}
		}
		keys[n] = key
		n++
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		var vq *quick // nil: any value
		if q != nil {
			name := unsafe.String(unsafe.SliceData(key), len(key))
			if ps, ok := q.properties[name]; ok {
				vq = ps
			} else if q.closed {
				return false
			} else {
				vq = q.additional
			}
			for i, r := range q.required {
				if r == name {
					required |= 1 << i
				}
			}
		}
		if !vq.value(s, depth+1) {
			return false
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return q == nil || required == 1<<len(q.required)-1
		default:
			return false
		}
	}
}

func (q *quick) array(s *scanner, depth int) bool {
	s.i++ // [
	var items *quick
	if q != nil {
		items = q.items
	}
	n := 0
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
	} else {
		for {
			s.space()
			if !items.value(s, depth+1) {
				return false
			}
			n++
			s.space()
			if s.i >= len(s.b) {
				return false
			}
			if s.b[s.i] == ']' {
				s.i++
				break
			}
			if s.b[s.i] != ',' {
				return false
			}
			s.i++
		}
	}
	return q == nil || n >= q.minItems && (q.maxItems < 0 || n <= q.maxItems)
}

// string reads a string at s.i (its opening quote) and returns its bytes
// between the quotes, whether it has an escape, and whether it is well
// formed: its escapes RFC 8259's, no control character, valid UTF-8.
func (s *scanner) string() (str []byte, escaped, ok bool) {
	start := s.i + 1
	ascii := true
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			str = s.b[start:i]
			return str, escaped, ascii || utf8.Valid(str)
		case c == '\\':
			escaped = true
			if i+1 >= len(s.b) {
				return nil, false, false
			}
			i++
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				i += 4
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false, false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// number reads a number at s.i, as RFC 8259 writes one, and returns its
// literal.
func (s *scanner) number() (string, bool) {
	start, b := s.i, s.b
	i := s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return "", false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return "", false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return "", false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	s.i = i
	return unsafe.String(unsafe.SliceData(b[start:i]), i-start), true
}

func (s *scanner) literal(word string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	return true
}
