package bus_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"understudy/discovery/bus"
)

// slowCleanup makes the clean-up of the connection old (once it ended) and
// a new connection under the same client ID meet as they may on a busy
// machine: the new one's CONNECT waits until the old one's clean-up has
// found it not taken over and is removing its subscriptions, which then
// takes hold. A new connection under another client ID does not wait.
type slowCleanup struct {
	mochi.HookBase
	old      *mochi.Client
	inWindow chan struct{}
	cleaned  chan struct{} // closed when the old connection's clean-up ends
	held     atomic.Bool
	hold     time.Duration
}

func (h *slowCleanup) ID() string { return "slow-cleanup" }

func (h *slowCleanup) Provides(b byte) bool {
	return b == mochi.OnUnsubscribed || b == mochi.OnConnect
}

func (h *slowCleanup) OnConnect(cl *mochi.Client, _ packets.Packet) error {
	if h.old != nil && cl != h.old && cl.ID == h.old.ID {
		select {
		case <-h.inWindow:
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}

func (h *slowCleanup) OnUnsubscribed(cl *mochi.Client, _ packets.Packet) {
	if cl == h.old && h.held.CompareAndSwap(false, true) {
		close(h.inWindow)
		time.Sleep(h.hold)
		time.AfterFunc(10*time.Millisecond, func() { close(h.cleaned) }) // after the step that follows this hook
	}
}

// An instance's connection ends while the broker is slow to clean it up,
// and the instance connects again at once. Under the same client ID the
// broker (mochi-mqtt 2.7.9) would take the new connection for the session
// of the old one, and the old one's late clean-up would remove the new one
// from its client table: connected, subscribed, and deaf (what a paused
// coordinator's process found on resuming, CI at a0e7f54). Each connection
// has a client ID of its own: the new one hears its heartbeats at once,
// with the deafness watchdog off.
func TestANewConnectionIsNotTakenForTheOldOne(t *testing.T) {
	srv, ln := startMochi(t)
	c := bus.New(bus.Options{
		URL: "tcp://" + ln.Addr().String(), Topics: bus.Topics{Site: "t"}, Member: "m",
		Interval: 50 * time.Millisecond, KeepAlive: time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	heard := make(chan bus.Heartbeat, 64)
	c.Subscribe(bus.Topics{Site: "t"}.Heartbeat("m"), 0, func(m bus.Message) {
		if hb, err := bus.DecodeHeartbeat("m", m.Payload); err == nil {
			select {
			case heard <- hb:
			default:
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.Connect()
	defer c.Close(false)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	go c.RunHeartbeats(ctx)
	first := waitHeartbeat(ctx, t, heard, 0)

	clients := srv.Clients.GetAll()
	if len(clients) != 1 {
		t.Fatalf("%d clients on the broker, want 1", len(clients))
	}
	var old *mochi.Client
	for _, cl := range clients {
		old = cl
	}
	slow := &slowCleanup{old: old, inWindow: make(chan struct{}), cleaned: make(chan struct{}), hold: 300 * time.Millisecond}
	if err := srv.AddHook(slow, nil); err != nil {
		t.Fatal(err)
	}
	old.Stop(packets.ErrServerShuttingDown) // the broker ends the connection
	select {
	case <-slow.cleaned:
	case <-ctx.Done():
		t.Fatal("the old connection was never cleaned up")
	}
	drain(heard)

	again := waitHeartbeat(ctx, t, heard, first.Conn)
	var ids []string
	for id := range srv.Clients.GetAll() {
		ids = append(ids, id)
	}
	t.Logf("heard connection %d again; the broker's clients: %v", again.Conn, ids)
}
