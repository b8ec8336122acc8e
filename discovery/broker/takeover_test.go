package broker

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"understudy/fixtures/mochirace"
	"understudy/fixtures/mqtttest"
)

// A show-control client reconnects under its client ID while the broker
// is slow to clean up its old connection: mochi-mqtt would leave the new
// connection without its entry in the client table, connected and deaf.
// The broker puts it back, and says so; it then receives what is
// published.
func TestAClientThatReconnectsUnderItsIDIsNotLeftDeaf(t *testing.T) {
	b := start(t, Options{})
	first := connect(t, b, "showctl", mqtttest.Options{})
	mqtttest.Subscribe(t, first, "venue/#")
	old, ok := b.server.Clients.Get("showctl")
	if !ok {
		t.Fatal("the first connection is not in the client table")
	}
	slow := mochirace.New(old, 300*time.Millisecond)
	if err := b.server.AddHook(slow, nil); err != nil {
		t.Fatal(err)
	}
	old.Stop(packets.ErrServerShuttingDown) // the broker ends it; the client connects again at once
	again := connect(t, b, "showctl", mqtttest.Options{})
	ch := mqtttest.Subscribe(t, again, "venue/#")
	select {
	case <-slow.Cleaned():
	case <-time.After(deadline):
		t.Fatal("the old connection was never cleaned up")
	}

	pub := connect(t, b, "panel", mqtttest.Options{})
	end := time.Now().Add(deadline)
	for n := 0; ; n++ {
		mqtttest.Publish(t, pub, "venue/state", "on", false)
		select {
		case <-ch:
			t.Logf("received after %d publishes; repaired %d", n+1, b.repairs())
			if b.repairs() == 0 {
				t.Error("received, but no repair was counted: the race did not happen")
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(end) {
			t.Fatalf("the reconnected client received nothing within %v", deadline)
		}
	}
}
