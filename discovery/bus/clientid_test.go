package bus_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"understudy/discovery/bus"
	"understudy/fixtures/mochirace"
)

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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	heard := hearItself(ctx, t, c)
	first := waitHeartbeat(ctx, t, heard, 0)

	clients := srv.Clients.GetAll()
	if len(clients) != 1 {
		t.Fatalf("%d clients on the broker, want 1", len(clients))
	}
	var old *mochi.Client
	for _, cl := range clients {
		old = cl
	}
	slow := mochirace.New(old, 300*time.Millisecond)
	if err := srv.AddHook(slow, nil); err != nil {
		t.Fatal(err)
	}
	old.Stop(packets.ErrServerShuttingDown) // the broker ends the connection
	select {
	case <-slow.Cleaned():
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
