package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"understudy/fixtures/testhost"
)

// deadline is the generous bound for every wait in these tests.
const deadline = 10 * time.Second

type message struct {
	topic    string
	payload  string
	retained bool
}

// client is a paho client whose raw connection the test can cut.
type client struct {
	paho.Client
	mu   sync.Mutex
	conn net.Conn
	lost chan error // connection-lost notifications
}

// cut closes the client's TCP connection without an MQTT DISCONNECT, as the
// kernel does when the client's process dies.
func (c *client) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Close()
}

type clientOpts struct {
	keepAlive time.Duration // default 30s
	will      *message
	dial      func(ctx context.Context, addr string) (net.Conn, error)
}

func connect(t *testing.T, addr, id string, o clientOpts) *client {
	t.Helper()
	c := &client{lost: make(chan error, 1)}
	if o.keepAlive == 0 {
		o.keepAlive = 30 * time.Second
	}
	dial := o.dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	opts := paho.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(id).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(deadline).
		// A will delivered within the test's deadline cannot come from the
		// keep-alive check (45 s).
		SetKeepAlive(o.keepAlive).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			conn, err := dial(ctx, u.Host)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			c.conn = conn
			c.mu.Unlock()
			return conn, nil
		})
	if o.will != nil {
		opts.SetWill(o.will.topic, o.will.payload, 1, false)
	}
	c.Client = paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(deadline) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func subscribe(t *testing.T, c *client, filter string) <-chan message {
	t.Helper()
	ch := make(chan message, 16)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		select {
		case ch <- message{m.Topic(), string(m.Payload()), m.Retained()}:
		default:
		}
	})
	if !tok.WaitTimeout(deadline) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return ch
}

func publish(t *testing.T, c *client, topic, payload string, retained bool) {
	t.Helper()
	tok := c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(deadline) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func receive(t *testing.T, ch <-chan message, want message) time.Time {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("received %+v, want %+v", got, want)
		}
		return time.Now()
	case <-time.After(deadline):
		t.Fatalf("did not receive %+v within %v", want, deadline)
	}
	return time.Time{}
}

func start(t *testing.T, opts Options) *Broker {
	t.Helper()
	if opts.Listen == "" && opts.Listener == nil {
		opts.Listen = "127.0.0.1:0"
	}
	b, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// waitClientGone waits until the broker has forgotten the client id.
func waitClientGone(t *testing.T, b *Broker, id string) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		if _, ok := b.server.Clients.Get(id); !ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("broker still knows client %s after %v", id, deadline)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, bounded by end
	}
}

func TestPublishSubscribe(t *testing.T) {
	b := start(t, Options{})
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q (%v), want 127.0.0.1 with the picked port", b.Addr(), err)
	}
	sub := connect(t, b.Addr(), "sub", clientOpts{})
	msgs := subscribe(t, sub, "us/test/#")
	pub := connect(t, b.Addr(), "pub", clientOpts{})
	publish(t, pub, "us/test/a", "hello", false)
	receive(t, msgs, message{"us/test/a", "hello", false})
}

func TestRetainedMessageReachesLateSubscriber(t *testing.T) {
	b := start(t, Options{})
	pub := connect(t, b.Addr(), "pub", clientOpts{})
	publish(t, pub, "us/members/m1/other", "not retained", false)
	publish(t, pub, "us/members/m1/status", "alive", true)
	// mochi sends PUBACK before it forwards a message to subscribers, but
	// handles one client's packets in order: once this third publish is
	// acknowledged, the first two have been forwarded (to nobody).
	publish(t, pub, "us/sync", "", false)
	late := connect(t, b.Addr(), "late", clientOpts{})
	msgs := subscribe(t, late, "us/members/m1/+")
	receive(t, msgs, message{"us/members/m1/status", "alive", true})
	// A live message after the retained one proves nothing else was queued.
	publish(t, pub, "us/members/m1/status", "busy", false)
	receive(t, msgs, message{"us/members/m1/status", "busy", false})
}

func TestLastWillOnAbruptDisconnect(t *testing.T) {
	b := start(t, Options{})
	watcher := connect(t, b.Addr(), "watcher", clientOpts{})
	wills := subscribe(t, watcher, "us/will/+")

	// A graceful DISCONNECT discards the will...
	graceful := connect(t, b.Addr(), "graceful", clientOpts{will: &message{topic: "us/will/graceful", payload: "lost"}})
	graceful.Disconnect(250)
	waitClientGone(t, b, "graceful")
	// ...a connection that just ends (the client's process died) publishes it.
	crashing := connect(t, b.Addr(), "crashing", clientOpts{will: &message{topic: "us/will/crashing", payload: "lost"}})
	cutAt := time.Now()
	crashing.cut()
	got := receive(t, wills, message{"us/will/crashing", "lost", false}) // graceful's would have come first
	t.Logf("will delivered %v after the connection was cut", got.Sub(cutAt))
}

// TestTakeoverPublishesOldConnectionsWill documents a broker behaviour that
// liveness logic must handle: a second connection with the same client ID
// (a restarted process reconnecting before the broker noticed the old
// connection died, or two instances misconfigured with one ID) takes the
// session over, and the broker publishes the old connection's Last Will, while
// the client ID is connected. A "lost" will must therefore not be trusted on
// its own when the same member announces itself again.
func TestTakeoverPublishesOldConnectionsWill(t *testing.T) {
	b := start(t, Options{})
	watcher := connect(t, b.Addr(), "watcher", clientOpts{})
	status := subscribe(t, watcher, "us/members/m1/status")

	first := connect(t, b.Addr(), "m1", clientOpts{will: &message{topic: "us/members/m1/status", payload: "lost (first connection)"}})
	second := connect(t, b.Addr(), "m1", clientOpts{will: &message{topic: "us/members/m1/status", payload: "lost (second connection)"}})

	receive(t, status, message{"us/members/m1/status", "lost (first connection)", false})
	select {
	case <-first.lost:
	case <-time.After(deadline):
		t.Fatal("the first connection was not closed by the takeover")
	}
	// The new connection is the session now and works.
	publish(t, second, "us/members/m1/status", "alive", false)
	receive(t, status, message{"us/members/m1/status", "alive", false})
	if !second.IsConnectionOpen() {
		t.Fatal("second connection closed")
	}
}

func TestListenerInsideTestHost(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, bh := nw.Hosts[0], nw.Hosts[1]
	ln, err := a.Listen("tcp", net.JoinHostPort(a.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	b := start(t, Options{Listener: ln})
	if host, _, _ := net.SplitHostPort(b.Addr()); host != a.Addr.String() {
		t.Fatalf("Addr() = %s, want host A's address %s", b.Addr(), a.Addr)
	}
	fromB := clientOpts{dial: func(ctx context.Context, addr string) (net.Conn, error) { return bh.Dial(ctx, "tcp", addr) }}
	sub := connect(t, b.Addr(), "sub", fromB)
	msgs := subscribe(t, sub, "us/+/status")
	fromB.will = &message{topic: "us/m2/status", payload: "lost"}
	pub := connect(t, b.Addr(), "m2", fromB)
	publish(t, pub, "us/m2/status", "alive", false)
	receive(t, msgs, message{"us/m2/status", "alive", false})
	pub.cut()
	receive(t, msgs, message{"us/m2/status", "lost", false})
}

func TestCloseDisconnectsClientsAndStopsListening(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, b.Addr(), "c", clientOpts{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.lost:
	case <-time.After(deadline):
		t.Fatal("client not disconnected by Close")
	}
	if conn, err := net.DialTimeout("tcp", b.Addr(), deadline); err == nil {
		conn.Close()
		t.Fatal("broker still accepts connections after Close")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	if _, err := Start(Options{}); err == nil {
		t.Error("Start with no address succeeded")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Start(Options{Listen: "127.0.0.1:0", Listener: ln}); err == nil {
		t.Error("Start with both Listen and Listener succeeded")
	}
	// The port is taken by ln.
	_, err = Start(Options{Listen: ln.Addr().String()})
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Start on a taken port = %v, want a wrapped *net.OpError naming the address", err)
	}
}

// recordHandler collects log records.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) levels() []slog.Level {
	h.mu.Lock()
	defer h.mu.Unlock()
	var l []slog.Level
	for _, r := range h.records {
		l = append(l, r.Level)
	}
	return l
}

func TestLoggerGetsOnlyWarningsAndAbove(t *testing.T) {
	h := &recordHandler{}
	b := start(t, Options{Logger: slog.New(h)})
	// Info-level chatter (listener attached, client connected) is dropped.
	c := connect(t, b.Addr(), "c", clientOpts{})
	c.Disconnect(250)
	waitClientGone(t, b, "c")
	// A connection that sends garbage instead of CONNECT is logged as a warning.
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	end := time.Now().Add(deadline)
	for len(h.levels()) == 0 {
		if time.Now().After(end) {
			t.Fatal("no warning logged for a connection that sent garbage")
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, bounded by end
	}
	for _, l := range h.levels() {
		if l < slog.LevelWarn {
			t.Fatalf("logger got a record of level %v; want only Warn and above", l)
		}
	}
}

func TestDeliberateBehaviourIsNotLoggedAsAWarning(t *testing.T) {
	h := &recordHandler{}
	filter := slog.New(minLevel{Handler: h, min: slog.LevelWarn})
	// Shapes of mochi's records.
	filter.Warn("client keepalive is below minimum recommended value and may exhibit connection instability", "keepalive", 2, "recommended", 5)
	filter.Warn("", "listener", "tcp", "error", io.EOF)
	filter.Warn("", "listener", "tcp", "error", errors.New("read tcp 127.0.0.1:1883->127.0.0.1:5555: read: connection reset by peer"))
	filter.Warn("", "listener", "tcp", "error", errors.New("malformed packet: first byte"))
	filter.Warn("session taken over", "client", "x")
	if got := h.levels(); len(got) != 2 {
		t.Fatalf("%d records passed, want 2 (the malformed packet and the takeover)", len(got))
	}

	// End to end: a client with understudy's 2s keep-alive connects without a warning.
	h2 := &recordHandler{}
	b := start(t, Options{Logger: slog.New(h2)})
	c := connect(t, b.Addr(), "fast", clientOpts{keepAlive: 2 * time.Second})
	c.Disconnect(250)
	if n := len(h2.levels()); n != 0 {
		t.Fatalf("%d warnings for a client with a 2s keep-alive", n)
	}
}
