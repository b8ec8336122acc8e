package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"understudy/discovery/broker"
	"understudy/discovery/bus"
)

// A subscription sent while the retained messages of the one before are
// still in flight to the client gets "packet identifier in use" (0x91) from
// the embedded broker whenever the ids meet; it must be sent again, not
// silently lost. Each round subscribes to the many retained messages and then
// to a second filter, which must then deliver.
func TestASubscriptionRefusedWhileRetainedMessagesAreInFlightIsRetried(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := "tcp://" + b.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := bus.Observe(ctx, url, "publisher", []string{"unused"}, func(bus.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 300 {
		if err := pub.Publish(fmt.Sprintf("retained/%d", i), true, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 10 {
		live := make(chan struct{}, 1)
		obs, err := bus.Observe(ctx, url, fmt.Sprintf("observer-%d", round), []string{"retained/#", "live"}, func(m bus.Message) {
			if m.Topic == "live" {
				select {
				case live <- struct{}{}:
				default:
				}
			}
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := pub.Publish("live", false, []byte("y")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-live:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the second subscription delivers nothing", round)
		}
		obs.Close()
	}
}
