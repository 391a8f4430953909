package envelope

import (
	"bytes"
	"time"
	"unicode/utf8"

	"github.com/whp-dev/whp/internal/fastjson"
)

// ParseDelivery decodes a delivery record's value — what Delivery.JSON
// wrote — as json.Unmarshal would, but with its Body a slice of value,
// not a copy: the dispatcher decodes every egress and retry record, only
// to send the body on. BenchmarkParseDelivery: 1,160 → 560 ns at 1 KiB,
// 141 → 6 µs at 256 KiB, and the body's bytes no longer allocated again
// (1.5 KB, 271 KB a delivery). value must then not change while the
// delivery is in use (a kgo record's value does not).
//
// The layout AppendJSON writes is read directly: its fields in their
// order, strings without escapes, the body — JSON the processor built —
// delimited by its braces rather than decoded. Anything else
// (a record of a version that wrote it with json.Marshal, a string with an
// escape, a field this version does not know) is decoded by fastjson, as
// it was before: FuzzParseDelivery holds the two to the same answers.
func ParseDelivery(value []byte) (Delivery, error) {
	if d, ok := parseDelivery(value); ok {
		return d, nil
	}
	var d Delivery
	err := fastjson.Unmarshal(value, &d)
	return d, err
}

// parseDelivery reads AppendJSON's layout, ok false where value is not in
// it.
func parseDelivery(value []byte) (d Delivery, ok bool) {
	p := layout{b: value}
	p.str(`{"id":`, &d.ID)
	p.str(`,"event_id":`, &d.EventID)
	p.str(`,"subscription_id":`, &d.SubscriptionID)
	p.str(`,"partner_id":`, &d.PartnerID)
	p.str(`,"schema_id":`, &d.SchemaID)
	p.str(`,"event":`, &d.Event)
	if p.at(`,"replay":`) {
		p.str(`,"replay":`, &d.Replay)
	}
	if p.at(`,"key":`) {
		p.str(`,"key":`, &d.Key)
	}
	p.time(`,"accepted_at":`, &d.AcceptedAt)
	p.time(`,"created_at":`, &d.CreatedAt)
	if !p.lit(`,"body":`) {
		return Delivery{}, false
	}
	// The body: an object (a Payload) whose end is found by its braces,
	// outside its strings — not validated, which the processor that built
	// it did.
	n := objectLen(p.b[p.i:])
	if n < 0 {
		return Delivery{}, false
	}
	d.Body = p.b[p.i : p.i+n : p.i+n]
	p.i += n
	if p.at(`,"resume":true`) {
		p.lit(`,"resume":true`)
		d.Resume = true
	}
	if p.at(`,"trace":`) {
		p.str(`,"trace":`, &d.Trace)
	}
	if !p.lit("}") || p.i != len(p.b) {
		return Delivery{}, false
	}
	return d, true
}

// objectLen is the length of the JSON object b starts with (-1: b does
// not start with one, or it does not end): its braces counted outside its
// strings. A string is crossed in one search for its closing quote (a
// quote after an odd run of backslashes is escaped): the bodies are
// mostly strings.
func objectLen(b []byte) int {
	if len(b) == 0 || b[0] != '{' {
		return -1
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return -1
				}
				i += j + 1
				k := i - 1
				for k >= 0 && b[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// layout reads b from i on; bad is set at the first thing that is not
// where AppendJSON puts it, after which every read does nothing.
type layout struct {
	b   []byte
	i   int
	bad bool
}

func (p *layout) at(lit string) bool { return !p.bad && bytes.HasPrefix(p.b[p.i:], []byte(lit)) }

func (p *layout) lit(lit string) bool {
	if !p.at(lit) {
		p.bad = true
		return false
	}
	p.i += len(lit)
	return true
}

// quoted reads a string without escapes after lit.
func (p *layout) quoted(lit string) []byte {
	if !p.lit(lit) || p.i >= len(p.b) || p.b[p.i] != '"' {
		p.bad = true
		return nil
	}
	n := bytes.IndexByte(p.b[p.i+1:], '"')
	if n < 0 {
		p.bad = true
		return nil
	}
	v := p.b[p.i+1 : p.i+1+n]
	if bytes.IndexByte(v, '\\') >= 0 || !validString(v) {
		p.bad = true
		return nil
	}
	p.i += n + 2
	return v
}

func (p *layout) str(lit string, into *string) {
	if v := p.quoted(lit); !p.bad {
		*into = string(v)
	}
}

func (p *layout) time(lit string, into *time.Time) {
	v := p.quoted(lit)
	if p.bad {
		return
	}
	// Its quotes too: read as time.Time reads itself from JSON.
	if err := into.UnmarshalJSON(p.b[p.i-len(v)-2 : p.i]); err != nil {
		p.bad = true
	}
}

// validString is whether v, read between quotes, is a string json.Unmarshal
// takes as it is: valid UTF-8 without control characters (which JSON
// does not allow unescaped).
func validString(v []byte) bool {
	for _, c := range v {
		if c < 0x20 {
			return false
		}
	}
	return utf8.Valid(v)
}
