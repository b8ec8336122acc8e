package kramer_test

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"understudy/drivers/kramer/wire"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/kramer"
	"understudy/drivers/kramer/kramersim"
	"understudy/units"
)

func routeChanged(output, input int) drivers.Event {
	return drivers.Event{Name: drivers.EventRouteChanged, Fields: map[string]any{"output": output, "input": input}}
}

// startDriver starts a driver for addr with the given extra settings (YAML
// lines) and waits until it is connected.
func startDriver(t *testing.T, addr string, extra ...string) (*kramer.Matrix, *drivertest.Events) {
	t.Helper()
	m, ev := newDriver(t, addr, extra...)
	ev.Connected()
	return m, ev
}

// newDriver starts a driver without waiting for the connection.
func newDriver(t *testing.T, addr string, extra ...string) (*kramer.Matrix, *drivertest.Events) {
	t.Helper()
	// Fast reconnection, and no polling unless the test asks for it.
	return drivertest.Start[*kramer.Matrix](t, kramer.New, drivertest.Doc(addr, extra, "backoff_min: 10ms", "backoff_max: 50ms", "poll: 0s"))
}

// sent returns the lines the simulator received that start with prefix.
func sent(s *kramersim.Sim, prefix string) []kramersim.Command {
	var out []kramersim.Command
	for _, c := range s.Commands() {
		if strings.HasPrefix(c.Line, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func TestConnectReadsSizeRoutingAndLabels(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{
		Inputs: 6, Outputs: 4, InputLabels: []string{"Camera 1", "Camera 2"}, OutputLabels: []string{"Program"},
	})
	if err := s.SetRoute(4, 6); err != nil {
		t.Fatal(err)
	}
	m, _ := startDriver(t, addr, "labels: true")
	if in, out := m.Size(); in != 6 || out != 4 {
		t.Errorf("Size() = %d, %d; want 6, 4", in, out)
	}
	if got, want := m.Routing(), []int{1, 2, 3, 6}; !reflect.DeepEqual(got, want) {
		t.Errorf("Routing() = %v, want %v", got, want)
	}
	if got := m.InputLabels(); len(got) != 6 || got[0] != "Camera 1" || got[1] != "Camera 2" || got[5] != "Input 6" {
		t.Errorf("InputLabels() = %q", got)
	}
	if got := m.OutputLabels(); len(got) != 4 || got[0] != "Program" || got[3] != "Output 4" {
		t.Errorf("OutputLabels() = %q", got)
	}
	st := m.Status()
	if !st.Connected || st.Address != addr || st.LastError != "" || st.Since.IsZero() {
		t.Errorf("Status() = %+v", st)
	}
	// What went on the wire: the handshake, the size, the labels, the
	// routing, one output at a time.
	var lines []string
	for _, c := range s.Commands() {
		lines = append(lines, c.Line)
	}
	want := []string{"#", "#INFO-IO?"}
	for i := 1; i <= 6; i++ {
		want = append(want, "#LABEL? 0,"+strconv.Itoa(i))
	}
	for i := 1; i <= 4; i++ {
		want = append(want, "#LABEL? 1,"+strconv.Itoa(i))
	}
	for i := 1; i <= 4; i++ {
		want = append(want, "#ROUTE? 1,"+strconv.Itoa(i))
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("lines sent\n%q\nwant\n%q", lines, want)
	}
}

func TestLabelsOffOrMissing(t *testing.T) {
	_, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 2, Outputs: 2})
	m, _ := startDriver(t, addr)
	if m.InputLabels() != nil || m.OutputLabels() != nil {
		t.Errorf("labels read without the setting: %q %q", m.InputLabels(), m.OutputLabels())
	}
	s, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 2, Outputs: 2, NoLabels: true})
	m, _ = startDriver(t, addr, "labels: true")
	if m.InputLabels() != nil {
		t.Errorf("labels from a device without them: %q", m.InputLabels())
	}
	if got := sent(s, "#LABEL?"); len(got) != 1 || got[0].Replies[0] != "~01@LABEL? ERR 002" {
		t.Errorf("label queries %+v, want one, refused", got)
	}
}

func TestRoute(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	m, ev := startDriver(t, addr)
	if err := m.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatal(err)
	}
	if got := m.Routing()[2]; got != 7 {
		t.Errorf("driver Routing()[2] = %d, want 7", got)
	}
	if got := s.Routing()[2]; got != 7 {
		t.Errorf("sim Routing()[2] = %d, want 7", got)
	}
	if got := s.LayerRouting(2)[2]; got != 3 {
		t.Errorf("the audio layer changed: output 3 shows %d", got)
	}
	routes := s.Routes()
	if len(routes) != 1 || routes[0].Layer != 1 || routes[0].Output != 3 || routes[0].Input != 7 {
		t.Errorf("sim applied %+v, want layer 1 output 3 ← input 7 once", routes)
	}
	sets := sent(s, "#ROUTE ")
	if len(sets) != 1 || sets[0].Line != "#ROUTE 1,3,7" || !reflect.DeepEqual(sets[0].Replies, []string{"~01@ROUTE 1,3,7 OK"}) {
		t.Errorf("route commands %+v", sets)
	}
	if got := ev.Next(); !reflect.DeepEqual(got, routeChanged(3, 7)) {
		t.Errorf("event %+v, want route_changed output 3 input 7", got)
	}
	// Routing to what is already shown succeeds too, and changes nothing.
	if err := m.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Errorf("repeated route: %v", err)
	}
	ev.None()
}

func TestRouteAudioLayer(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 4, Outputs: 4})
	if err := s.SetLayerRoute(2, 1, 4); err != nil {
		t.Fatal(err)
	}
	m, ev := startDriver(t, addr, "layer: 2")
	if got := m.Routing(); !reflect.DeepEqual(got, []int{4, 2, 3, 4}) {
		t.Errorf("Routing() = %v, want the audio layer's", got)
	}
	if err := m.Route(drivertest.Context(t), 2, 1); err != nil {
		t.Fatal(err)
	}
	if got := sent(s, "#ROUTE 2,"); len(got) != 1 || got[0].Line != "#ROUTE 2,2,1" {
		t.Errorf("route commands %+v", got)
	}
	if got, want := s.LayerRouting(2), []int{4, 1, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("audio routing %v, want %v", got, want)
	}
	if got, want := s.Routing(), []int{1, 2, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("video routing %v, want %v", got, want)
	}
	ev.WaitFor(drivers.EventRouteChanged)
	// A video change from the panel is not this driver's business.
	if err := s.SetLayerRoute(1, 3, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLayerRoute(2, 3, 2); err != nil {
		t.Fatal(err)
	}
	if got := ev.Next(); !reflect.DeepEqual(got, routeChanged(3, 2)) {
		t.Errorf("event %+v, want route_changed output 3 input 2 (audio)", got)
	}
}

func TestRouteDeviceError(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	m, ev := startDriver(t, addr)
	s.RefuseNextWith(1, wire.CodeOutOfRange)
	err := m.Route(drivertest.Context(t), 3, 7)
	var de *wire.DeviceError
	if !errors.As(err, &de) || de.Code != 3 || de.Command != "ROUTE 1,3,7" {
		t.Fatalf("Route error %v, want a DeviceError ERR 003", err)
	}
	if !errors.Is(err, drivers.ErrRefused) {
		t.Errorf("ERR 003 is not a refusal: %v", err)
	}
	if want := "kramer " + addr + " refused route output 3 ← input 7: ERR 003 (parameter out of range)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got := m.Routing()[2]; got != 3 {
		t.Errorf("Routing()[2] = %d after a refusal, want 3", got)
	}
	// Busy is worth retrying: not a refusal.
	s.RefuseNextWith(1, wire.CodeBusy)
	err = m.Route(drivertest.Context(t), 3, 7)
	if !errors.As(err, &de) || de.Code != wire.CodeBusy || errors.Is(err, drivers.ErrRefused) {
		t.Errorf("busy: %v", err)
	}
	if !strings.Contains(err.Error(), "ERR 006 (device busy)") {
		t.Errorf("error %q", err)
	}
	if err := m.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Errorf("route after errors: %v", err)
	}
	if !m.Status().Connected {
		t.Error("an error code dropped the connection")
	}
	ev.WaitFor(drivers.EventRouteChanged)
}

func TestDroppedMidCommand(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	m, ev := startDriver(t, addr)
	s.DropNext(1)
	err := m.Route(drivertest.Context(t), 3, 7)
	if err == nil {
		t.Fatal("Route succeeded on a dropped connection")
	}
	if !strings.Contains(err.Error(), "connection lost") || errors.Is(err, drivers.ErrRefused) {
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
	if err := m.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatalf("route after reconnecting: %v", err)
	}
	sets := sent(s, "#ROUTE ")
	if len(sets) != 2 || len(sets[0].Replies) != 0 || sets[1].Replies[0] != "~01@ROUTE 1,3,7 OK" {
		t.Errorf("route commands %+v, want the first dropped without reply", sets)
	}
	if rs := s.Routes(); len(rs) != 1 {
		t.Errorf("routes applied %+v, want one", rs)
	}
}

func TestSilentDeviceTimesOut(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	m, ev := startDriver(t, addr, "timeout: 300ms")
	s.SetSilent(true)
	err := m.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, kramer.ErrTimeout) || errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("Route error %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "300ms") || !strings.Contains(err.Error(), `"#ROUTE 1,3,7"`) {
		t.Errorf("error %q does not give the command and the timeout", err)
	}
	ev.WaitFor(drivers.EventDisconnected)
	if m.Status().Connected {
		t.Error("still connected after a timeout")
	}
	if err := m.Route(drivertest.Context(t), 3, 7); !errors.Is(err, kramer.ErrNotConnected) {
		t.Errorf("Route while disconnected: %v, want ErrNotConnected", err)
	}
	s.SetSilent(false)
	ev.WaitFor(drivers.EventConnected)
	if err := m.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatalf("route after the device came back: %v", err)
	}
}

func TestAnnouncedRoutes(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	m, ev := startDriver(t, addr)
	if err := s.SetRoute(5, 2); err != nil {
		t.Fatal(err)
	}
	if got := ev.Next(); !reflect.DeepEqual(got, routeChanged(5, 2)) {
		t.Fatalf("event %+v, want route_changed output 5 input 2", got)
	}
	if r := m.Routing()[4]; r != 2 {
		t.Errorf("Routing()[4] = %d", r)
	}
	// Set again to what it was: no event. Another client's route: one.
	if err := s.SetRoute(5, 2); err != nil {
		t.Fatal(err)
	}
	other, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Write([]byte("#ROUTE 1,6,1\r#ROUTE 1,*,4\r")); err != nil {
		t.Fatal(err)
	}
	if got := ev.Next(); !reflect.DeepEqual(got, routeChanged(6, 1)) {
		t.Errorf("event %+v, want route_changed output 6 input 1", got)
	}
	// All outputs at once: one event per output that changed (output 4
	// showed input 4 already).
	for _, out := range []int{1, 2, 3, 5, 6, 7, 8} {
		if got := ev.Next(); !reflect.DeepEqual(got, routeChanged(out, 4)) {
			t.Errorf("event %+v, want route_changed output %d input 4", got, out)
		}
	}
	// A disconnected output.
	if err := s.SetLayerRoute(1, 2, 0); err != nil {
		t.Fatal(err)
	}
	if got := ev.Next(); !reflect.DeepEqual(got, routeChanged(2, 0)) {
		t.Errorf("event %+v, want route_changed output 2 input 0", got)
	}
}

func TestPollCatchesUnannouncedChanges(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{NoNotify: true, Inputs: 4, Outputs: 4})
	m, ev := startDriver(t, addr, "poll: 20ms")
	if err := s.SetRoute(2, 4); err != nil {
		t.Fatal(err)
	}
	if got := ev.Next(); !reflect.DeepEqual(got, routeChanged(2, 4)) {
		t.Errorf("event %+v, want route_changed output 2 input 4", got)
	}
	if got := m.Routing(); !reflect.DeepEqual(got, []int{1, 4, 3, 4}) {
		t.Errorf("Routing() = %v", got)
	}
	// Routes still go through between polls.
	for i := 1; i <= 4; i++ {
		if err := m.Route(drivertest.Context(t), i, 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Routing(); !reflect.DeepEqual(got, []int{1, 1, 1, 1}) {
		t.Errorf("sim Routing() = %v", got)
	}
}

func TestPollOff(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{NoNotify: true, Inputs: 4, Outputs: 8})
	m, _ := startDriver(t, addr, "poll: 0s")
	if err := s.SetRoute(5, 2); err != nil {
		t.Fatal(err)
	}
	// A round trip after the change: had anything polled, it would show.
	if err := m.Route(drivertest.Context(t), 1, 3); err != nil {
		t.Fatal(err)
	}
	if got := m.Routing()[4]; got != 4 {
		t.Errorf("Routing()[4] = %d, want the stale 4: nothing polls", got)
	}
	if n := len(sent(s, "#ROUTE? ")); n != 8 {
		t.Errorf("%d routing queries, want the 8 of the connection", n)
	}
}

func TestSizeFromSettings(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{NoInfoIO: true, Inputs: 4, Outputs: 2})
	m, _ := startDriver(t, addr, "inputs: 4", "outputs: 2")
	if in, out := m.Size(); in != 4 || out != 2 {
		t.Errorf("Size() = %d, %d, want the settings' 4, 2", in, out)
	}
	if err := m.Route(drivertest.Context(t), 2, 4); err != nil {
		t.Fatal(err)
	}
	if got := s.Routing(); !reflect.DeepEqual(got, []int{1, 4}) {
		t.Errorf("sim routing %v", got)
	}

	// Without them, the driver cannot go on, and says what to do.
	_, ev := newDriver(t, addr)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	msg := down.Fields["error"].(string)
	if !strings.Contains(msg, "ERR 002 (command not available)") || !strings.Contains(msg, "set inputs and outputs") {
		t.Errorf("disconnected event %+v", down)
	}
}

func TestMachineNumber(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{Machine: 5})
	// Commands are addressed to a machine other than 1.
	m, _ := startDriver(t, addr, "machine: 5")
	if err := m.Route(drivertest.Context(t), 1, 2); err != nil {
		t.Fatal(err)
	}
	if got := sent(s, "#05@ROUTE 1,1,2"); len(got) != 1 || got[0].Replies[0] != "~05@ROUTE 1,1,2 OK" {
		t.Errorf("route commands %+v", sent(s, "#"))
	}
	// The wrong machine number is found at the handshake.
	_, ev := newDriver(t, addr)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if msg := down.Fields["error"].(string); !strings.Contains(msg, "answered as machine 5, not 1: set machine: 5") {
		t.Errorf("disconnected event %+v", down)
	}
}

func TestOlderFirmware(t *testing.T) {
	// Route replies without OK, and a greeting that is no protocol line.
	s, addr := kramersim.StartLoopback(t, kramersim.Options{OmitOK: true, Banner: "Welcome to Kramer Electronics"})
	m, _ := startDriver(t, addr)
	if err := m.Route(drivertest.Context(t), 2, 5); err != nil {
		t.Fatal(err)
	}
	if got := s.Routing()[1]; got != 5 {
		t.Errorf("sim Routing()[1] = %d", got)
	}
}

func TestRouteRejectedWithoutSending(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 4, Outputs: 2})
	m, _ := startDriver(t, addr)
	drivertest.RouterRejectsOutOfRange(t, m, kramer.ErrOutOfRange, func() []kramersim.Command { return sent(s, "#ROUTE ") })
}

func TestNotConnected(t *testing.T) {
	drivertest.RouterNotConnected(t, kramer.New, func(t *testing.T, addr string) (drivers.Router, *drivertest.Events) {
		return newDriver(t, addr)
	}, kramer.ErrClosed)
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

// accept takes the driver's next connection.
func (f *fakeDevice) accept() *fakeConn {
	f.t.Helper()
	nc := f.l.Accept()
	return &fakeConn{t: f.t, nc: nc, c: wire.NewConn(nc)}
}

// send writes lines, each followed by CR LF.
func (c *fakeConn) send(lines ...string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads the driver's next line and checks it.
func (c *fakeConn) expect(line string) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(drivertest.Deadline))
	f, err := c.c.ReadFrame()
	if err != nil {
		c.t.Fatal(err)
	}
	if f.String() != line {
		c.t.Fatalf("got %q, want %q", f.String(), line)
	}
}

// connect accepts the driver's connection and answers its handshake and
// queries as a 4x4 device routed i ← i.
func (f *fakeDevice) connect(ev *drivertest.Events) *fakeConn {
	f.t.Helper()
	c := f.accept()
	c.expect("#")
	c.send("~01@ OK")
	c.expect("#INFO-IO?")
	c.send("~01@INFO-IO IN 4,OUT 4")
	for i := 1; i <= 4; i++ {
		c.expect(fmt.Sprintf("#ROUTE? 1,%d", i))
		c.send(fmt.Sprintf("~01@ROUTE 1,%d,%d", i, i))
	}
	ev.WaitFor(drivers.EventConnected)
	return c
}

func TestCloseWithCommandInFlight(t *testing.T) {
	f := newFakeDevice(t)
	m, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	drivertest.RouterCloseWithRouteInFlight(t, m, c.ExpectRoute, kramer.ErrClosed)
}

// ExpectRoute reads the command routing output to input.
func (c *fakeConn) ExpectRoute(output, input int) {
	c.t.Helper()
	c.expect(fmt.Sprintf("#ROUTE 1,%d,%d", output, input))
}

// AnswerRoute confirms a route.
func (c *fakeConn) AnswerRoute(output, input int) {
	c.t.Helper()
	c.send(fmt.Sprintf("~01@ROUTE 1,%d,%d OK", output, input))
}

func TestRouteContextCancelled(t *testing.T) {
	f := newFakeDevice(t)
	m, ev := newDriver(t, f.addr)
	drivertest.RouterRouteCancelled(t, m, f.connect(ev))
}

func TestMessagesWhileRouting(t *testing.T) {
	f := newFakeDevice(t)
	m, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	errc := make(chan error, 1)
	go func() { errc <- m.Route(drivertest.Context(t), 2, 3) }()
	c.expect("#ROUTE 1,2,3")
	// Before the answer: a panel change on the same output, one from
	// another machine on the bus, one without an address (older firmware),
	// a legacy video switch, an audio change, a greeting, an unknown
	// message, an echo of the command.
	c.send(
		"~01@ROUTE 1,2,4",
		"~02@ROUTE 1,3,1",
		"~ROUTE 1,3,2",
		"~01@VID 1>4",
		"~01@AUD 2>1",
		"Kramer Electronics",
		"~01@VMUTE 1,0",
		"#ROUTE 1,2,3",
		"~01@ROUTE 1,2,3 OK",
	)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var got []drivers.Event
	for range 4 {
		got = append(got, ev.Next())
	}
	want := []drivers.Event{routeChanged(2, 4), routeChanged(3, 2), routeChanged(4, 1), routeChanged(2, 3)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events\n%+v\nwant\n%+v", got, want)
	}
	if got := m.Routing(); !reflect.DeepEqual(got, []int{1, 3, 2, 1}) {
		t.Errorf("Routing() = %v", got)
	}
	ev.None()
}

func TestGeneralErrorAnswersTheCommand(t *testing.T) {
	f := newFakeDevice(t)
	m, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	errc := make(chan error, 1)
	go func() { errc <- m.Route(drivertest.Context(t), 2, 3) }()
	c.expect("#ROUTE 1,2,3")
	c.send("~01@ERR 004")
	err := <-errc
	var de *wire.DeviceError
	if !errors.As(err, &de) || de.Code != wire.CodeUnauthorized || !strings.Contains(err.Error(), "unauthorized access") {
		t.Errorf("Route error %v, want ERR 004", err)
	}
}

func TestMalformedReplyReconnects(t *testing.T) {
	f := newFakeDevice(t)
	m, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	c.send("~01@ROUTE 1,x,2")
	down, before := ev.WaitFor(drivers.EventDisconnected)
	if len(before) != 0 || !strings.Contains(down.Fields["error"].(string), `"ROUTE 1,x,2"`) {
		t.Errorf("disconnected event %+v after %+v", down, before)
	}
	f.connect(ev)
	if !m.Status().Connected {
		t.Error("not connected again")
	}
}

func TestPreludeRefusedReconnects(t *testing.T) {
	f := newFakeDevice(t)
	_, ev := newDriver(t, f.addr)
	c := f.accept()
	c.expect("#")
	c.send("~01@ OK")
	c.expect("#INFO-IO?")
	c.send("~01@INFO-IO IN 4,OUT 4")
	c.expect("#ROUTE? 1,1")
	c.send("~01@ROUTE? ERR 002")
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if msg := down.Fields["error"].(string); msg != `#ROUTE? 1,1: the device answered ERR 002 (command not available)` {
		t.Errorf("disconnected event %+v", down)
	}
	f.connect(ev)
}

func TestConfig(t *testing.T) {
	// The sample from README.md.
	d, err := kramer.New(drivertest.Config("router", "address: 192.168.1.39      # port 5000 unless given\nlayer: 1                   # 1 video, 2 audio\ntimeout: 2s\npoll: 10s\n"))
	if err != nil {
		t.Fatal(err)
	}
	poll := units.Duration(10 * time.Second)
	got := d.(*kramer.Matrix).Settings()
	want := kramer.Settings{Address: "192.168.1.39:5000", Layer: 1, Machine: 1, Timeout: units.Duration(2 * time.Second), Poll: &poll,
		BackoffMin: units.Duration(100 * time.Millisecond), BackoffMax: units.Duration(5 * time.Second)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("settings %+v, want %+v", got, want)
	}
	if st := d.Status(); st.Connected || st.Address != "192.168.1.39:5000" {
		t.Errorf("Status() before Start = %+v", st)
	}
	// Defaults, and every setting given.
	d, err = kramer.New(drivertest.Config("router", "address: matrix.local\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := d.(*kramer.Matrix).Settings(); s.Layer != 1 || s.Machine != 1 || s.Poll.D() != 10*time.Second || s.Timeout.D() != 2*time.Second || s.Labels {
		t.Errorf("defaults %+v", s)
	}
	d, err = kramer.New(drivertest.Config("router", "address: matrix.local:5001\nlayer: 2\nmachine: 3\ninputs: 16\noutputs: 8\nlabels: true\ntimeout: 500ms\npoll: 0s\nbackoff_min: 1s\nbackoff_max: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := d.(*kramer.Matrix).Settings(); s.Address != "matrix.local:5001" || s.Layer != 2 || s.Machine != 3 || s.Inputs != 16 || s.Outputs != 8 ||
		!s.Labels || s.Timeout.D() != 500*time.Millisecond || s.Poll.D() != 0 || s.BackoffMax.D() != time.Second {
		t.Errorf("settings %+v", s)
	}

	for _, tc := range []struct{ doc, want string }{
		{"timeout: 2s\n", "address is required"},
		{"address: ''\n", "address is required"},
		{"address: m\nspeed: fast\n", "speed"},
		{"address: m\ntimeout: 2 parsecs\n", `bad duration "2 parsecs"`},
		{"address: m\npoll: 0\n", "not a duration"},
		{"address: m\npoll: -1s\n", "poll: -1s is negative"},
		{"address: m\nbackoff_min: 2s\nbackoff_max: 1s\n", "backoff_max (1s) is less than backoff_min (2s)"},
		{"address: 'm:99999'\n", "port must be"},
		{"address: m\nlayer: -1\n", "layer -1: want a number from 1 to 9999"},
		{"address: m\nmachine: 100\n", "machine 100: want a number from 1 to 99"},
		{"address: m\ninputs: 8\n", "give both, or neither"},
		{"address: m\ninputs: 8\noutputs: 2000\n", "outputs 2000"},
		{"address: m\nlayer: video\n", "layer"},
	} {
		_, err := kramer.New(drivertest.Config("router", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// Through the registry, the error names the driver.
	reg := drivers.NewRegistry(kramer.Kind)
	if _, err := reg.New("kramer", drivertest.Config("router", "adress: m\n")); err == nil || !strings.Contains(err.Error(), "driver router (kramer)") {
		t.Errorf("registry error %v", err)
	}
	if _, err := kramer.New(drivers.Config{Name: "router"}); err == nil {
		t.Error("New without a decoder succeeded")
	}
	// The caller's poll value is not shared with the driver.
	p := units.Duration(time.Second)
	m, err := kramer.FromSettings(kramer.Settings{Address: "m", Poll: &p})
	if err != nil {
		t.Fatal(err)
	}
	p = 0
	if m.Settings().Poll.D() != time.Second {
		t.Error("the driver shares the caller's poll setting")
	}
}

func TestRouteErrorsTellTheRuntimeWhetherToRetry(t *testing.T) {
	for _, tc := range []struct {
		err   error
		retry bool
	}{
		{kramer.ErrNotConnected, true}, {kramer.ErrTimeout, true},
		{&wire.DeviceError{Code: wire.CodeBusy}, true}, {&wire.DeviceError{Code: wire.CodeTimeout}, true},
		{&wire.DeviceError{Code: wire.CodeOutOfRange}, false}, {&wire.DeviceError{Code: wire.CodeNotAvailable}, false},
		{kramer.ErrOutOfRange, false},
	} {
		wrapped := fmt.Errorf("kramer 10.0.0.5:5000 route output 3 ← input 7: %w", tc.err)
		if refused := errors.Is(wrapped, drivers.ErrRefused); refused == tc.retry {
			t.Errorf("%v: refused=%v, want retry=%v", tc.err, refused, tc.retry)
		}
	}
}

func TestADeviceRestartIsReadBackOnReconnecting(t *testing.T) {
	sim, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 8, Outputs: 8})
	m, ev := startDriver(t, addr)
	drivertest.RouterSeesADeviceRestart(t, m, ev, sim)
}

func TestAReconnectReadsTheRoutingBackBeforeDriverConnected(t *testing.T) {
	sim, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 8, Outputs: 8})
	m, ev := startDriver(t, addr, "timeout: 300ms")
	// Someone changes output 1 while the connection is down.
	drivertest.RouterReadsRoutingBackOnReconnect(t, m, ev, func(t *testing.T, ev *drivertest.Events) {
		sim.SetSilent(true)
		sim.DropConnections()
		ev.WaitFor(drivers.EventDisconnected)
		if err := sim.SetRoute(1, 5); err != nil {
			t.Fatal(err)
		}
		sim.SetSilent(false)
	})
	ev.None()
}
