package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"understudy/discovery/broker"
	"understudy/discovery/bus"
)

// A publish the broker would end the connection for (a wild card or $ topic,
// a payload over the packet limit) is refused by the client before it is
// sent, and one the broker's ACL refuses is dropped by the broker: either
// way the client stays on the bus. paho sends an unacknowledged QoS 1
// publish again on every reconnect, so before, one reply_to of "showctl/#"
// kept the coordinator off the bus until it was restarted.
func TestAPublishTheBrokerWouldRefuseNeverTakesTheClientOffTheBus(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Users: []broker.User{
		{Username: "inst", Password: "inst-pw", Publish: []string{"understudy/s/#"}, Subscribe: []string{"understudy/s/#"}},
		{Username: "watch", Password: "watch-pw", Subscribe: []string{"#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := "tcp://" + b.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	markers := make(chan string, 16)
	var disconnects atomic.Int32
	c := bus.New(bus.Options{
		URL: url, Topics: bus.Topics{Site: "s"}, Member: "coord", Interval: time.Second,
		Username: "inst", Password: "inst-pw",
		OnDisconnected: func(error) { disconnects.Add(1) },
	})
	c.Subscribe("understudy/s/marker", 1, func(m bus.Message) { markers <- string(m.Payload) })
	c.Connect()
	defer c.Close(false)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	ping := func(what string) {
		t.Helper()
		// The marker's subscription may still be on its way: send until it comes.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := c.Publish("understudy/s/marker", 1, false, []byte(what)); err != nil {
				t.Fatalf("marker %s: %v", what, err)
			}
			select {
			case got := <-markers:
				if got == what {
					return
				}
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("marker %s never came back", what)
			}
		}
	}
	ping("before")

	for _, tc := range []struct {
		topic   string
		payload []byte
		want    error
	}{
		{"showctl/#", []byte(`{}`), bus.ErrInvalid},
		{"understudy/s/reply/+", []byte(`{}`), bus.ErrInvalid},
		{"$SYS/broker/x", []byte(`{}`), bus.ErrInvalid},
		{"", []byte(`{}`), bus.ErrInvalid},
		{"understudy/s/reply/a\x00b", []byte(`{}`), bus.ErrInvalid},
		{"understudy/s/" + strings.Repeat("t", bus.MaxTopic), []byte(`{}`), bus.ErrInvalid},
		{"understudy/s/reply/big", make([]byte, bus.MaxPublish+1), bus.ErrTooLarge},
	} {
		if err := c.Publish(tc.topic, 1, false, tc.payload); !errors.Is(err, tc.want) {
			t.Errorf("Publish(%.40q, %d bytes): %v, want %v", tc.topic, len(tc.payload), err, tc.want)
		}
	}
	// Outside the account's ACL: the broker drops it, the connection stays.
	if err := c.Publish("lights/stage", 1, false, []byte("on")); err != nil {
		t.Errorf("a publish outside the ACL: %v", err)
	}
	// The largest payload that is allowed goes through the embedded broker.
	if err := c.Publish("understudy/s/reply/largest", 1, false, make([]byte, bus.MaxPublish)); err != nil {
		t.Errorf("the largest payload: %v", err)
	}
	ping("after")
	if n := disconnects.Load(); n != 0 || c.Conn() != 1 {
		t.Errorf("the client lost its connection %d times (connection number %d)", n, c.Conn())
	}
	if b.Oversized() != 0 {
		t.Errorf("the broker disconnected %d clients for oversized packets", b.Oversized())
	}
}
