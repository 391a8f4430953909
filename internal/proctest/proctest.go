// Package proctest runs the whp binary as a child process, for the tests
// that kill and restart it (test/chaos, test/topology).
package proctest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Main builds cmd/whp once into a temporary directory, points *bin at it,
// runs the package's tests and removes the build. Call it from TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "whp-proctest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "whp")
	build := exec.Command("go", "build", "-o", *bin, "github.com/whp-dev/whp/cmd/whp")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "build whp:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// FreeAddr returns a 127.0.0.1 address no one listens on now, for a child
// process to listen on (and to listen on again after a restart).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitOK polls url until it answers 200, and fails t with the process's
// log (at logPath) if that takes more than a minute.
func WaitOK(t testing.TB, url, logPath string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s did not answer 200 in 60 s; its log:\n%s", url, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
