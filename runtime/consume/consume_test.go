package consume

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRewind: records consumed but not committed are consumed again after
// Rewind, starting at the first record of each partition.
func TestRewind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "wh.ingress.a.b"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.DisableAutoCommit()}, GroupOptions("g", "wh.ingress.")...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 5 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "wh.ingress.a.b", Value: []byte{byte('0' + i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var first []*kgo.Record
	for len(first) < 5 {
		first = append(first, cl.PollFetches(ctx).Records()...)
		cl.AllowRebalance()
	}
	Rewind(cl, first[2:]) // the batch from offset 2 failed
	var again []*kgo.Record
	for len(again) < 3 {
		again = append(again, cl.PollFetches(ctx).Records()...)
		cl.AllowRebalance()
	}
	if again[0].Offset != 2 || len(again) != 3 {
		t.Errorf("after rewind got offsets starting %d (%d records), want 3 records from offset 2", again[0].Offset, len(again))
	}
}

func TestPause(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Pause(ctx, time.Millisecond) {
		t.Error("Pause returned false with a live context")
	}
	cancel()
	if Pause(ctx, time.Hour) {
		t.Error("Pause returned true after cancel")
	}
}
