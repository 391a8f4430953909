package embedkafka

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkAfterIdle measures what one durable write to the embedded
// cluster costs (a record produced with acks=all and no linger, as ingest
// writes an event before its 202) when the process was busy just before
// and when it was idle for a while: the light-load latency of whp bench's
// latency phase below 200 events a second (docs/benchmarks.md "Latency
// under load"). Its baseline, in the same run, is a one-byte round trip
// between two goroutines over a loopback TCP connection — the least an
// exchange between two threads costs on the machine after the same
// pause. ns/exchange is the write or the round trip alone; ns/op counts
// the pause too, so that the default -benchtime runs ≈ 20 of them a
// second, not thousands.
//
//	go test -run '^$' -bench AfterIdle -benchtime 5s ./runtime/embedkafka
func BenchmarkAfterIdle(b *testing.B) {
	c, err := Start(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.ingressAdm.CreateTopics(ctx, 1, 1, nil, "idle"); err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(append(ClientOpts(), kgo.SeedBrokers(c.Ingress.ListenAddrs()...),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, 1024)
	produce := func() {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "idle", Value: value}).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	produce() // connected, metadata loaded

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, conn) // echo
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	one := make([]byte, 1)
	roundTrip := func() {
		if _, err := conn.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, one); err != nil {
			b.Fatal(err)
		}
	}

	for _, idle := range []time.Duration{0, 50 * time.Millisecond} {
		for _, op := range []struct {
			name string
			do   func()
		}{{"loopback", roundTrip}, {"produce", produce}} {
			b.Run(op.name+"/idle="+strconv.Itoa(int(idle.Milliseconds()))+"ms", func(b *testing.B) {
				var spent time.Duration
				for b.Loop() {
					time.Sleep(idle)
					start := time.Now()
					op.do()
					spent += time.Since(start)
				}
				b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N), "ns/exchange")
			})
		}
	}
}
