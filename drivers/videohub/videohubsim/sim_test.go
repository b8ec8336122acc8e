package videohubsim_test

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers/videohub/videohubsim"
	"understudy/drivers/videohub/wire"
)

const deadline = 10 * time.Second

func route(o, i int) wire.Route { return wire.Route{Output: o, Input: i} }

func lock(p int, s wire.LockState) wire.Lock { return wire.Lock{Port: p, State: s} }

func label(p int, text string) wire.Label { return wire.Label{Port: p, Text: text} }

// rawClient is a test client speaking the protocol directly.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	c  *wire.Conn
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, c: wire.NewConn(nc)}
}

// send writes raw bytes.
func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next message.
func (c *rawClient) next() wire.Message {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(deadline))
	m, err := c.c.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// expect reads the next message and checks it.
func (c *rawClient) expect(want wire.Message) {
	c.t.Helper()
	if got := c.next(); !reflect.DeepEqual(got, want) {
		c.t.Fatalf("got %#v, want %#v", got, want)
	}
}

// prelude reads the status dump and returns it; it ends at END PRELUDE or,
// when end is false, at CONFIGURATION.
func (c *rawClient) prelude(end bool) []wire.Message {
	c.t.Helper()
	var ms []wire.Message
	for {
		m := c.next()
		ms = append(ms, m)
		if _, ok := m.(wire.EndPrelude); ok {
			return ms
		}
		if _, ok := m.(wire.Configuration); ok && !end {
			return ms
		}
	}
}

// closed checks that the simulator closes the connection without sending
// anything more.
func (c *rawClient) closed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(deadline))
	m, err := c.c.ReadMessage()
	if err == nil {
		c.t.Fatalf("got %#v, want the connection closed", m)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open: %v", err)
	}
}

func TestPreludeDefaults(t *testing.T) {
	_, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	c := dial(t, addr)
	ms := c.prelude(true)
	var headers []string
	for _, m := range ms {
		headers = append(headers, m.Block().Header)
	}
	want := []string{"PROTOCOL PREAMBLE", "VIDEOHUB DEVICE", "INPUT LABELS", "OUTPUT LABELS",
		"VIDEO OUTPUT LOCKS", "VIDEO OUTPUT ROUTING", "CONFIGURATION", "END PRELUDE"}
	if !reflect.DeepEqual(headers, want) {
		t.Fatalf("headers %q, want %q", headers, want)
	}
	if got := ms[0].(wire.Preamble).Version; got != "2.8" {
		t.Errorf("version %q", got)
	}
	dev := ms[1].(wire.Device)
	if dev.Present != "true" || dev.ModelName != "Blackmagic Smart Videohub" || dev.VideoInputs != 16 || dev.VideoOutputs != 16 {
		t.Errorf("device %#v", dev)
	}
	in := ms[2].(wire.InputLabels)
	if len(in) != 16 || in[0] != (wire.Label{Port: 0, Text: "Input 1"}) || in[15].Text != "Input 16" {
		t.Errorf("input labels %#v", in)
	}
	out := ms[3].(wire.OutputLabels)
	if len(out) != 16 || out[4] != (wire.Label{Port: 4, Text: "Output 5"}) {
		t.Errorf("output labels %#v", out)
	}
	for _, l := range ms[4].(wire.OutputLocks) {
		if l.State != wire.Unlocked {
			t.Errorf("lock %#v", l)
		}
	}
	routes := ms[5].(wire.OutputRouting)
	for i, r := range routes {
		if r != (wire.Route{Output: i, Input: i}) {
			t.Errorf("route %#v", r)
		}
	}
	if len(routes) != 16 {
		t.Errorf("%d routes", len(routes))
	}
}

func TestPreludeOptions(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{
		Inputs: 2, Outputs: 3, Model: "Blackmagic Micro Videohub",
		InputLabels:    []string{"Cam\nA"},
		OutputLabels:   []string{"Program", strings.Repeat("é", 40)},
		OmitEndPrelude: true, ProtocolVersion: "2.4",
	})
	c := dial(t, addr)
	ms := c.prelude(false)
	if len(ms) != 7 {
		t.Fatalf("%d blocks", len(ms))
	}
	if v := ms[0].(wire.Preamble).Version; v != "2.4" {
		t.Errorf("version %q", v)
	}
	if got, want := ms[2], (wire.InputLabels{label(0, "Cam A"), label(1, "Input 2")}); !reflect.DeepEqual(got, want) {
		t.Errorf("input labels %#v, want %#v", got, want)
	}
	if got, want := ms[3], (wire.OutputLabels{label(0, "Program"), label(1, strings.Repeat("é", 24)), label(2, "Output 3")}); !reflect.DeepEqual(got, want) {
		t.Errorf("output labels %#v, want %#v", got, want)
	}
	// Fewer inputs than outputs: the extra output shows input 1.
	if got, want := s.Routing(), []int{1, 2, 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("Routing() = %v, want %v", got, want)
	}
	// No END PRELUDE: a PING's ACK is the next thing to come.
	c.send("PING:\n\n")
	c.expect(wire.Ack{})
}

func TestPreludeLarge(t *testing.T) {
	_, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 5000, Outputs: wire.MaxPorts,
		InputLabels: []string{strings.Repeat("x", 1000)}})
	c := dial(t, addr)
	ms := c.prelude(true)
	if n := ms[1].(wire.Device).VideoInputs; n != wire.MaxPorts {
		t.Errorf("inputs %d, want clamped to %d", n, wire.MaxPorts)
	}
	if n := len(ms[2].(wire.InputLabels)[0].Text); n != videohubsim.MaxLabel {
		t.Errorf("label of %d bytes, want %d", n, videohubsim.MaxLabel)
	}
}

func TestRouteBroadcast(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	routes, cancel := s.Subscribe(10)
	defer cancel()
	a, b := dial(t, addr), dial(t, addr)
	a.prelude(true)
	b.prelude(true)
	if n := s.ClientCount(); n != 2 {
		t.Errorf("ClientCount() = %d, want 2", n)
	}
	a.send("VIDEO OUTPUT ROUTING:\n2 6\n\n")
	a.expect(wire.Ack{})
	a.expect(wire.OutputRouting{route(2, 6)})
	b.expect(wire.OutputRouting{route(2, 6)})
	if got := s.Routing()[2]; got != 7 {
		t.Errorf("Routing()[2] = %d, want 7", got)
	}
	select {
	case r := <-routes:
		if r.Output != 3 || r.Input != 7 || r.Remote != a.nc.LocalAddr().String() {
			t.Errorf("route record %+v", r)
		}
	case <-time.After(deadline):
		t.Fatal("no route record")
	}
	rs := s.Routes()
	if len(rs) != 1 || rs[0].Output != 3 || rs[0].Input != 7 {
		t.Errorf("Routes() = %+v", rs)
	}
	cmds := s.Commands()
	if len(cmds) != 1 || cmds[0].Header != "VIDEO OUTPUT ROUTING" || !reflect.DeepEqual(cmds[0].Lines, []string{"2 6"}) || cmds[0].Reply != "ACK" {
		t.Errorf("Commands() = %+v", cmds)
	}

	// From the panel.
	if err := s.SetRoute(1, 16); err != nil {
		t.Fatal(err)
	}
	a.expect(wire.OutputRouting{route(0, 15)})
	b.expect(wire.OutputRouting{route(0, 15)})
	if r := <-routes; r.Output != 1 || r.Input != 16 || r.Remote != "panel" {
		t.Errorf("panel route record %+v", r)
	}
	for _, bad := range [][2]int{{0, 1}, {17, 1}, {1, 0}, {1, 17}} {
		if err := s.SetRoute(bad[0], bad[1]); err == nil {
			t.Errorf("SetRoute(%d, %d) accepted", bad[0], bad[1])
		}
	}
}

func TestRequestsAndErrors(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 4, Outputs: 4})
	c := dial(t, addr)
	c.prelude(true)
	for _, tc := range []struct {
		send  string
		reply wire.Message
		then  wire.Message
	}{
		{"PING:\n\n", wire.Ack{}, nil},
		{"PING:\r\n\r\n", wire.Ack{}, nil},
		{"VIDEO OUTPUT ROUTING:\n\n", wire.Ack{}, wire.OutputRouting{route(0, 0), route(1, 1), route(2, 2), route(3, 3)}},
		{"VIDEO OUTPUT LOCKS:\n\n", wire.Ack{}, wire.OutputLocks{lock(0, 'U'), lock(1, 'U'), lock(2, 'U'), lock(3, 'U')}},
		{"CONFIGURATION:\n\n", wire.Ack{}, wire.Configuration{{Key: "Take Mode", Value: "false"}}},
		{"VIDEO OUTPUT ROUTING:\n4 0\n\n", wire.Nak{}, nil},
		{"VIDEO OUTPUT ROUTING:\n0 4\n\n", wire.Nak{}, nil},
		{"VIDEO OUTPUT ROUTING:\n0 1\n9 9\n\n", wire.Nak{}, nil}, // all or nothing
		{"VIDEO OUTPUT ROUTING:\nzero one\n\n", wire.Nak{}, nil},
		{"VIDEO OUTPUT LOCKS:\n0 L\n\n", wire.Nak{}, nil},
		{"INPUT LABELS:\n4 x\n\n", wire.Nak{}, nil},
		{"FROBNICATE:\n1\n\n", wire.Nak{}, nil},
		{"VIDEOHUB DEVICE:\nVideo inputs: 9\n\n", wire.Nak{}, nil},
		{"hello there\n\n", wire.Nak{}, nil},
		{"ACK\n\n", wire.Nak{}, nil},
	} {
		c.send(tc.send)
		c.expect(tc.reply)
		if tc.then != nil {
			c.expect(tc.then)
		}
	}
	if got := s.Routing(); !reflect.DeepEqual(got, []int{1, 2, 3, 4}) {
		t.Errorf("routing changed by refused commands: %v", got)
	}
	cmds := s.Commands()
	if len(cmds) != 15 {
		t.Fatalf("%d commands recorded, want 15", len(cmds))
	}
	if c := cmds[13]; c.Header != "" || c.Reply != "NAK" {
		t.Errorf("unparsable command recorded as %+v", c)
	}

	// RefuseNext refuses set commands only, then lets them through.
	s.RefuseNext(2)
	c.send("PING:\n\nVIDEO OUTPUT ROUTING:\n0 1\n\nOUTPUT LABELS:\n0 x\n\nVIDEO OUTPUT ROUTING:\n0 1\n\n")
	c.expect(wire.Ack{})
	c.expect(wire.Nak{})
	c.expect(wire.Nak{})
	c.expect(wire.Ack{})
	c.expect(wire.OutputRouting{route(0, 1)})
	if len(s.Routes()) != 1 {
		t.Errorf("Routes() = %+v", s.Routes())
	}
}

func TestLabels(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 4, Outputs: 4})
	a, b := dial(t, addr), dial(t, addr)
	a.prelude(true)
	b.prelude(true)
	a.send("INPUT LABELS:\n1 Camera Left\n3 Graphics\n\n")
	a.expect(wire.Ack{})
	want := wire.InputLabels{label(1, "Camera Left"), label(3, "Graphics")}
	a.expect(want)
	b.expect(want)
	a.send("OUTPUT LABELS:\n0 Program\n\n")
	a.expect(wire.Ack{})
	a.expect(wire.OutputLabels{label(0, "Program")})
	b.expect(wire.OutputLabels{label(0, "Program")})
	if got := s.InputLabels(); !reflect.DeepEqual(got, []string{"Input 1", "Camera Left", "Input 3", "Graphics"}) {
		t.Errorf("InputLabels() = %q", got)
	}
	if got := s.OutputLabels()[0]; got != "Program" {
		t.Errorf("OutputLabels()[0] = %q", got)
	}
}

func TestLocks(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 4, Outputs: 4})
	a, b := dial(t, addr), dial(t, addr)
	a.prelude(true)
	b.prelude(true)

	a.send("VIDEO OUTPUT LOCKS:\n0 O\n\n")
	a.expect(wire.Ack{})
	a.expect(wire.OutputLocks{lock(0, wire.Owned)})
	b.expect(wire.OutputLocks{lock(0, wire.Locked)})

	// b may not route onto it: ACK, and the update shows the route unchanged.
	b.send("VIDEO OUTPUT ROUTING:\n0 3\n\n")
	b.expect(wire.Ack{})
	b.expect(wire.OutputRouting{route(0, 0)})
	a.expect(wire.OutputRouting{route(0, 0)})
	// Nor unlock or take it.
	b.send("VIDEO OUTPUT LOCKS:\n0 U\n\n")
	b.expect(wire.Ack{})
	b.expect(wire.OutputLocks{lock(0, wire.Locked)})
	a.expect(wire.OutputLocks{lock(0, wire.Owned)})
	// The owner may.
	a.send("VIDEO OUTPUT ROUTING:\n0 3\n\n")
	a.expect(wire.Ack{})
	a.expect(wire.OutputRouting{route(0, 3)})
	b.expect(wire.OutputRouting{route(0, 3)})
	if got := s.Routes(); len(got) != 1 || got[0].Input != 4 {
		t.Errorf("Routes() = %+v", got)
	}
	// A lock in the status dump as each client sees it.
	b.send("VIDEO OUTPUT LOCKS:\n\n")
	b.expect(wire.Ack{})
	b.expect(wire.OutputLocks{lock(0, 'L'), lock(1, 'U'), lock(2, 'U'), lock(3, 'U')})

	// The owner's locks go when it disconnects.
	a.nc.Close()
	b.expect(wire.OutputLocks{lock(0, wire.Unlocked)})

	// A lock from the panel; force unlock.
	if err := s.LockOutput(2); err != nil {
		t.Fatal(err)
	}
	b.expect(wire.OutputLocks{lock(1, wire.Locked)})
	b.send("VIDEO OUTPUT LOCKS:\n1 O\n\n")
	b.expect(wire.Ack{})
	b.expect(wire.OutputLocks{lock(1, wire.Locked)})
	b.send("VIDEO OUTPUT LOCKS:\n1 F\n\n")
	b.expect(wire.Ack{})
	b.expect(wire.OutputLocks{lock(1, wire.Unlocked)})
	if err := s.LockOutput(2); err != nil {
		t.Fatal(err)
	}
	b.expect(wire.OutputLocks{lock(1, wire.Locked)})
	if err := s.UnlockOutput(2); err != nil {
		t.Fatal(err)
	}
	b.expect(wire.OutputLocks{lock(1, wire.Unlocked)})
	if err := s.LockOutput(5); err == nil {
		t.Error("LockOutput(5) accepted on a 4-output hub")
	}
}

func TestDropNext(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	a, b := dial(t, addr), dial(t, addr)
	a.prelude(true)
	b.prelude(true)
	s.DropNext(1)
	a.send("VIDEO OUTPUT ROUTING:\n0 5\n\n")
	a.closed()
	cmds := s.Commands()
	if len(cmds) != 1 || cmds[0].Reply != "" || cmds[0].Header != "VIDEO OUTPUT ROUTING" {
		t.Errorf("Commands() = %+v", cmds)
	}
	if got := s.Routing()[0]; got != 1 {
		t.Errorf("dropped command was applied: output 1 shows %d", got)
	}
	// Only once, and the other client is unaffected.
	b.send("PING:\n\n")
	b.expect(wire.Ack{})
}

func TestSilent(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	cmds, cancel := s.SubscribeCommands(10)
	defer cancel()
	old := dial(t, addr)
	old.prelude(true)
	s.SetSilent(true)
	c := dial(t, addr) // gets no status dump
	c.send("PING:\n\n")
	select {
	case cmd := <-cmds:
		if cmd.Header != "PING" || cmd.Reply != "" {
			t.Fatalf("silent command recorded as %+v", cmd)
		}
	case <-time.After(deadline):
		t.Fatal("command not recorded")
	}
	if err := s.SetRoute(1, 2); err != nil { // applied, but not pushed
		t.Fatal(err)
	}
	s.SetSilent(false)
	c.send("PING:\n\n")
	c.expect(wire.Ack{}) // the first thing c ever receives
	old.send("PING:\n\n")
	old.expect(wire.Ack{}) // no routing update came before it
}

func TestDropConnectionsAndClose(t *testing.T) {
	s := videohubsim.New(videohubsim.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() { s.Close() })
	a, b := dial(t, l.Addr().String()), dial(t, l.Addr().String())
	a.prelude(true)
	b.prelude(true)
	s.DropConnections()
	a.closed()
	b.closed()

	c := dial(t, l.Addr().String())
	c.prelude(true)
	sub, _ := s.Subscribe(1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	case <-time.After(deadline):
		t.Fatal("Serve did not return after Close")
	}
	c.closed()
	if _, ok := <-sub; ok {
		t.Error("subscription still open after Close")
	}
	if n := s.ClientCount(); n != 0 {
		t.Errorf("ClientCount() = %d after Close", n)
	}
	if _, err := s.Listen("127.0.0.1:0"); !errors.Is(err, videohubsim.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
	if nc, err := net.Dial("tcp", l.Addr().String()); err == nil {
		nc.Close()
		t.Error("listener still accepting after Close")
	}
}

func TestRestartDropsEveryConnectionAndComesBackWithTheDefaultRouting(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 4, Outputs: 6})
	a := dial(t, addr)
	a.prelude(true)
	for _, r := range [][2]int{{1, 3}, {2, 4}, {6, 2}} {
		if err := s.SetRoute(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.LockOutput(1); err != nil {
		t.Fatal(err)
	}
	// The client hears each of those changes before the restart (they are
	// on their way when it comes, and would be read before the close).
	a.expect(wire.OutputRouting{route(0, 2)})
	a.expect(wire.OutputRouting{route(1, 3)})
	a.expect(wire.OutputRouting{route(5, 1)})
	a.next() // the lock
	s.RefuseNext(5)
	s.Restart()
	a.closed()
	want := []int{1, 2, 3, 4, 1, 1}
	if got := s.Routing(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Routing() after Restart = %v, want %v", got, want)
	}
	// A new connection gets the default routing and no locks, and the
	// injected faults are gone.
	b := dial(t, addr)
	var routing wire.OutputRouting
	var locks wire.OutputLocks
	for _, m := range b.prelude(true) {
		switch m := m.(type) {
		case wire.OutputRouting:
			routing = m
		case wire.OutputLocks:
			locks = m
		}
	}
	if !reflect.DeepEqual(routing, wire.OutputRouting{route(0, 0), route(1, 1), route(2, 2), route(3, 3), route(4, 0), route(5, 0)}) {
		t.Errorf("routing dump after Restart: %v", routing)
	}
	for _, l := range locks {
		if l.State != wire.Unlocked {
			t.Errorf("lock after Restart: %v", l)
		}
	}
	b.send("VIDEO OUTPUT ROUTING:\n0 1\n\n")
	b.expect(wire.Ack{})
	b.expect(wire.OutputRouting{route(0, 1)})
}

func TestMalformedStream(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	c := dial(t, addr)
	c.prelude(true)
	// A block beyond the size limit ends the connection.
	go c.nc.Write([]byte("INPUT LABELS:\n" + strings.Repeat("0 x\n", wire.MaxBlockSize/4+1) + "\n"))
	c.closed()
	if n := len(s.Routes()); n != 0 {
		t.Errorf("%d routes", n)
	}
}
