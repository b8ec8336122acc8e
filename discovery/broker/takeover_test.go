package broker

import (
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"understudy/fixtures/mqtttest"
)

// slowCleanup makes the clean-up of the connection old (once it ended) and
// a new connection under the same client ID meet as they may on a busy
// machine: the new one's CONNECT waits until the old one's clean-up has
// found it not taken over and is removing its subscriptions, which then
// takes hold.
type slowCleanup struct {
	mqtt.HookBase
	old      atomic.Pointer[mqtt.Client]
	inWindow chan struct{}
	cleaned  chan struct{} // closed once the old one's clean-up is over
	held     atomic.Bool
	hold     time.Duration
}

func (h *slowCleanup) ID() string { return "slow-cleanup" }

func (h *slowCleanup) Provides(b byte) bool {
	return b == mqtt.OnUnsubscribed || b == mqtt.OnConnect
}

func (h *slowCleanup) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if old := h.old.Load(); old != nil && cl != old && cl.ID == old.ID {
		select {
		case <-h.inWindow:
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}

func (h *slowCleanup) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if cl == h.old.Load() && h.held.CompareAndSwap(false, true) {
		close(h.inWindow)
		time.Sleep(h.hold)
		time.AfterFunc(10*time.Millisecond, func() { close(h.cleaned) }) // after the step that follows this hook
	}
}

// A show-control client reconnects under its client ID while the broker
// is slow to clean up its old connection: mochi-mqtt would leave the new
// connection without its entry in the client table, connected and deaf.
// The broker puts it back, and says so; it then receives what is
// published.
func TestAClientThatReconnectsUnderItsIDIsNotLeftDeaf(t *testing.T) {
	b := start(t, Options{})
	slow := &slowCleanup{inWindow: make(chan struct{}), cleaned: make(chan struct{}), hold: 300 * time.Millisecond}
	if err := b.server.AddHook(slow, nil); err != nil {
		t.Fatal(err)
	}
	first := connect(t, b, "showctl", mqtttest.Options{})
	mqtttest.Subscribe(t, first, "venue/#")
	old, ok := b.server.Clients.Get("showctl")
	if !ok {
		t.Fatal("the first connection is not in the client table")
	}
	slow.old.Store(old)
	old.Stop(packets.ErrServerShuttingDown) // the broker ends it; the client connects again at once
	again := connect(t, b, "showctl", mqtttest.Options{})
	ch := mqtttest.Subscribe(t, again, "venue/#")
	select {
	case <-slow.cleaned:
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
