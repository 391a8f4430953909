// Package dynalitetest starts dynalite — the npm package pinned in the
// repository's package.json, installed by `npm ci` — on a free 127.0.0.1
// port with its LevelDB data in a temporary directory, so tests talk to a
// real DynamoDB API endpoint.
package dynalitetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// root is the repository root, where node_modules is.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ignoreAborted is preloaded into dynalite's process. A client that dies
// mid-request — the topology and chaos tests SIGKILL roles while they
// work — aborts the request's stream, and dynalite's handler rethrows the
// stream's error ("aborted", ECONNRESET), which kills the process: every
// later call of every role then fails, as no real DynamoDB would. The
// request of a client gone is dropped instead; any other uncaught error
// still ends the process.
const ignoreAborted = `process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error('dynalite: a client went away mid-request; its request is dropped')
    return
  }
  console.error(err)
  process.exit(1)
})
`

// Start runs dynalite for the test and returns a client of it. Without
// node_modules (run `npm ci`), the test fails with that instruction.
func Start(t testing.TB) *dynamodb.Client {
	t.Helper()
	cli := filepath.Join(root(), "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("dynalite is not installed: run `npm ci` in the repository root (%v)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	preload := filepath.Join(t.TempDir(), "ignore-aborted.js")
	if err := os.WriteFile(preload, []byte(ignoreAborted), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "--require", preload, cli, "--port", fmt.Sprint(port), "--path", t.TempDir())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dynalite: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		// dynalite checks the form of a signature, not its key: these are
		// not credentials of anything.
		Credentials: credentials.NewStaticCredentialsProvider("dynalite", "dynalite", ""),
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.ListTables(context.Background(), &dynamodb.ListTablesInput{})
		if err == nil {
			return client
		}
		if time.Now().After(deadline) {
			t.Fatalf("dynalite at %s not ready: %v", endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
