package bus_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"understudy/discovery/bus"
)

// syncBuffer is a log sink the client's goroutines write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// allowAll lets every client in and every topic through.
type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }

func (h *allowAll) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

func (h *allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// startMochi serves a mochi-mqtt broker that lets every client in, on
// loopback, until the test ends.
func startMochi(t *testing.T) (*mochi.Server, net.Listener) {
	t.Helper()
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, ln
}

// A broker that loses a connected client from its table (as the
// embedded broker did when a new connection under the same client ID raced
// the clean-up of the old one; see TestANewConnectionIsNotTakenForTheOldOne) still takes what the client publishes but
// delivers it nothing. The client notices that even its own heartbeats
// stopped coming back and makes a new connection, with a new number: it
// hears itself again.
func TestADeafConnectionIsMadeAgain(t *testing.T) {
	srv, ln := startMochi(t)

	var logs syncBuffer
	c := bus.New(bus.Options{
		URL: "tcp://" + ln.Addr().String(), Topics: bus.Topics{Site: "t"}, Member: "m",
		// Its pings are answered: the keep-alive is not what finds it.
		Interval: 50 * time.Millisecond, KeepAlive: 30 * time.Second, DeafAfter: 400 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	heard := hearItself(ctx, t, c)
	first := waitHeartbeat(ctx, t, heard, 0)

	// The broker forgets the client; its connection stays open.
	id := ""
	for _, cl := range srv.Clients.GetAll() {
		id = cl.ID
	}
	srv.Clients.Delete(id)
	drain(heard)

	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	again := waitHeartbeat(ctx, t, heard, first.Conn)
	if again.Conn <= first.Conn {
		t.Errorf("heard again on connection %d, want a new one after %d", again.Conn, first.Conn)
	}
	if !strings.Contains(logs.String(), "nothing arrives") {
		t.Errorf("the log does not say why the connection was made again:\n%s", logs.String())
	}
}

// hearItself subscribes client c (member m of site t) to its own
// heartbeats, connects it, starts its heartbeats until ctx ends and
// returns what it hears; c is closed at the end of the test.
func hearItself(ctx context.Context, t *testing.T, c *bus.Client) <-chan bus.Heartbeat {
	t.Helper()
	heard := make(chan bus.Heartbeat, 64)
	c.Subscribe(bus.Topics{Site: "t"}.Heartbeat("m"), 0, func(m bus.Message) {
		if hb, err := bus.DecodeHeartbeat("m", m.Payload); err == nil {
			select {
			case heard <- hb:
			default:
			}
		}
	})
	c.Connect()
	t.Cleanup(func() { c.Close(false) })
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	go c.RunHeartbeats(ctx)
	return heard
}

// waitHeartbeat waits for the client's own heartbeat from a connection
// after conn.
func waitHeartbeat(ctx context.Context, t *testing.T, heard <-chan bus.Heartbeat, after uint64) bus.Heartbeat {
	t.Helper()
	for {
		select {
		case hb := <-heard:
			if hb.Conn > after {
				return hb
			}
		case <-ctx.Done():
			t.Fatalf("no heartbeat of a connection after %d heard back", after)
		}
	}
}

func drain(ch <-chan bus.Heartbeat) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// A process that was stopped (SIGSTOP, a paused VM) wakes with a silence
// of its own making: its heartbeat ticks came late. The watchdog counts
// from the wake, so that what waits in the socket is read first; a
// connection deaf for DeafAfter after that is made again.
func TestAStallIsNotADeafConnection(t *testing.T) {
	_, ln := startMochi(t)
	var logs syncBuffer
	const interval, deafAfter = 50 * time.Millisecond, 400 * time.Millisecond
	// The connection's own start (paho's onConnect, on a goroutine of its
	// own, which sets the watchdog's start) must be over before the
	// simulated wake: a busy machine ran it after the first tick, and the
	// watchdog counted from then.
	connected := make(chan struct{})
	var once sync.Once
	c := bus.New(bus.Options{
		URL: "tcp://" + ln.Addr().String(), Topics: bus.Topics{Site: "t"}, Member: "m",
		Interval: interval, KeepAlive: time.Second, DeafAfter: deafAfter,
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
		OnConnected: func() { once.Do(func() { close(connected) }) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.Connect()
	defer c.Close(false)
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("never connected")
	}
	woke := time.Now().Add(10 * deafAfter) // after a stop of ten times DeafAfter
	c.OnTick(woke, time.Now())
	if strings.Contains(logs.String(), "nothing arrives") {
		t.Fatalf("the stall was taken for a deaf connection:\n%s", logs.String())
	}
	c.OnTick(woke.Add(deafAfter-interval), woke.Add(deafAfter-2*interval))
	if strings.Contains(logs.String(), "nothing arrives") {
		t.Fatalf("made again before DeafAfter after the wake:\n%s", logs.String())
	}
	c.OnTick(woke.Add(deafAfter+interval), woke.Add(deafAfter))
	if !strings.Contains(logs.String(), "nothing arrives") {
		t.Fatalf("deaf for DeafAfter after the wake, and not made again:\n%s", logs.String())
	}
}
