package dynalitetest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// TestClientGoneMidRequest: a client that dies halfway through sending
// a request — as a role SIGKILLed by the topology test does — does not
// take dynalite down with it: the next call is answered.
func TestClientGoneMidRequest(t *testing.T) {
	db := Start(t)
	u, err := url.Parse(*db.Options().BaseEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{\"Limit\":", u.Host)
		time.Sleep(50 * time.Millisecond) // the server is reading the body
		c.(*net.TCPConn).SetLinger(0)     // a reset, as from a killed process
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("after clients went away mid-request: %v", err)
	}
}
