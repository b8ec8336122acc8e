package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"github.com/mochi-mqtt/server/v2/packets"

	"understudy/fixtures/mqtttest"
	"understudy/fixtures/testhost"
)

// deadline is the generous bound for every wait in these tests.
const deadline = mqtttest.Deadline

// connect connects a test client to b.
func connect(t *testing.T, b *Broker, id string, o mqtttest.Options) *mqtttest.Client {
	t.Helper()
	return mqtttest.Connect(t, "tcp://"+b.Addr(), id, o)
}

func start(t *testing.T, opts Options) *Broker {
	t.Helper()
	if opts.Listen == "" && opts.Listener == nil && opts.ListenTLS == "" {
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
	eventually.True(t, deadline, "the broker forgets client "+id, func() (bool, string) {
		_, ok := b.server.Clients.Get(id)
		return !ok, "it still knows it"
	})
}

func TestPublishSubscribe(t *testing.T) {
	b := start(t, Options{})
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q (%v), want 127.0.0.1 with the picked port", b.Addr(), err)
	}
	sub := connect(t, b, "sub", mqtttest.Options{})
	msgs := mqtttest.Subscribe(t, sub, "us/test/#")
	pub := connect(t, b, "pub", mqtttest.Options{})
	mqtttest.Publish(t, pub, "us/test/a", "hello", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/test/a", Payload: "hello", Retained: false})
}

func TestRetainedMessageReachesLateSubscriber(t *testing.T) {
	b := start(t, Options{})
	pub := connect(t, b, "pub", mqtttest.Options{})
	mqtttest.Publish(t, pub, "us/members/m1/other", "not retained", false)
	mqtttest.Publish(t, pub, "us/members/m1/status", "alive", true)
	// mochi sends PUBACK before it forwards a message to subscribers, but
	// handles one client's packets in order: once this third publish is
	// acknowledged, the first two have been forwarded (to nobody).
	mqtttest.Publish(t, pub, "us/sync", "", false)
	late := connect(t, b, "late", mqtttest.Options{})
	msgs := mqtttest.Subscribe(t, late, "us/members/m1/+")
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/members/m1/status", Payload: "alive", Retained: true})
	// A live message after the retained one proves nothing else was queued.
	mqtttest.Publish(t, pub, "us/members/m1/status", "busy", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/members/m1/status", Payload: "busy", Retained: false})
}

func TestLastWillOnAbruptDisconnect(t *testing.T) {
	b := start(t, Options{})
	watcher := connect(t, b, "watcher", mqtttest.Options{})
	wills := mqtttest.Subscribe(t, watcher, "us/will/+")

	// A graceful DISCONNECT discards the will...
	graceful := connect(t, b, "graceful", mqtttest.Options{Will: &mqtttest.Message{Topic: "us/will/graceful", Payload: "lost"}})
	graceful.Disconnect(250)
	waitClientGone(t, b, "graceful")
	// ...a connection that just ends (the client's process died) publishes it.
	crashing := connect(t, b, "crashing", mqtttest.Options{Will: &mqtttest.Message{Topic: "us/will/crashing", Payload: "lost"}})
	cutAt := time.Now()
	crashing.Cut()
	got := mqtttest.Receive(t, wills, mqtttest.Message{Topic: "us/will/crashing", Payload: "lost", Retained: false}) // graceful's would have come first
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
	watcher := connect(t, b, "watcher", mqtttest.Options{})
	status := mqtttest.Subscribe(t, watcher, "us/members/m1/status")

	first := connect(t, b, "m1", mqtttest.Options{Will: &mqtttest.Message{Topic: "us/members/m1/status", Payload: "lost (first connection)"}})
	second := connect(t, b, "m1", mqtttest.Options{Will: &mqtttest.Message{Topic: "us/members/m1/status", Payload: "lost (second connection)"}})

	mqtttest.Receive(t, status, mqtttest.Message{Topic: "us/members/m1/status", Payload: "lost (first connection)", Retained: false})
	select {
	case <-first.Lost:
	case <-time.After(deadline):
		t.Fatal("the first connection was not closed by the takeover")
	}
	// The new connection is the session now and works.
	mqtttest.Publish(t, second, "us/members/m1/status", "alive", false)
	mqtttest.Receive(t, status, mqtttest.Message{Topic: "us/members/m1/status", Payload: "alive", Retained: false})
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
	fromB := mqtttest.Options{Dial: func(ctx context.Context, addr string) (net.Conn, error) { return bh.Dial(ctx, "tcp", addr) }}
	sub := connect(t, b, "sub", fromB)
	msgs := mqtttest.Subscribe(t, sub, "us/+/status")
	fromB.Will = &mqtttest.Message{Topic: "us/m2/status", Payload: "lost"}
	pub := connect(t, b, "m2", fromB)
	mqtttest.Publish(t, pub, "us/m2/status", "alive", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/m2/status", Payload: "alive", Retained: false})
	pub.Cut()
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/m2/status", Payload: "lost", Retained: false})
}

func TestCloseDisconnectsClientsAndStopsListening(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, b, "c", mqtttest.Options{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Lost:
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
	c := connect(t, b, "c", mqtttest.Options{})
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
	eventually.True(t, deadline, "a warning logged for a connection that sent garbage", func() (bool, string) {
		return len(h.levels()) > 0, "none"
	})
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
	// Refusals our hooks log themselves, with the client's name.
	filter.Warn("", "listener", "tcp", "error", packets.ErrBadUsernameOrPassword)
	filter.Warn("", "listener", "tcp", "error", loggedRefusal{fmt.Errorf("client ID %q is reserved: %w", "inline", packets.ErrClientIdentifierNotValid)})
	if got := h.levels(); len(got) != 2 {
		t.Fatalf("%d records passed, want 2 (the malformed packet and the takeover)", len(got))
	}
	if m := h.records[0].Message; m == "" {
		t.Error("the malformed packet was logged without a message")
	}

	// End to end: a client with understudy's 2s keep-alive connects without a warning.
	h2 := &recordHandler{}
	b := start(t, Options{Logger: slog.New(h2)})
	c := connect(t, b, "fast", mqtttest.Options{KeepAlive: 2 * time.Second})
	c.Disconnect(250)
	if n := len(h2.levels()); n != 0 {
		t.Fatalf("%d warnings for a client with a 2s keep-alive", n)
	}
}

// A refused login is one clear line, the access hook's (with the client's
// name, user and address): not also mochi's record of the same refusal, with
// no message and error="bad username or password".
func TestARefusedLoginIsLoggedOnce(t *testing.T) {
	h := &recordHandler{}
	b := start(t, Options{Logger: slog.New(h), Users: []User{
		{Username: "viewer", Password: "view-secret", Subscribe: []string{"understudy/hall/#"}},
	}})
	for _, o := range []mqtttest.Options{{Username: "viewer", Password: "wrong"}, {Username: "nobody", Password: "x"}} {
		if _, err := mqtttest.TryConnect(t, "tcp://"+b.Addr(), "intruder", o); err == nil {
			t.Fatalf("connected as %q with password %q", o.Username, o.Password)
		}
	}
	refused := "client refused: unknown user or wrong password"
	waitLog(t, h, refused)
	// mochi's listener logs when the refused connection's goroutine ends,
	// a moment after the client has its answer: give it that moment.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	eventually.Poll(ctx, func() (bool, string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.records {
			if r.Message != refused {
				return true, ""
			}
		}
		return false, ""
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Message == refused {
			n++
			continue
		}
		var attrs []string
		r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
		t.Errorf("another record beside the refusals: msg=%q %v", r.Message, attrs)
	}
	if n < 2 { // paho tries MQTT 3.1.1, then 3.1: a refusal for each
		t.Errorf("%d refusals logged, want one for each connection (2 or more)", n)
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		allowed, requested string
		want               bool
	}{
		{"understudy/hall/#", "understudy/hall/command/mode", true},
		{"understudy/hall/#", "understudy/hall", true},
		{"understudy/hall/#", "understudy/other/command/mode", false},
		{"understudy/hall/command/+", "understudy/hall/command/mode", true},
		{"understudy/hall/command/+", "understudy/hall/command/mode/reply", false},
		{"understudy/hall/command/+", "understudy/hall/command/+", true},
		{"understudy/hall/command/+", "understudy/hall/command/#", false},
		{"understudy/+/member/+/state", "understudy/hall/member/+/state", true},
		{"understudy/hall/member/main/state", "understudy/hall/member/+/state", false},
	} {
		if got := covers(tc.allowed, tc.requested); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.allowed, tc.requested, got, tc.want)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a/b+", "a#"} {
		if CheckFilter(bad) == nil {
			t.Errorf("CheckFilter(%q) accepted it", bad)
		}
	}
}

// With users, only they may connect, and each only where its lists allow.
func TestUsersAndACLs(t *testing.T) {
	b := start(t, Options{Users: []User{
		{Username: "understudy", Password: "inst-secret", Publish: []string{"understudy/hall/#"}, Subscribe: []string{"understudy/hall/#"}},
		{Username: "viewer", Password: "view-secret", Publish: []string{"understudy/hall/ping"}, Subscribe: []string{"understudy/hall/member/+/state"}},
	}})
	url := "tcp://" + b.Addr()
	for _, o := range []mqtttest.Options{{}, {Username: "viewer", Password: "wrong"}, {Username: "nobody", Password: "view-secret"}} {
		if _, err := mqtttest.TryConnect(t, url, "intruder", o); err == nil {
			t.Errorf("connected as %q with password %q", o.Username, o.Password)
		}
	}
	inst := connect(t, b, "inst", mqtttest.Options{Username: "understudy", Password: "inst-secret"})
	msgs := mqtttest.Subscribe(t, inst, "understudy/hall/#")
	viewer := connect(t, b, "viewer", mqtttest.Options{Username: "viewer", Password: "view-secret"})
	mqtttest.Publish(t, viewer, "understudy/hall/ping", "1", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "understudy/hall/ping", Payload: "1"})
	// It may watch states.
	states := mqtttest.Subscribe(t, viewer, "understudy/hall/member/+/state")
	mqtttest.Publish(t, inst, "understudy/hall/member/main/state", "alive", false)
	mqtttest.Receive(t, states, mqtttest.Message{Topic: "understudy/hall/member/main/state", Payload: "alive"})
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "understudy/hall/member/main/state", Payload: "alive"})
	tok := viewer.Subscribe("understudy/hall/#", 1, nil)
	if !tok.WaitTimeout(deadline) {
		t.Fatal("no answer to the subscription")
	}
	if st, ok := tok.(interface{ Result() map[string]byte }); ok && st.Result()["understudy/hall/#"] < 0x80 {
		t.Errorf("the viewer was granted understudy/hall/# (code %#x)", st.Result()["understudy/hall/#"])
	}
	// A command from it is refused: the broker acknowledges and drops it,
	// and the connection stays (a client that sends it again on reconnect
	// would otherwise never stay on the bus).
	tok = viewer.Publish("understudy/hall/command/mode", 1, false, `{"mode":"manual"}`)
	if !tok.WaitTimeout(deadline) || tok.Error() != nil {
		t.Fatalf("the refused command was not acknowledged: %v", tok.Error())
	}
	mqtttest.Publish(t, viewer, "understudy/hall/ping", "after the refused command", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "understudy/hall/ping", Payload: "after the refused command"})
	select {
	case err := <-viewer.Lost:
		t.Fatalf("the viewer lost its connection: %v", err)
	default:
	}
	// Nor is it retained.
	tok = viewer.Publish("understudy/hall/member/main/state", 1, true, "retained by an intruder")
	if !tok.WaitTimeout(deadline) || tok.Error() != nil {
		t.Fatalf("the refused retained message was not acknowledged: %v", tok.Error())
	}
	late := connect(t, b, "late", mqtttest.Options{Username: "understudy", Password: "inst-secret"})
	lateMsgs := mqtttest.Subscribe(t, late, "understudy/hall/member/+/state")
	mqtttest.Publish(t, inst, "understudy/hall/marker", "after", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "understudy/hall/marker", Payload: "after"})
	mqtttest.Publish(t, inst, "understudy/hall/member/backup/state", "live", false)
	mqtttest.Receive(t, lateMsgs, mqtttest.Message{Topic: "understudy/hall/member/backup/state", Payload: "live"})
}

// A client that sends a packet over the limit is disconnected at its fixed
// header (the body is neither read nor allocated); several at once harm
// nobody else: the broker stays up and the others' messages keep flowing.
func TestOversizedPacketsDisconnectOnlyTheirSender(t *testing.T) {
	const limit = 64 << 10
	var logs syncBuffer
	b := start(t, Options{MaxPacket: limit, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	sub := connect(t, b, "sub", mqtttest.Options{})
	msgs := mqtttest.Subscribe(t, sub, "site/+/hb")
	other := connect(t, b, "other", mqtttest.Options{})

	// Six paho clients publish just over the limit at once (QoS 0 and 1).
	big := strings.Repeat("x", limit)
	var wg sync.WaitGroup
	lost := make([]error, 6)
	for i := range lost {
		c := connect(t, b, fmt.Sprintf("big%d", i), mqtttest.Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Publish(fmt.Sprintf("site/big%d/hb", i), byte(i%2), false, big)
			select {
			case lost[i] = <-c.Lost:
			case <-time.After(deadline):
			}
		}()
	}
	// And a raw client announces a 200 MB packet and sends nothing more: it
	// is disconnected without the broker waiting for (or allocating) it.
	raw := rawConnect(t, b, "announcer")
	if _, err := raw.Write([]byte{0x30, 0x80, 0x80, 0x80, 0x60}); err != nil { // PUBLISH, remaining length 201,326,592
		t.Fatal(err)
	}
	raw.SetReadDeadline(time.Now().Add(deadline))
	if n, err := raw.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Errorf("the client that announced 200 MB was not disconnected (read %d bytes, %v)", n, err)
	}
	wg.Wait()
	for i, err := range lost {
		if err == nil {
			t.Errorf("big%d was not disconnected after publishing %d bytes", i, len(big))
		}
	}
	// Everyone else goes on.
	mqtttest.Publish(t, other, "site/other/hb", "still here", false)
	for still := false; !still; {
		select {
		case got := <-msgs:
			if still = got.Payload == "still here"; !still {
				t.Errorf("an oversized message was delivered: %s, %d bytes", got.Topic, len(got.Payload))
			}
		case <-time.After(deadline):
			t.Fatal("the other publisher's message did not arrive")
		}
	}
	select {
	case err := <-sub.Lost:
		t.Fatalf("the subscriber was disconnected: %v", err)
	case err := <-other.Lost:
		t.Fatalf("the other publisher was disconnected: %v", err)
	default:
	}
	// Just under the limit is taken.
	fits := strings.Repeat("y", limit-len("site/fits/hb")-2-2-1-4) // fixed header (1+3), topic length, packet id
	mqtttest.Publish(t, other, "site/fits/hb", fits, false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "site/fits/hb", Payload: fits})
	eventually.True(t, deadline, "the log says why the clients were disconnected", func() (bool, string) {
		n := strings.Count(logs.String(), "client disconnected: packet over the size limit")
		return n == 7, fmt.Sprintf("%d log lines:\n%s", n, logs.String())
	})
	if got := b.Oversized(); got != 7 {
		t.Errorf("Oversized() = %d, want 7", got)
	}
}

// rawConnect connects a hand-written MQTT 3.1.1 client (clean session,
// keep-alive 60 s) with client id id and reads its CONNACK.
func rawConnect(t *testing.T, b *Broker, id string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	pkt := append([]byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}, id...)
	conn.SetDeadline(time.Now().Add(deadline))
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x: %v", ack, err)
	}
	return conn
}

// A client that stops reading gets at most writesPending messages queued
// (besides what its socket holds); the rest are dropped and counted, and the
// broker goes on serving everyone else.
func TestMessagesForAClientThatStopsReadingAreDroppedAndCounted(t *testing.T) {
	b := start(t, Options{})
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	// CONNECT (MQTT 3.1.1, clean session, keep-alive 60 s, client id "slow"),
	// then SUBSCRIBE to "flood" at QoS 0: written by hand, as no client
	// library stops reading on purpose.
	connectPkt := []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 4, 's', 'l', 'o', 'w'}
	subscribePkt := []byte{0x82, 10, 0, 1, 0, 5, 'f', 'l', 'o', 'o', 'd', 0}
	conn.SetDeadline(time.Now().Add(deadline))
	if _, err := conn.Write(connectPkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x: %v", ack, err)
	}
	if _, err := conn.Write(subscribePkt); err != nil {
		t.Fatal(err)
	}
	suback := make([]byte, 5)
	if _, err := io.ReadFull(conn, suback); err != nil || suback[0] != 0x90 || suback[4] != 0 {
		t.Fatalf("SUBACK % x: %v", suback, err)
	}
	// From here on the slow client reads nothing.

	pub := connect(t, b, "publisher", mqtttest.Options{})
	payload := strings.Repeat("x", 1000)
	end := time.Now().Add(deadline)
	for sent := 0; b.Dropped() == 0; sent++ {
		if sent >= 200_000 || time.Now().After(end) {
			t.Fatalf("no message dropped after %d published to a client that reads nothing", sent)
		}
		pub.Publish("flood", 0, false, payload)
	}
	// Everyone else is still served.
	watcher := connect(t, b, "watcher", mqtttest.Options{})
	ch := mqtttest.Subscribe(t, watcher, "still/here")
	mqtttest.Publish(t, pub, "still/here", "yes", false)
	mqtttest.Receive(t, ch, mqtttest.Message{Topic: "still/here", Payload: "yes"})
}

// An inline subscription gets retained messages at once and then every
// message published on its filter, in order, without a connection.
func TestSubscribeInlineDeliversInProcess(t *testing.T) {
	b := start(t, Options{})
	pub := connect(t, b, "publisher", mqtttest.Options{})
	mqtttest.Publish(t, pub, "site/m1/hb", "retained", true)
	// mochi acknowledges a QoS 1 publish before it hands it to the
	// subscribers, and takes a client's packets one after the other: once
	// the next publish is acknowledged, the retained one has gone to every
	// subscriber there was. (Subscribing in between gets it twice: from
	// storage and live.)
	mqtttest.Publish(t, pub, "site/sync", "", false)
	got := make(chan string, 16)
	if err := b.SubscribeInline("site/+/hb", func(topic string, payload []byte, retained bool) {
		got <- fmt.Sprint(topic, " ", string(payload), " ", retained)
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"one", "two", "three"} {
		mqtttest.Publish(t, pub, "site/m2/hb", p, false)
	}
	mqtttest.Publish(t, pub, "site/m2/other", "not this", false)
	for _, want := range []string{"site/m1/hb retained true", "site/m2/hb one false", "site/m2/hb two false", "site/m2/hb three false"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
		case <-time.After(deadline):
			t.Fatalf("no %q", want)
		}
	}
	select {
	case g := <-got:
		t.Fatalf("unexpected %q", g)
	case <-time.After(50 * time.Millisecond): // nothing else may come: a bounded look
	}
	if err := b.SubscribeInline("bad/#/filter", func(string, []byte, bool) {}); err == nil {
		t.Error("a bad filter was accepted")
	}
}

// A network client that takes the inline client's name can neither break
// the broker nor take the inline subscriptions away: it is refused.
func TestAClientNamedLikeTheInlineClientIsRefused(t *testing.T) {
	b := start(t, Options{})
	got := make(chan string, 16)
	if err := b.SubscribeInline("site/+/hb", func(_ string, payload []byte, _ bool) {
		got <- string(payload)
	}); err != nil {
		t.Fatal(err)
	}
	if c, err := mqtttest.TryConnect(t, b.LocalURL(), "inline", mqtttest.Options{}); err == nil {
		mqtttest.Publish(t, c, "site/x/hb", "from the impostor", false)
		t.Error("a client named inline was let in")
	}
	pub := connect(t, b, "publisher", mqtttest.Options{})
	mqtttest.Publish(t, pub, "site/m2/hb", "still inline", false)
	for {
		select {
		case g := <-got:
			if g == "still inline" {
				return
			}
		case <-time.After(deadline):
			t.Fatal("the inline subscription stopped after a client took its name")
		}
	}
}

// syncBuffer is a bytes.Buffer for a logger written from several goroutines.
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

// coversBySplit is the plain form of covers (the levels split first), kept
// to check the allocation-free one against.
func coversBySplit(allowed, requested string) bool {
	a, r := strings.Split(allowed, "/"), strings.Split(requested, "/")
	for i, al := range a {
		if al == "#" {
			return true
		}
		if i >= len(r) {
			return false
		}
		switch {
		case r[i] == "#":
			return false
		case al == "+":
		case al != r[i]:
			return false
		}
	}
	return len(a) == len(r)
}

func FuzzCovers(f *testing.F) {
	for _, s := range [][2]string{{"a/#", "a"}, {"a/+", "a"}, {"a/+/c", "a/b/c"}, {"#", ""}, {"a/b", "a/b/"}, {"+/+", "/"}, {"a/#", "a/#"}, {"a/+", "a/#"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, allowed, requested string) {
		if CheckFilter(allowed) != nil {
			return // a user's filters are checked when the broker starts
		}
		if got, want := covers(allowed, requested), coversBySplit(allowed, requested); got != want {
			t.Fatalf("covers(%q, %q) = %v, the plain form says %v", allowed, requested, got, want)
		}
	})
}

// FuzzPublishACL checks the publish lists arranged for one lookup against
// the plain walk of the user's list.
func FuzzPublishACL(f *testing.F) {
	for _, s := range [][4]string{
		{"m1", "understudy/s/member/m1/heartbeat", "m1", "understudy/s/member/m1/heartbeat"},
		{"m1", "understudy/s/member/m1/heartbeat", "m2", "understudy/s/member/m1/heartbeat"},
		{"m1", "understudy/s/command/+", "m1", "understudy/s/command/stop"},
		{"m1", "a/#", "m1", "a"},
		{"m", "1/a", "m1", "a"},
		{"", "a", "", "a"},
		{"understudy-m1", "x", "understudy-m1", "understudy/s/member/m1/heartbeat"},
		{"understudy-m1", "x", "understudy-m2", "understudy/s/member/m1/heartbeat"},
		{"understudy-m1", "x", "understudy-m1", "understudy/s/member/m1/heartbeat/x"},
		{"understudy-m1", "x", "understudy-", "understudy/s/member//heartbeat"},
		{"understudy-a/b", "x", "understudy-a/b", "understudy/s/member/a/b/presence"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	own := &OwnTopics{UserPrefix: "understudy-", TopicPrefix: "understudy/s/member/", Leaves: []string{"heartbeat", "presence"}}
	f.Fuzz(func(t *testing.T, user, filter, who, topic string) {
		if CheckFilter(filter) != nil || strings.ContainsRune(user, 0) {
			return // refused when the broker starts
		}
		users := []User{{Username: user, Publish: []string{filter, "fixed/topic"}}, {Username: user + "x", Publish: []string{filter + "/x"}}}
		acl := newPublishACL(users, own)
		// The rule, as its documentation says it.
		want := false
		if id, ok := strings.CutPrefix(who, own.UserPrefix); ok && id != "" {
			for _, leaf := range own.Leaves {
				want = want || topic == own.TopicPrefix+id+"/"+leaf
			}
		}
		for _, u := range users {
			if u.Username != who {
				continue
			}
			for _, f := range u.Publish {
				want = want || covers(f, topic)
			}
		}
		if got := acl.allows([]byte(who), topic); got != want {
			t.Fatalf("user %q may publish %q to %q: %v, the plain walk of the lists says %v", who, topic, filter, got, want)
		}
	})
}
