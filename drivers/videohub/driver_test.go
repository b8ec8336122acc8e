package videohub_test

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers/videohub/wire"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/videohub"
	"understudy/drivers/videohub/videohubsim"
	"understudy/units"
)

// startDriver starts a videohub driver for addr with the given extra
// settings (YAML lines) and waits until it is connected.
func startDriver(t *testing.T, addr string, extra ...string) (*videohub.Videohub, *drivertest.Events) {
	t.Helper()
	v, ev := newDriver(t, addr, extra...)
	ev.Connected()
	return v, ev
}

// newDriver starts a driver without waiting for the connection.
func newDriver(t *testing.T, addr string, extra ...string) (*videohub.Videohub, *drivertest.Events) {
	t.Helper()
	// Fast reconnection, and no idle ping unless the test asks for it.
	return drivertest.Start[*videohub.Videohub](t, videohub.New, drivertest.Doc(addr, extra, "backoff_min: 10ms", "backoff_max: 50ms", "ping: 1h"))
}

func TestPreludeRead(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{
		Inputs: 12, Outputs: 8, Model: "Blackmagic Smart Videohub 12 x 12",
		InputLabels: []string{"Camera 1", "Camera 2"}, OutputLabels: []string{"Program"},
	})
	if err := s.SetRoute(8, 12); err != nil {
		t.Fatal(err)
	}
	v, _ := startDriver(t, addr)
	if in, out := v.Size(); in != 12 || out != 8 {
		t.Errorf("Size() = %d, %d; want 12, 8", in, out)
	}
	if got, want := v.Routing(), []int{1, 2, 3, 4, 5, 6, 7, 12}; !reflect.DeepEqual(got, want) {
		t.Errorf("Routing() = %v, want %v", got, want)
	}
	if got := v.InputLabels(); len(got) != 12 || got[0] != "Camera 1" || got[1] != "Camera 2" || got[11] != "Input 12" {
		t.Errorf("InputLabels() = %q", got)
	}
	if got := v.OutputLabels(); len(got) != 8 || got[0] != "Program" || got[7] != "Output 8" {
		t.Errorf("OutputLabels() = %q", got)
	}
	st := v.Status()
	if !st.Connected || st.Address != addr || st.LastError != "" || st.Since.IsZero() {
		t.Errorf("Status() = %+v", st)
	}
}

func TestRoute(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	v, ev := startDriver(t, addr)
	if err := v.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatal(err)
	}
	if got := v.Routing()[2]; got != 7 {
		t.Errorf("driver Routing()[2] = %d, want 7", got)
	}
	if got := s.Routing()[2]; got != 7 {
		t.Errorf("sim Routing()[2] = %d, want 7", got)
	}
	routes := s.Routes()
	if len(routes) != 1 || routes[0].Output != 3 || routes[0].Input != 7 {
		t.Errorf("sim applied %+v, want output 3 ← input 7 once", routes)
	}
	// On the wire, ports are 0-based.
	var sets []videohubsim.Command
	for _, c := range s.Commands() {
		if c.Header == wire.HeaderOutputRouting {
			sets = append(sets, c)
		}
	}
	if len(sets) != 1 || !reflect.DeepEqual(sets[0].Lines, []string{"2 6"}) || sets[0].Reply != "ACK" {
		t.Errorf("routing commands %+v", sets)
	}
	got := ev.Next()
	if got.Name != drivers.EventRouteChanged || got.Fields["output"] != 3 || got.Fields["input"] != 7 {
		t.Errorf("event %+v, want route_changed output 3 input 7", got)
	}
	// Routing to what is already shown succeeds too.
	if err := v.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Errorf("repeated route: %v", err)
	}
}

func TestRouteNAK(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	v, _ := startDriver(t, addr)
	s.RefuseNext(1)
	err := v.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, videohub.ErrNAK) {
		t.Fatalf("Route error %v, want ErrNAK", err)
	}
	if want := "videohub " + addr + " refused route output 3 ← input 7 (NAK)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got := v.Routing()[2]; got != 3 {
		t.Errorf("Routing()[2] = %d after NAK, want 3", got)
	}
	if err := v.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Errorf("route after a NAK: %v", err)
	}
}

func TestRouteLocked(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	v, _ := startDriver(t, addr)
	if err := s.LockOutput(3); err != nil {
		t.Fatal(err)
	}
	err := v.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, videohub.ErrNotApplied) {
		t.Fatalf("Route error %v, want ErrNotApplied", err)
	}
	if !strings.Contains(err.Error(), "output 3 is locked by another client") {
		t.Errorf("error %q does not name the lock", err)
	}
	if got := v.Routing()[2]; got != 3 {
		t.Errorf("Routing()[2] = %d, want 3", got)
	}
	if n := len(s.Routes()); n != 0 {
		t.Errorf("sim applied %d routes", n)
	}
	// Other outputs are not locked.
	if err := v.Route(drivertest.Context(t), 4, 7); err != nil {
		t.Errorf("route to an unlocked output: %v", err)
	}
}

func TestDroppedMidCommand(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	v, ev := startDriver(t, addr)
	s.DropNext(1)
	err := v.Route(drivertest.Context(t), 3, 7)
	if err == nil {
		t.Fatal("Route succeeded on a dropped connection")
	}
	if !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("error %q", err)
	}
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if down.Fields["address"] != addr || down.Fields["error"] == "" {
		t.Errorf("disconnected event %+v", down)
	}
	up, before := ev.WaitFor(drivers.EventConnected)
	if up.Fields["address"] != addr || len(before) != 0 {
		t.Errorf("connected event %+v after %+v", up, before)
	}
	if err := v.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatalf("route after reconnecting: %v", err)
	}
	if got := s.Routing()[2]; got != 7 {
		t.Errorf("sim Routing()[2] = %d", got)
	}
	var first videohubsim.Command
	for _, c := range s.Commands() {
		if c.Header == wire.HeaderOutputRouting {
			first = c
			break
		}
	}
	if first.Reply != "" || !reflect.DeepEqual(first.Lines, []string{"2 6"}) {
		t.Errorf("first routing command %+v, want dropped without reply", first)
	}
}

func TestSilentDeviceTimesOut(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	v, ev := startDriver(t, addr, "timeout: 500ms")
	s.SetSilent(true)
	err := v.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, videohub.ErrTimeout) {
		t.Fatalf("Route error %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "500ms") {
		t.Errorf("error %q does not give the timeout", err)
	}
	ev.WaitFor(drivers.EventDisconnected)
	if v.Status().Connected {
		t.Error("still connected after a timeout")
	}
	if err := v.Route(drivertest.Context(t), 3, 7); !errors.Is(err, videohub.ErrNotConnected) {
		t.Errorf("Route while disconnected: %v, want ErrNotConnected", err)
	}
	s.SetSilent(false)
	ev.WaitFor(drivers.EventConnected)
	if err := v.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatalf("route after the device came back: %v", err)
	}
}

func TestIdlePing(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	cmds, cancel := s.SubscribeCommands(100)
	defer cancel()
	_, ev := startDriver(t, addr, "timeout: 500ms", "ping: 20ms")
	// Pings come while the device answers...
	pings := 0
	for pings < 3 {
		select {
		case c := <-cmds:
			if c.Header == wire.HeaderPing && c.Reply == "ACK" {
				pings++
			}
		case <-time.After(drivertest.Deadline):
			t.Fatal("no idle pings")
		}
	}
	// ...and an unanswered one drops the connection.
	s.SetSilent(true)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if !strings.Contains(down.Fields["error"].(string), "no reply") {
		t.Errorf("disconnected event %+v", down)
	}
	s.SetSilent(false)
	ev.WaitFor(drivers.EventConnected)
}

func TestUnsolicitedRoute(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	v, ev := startDriver(t, addr)
	if err := s.SetRoute(5, 2); err != nil {
		t.Fatal(err)
	}
	got := ev.Next()
	if got.Name != drivers.EventRouteChanged || got.Fields["output"] != 5 || got.Fields["input"] != 2 {
		t.Fatalf("event %+v, want route_changed output 5 input 2", got)
	}
	if r := v.Routing()[4]; r != 2 {
		t.Errorf("Routing()[4] = %d", r)
	}
	// A route set again to what it was changes nothing: no event for it.
	if err := s.SetRoute(5, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRoute(6, 1); err != nil {
		t.Fatal(err)
	}
	got = ev.Next()
	if got.Fields["output"] != 6 || got.Fields["input"] != 1 {
		t.Errorf("event %+v, want route_changed output 6 input 1", got)
	}
	// Lock and label changes from others update the cache.
	if err := s.LockOutput(3); err != nil {
		t.Fatal(err)
	}
	other, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Write([]byte("INPUT LABELS:\n0 Stage Left\n\nVIDEO OUTPUT ROUTING:\n0 15\n\n")); err != nil {
		t.Fatal(err)
	}
	got = ev.Next() // comes after the label update on the same stream
	if got.Fields["output"] != 1 || got.Fields["input"] != 16 {
		t.Errorf("event %+v, want route_changed output 1 input 16", got)
	}
	if l := v.InputLabels()[0]; l != "Stage Left" {
		t.Errorf("InputLabels()[0] = %q", l)
	}
	if err := v.Route(drivertest.Context(t), 3, 1); !strings.Contains(err.Error(), "locked by another client") {
		t.Errorf("route onto a panel-locked output: %v", err)
	}
}

func TestOldFirmwareWithoutEndPrelude(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 4, Outputs: 2, OmitEndPrelude: true, ProtocolVersion: "2.4"})
	v, _ := startDriver(t, addr)
	if in, out := v.Size(); in != 4 || out != 2 {
		t.Errorf("Size() = %d, %d", in, out)
	}
	if err := v.Route(drivertest.Context(t), 2, 4); err != nil {
		t.Fatal(err)
	}
	if got := s.Routing(); !reflect.DeepEqual(got, []int{1, 4}) {
		t.Errorf("sim routing %v", got)
	}
}

func TestRouteRejectedWithoutSending(t *testing.T) {
	s, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 4, Outputs: 2})
	v, _ := startDriver(t, addr)
	drivertest.RouterRejectsOutOfRange(t, v, videohub.ErrOutOfRange, func() (routes []videohubsim.Command) {
		for _, c := range s.Commands() {
			if c.Header == wire.HeaderOutputRouting {
				routes = append(routes, c)
			}
		}
		return routes
	})
}

func TestNotConnected(t *testing.T) {
	drivertest.RouterNotConnected(t, videohub.New, func(t *testing.T, addr string) (drivers.Router, *drivertest.Events) {
		return newDriver(t, addr)
	}, videohub.ErrClosed)
}

// fakeDevice is a listener the test answers by hand, for exact control of
// what the driver sees and when.
type fakeDevice struct {
	t    *testing.T
	addr string
	l    *drivertest.Listener
}

func newFakeDevice(t *testing.T) *fakeDevice {
	l := drivertest.Listen(t)
	return &fakeDevice{t: t, addr: l.Addr, l: l}
}

// fakeConn is the device's end of one connection.
type fakeConn struct {
	t  *testing.T
	nc net.Conn
	c  *wire.Conn
}

// accept takes the driver's next connection and sends the status dump of a
// 4x4 device, routes i ← i.
func (f *fakeDevice) accept() *fakeConn {
	f.t.Helper()
	nc := f.l.Accept()
	fc := &fakeConn{t: f.t, nc: nc, c: wire.NewConn(nc)}
	fc.send(wire.Preamble{Version: "2.8"},
		wire.Device{Present: "true", ModelName: "Fake", VideoInputs: 4, VideoOutputs: 4},
		wire.OutputRouting{{Output: 0, Input: 0}, {Output: 1, Input: 1}, {Output: 2, Input: 2}, {Output: 3, Input: 3}},
		wire.EndPrelude{})
	return fc
}

func (c *fakeConn) send(ms ...wire.Message) {
	c.t.Helper()
	if err := c.c.WriteMessage(ms...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *fakeConn) expect(header string) wire.Block {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(drivertest.Deadline))
	b, err := c.c.ReadBlock()
	if err != nil {
		c.t.Fatal(err)
	}
	if b.Header != header {
		c.t.Fatalf("got %q, want %s", b.String(), header)
	}
	return b
}

// connect accepts the driver's connection and answers its prelude PING.
func (f *fakeDevice) connect(ev *drivertest.Events) *fakeConn {
	f.t.Helper()
	c := f.accept()
	c.expect(wire.HeaderPing)
	c.send(wire.Ack{})
	ev.WaitFor(drivers.EventConnected)
	return c
}

func TestCloseWithCommandInFlight(t *testing.T) {
	f := newFakeDevice(t)
	v, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	drivertest.RouterCloseWithRouteInFlight(t, v, c.ExpectRoute, videohub.ErrClosed)
}

// ExpectRoute reads the command routing output to input.
func (c *fakeConn) ExpectRoute(output, input int) {
	c.t.Helper()
	b := c.expect(wire.HeaderOutputRouting)
	if want := fmt.Sprintf("%d %d", output-1, input-1); !reflect.DeepEqual(b.Lines, []string{want}) {
		c.t.Errorf("route command %q, want %q", b.String(), want)
	}
}

// AnswerRoute acknowledges a route and reports it.
func (c *fakeConn) AnswerRoute(output, input int) {
	c.t.Helper()
	c.send(wire.Ack{}, wire.OutputRouting{{Output: output - 1, Input: input - 1}})
}

func TestRouteContextCancelled(t *testing.T) {
	f := newFakeDevice(t)
	v, ev := newDriver(t, f.addr)
	drivertest.RouterRouteCancelled(t, v, f.connect(ev))
}

func TestAckWithoutUpdate(t *testing.T) {
	f := newFakeDevice(t)
	v, ev := newDriver(t, f.addr, "timeout: 500ms")
	c := f.connect(ev)

	// ACK and no update, output already showing the input: success.
	errc := make(chan error, 1)
	go func() { errc <- v.Route(drivertest.Context(t), 2, 2) }()
	c.expect(wire.HeaderOutputRouting)
	c.send(wire.Ack{})
	if err := <-errc; err != nil {
		t.Errorf("route already in place: %v", err)
	}
	// ACK and no update otherwise: not applied, and the connection stays.
	go func() { errc <- v.Route(drivertest.Context(t), 2, 4) }()
	c.expect(wire.HeaderOutputRouting)
	c.send(wire.Ack{})
	err := <-errc
	if !errors.Is(err, videohub.ErrNotApplied) || !strings.Contains(err.Error(), "no status update") {
		t.Errorf("Route error %v", err)
	}
	// An update that shows another input.
	go func() { errc <- v.Route(drivertest.Context(t), 2, 4) }()
	c.expect(wire.HeaderOutputRouting)
	c.send(wire.Ack{}, wire.OutputRouting{{Output: 1, Input: 0}})
	err = <-errc
	if !errors.Is(err, videohub.ErrNotApplied) || !strings.Contains(err.Error(), "shows input 1") {
		t.Errorf("Route error %v", err)
	}
	if !v.Status().Connected {
		t.Error("disconnected")
	}
}

func TestMalformedDeviceReconnects(t *testing.T) {
	f := newFakeDevice(t)
	v, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	// Unknown blocks, and blocks whose header cannot be read, are ignored; a
	// malformed routing block is not.
	c.send(wire.Unknown{Header: "TAKE MODE", Lines: []string{"0 true"}})
	if _, err := c.nc.Write([]byte("odd header\n0 0\n\nVIDEO OUTPUT ROUTING:\n0 x\n\n")); err != nil {
		t.Fatal(err)
	}
	down, before := ev.WaitFor(drivers.EventDisconnected)
	if len(before) != 0 || !strings.Contains(down.Fields["error"].(string), `VIDEO OUTPUT ROUTING line 1 "0 x"`) {
		t.Errorf("disconnected event %+v after %+v", down, before)
	}
	f.connect(ev)
	if !v.Status().Connected {
		t.Error("not connected again")
	}
}

func TestConfig(t *testing.T) {
	// The sample from README.md.
	d, err := videohub.New(drivertest.Config("router", "address: 192.168.10.50      # port 9990 unless given\ntimeout: 2s\nping: 5s\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := d.(*videohub.Videohub).Settings()
	want := videohub.Settings{Address: "192.168.10.50:9990", Timeout: units.Duration(2 * time.Second), Ping: units.Duration(5 * time.Second),
		BackoffMin: units.Duration(100 * time.Millisecond), BackoffMax: units.Duration(5 * time.Second)}
	if got != want {
		t.Errorf("settings %+v, want %+v", got, want)
	}
	if st := d.Status(); st.Connected || st.Address != "192.168.10.50:9990" {
		t.Errorf("Status() before Start = %+v", st)
	}
	d, err = videohub.New(drivertest.Config("router", "address: hub.local:9991\ntimeout: 500ms\nbackoff_min: 1s\nbackoff_max: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := d.(*videohub.Videohub).Settings(); s.Address != "hub.local:9991" || s.Timeout.D() != 500*time.Millisecond || s.BackoffMax.D() != time.Second {
		t.Errorf("settings %+v", s)
	}

	for _, tc := range []struct{ doc, want string }{
		{"timeout: 2s\n", "address is required"},
		{"address: ''\n", "address is required"},
		{"address: hub\nspeed: fast\n", "speed"},
		{"address: hub\ntimeout: 2 parsecs\n", "bad duration \"2 parsecs\""},
		{"address: hub\nping: -1s\n", "ping: -1s is negative"},
		{"address: hub\nbackoff_min: 2s\nbackoff_max: 1s\n", "backoff_max (1s) is less than backoff_min (2s)"},
		{"address: 'hub:99999'\n", "port must be"},
	} {
		_, err := videohub.New(drivertest.Config("router", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// Through the registry, the error names the driver.
	reg := drivers.NewRegistry(videohub.Kind)
	if _, err := reg.New("videohub", drivertest.Config("router", "adress: hub\n")); err == nil || !strings.Contains(err.Error(), "driver router (videohub)") {
		t.Errorf("registry error %v", err)
	}
	if _, err := videohub.New(drivers.Config{Name: "router"}); err == nil {
		t.Error("New without a decoder succeeded")
	}
}

func TestRouteErrorsTellTheRuntimeWhetherToRetry(t *testing.T) {
	for _, tc := range []struct {
		err   error
		retry bool
	}{
		{videohub.ErrNotConnected, true}, {videohub.ErrTimeout, true},
		{videohub.ErrNAK, false}, {videohub.ErrNotApplied, false}, {videohub.ErrOutOfRange, false},
	} {
		wrapped := fmt.Errorf("videohub 10.0.0.5:9990 route output 3 ← input 7: %w", tc.err)
		if refused := errors.Is(wrapped, drivers.ErrRefused); refused == tc.retry {
			t.Errorf("%v: refused=%v, want retry=%v", tc.err, refused, tc.retry)
		}
		if tc.retry && !errors.Is(wrapped, drivers.ErrNotConnected) && tc.err != videohub.ErrTimeout {
			t.Errorf("%v is not ErrNotConnected", tc.err)
		}
	}
}

func TestAReconnectReadsTheRoutingBackBeforeDriverConnected(t *testing.T) {
	sim, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 8, Outputs: 8})
	v, ev := startDriver(t, addr)
	drivertest.RouterReadsRoutingBackOnReconnect(t, v, ev, drivertest.PanelChangeThenDrop(sim))
}

func TestADeviceRestartIsReadBackOnReconnecting(t *testing.T) {
	sim, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 8, Outputs: 8})
	v, ev := startDriver(t, addr)
	drivertest.RouterSeesADeviceRestart(t, v, ev, sim)
}
