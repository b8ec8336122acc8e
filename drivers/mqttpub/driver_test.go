package mqttpub_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/discovery/broker"
	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/mqttpub"
	"understudy/fixtures/mosquitto"
	"understudy/fixtures/mqtttest"
	"understudy/fixtures/testhost"
	"understudy/runtime/config"
)

const messages = `
messages:
  scene: {topic: 'venue/{{.room}}/scene', payload: '{"scene": "{{.scene}}"}'}
  status: {topic: venue/status, payload: '{{.state}}', retain: true}
  tally: {topic: 'venue/tally/{{.camera}}', payload: '{{if .on}}1{{else}}0{{end}}', qos: 0}
  exact: {topic: venue/exact, payload: once, qos: 2}
`

// newPublisher starts a driver for the broker at addr with the test's
// messages and extra settings (YAML lines).
func newPublisher(t *testing.T, addr string, extra ...string) (*mqttpub.Publisher, *drivertest.Events) {
	t.Helper()
	doc := "url: tcp://" + addr + "\nclient_id: pub-" + t.Name() + "\nbackoff_min: 10ms\nbackoff_max: 50ms\n" + strings.Join(extra, "\n") + "\n" + messages
	d, err := mqttpub.New(drivertest.Config("showctl", doc))
	if err != nil {
		t.Fatal(err)
	}
	p := d.(*mqttpub.Publisher)
	ev := drivertest.NewEvents(t)
	p.Start(context.Background(), ev.Emit)
	t.Cleanup(func() { p.Close() })
	return p, ev
}

func startBroker(t *testing.T, addr string) *broker.Broker {
	t.Helper()
	b, err := broker.Start(broker.Options{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func send(command string, args map[string]any) map[string]any {
	m := map[string]any{"command": command}
	if args != nil {
		m["args"] = args
	}
	return m
}

func subscribe(t *testing.T, url, filter string) <-chan mqtttest.Message {
	t.Helper()
	sub := mqtttest.Connect(t, url, "sub-"+t.Name(), mqtttest.Options{})
	return mqtttest.Subscribe(t, sub, filter)
}

func readmeYAML(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml block")
	}
	return block
}

const siteHead = "site: test\ncoordinator: a\nmembers:\n  - id: a\n"

func TestReadmeSample(t *testing.T) {
	site, err := config.Parse("site.yaml", []byte(siteHead+readmeYAML(t)))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := site.BuildDrivers(drivers.NewRegistry(mqttpub.Kind))
	if err != nil {
		t.Fatal(err)
	}
	p := ds["showctl"].(*mqttpub.Publisher)
	s := p.Settings()
	if s.URL != "tcp://192.168.10.5:1883" || s.ClientID != "understudy-showctl" || s.Username != "understudy" || s.Password != "s3cret" ||
		*s.QoS != 1 || s.Timeout.D() != 5*time.Second || s.KeepAlive.D() != 10*time.Second || len(s.Messages) != 3 {
		t.Errorf("settings %+v", s)
	}
	pub, err := p.Build(send("tally", map[string]any{"camera": int64(3), "on": true}))
	if err != nil || pub != (mqttpub.Publication{Topic: "venue/tally/3", Payload: "1", QoS: 0}) {
		t.Errorf("tally: %+v, %v", pub, err)
	}
	pub, err = p.Build(send("status", map[string]any{"state": "covering"}))
	if err != nil || pub != (mqttpub.Publication{Topic: "venue/understudy/status", Payload: "covering", QoS: 1, Retain: true}) {
		t.Errorf("status: %+v, %v", pub, err)
	}
	if err := p.Check(send("scene", map[string]any{"room": "hall", "scene": "emergency"})); err != nil {
		t.Error(err)
	}
	if st := p.Status(); st.Connected || st.Address != "tcp://192.168.10.5:1883" {
		t.Errorf("status before Start %+v", st)
	}
}

func TestDefaults(t *testing.T) {
	d, err := mqttpub.New(drivertest.Config("showctl", "url: broker.local\nmessages: {a: {topic: a}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := d.(*mqttpub.Publisher).Settings()
	if s.URL != "tcp://broker.local:1883" || !strings.HasPrefix(s.ClientID, "understudy-showctl-") || s.Timeout.D() != 5*time.Second ||
		s.BackoffMin.D() != 100*time.Millisecond || s.BackoffMax.D() != 5*time.Second {
		t.Errorf("settings %+v", s)
	}
	for in, want := range map[string]string{
		"mqtts://b":             "mqtts://b:8883",
		"ssl://b:1234":          "ssl://b:1234",
		"ws://b:8080/mqtt":      "ws://b:8080/mqtt",
		"'[fe80::1]:1883'":      "tcp://[fe80::1]:1883",
		"tcp://user:pw@b:1883/": "tcp://user:pw@b:1883/",
	} {
		d, err := mqttpub.New(drivertest.Config("showctl", "url: "+in+"\nmessages: {a: {topic: a}}\n"))
		if err != nil {
			t.Errorf("url %s: %v", in, err)
			continue
		}
		if got := d.(*mqttpub.Publisher).Settings().URL; got != want {
			t.Errorf("url %s became %s, want %s", in, got, want)
		}
	}
	d, _ = mqttpub.New(drivertest.Config("showctl", "url: tcp://user:pw@b\nmessages: {a: {topic: a}}\n"))
	if a := d.Status().Address; a != "tcp://user:xxxxx@b:1883" {
		t.Errorf("address %q", a)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"messages: {a: {topic: a}}\n", "url is required"},
		{"url: http://b\nmessages: {a: {topic: a}}\n", "scheme http is not one of"},
		{"url: 'tcp://b:0'\nmessages: {a: {topic: a}}\n", "port must be"},
		{"url: tcp://b/x\nmessages: {a: {topic: a}}\n", "has no path or query"},
		{"url: b\n", "messages: none configured"},
		{"url: b\nqos: 3\nmessages: {a: {topic: a}}\n", "qos: 3 is not 0, 1 or 2"},
		{"url: b\nmessages: {a: {topic: a, qos: -1}}\n", "messages.a.qos: -1 is not 0, 1 or 2"},
		{"url: b\npassword: x\nmessages: {a: {topic: a}}\n", "password: given without a username"},
		{"url: b\nmessages: {a: {payload: x}}\n", "messages.a.topic: missing"},
		{"url: b\nmessages: {a: {topic: 'a/#'}}\n", "messages.a.topic: topic \"a/#\" has a wildcard"},
		{"url: b\nmessages: {a: {topic: $SYS/x}}\n", "belong to the broker"},
		{"url: b\nmessages: {a: {topic: 'a/{{.x'}}\n", "messages.a.topic: template"},
		{"url: b\nmessages: {a: {topic: a, payload: '{{end}}'}}\n", "messages.a.payload: template"},
		{"url: b\ntimeout: -1s\nmessages: {a: {topic: a}}\n", "timeout: -1s is negative"},
		{"url: b\nkeepalive: 500ms\nmessages: {a: {topic: a}}\n", "keepalive: 500ms is less than 1s"},
		{"url: b\nbackoff_min: 2s\nbackoff_max: 1s\nmessages: {a: {topic: a}}\n", "backoff_max (1s) is less than backoff_min (2s)"},
		{"url: b\nmessages: {a: {topic: a, colour: red}}\n", "colour"},
	} {
		_, err := mqttpub.New(drivertest.Config("showctl", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	site, err := config.Parse("site.yaml", []byte(siteHead+"drivers:\n  m:\n    kind: mqtt\n    url: b\n    qos: one\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = site.BuildDrivers(drivers.NewRegistry(mqttpub.Kind)); err == nil || !strings.Contains(err.Error(), "site.yaml:9:") {
		t.Errorf("site.yaml error %v", err)
	}
}

func TestPublish(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	msgs := subscribe(t, "tcp://"+b.Addr(), "venue/#")
	p, ev := newPublisher(t, b.Addr())
	if e := want(t, ev, drivers.EventConnected); e.Fields["address"] != "tcp://"+b.Addr() {
		t.Errorf("event %+v", e)
	}
	if st := p.Status(); !st.Connected || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
	for _, tc := range []struct {
		args map[string]any
		want mqtttest.Message
	}{
		{send("scene", map[string]any{"room": "hall", "scene": "emergency"}), mqtttest.Message{Topic: "venue/hall/scene", Payload: `{"scene": "emergency"}`}},
		{send("tally", map[string]any{"camera": int64(3), "on": false}), mqtttest.Message{Topic: "venue/tally/3", Payload: "0"}},
		{send("exact", nil), mqtttest.Message{Topic: "venue/exact", Payload: "once"}},
		{send("status", map[string]any{"state": "covering"}), mqtttest.Message{Topic: "venue/status", Payload: "covering"}},
	} {
		if err := p.Check(tc.args); err != nil {
			t.Fatal(err)
		}
		res, err := p.Do(drivertest.Context(t), tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if m := res.(map[string]any); m["topic"] != tc.want.Topic || m["bytes"] != len(tc.want.Payload) {
			t.Errorf("result %v", res)
		}
		// Delivered live: a subscriber sees the retain flag only on
		// messages stored before it subscribed.
		mqtttest.Receive(t, msgs, tc.want)
	}
	// The retained status is there for a later subscriber.
	late := subscribe(t, "tcp://"+b.Addr(), "venue/status")
	mqtttest.Receive(t, late, mqtttest.Message{Topic: "venue/status", Payload: "covering", Retained: true})
}

func TestCheck(t *testing.T) {
	p, _ := newPublisher(t, "127.0.0.1:1")
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"command": "go"}, `unknown message "go" (configured: exact, scene, status, tally)`},
		{send("scene", map[string]any{"room": "hall"}), `messages.scene.payload: template "{\"scene\": \"{{.scene}}\"}" needs args.scene (args has room)`},
		{send("scene", map[string]any{"scene": 1}), `messages.scene.topic: template "venue/{{.room}}/scene" needs args.room`},
		{send("scene", map[string]any{"room": "+", "scene": 1}), `messages.scene.topic: topic "venue/+/scene" has a wildcard`},
		{send("status", map[string]any{"state": strings.Repeat("x", mqttpub.MaxPayload+1)}), "more than 1048576"},
		{map[string]any{"command": "scene", "room": "x"}, `unknown field "room"`},
	} {
		if err := p.Check(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%.80v) = %v, want %q", tc.args, err, tc.want)
		}
		if _, err := p.Do(drivertest.Context(t), tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Do(%.80v) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// freeAddr returns a loopback address nothing listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testhost.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func TestBrokerComesAndGoes(t *testing.T) {
	addr := freeAddr(t)
	p, ev := newPublisher(t, addr)
	// No broker yet: one event for the failed attempts, and sends are "not
	// connected" with the reason.
	if e := want(t, ev, drivers.EventDisconnected); !strings.Contains(e.Fields["error"].(string), "connection refused") {
		t.Errorf("event %+v", e)
	}
	_, err := p.Do(drivertest.Context(t), send("exact", nil))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "mqtt tcp://"+addr+": publish venue/exact: not connected (") {
		t.Errorf("error %v", err)
	}
	if st := p.Status(); st.Connected || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("status %+v", st)
	}

	b, err := broker.Start(broker.Options{Listen: addr})
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	want(t, ev, drivers.EventConnected)
	msgs := subscribe(t, "tcp://"+addr, "venue/#")
	if _, err := p.Do(drivertest.Context(t), send("exact", nil)); err != nil {
		t.Fatal(err)
	}
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "venue/exact", Payload: "once"})

	// The broker stops: lost, and not connected until it is back.
	b.Close()
	if e := want(t, ev, drivers.EventDisconnected); !strings.HasPrefix(e.Fields["error"].(string), "connection lost: ") {
		t.Errorf("event %+v", e)
	}
	if _, err := p.Do(drivertest.Context(t), send("exact", nil)); !errors.Is(err, drivers.ErrNotConnected) {
		t.Errorf("error %v", err)
	}
	startBroker(t, addr)
	want(t, ev, drivers.EventConnected)
	msgs = subscribe(t, "tcp://"+addr, "venue/#")
	if _, err := p.Do(drivertest.Context(t), send("scene", map[string]any{"room": "a", "scene": "b"})); err != nil {
		t.Fatal(err)
	}
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "venue/a/scene", Payload: `{"scene": "b"}`})
}

// proxy forwards TCP connections to a broker; the test can hold what the
// client sends (the broker never sees it) and cut every connection.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cond    *sync.Cond
	held    bool
	closed  bool
	conns   []net.Conn
	holding chan struct{} // a chunk from the client is being held
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, holding: make(chan struct{}, 100)}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.mu.Lock()
		p.closed = true
		p.cond.Broadcast()
		p.mu.Unlock()
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, u, true)
		go p.pipe(u, c, false)
	}
}

func (p *proxy) pipe(src, dst net.Conn, fromClient bool) {
	defer p.wg.Done()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if fromClient {
			p.mu.Lock()
			if p.held {
				p.holding <- struct{}{}
			}
			for p.held && !p.closed {
				p.cond.Wait()
			}
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// hold stops forwarding what clients send.
func (p *proxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = true
}

// cut closes every connection, as a broker or network failure does.
// What was held is dropped: the connections are closed before the hold is
// released.
func (p *proxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.mu.Lock()
	p.held = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *proxy) waitHolding(t *testing.T) {
	t.Helper()
	select {
	case <-p.holding:
	case <-time.After(drivertest.Deadline):
		t.Fatal("nothing held within the deadline")
	}
}

// A connection lost while a publish waits for the broker's acknowledgement:
// QoS 1 is published again by the runtime (not connected); QoS 2 is not.
func TestConnectionCutMidPublish(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	px := startProxy(t, b.Addr())
	msgs := subscribe(t, "tcp://"+b.Addr(), "venue/#")
	p, ev := newPublisher(t, px.addr())
	want(t, ev, drivers.EventConnected)

	for _, tc := range []struct {
		command      string
		notConnected bool
		want         string
	}{
		{"scene", true, "connection lost before the broker acknowledged it: not connected"},
		{"exact", false, "connection lost before the broker acknowledged it (QoS 2: not published again, it may have arrived)"},
	} {
		px.hold()
		done := make(chan error, 1)
		go func() {
			_, err := p.Do(drivertest.Context(t), send(tc.command, map[string]any{"room": "held", "scene": "x"}))
			done <- err
		}()
		px.waitHolding(t) // the PUBLISH is on its way
		px.cut()
		var err error
		select {
		case err = <-done:
		case <-time.After(drivertest.Deadline):
			t.Fatal("Do did not return after the cut")
		}
		if errors.Is(err, drivers.ErrNotConnected) != tc.notConnected || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.command, err, tc.want)
		}
		if e := want(t, ev, drivers.EventDisconnected); !strings.HasPrefix(e.Fields["error"].(string), "connection lost: ") {
			t.Errorf("event %+v", e)
		}
		want(t, ev, drivers.EventConnected) // back through the proxy
	}
	// After reconnecting, publishing works again and the held messages never
	// reached the broker.
	if _, err := p.Do(drivertest.Context(t), send("scene", map[string]any{"room": "hall", "scene": "after"})); err != nil {
		t.Fatal(err)
	}
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "venue/hall/scene", Payload: `{"scene": "after"}`})
}

func TestNoAcknowledgement(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	px := startProxy(t, b.Addr())
	p, ev := newPublisher(t, px.addr(), "timeout: 300ms", "keepalive: 1h")
	want(t, ev, drivers.EventConnected)
	px.hold()
	_, err := p.Do(drivertest.Context(t), send("status", map[string]any{"state": "x"}))
	if err == nil || errors.Is(err, drivers.ErrNotConnected) ||
		!strings.HasSuffix(err.Error(), "publish venue/status: no acknowledgement from the broker within 300ms (not published again, it may have arrived)") {
		t.Errorf("error %v", err)
	}
	// The caller's own deadline.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Do(ctx, send("status", map[string]any{"state": "x"})); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestClose(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	p, ev := newPublisher(t, b.Addr())
	want(t, ev, drivers.EventConnected)
	p.Close()
	if _, err := p.Do(drivertest.Context(t), send("exact", nil)); !errors.Is(err, mqttpub.ErrClosed) {
		t.Errorf("error %v", err)
	}
	if st := p.Status(); st.Connected {
		t.Errorf("status %+v", st)
	}
	// Closing while it cannot connect returns too.
	p2, ev2 := newPublisher(t, freeAddr(t))
	want(t, ev2, drivers.EventDisconnected)
	p2.Close()
}

func TestMosquittoWithUsername(t *testing.T) {
	m := mosquitto.Start(t)
	msgs := subscribe(t, m.URL, "venue/#")
	p, ev := newPublisher(t, m.Addr, "username: alice", "password: secret")
	want(t, ev, drivers.EventConnected)
	ctx := drivertest.Context(t)
	if err := m.Process.WaitOutput(ctx, "u'alice'"); err != nil {
		t.Error(err)
	}
	for _, c := range []string{"status", "exact", "tally"} {
		if _, err := p.Do(ctx, send(c, map[string]any{"state": "s", "camera": 1, "on": true})); err != nil {
			t.Fatal(err)
		}
	}
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "venue/status", Payload: "s"})
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "venue/exact", Payload: "once"})
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "venue/tally/1", Payload: "1"})
}

// want checks that the next event has the given name and returns it.
func want(t *testing.T, e *drivertest.Events, name string) drivers.Event {
	t.Helper()
	ev := e.Next()
	if ev.Name != name {
		t.Fatalf("event %+v, want %s", ev, name)
	}
	return ev
}
