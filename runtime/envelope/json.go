package envelope

import (
	"slices"
	"time"
	"unicode/utf8"
)

// The records below are encoded on every event's hot path — once at
// ingest, once per delivery in the processor — and each carries a body
// (json.RawMessage). json.Marshal passes over every RawMessage a second
// time to compact it, and reaches each field through reflection; these
// AppendJSON methods write the same JSON (TestAppendJSONMatchesMarshal
// compares them field by field, for every field, with hostile strings)
// and copy the body as it is. The bodies are JSON already checked where
// they came in: the producer's data by ingest's decoder, a delivery's
// body by the processor that built it. A producer's whitespace inside
// data is therefore kept byte for byte rather than compacted away.

// overhead bounds what a record adds around its body, so one allocation
// usually holds the whole encoding.
const overhead = 512

// JSON is e's JSON encoding.
func (e Event) JSON() []byte { return e.AppendJSON(make([]byte, 0, len(e.Data)+overhead)) }

// JSON is d's JSON encoding.
func (d Delivery) JSON() []byte { return d.AppendJSON(make([]byte, 0, len(d.Body)+overhead)) }

// JSON is p's JSON encoding.
func (p Payload) JSON() []byte { return p.AppendJSON(make([]byte, 0, len(p.Data)+overhead)) }

// AppendJSON appends the JSON encoding of e to dst.
func (e Event) AppendJSON(dst []byte) []byte {
	dst = appendField(dst, '{', "id", e.ID)
	dst = appendField(dst, ',', "domain", e.Domain)
	dst = appendField(dst, ',', "event", e.Event)
	dst = appendField(dst, ',', "version", e.Version)
	if e.Key != "" {
		dst = appendField(dst, ',', "key", e.Key)
	}
	if e.IdempotencyKey != "" {
		dst = appendField(dst, ',', "idempotency_key", e.IdempotencyKey)
	}
	dst = appendTime(append(dst, `,"accepted_at":`...), e.AcceptedAt)
	dst = appendRaw(append(dst, `,"data":`...), e.Data)
	return append(dst, '}')
}

// AppendJSON appends the JSON encoding of d to dst.
func (d Delivery) AppendJSON(dst []byte) []byte {
	dst = appendField(dst, '{', "id", d.ID)
	dst = appendField(dst, ',', "event_id", d.EventID)
	dst = appendField(dst, ',', "subscription_id", d.SubscriptionID)
	dst = appendField(dst, ',', "partner_id", d.PartnerID)
	dst = appendField(dst, ',', "schema_id", d.SchemaID)
	dst = appendField(dst, ',', "event", d.Event)
	if d.Replay != "" {
		dst = appendField(dst, ',', "replay", d.Replay)
	}
	if d.Key != "" {
		dst = appendField(dst, ',', "key", d.Key)
	}
	dst = appendTime(append(dst, `,"accepted_at":`...), d.AcceptedAt)
	dst = appendTime(append(dst, `,"created_at":`...), d.CreatedAt)
	dst = appendRaw(append(dst, `,"body":`...), d.Body)
	if d.Resume {
		dst = append(dst, `,"resume":true`...)
	}
	if d.Trace != "" {
		dst = appendField(dst, ',', "trace", d.Trace)
	}
	return append(dst, '}')
}

// AppendJSON appends the JSON encoding of p to dst.
func (p Payload) AppendJSON(dst []byte) []byte {
	dst = appendField(dst, '{', "id", p.ID)
	dst = appendField(dst, ',', "type", p.Type)
	dst = appendField(dst, ',', "domain", p.Domain)
	dst = appendField(dst, ',', "version", p.Version)
	dst = appendTime(append(dst, `,"timestamp":`...), p.Timestamp)
	dst = appendRaw(append(dst, `,"data":`...), p.Data)
	dst = p.Partner.appendJSON(append(dst, `,"partner":`...))
	dst = p.Subscription.appendJSON(append(dst, `,"subscription":`...))
	return append(dst, '}')
}

func (p Party) appendJSON(dst []byte) []byte {
	dst = appendField(dst, '{', "id", p.ID)
	if p.Name != "" {
		dst = appendField(dst, ',', "name", p.Name)
	}
	if len(p.Metadata) > 0 {
		dst = append(dst, `,"metadata":`...)
		keys := make([]string, 0, len(p.Metadata))
		for k := range p.Metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys) // as encoding/json orders a map's keys
		for i, k := range keys {
			sep := byte(',')
			if i == 0 {
				sep = '{'
			}
			dst = appendField(dst, sep, k, p.Metadata[k])
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendField appends sep, then "name":"value".
func appendField(dst []byte, sep byte, name, value string) []byte {
	dst = appendString(append(dst, sep), name)
	return appendString(append(dst, ':'), value)
}

// appendRaw appends JSON that is known to be valid; nil is null, as
// encoding/json writes a nil json.RawMessage.
func appendRaw(dst, raw []byte) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, raw...)
}

// appendTime appends t as time.Time.MarshalJSON does (RFC 3339 with
// nanoseconds, quoted).
func appendTime(dst []byte, t time.Time) []byte {
	return append(t.AppendFormat(append(dst, '"'), time.RFC3339Nano), '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped exactly as
// encoding/json escapes it: quotes, backslashes and control characters;
// <, > and & (HTML-safe); U+2028 and U+2029; invalid UTF-8 as U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(append(dst, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(append(dst, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(dst, s[start:]...), '"')
}
