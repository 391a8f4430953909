// Package ssrf keeps deliveries from reaching what partners must not make
// whp reach: the platform's own network, cloud metadata endpoints and
// other non-public addresses. The check runs at dial time on the address
// the name resolved to, so a DNS answer that changes between a check and
// the connection (rebinding) cannot slip through.
package ssrf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrRefused is wrapped by every refusal.
var ErrRefused = errors.New("refused by the SSRF guard")

// Guard decides which destinations deliveries may reach. The zero value is
// the production policy: https only, public unicast addresses only.
type Guard struct {
	// AllowLoopback admits loopback addresses (127.0.0.0/8, ::1); for
	// `whp dev` and its demo partner only.
	AllowLoopback bool
	// AllowHTTP admits http:// URLs; dev mode only.
	AllowHTTP bool
	// Allow lists prefixes admitted even though they are not public (a
	// partner reached over a peering link, say). Checked first.
	Allow []netip.Prefix
}

// nonPublic are ranges that are not public unicast beyond what netip's
// predicates cover (loopback, private, link-local, multicast, unspecified).
var nonPublic = mustPrefixes(
	"0.0.0.0/8",       // "this network"
	"100.64.0.0/10",   // carrier-grade NAT
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"240.0.0.0/4",     // reserved, and the broadcast address
	"100::/64",        // discard
	"2001:db8::/32",   // documentation
	"fc00::/7",        // unique local (ULA)
	"64:ff9b:1::/48",  // local-use NAT64
	"2001::/32",       // Teredo (tunnels to IPv4)
	"2002::/16",       // 6to4 (embeds IPv4)
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// nat64 embeds an IPv4 address in its last 32 bits.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// CheckIP returns nil for an address deliveries may reach.
func (g *Guard) CheckIP(ip netip.Addr) error {
	ip = ip.Unmap() // ::ffff:10.0.0.1 is 10.0.0.1
	for _, p := range g.Allow {
		if p.Contains(ip) {
			return nil
		}
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		return g.CheckIP(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	why := ""
	switch {
	case !ip.IsValid():
		why = "not an IP address"
	case ip.IsLoopback():
		if g.AllowLoopback {
			return nil
		}
		why = "a loopback address"
	case ip.IsUnspecified():
		why = "the unspecified address"
	case ip.IsPrivate():
		why = "a private address"
	case ip.IsLinkLocalUnicast():
		why = "a link-local address (cloud metadata endpoints live here)"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		why = "a multicast address"
	default:
		for _, p := range nonPublic {
			if p.Contains(ip) {
				why = "in the reserved range " + p.String()
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: %s is %s", ErrRefused, ip, why)
}

// CheckURL checks what can be known before dialing: the scheme, and the
// host when it is a literal address.
func (g *Guard) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: invalid URL", ErrRefused)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !g.AllowHTTP {
			return fmt.Errorf("%w: only https:// URLs are delivered to", ErrRefused)
		}
	default:
		return fmt.Errorf("%w: scheme %q is not https", ErrRefused, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: credentials in the URL are not allowed", ErrRefused)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return g.CheckIP(ip)
	}
	return nil
}

// Control is a net.Dialer Control function: it runs after name
// resolution, on the very address about to be connected to.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dial address %q", ErrRefused, address)
	}
	return g.CheckIP(ap.Addr())
}

// DialContext dials through a net.Dialer whose Control is the guard.
func (g *Guard) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := *d
	guarded.Control = g.Control
	return guarded.DialContext
}
