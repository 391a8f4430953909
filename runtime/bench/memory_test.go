package bench

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// procStatus's figures, from /proc/self/statm, are the kernel's VmRSS and
// RssAnon of /proc/self/status, read in the same instant (within the few
// pages the reads themselves move), and follow memory the process touches;
// the sampler's statm, kept open and read again, says the same.
func TestProcStatus(t *testing.T) {
	status := func() (rss, anon float64) {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Skip("no /proc here:", err) // procStatus reports !ok then, and the sampler falls back to getrusage
		}
		for line := range strings.Lines(string(b)) {
			name, value, _ := strings.Cut(line, ":")
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
			if err != nil {
				continue
			}
			switch name {
			case "VmRSS":
				rss = kb / 1024
			case "RssAnon":
				anon = kb / 1024
			}
		}
		return rss, anon
	}
	statm, err := os.Open("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	defer statm.Close()
	check := func(when string) float64 {
		t.Helper()
		rss, anon, ok := procStatus()
		if rss2, anon2, ok2 := readStatm(statm); !ok2 || math.Abs(rss-rss2) > 1 || math.Abs(anon-anon2) > 1 {
			t.Errorf("%s: the sampler's open statm, read again: %.1f MiB (anonymous %.1f), %v; opened anew: %.1f (%.1f)", when, rss2, anon2, ok2, rss, anon)
		}
		wantRSS, wantAnon := status()
		if !ok || math.Abs(rss-wantRSS) > 1 || math.Abs(anon-wantAnon) > 1 {
			t.Errorf("%s: procStatus = %.1f MiB (anonymous %.1f), %v; /proc/self/status: %.1f (%.1f)", when, rss, anon, ok, wantRSS, wantAnon)
		}
		return anon
	}
	before := check("at start")
	held := make([]byte, 64<<20)
	for i := range held {
		held[i] = byte(i)
	}
	if after := check("64 MiB touched"); after-before < 60 {
		t.Errorf("anonymous %.1f → %.1f MiB after touching 64", before, after)
	}
	_ = held[len(held)-1]
}
