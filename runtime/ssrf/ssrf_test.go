package ssrf

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestCheckIP(t *testing.T) {
	prod := &Guard{}
	dev := &Guard{AllowLoopback: true}
	allow := &Guard{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	for _, tc := range []struct {
		ip        string
		prod, dev bool // allowed?
	}{
		{"93.184.216.34", true, true},
		{"2606:4700:4700::1111", true, true},
		{"127.0.0.1", false, true},
		{"127.9.9.9", false, true},
		{"::1", false, true},
		{"10.0.0.5", false, false},
		{"172.16.3.4", false, false},
		{"192.168.1.1", false, false},
		{"169.254.169.254", false, false}, // cloud metadata
		{"fe80::1", false, false},
		{"100.64.0.1", false, false}, // CGNAT
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"fd00::1", false, false},         // ULA
		{"::ffff:10.0.0.1", false, false}, // IPv4-mapped private
		{"::ffff:169.254.169.254", false, false},
		{"::ffff:127.0.0.1", false, true},  // IPv4-mapped loopback
		{"64:ff9b::a00:1", false, false},   // NAT64 of 10.0.0.1
		{"64:ff9b::5db8:d822", true, true}, // NAT64 of a public address
		{"255.255.255.255", false, false},
		{"198.18.0.1", false, false},
		{"2001:db8::1", false, false},
	} {
		ip := netip.MustParseAddr(tc.ip)
		if got := prod.CheckIP(ip) == nil; got != tc.prod {
			t.Errorf("production CheckIP(%s) allowed = %v, want %v", tc.ip, got, tc.prod)
		}
		if got := dev.CheckIP(ip) == nil; got != tc.dev {
			t.Errorf("dev CheckIP(%s) allowed = %v, want %v", tc.ip, got, tc.dev)
		}
	}
	if err := allow.CheckIP(netip.MustParseAddr("10.20.1.1")); err != nil {
		t.Errorf("allowlisted address refused: %v", err)
	}
	if err := allow.CheckIP(netip.MustParseAddr("10.21.1.1")); err == nil {
		t.Error("address outside the allowlist admitted")
	}
	err := prod.CheckIP(netip.MustParseAddr("169.254.169.254"))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "link-local") {
		t.Errorf("refusal does not explain itself: %v", err)
	}
}

func TestCheckURL(t *testing.T) {
	prod := &Guard{}
	dev := &Guard{AllowLoopback: true, AllowHTTP: true}
	for _, tc := range []struct {
		url       string
		prod, dev bool
	}{
		{"https://hooks.example.com/x", true, true},
		{"http://hooks.example.com/x", false, true},
		{"ftp://hooks.example.com/x", false, false},
		{"https://user:pw@hooks.example.com/x", false, false},
		{"https://10.0.0.1/x", false, false},
		{"https://[::1]:8443/x", false, true},
		{"http://127.0.0.1:8080/demo", false, true},
		{"https:///nohost", false, false},
	} {
		if got := prod.CheckURL(tc.url) == nil; got != tc.prod {
			t.Errorf("production CheckURL(%s) = %v, want %v", tc.url, got, tc.prod)
		}
		if got := dev.CheckURL(tc.url) == nil; got != tc.dev {
			t.Errorf("dev CheckURL(%s) = %v, want %v", tc.url, got, tc.dev)
		}
	}
}

// TestDialTimeCheck: a name that resolves to a refused address is refused
// when dialing, whatever the URL said — the DNS rebinding case.
func TestDialTimeCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	g := &Guard{AllowHTTP: true}
	// "localhost" passes CheckURL (it is a name), and resolves to loopback.
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	if err := g.CheckURL(url); err != nil {
		t.Fatalf("CheckURL(%s) = %v; a name is checked at dial time", url, err)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: g.DialContext(&net.Dialer{Timeout: time.Second})}}
	_, err := client.Get(url)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("GET %s = %v, want a refusal at dial time", url, err)
	}
	dev := &Guard{AllowHTTP: true, AllowLoopback: true}
	client = &http.Client{Transport: &http.Transport{DialContext: dev.DialContext(&net.Dialer{Timeout: time.Second})}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("dev guard refused loopback: %v", err)
	}
	resp.Body.Close()
}
