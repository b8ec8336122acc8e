package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"understudy/discovery/broker"
	"understudy/discovery/bus"
)

// Probe publishes the instance's heartbeat out of turn and says which: it
// comes back over the instance's own subscription with that boot,
// connection and sequence number. Out of turn or on the timer, the
// heartbeats go out in the order of their numbers (receivers drop an older
// one after a newer as a replay). While disconnected nothing is sent.
func TestProbeIsAHeartbeatThatComesBack(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics := bus.Topics{Site: "s"}
	c := bus.New(bus.Options{URL: "tcp://" + b.Addr(), Topics: topics, Member: "coord", Interval: time.Millisecond})
	if _, ok := c.Probe(); ok {
		t.Fatal("Probe before the connection: sent")
	}
	beats := make(chan bus.Heartbeat, 4096)
	c.Subscribe(topics.Heartbeat("coord"), 0, func(m bus.Message) {
		hb, err := bus.DecodeHeartbeat("coord", m.Payload)
		if err != nil {
			t.Errorf("own heartbeat: %v", err)
		}
		beats <- hb
	})
	c.Connect()
	defer c.Close(false)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	// The subscription may still be on its way: probe until one comes back.
	var sent bus.Heartbeat
	for back := false; !back; {
		var ok bool
		if sent, ok = c.Probe(); !ok {
			t.Fatal("Probe while connected: not sent")
		}
		if sent.Boot != c.Boot() || sent.Conn != c.Conn() || sent.Member != "coord" {
			t.Fatalf("probe %+v (boot %s, conn %d)", sent, c.Boot(), c.Conn())
		}
		select {
		case hb := <-beats:
			back = hb == sent
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no probe came back")
		}
	}

	// Probes among the timer's heartbeats (every millisecond).
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.RunHeartbeats(hctx) })
	var last bus.Heartbeat
	for range 200 {
		if last, _ = c.Probe(); last.Seq == 0 {
			t.Fatal("Probe while connected: not sent")
		}
	}
	stop()
	wg.Wait()
	prev := sent.Seq
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			last, _ = c.Probe() // QoS 0: the last may have been dropped
		case hb := <-beats:
			if hb.Seq <= prev {
				t.Fatalf("heartbeat %d after %d", hb.Seq, prev)
			}
			prev = hb.Seq
			if hb.Seq >= last.Seq {
				return
			}
		case <-ctx.Done():
			t.Fatalf("the last probe (%d) never came back; last heard %d", last.Seq, prev)
		}
	}
}
