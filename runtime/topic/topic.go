// Package topic names the platform's Kafka topics. The names are part of
// the public contract (DESIGN.md): infra/ and the runtime must agree.
package topic

import "strings"

// Prefixes of each kind of topic; consumers subscribe by these.
const (
	IngressPrefix = "wh.ingress."
	EgressPrefix  = "wh.egress."
	RetryPrefix   = "wh.retry."
	DLQPrefix     = "wh.dlq."
)

// Ingress carries every accepted event of one domain and event name, all
// versions together (the version is in the record): wh.ingress.{domain}.{event}.
func Ingress(domain, event string) string { return IngressPrefix + domain + "." + event }

// Egress carries one partner's deliveries of one event: wh.egress.{partner}.{event}.
func Egress(partner, event string) string { return EgressPrefix + partner + "." + event }

// Retry carries deliveries of one event waiting for a later attempt: wh.retry.{event}.
func Retry(event string) string { return RetryPrefix + event }

// DLQ carries deliveries of one event that failed for good: wh.dlq.{event}.
func DLQ(event string) string { return DLQPrefix + event }

// EgressPartner is the partner of an egress topic name, and whether name
// is one. Partner ids have no dots (the catalog's #PartnerID), so the
// partner is what lies between the prefix and the next dot.
func EgressPartner(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, EgressPrefix)
	if !ok {
		return "", false
	}
	partner, _, ok := strings.Cut(rest, ".")
	if !ok || partner == "" {
		return "", false
	}
	return partner, true
}
