package extron_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers/extron/wire"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/extron"
	"understudy/drivers/extron/extronsim"
	"understudy/units"
)

// startDriver starts a driver for addr with the given extra settings (YAML
// lines) and waits until it is connected.
func startDriver(t *testing.T, addr string, extra ...string) (*extron.Extron, *drivertest.Events) {
	t.Helper()
	x, ev := newDriver(t, addr, extra...)
	ev.Connected()
	return x, ev
}

// newDriver starts a driver without waiting for the connection.
func newDriver(t *testing.T, addr string, extra ...string) (*extron.Extron, *drivertest.Events) {
	t.Helper()
	// Fast reconnection, a short settle after the banner (timeout/4), and
	// no polling unless the test asks for it.
	return drivertest.Start[*extron.Extron](t, extron.New, drivertest.Doc(addr, extra, "backoff_min: 10ms", "backoff_max: 50ms", "poll: 1h", "timeout: 1s"))
}

// commandsLike returns the simulator's commands whose text matches pred.
func commandsLike(s *extronsim.Sim, pred func(string) bool) []extronsim.Command {
	var out []extronsim.Command
	for _, c := range s.Commands() {
		if pred(c.Text) {
			out = append(out, c)
		}
	}
	return out
}

func isTie(text string) bool { return strings.Contains(text, "*") }

func TestConnectReadsSizeNamesAndRouting(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{
		Inputs: 12, Outputs: 8, Model: "XTP CrossPoint 1600",
		InputNames: []string{"Camera 1", "Camera 2"}, OutputNames: []string{"Program"},
	})
	if err := s.SetRoute(8, 12); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTie(7, 0, wire.PlaneVideo); err != nil {
		t.Fatal(err)
	}
	x, _ := startDriver(t, addr)
	if in, out := x.Size(); in != 12 || out != 8 {
		t.Errorf("Size() = %d, %d; want 12, 8", in, out)
	}
	if got, want := x.Routing(), []int{1, 2, 3, 4, 5, 6, 0, 12}; !reflect.DeepEqual(got, want) {
		t.Errorf("Routing() = %v, want %v", got, want)
	}
	if got := x.InputLabels(); len(got) != 12 || got[0] != "Camera 1" || got[1] != "Camera 2" || got[11] != "Input 12" {
		t.Errorf("InputLabels() = %q", got)
	}
	if got := x.OutputLabels(); len(got) != 8 || got[0] != "Program" || got[7] != "Output 8" {
		t.Errorf("OutputLabels() = %q", got)
	}
	st := x.Status()
	if !st.Connected || st.Address != addr || st.LastError != "" || st.Since.IsZero() {
		t.Errorf("Status() = %+v", st)
	}
	if b := x.Banner(); !strings.HasPrefix(b, "(c) Copyright") || !strings.Contains(b, "XTP CrossPoint 1600") {
		t.Errorf("Banner() = %q", b)
	}
	// The routing is read with the documented video read command, one
	// output at a time, each once.
	reads := commandsLike(s, func(c string) bool { return strings.HasSuffix(c, "%") })
	if len(reads) != 8 || reads[0].Text != "1%" || reads[7].Text != "8%" || reads[7].Reply != "12" || reads[6].Reply != "00" {
		t.Errorf("reads %+v", reads)
	}
	if info := commandsLike(s, func(c string) bool { return c == "I" }); len(info) != 1 || info[0].Reply != "V12X8 A12X8" {
		t.Errorf("information requests %+v", info)
	}
}

func TestRoute(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	x, ev := startDriver(t, addr)
	if err := x.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatal(err)
	}
	if got := x.Routing()[2]; got != 7 {
		t.Errorf("driver Routing()[2] = %d, want 7", got)
	}
	if got := s.Routing()[2]; got != 7 {
		t.Errorf("sim video Routing()[2] = %d, want 7", got)
	}
	if got := s.AudioRouting()[2]; got != 7 {
		t.Errorf("sim audio Routing()[2] = %d, want 7 (tie all)", got)
	}
	routes := s.Routes()
	if len(routes) != 1 || routes[0].Output != 3 || routes[0].Input != 7 || routes[0].Plane != wire.PlaneAll {
		t.Errorf("sim applied %+v, want output 3 ← input 7 once", routes)
	}
	ties := commandsLike(s, isTie)
	if len(ties) != 1 || ties[0].Text != "7*3!" || ties[0].Reply != "Out03 In07 All" {
		t.Errorf("tie commands %+v", ties)
	}
	got := ev.Next()
	if got.Name != drivers.EventRouteChanged || got.Fields["output"] != 3 || got.Fields["input"] != 7 {
		t.Errorf("event %+v, want route_changed output 3 input 7", got)
	}
	// Routing to what is already shown succeeds too, with no event.
	if err := x.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Errorf("repeated route: %v", err)
	}
	if err := x.Route(drivertest.Context(t), 1, 8); err != nil {
		t.Fatal(err)
	}
	if got := ev.Next(); got.Fields["output"] != 1 || got.Fields["input"] != 8 {
		t.Errorf("event %+v, want route_changed output 1 input 8", got)
	}
}

func TestTiePlanes(t *testing.T) {
	t.Run("video", func(t *testing.T) {
		s, addr := extronsim.StartLoopback(t, extronsim.Options{})
		x, _ := startDriver(t, addr, "tie: video")
		if err := x.Route(drivertest.Context(t), 2, 5); err != nil {
			t.Fatal(err)
		}
		if v, a := s.Routing()[1], s.AudioRouting()[1]; v != 5 || a != 2 {
			t.Errorf("sim video %d audio %d, want 5 and 2 (audio untouched)", v, a)
		}
		if ties := commandsLike(s, isTie); len(ties) != 1 || ties[0].Text != "5*2%" || ties[0].Reply != "Out02 In05 Vid" {
			t.Errorf("ties %+v", ties)
		}
	})
	t.Run("audio", func(t *testing.T) {
		s, addr := extronsim.StartLoopback(t, extronsim.Options{Inputs: 8, Outputs: 8, AudioInputs: 4, AudioOutputs: 2})
		if err := s.SetTie(2, 3, wire.PlaneAudio); err != nil {
			t.Fatal(err)
		}
		x, _ := startDriver(t, addr, "tie: audio")
		if in, out := x.Size(); in != 4 || out != 2 {
			t.Errorf("Size() = %d, %d; want the audio matrix 4, 2", in, out)
		}
		if got := x.Routing(); !reflect.DeepEqual(got, []int{1, 3}) {
			t.Errorf("Routing() = %v, want the audio ties [1 3]", got)
		}
		if err := x.Route(drivertest.Context(t), 1, 4); err != nil {
			t.Fatal(err)
		}
		if v, a := s.Routing()[0], s.AudioRouting()[0]; v != 1 || a != 4 {
			t.Errorf("sim video %d audio %d, want 1 and 4", v, a)
		}
		if reads := commandsLike(s, func(c string) bool { return strings.HasSuffix(c, "$") && !isTie(c) }); len(reads) != 2 {
			t.Errorf("audio reads %+v", reads)
		}
		if err := x.Route(drivertest.Context(t), 3, 1); !errors.Is(err, extron.ErrOutOfRange) {
			t.Errorf("route beyond the audio outputs: %v", err)
		}
	})
}

func TestRouteDeviceErrors(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	x, _ := startDriver(t, addr)

	s.RefuseNextWith(1, wire.ErrInvalidForConfig)
	err := x.Route(drivertest.Context(t), 3, 7)
	var derr *extron.DeviceError
	if !errors.As(err, &derr) || derr.Code != wire.ErrInvalidForConfig || !errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("Route error %v, want a refusal with E14", err)
	}
	if want := "extron " + addr + " refused tie output 3 ← input 7: E14 not valid for this configuration"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	s.RefuseNextWith(1, wire.ErrBusy)
	err = x.Route(drivertest.Context(t), 3, 7)
	if !errors.As(err, &derr) || derr.Code != wire.ErrBusy || errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("Route error %v, want E22 busy, not a refusal (the runtime retries)", err)
	}
	if want := "extron " + addr + ": tie output 3 ← input 7: E22 busy"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	s.RefuseNextWith(1, wire.ErrInvalidInput)
	if err := x.Route(drivertest.Context(t), 3, 7); !strings.HasSuffix(err.Error(), "E01 invalid input number") || !errors.Is(err, drivers.ErrRefused) {
		t.Errorf("Route error %v", err)
	}
	if got := x.Routing()[2]; got != 3 {
		t.Errorf("Routing()[2] = %d after errors, want 3", got)
	}
	if n := len(s.Routes()); n != 0 {
		t.Errorf("sim applied %d ties", n)
	}
	// The connection stays, and the next route goes through.
	if err := x.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Errorf("route after errors: %v", err)
	}
	if !x.Status().Connected {
		t.Error("disconnected by an error reply")
	}
}

func TestRouteRejectedWithoutSending(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{Inputs: 4, Outputs: 2})
	x, _ := startDriver(t, addr)
	drivertest.RouterRejectsOutOfRange(t, x, extron.ErrOutOfRange, func() []extronsim.Command { return commandsLike(s, isTie) })
}

func TestDroppedMidCommand(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	x, ev := startDriver(t, addr)
	s.DropNext(1)
	err := x.Route(drivertest.Context(t), 3, 7)
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
	if err := x.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatalf("route after reconnecting: %v", err)
	}
	if got := s.Routing()[2]; got != 7 {
		t.Errorf("sim Routing()[2] = %d", got)
	}
	ties := commandsLike(s, isTie)
	if len(ties) != 2 || ties[0].Reply != "" || ties[1].Reply != "Out03 In07 All" {
		t.Errorf("ties %+v, want the first dropped without reply", ties)
	}
	if n := len(s.Routes()); n != 1 {
		t.Errorf("sim applied %d ties, want 1", n)
	}
}

func TestSilentDeviceTimesOut(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	x, ev := startDriver(t, addr, "timeout: 500ms")
	s.SetSilent(true)
	err := x.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, extron.ErrTimeout) || errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("Route error %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "500ms") {
		t.Errorf("error %q does not give the timeout", err)
	}
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if e := down.Fields["error"].(string); !strings.Contains(e, `no reply to "7*3!" within 500ms`) {
		t.Errorf("disconnected event %+v", down)
	}
	if x.Status().Connected {
		t.Error("still connected after a timeout")
	}
	if err := x.Route(drivertest.Context(t), 3, 7); !errors.Is(err, extron.ErrNotConnected) {
		t.Errorf("Route while disconnected: %v, want ErrNotConnected", err)
	}
	s.SetSilent(false)
	ev.WaitFor(drivers.EventConnected)
	if err := x.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatalf("route after the device came back: %v", err)
	}
}

func TestPassword(t *testing.T) {
	opts := extronsim.Options{AdminPassword: "secret", UserPassword: "tie only"}
	t.Run("administrator", func(t *testing.T) {
		s, addr := extronsim.StartLoopback(t, opts)
		x, _ := startDriver(t, addr, "password: secret")
		if err := x.Route(drivertest.Context(t), 2, 3); err != nil {
			t.Fatal(err)
		}
		logins := commandsLike(s, func(c string) bool { return c == "(password)" })
		if len(logins) != 1 || logins[0].Reply != "Login Administrator" {
			t.Errorf("logins %+v", logins)
		}
	})
	t.Run("user", func(t *testing.T) {
		s, addr := extronsim.StartLoopback(t, opts)
		x, _ := startDriver(t, addr, "password: tie only")
		if err := x.Route(drivertest.Context(t), 2, 3); err != nil {
			t.Fatal(err)
		}
		if logins := commandsLike(s, func(c string) bool { return c == "(password)" }); len(logins) != 1 || logins[0].Reply != "Login User" {
			t.Errorf("logins %+v", logins)
		}
	})
	t.Run("wrong", func(t *testing.T) {
		s, addr := extronsim.StartLoopback(t, opts)
		x, ev := newDriver(t, addr, "password: guess")
		down, _ := ev.WaitFor(drivers.EventDisconnected)
		if e := down.Fields["error"].(string); !strings.Contains(e, "login failed: the device refused the password") {
			t.Errorf("disconnected event %+v", down)
		}
		if err := x.Route(drivertest.Context(t), 1, 1); !errors.Is(err, extron.ErrNotConnected) || !strings.Contains(err.Error(), "refused the password") {
			t.Errorf("Route: %v", err)
		}
		// One attempt per connection: the driver does not burn the device's
		// attempts by guessing.
		var first extronsim.Command
		for _, c := range s.Commands() {
			first = c
			break
		}
		if first.Text != "(password)" || first.Reply != "Password:" {
			t.Errorf("first command %+v", first)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, addr := extronsim.StartLoopback(t, opts)
		_, ev := newDriver(t, addr)
		down, _ := ev.WaitFor(drivers.EventDisconnected)
		if e := down.Fields["error"].(string); e != "login failed: the device asks for a password and none is configured" {
			t.Errorf("disconnected event %+v", down)
		}
	})
	t.Run("not asked", func(t *testing.T) {
		_, addr := extronsim.StartLoopback(t, extronsim.Options{})
		x, _ := startDriver(t, addr, "password: secret")
		if err := x.Route(drivertest.Context(t), 2, 3); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPollNoticesPanelChanges(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	x, ev := startDriver(t, addr, "poll: 20ms")
	// The device tells a Telnet client nothing (verbose mode 0): the poll
	// finds the change.
	if err := s.SetRoute(5, 2); err != nil {
		t.Fatal(err)
	}
	got, _ := ev.WaitFor(drivers.EventRouteChanged)
	if got.Fields["output"] != 5 || got.Fields["input"] != 2 {
		t.Fatalf("event %+v, want route_changed output 5 input 2", got)
	}
	if r := x.Routing()[4]; r != 2 {
		t.Errorf("Routing()[4] = %d", r)
	}
	if err := s.SetTie(6, 0, wire.PlaneAll); err != nil {
		t.Fatal(err)
	}
	got, _ = ev.WaitFor(drivers.EventRouteChanged)
	if got.Fields["output"] != 6 || got.Fields["input"] != 0 {
		t.Errorf("event %+v, want route_changed output 6 input 0 (untied)", got)
	}
	// Routes go through between the polls' reads.
	if err := x.Route(drivertest.Context(t), 1, 4); err != nil {
		t.Fatal(err)
	}
}

func TestPollOffKeepAlive(t *testing.T) {
	defer extron.SetKeepAlive(20 * time.Millisecond)()
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	cmds, cancel := s.SubscribeCommands(100)
	defer cancel()
	_, ev := startDriver(t, addr, "poll: 0s", "timeout: 500ms")
	for n := 0; n < 3; {
		select {
		case c := <-cmds:
			switch {
			case c.Text == "Q" && c.Reply == "1.23":
				n++
			case strings.HasSuffix(c.Text, "%") && n > 0:
				t.Fatalf("polled with poll: 0s: %+v", c)
			}
		case <-time.After(drivertest.Deadline):
			t.Fatal("no keep-alive Q")
		}
	}
	// An unanswered one drops the connection.
	s.SetSilent(true)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if !strings.Contains(down.Fields["error"].(string), `no reply to "Q"`) {
		t.Errorf("disconnected event %+v", down)
	}
	s.SetSilent(false)
	ev.WaitFor(drivers.EventConnected)
}

func TestNamesUnsupported(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{NoNames: true, Inputs: 4, Outputs: 4})
	x, _ := startDriver(t, addr)
	if x.InputLabels() != nil || x.OutputLabels() != nil {
		t.Errorf("labels %q %q, want nil", x.InputLabels(), x.OutputLabels())
	}
	if got := x.Routing(); !reflect.DeepEqual(got, []int{1, 2, 3, 4}) {
		t.Errorf("Routing() = %v", got)
	}
	// One name command found out; the rest were not sent.
	if names := commandsLike(s, func(c string) bool {
		return strings.HasSuffix(c, "NI\r") || strings.HasSuffix(c, "NO\r")
	}); len(names) != 1 || names[0].Reply != "E10" {
		t.Errorf("name commands %+v", names)
	}
}

func TestNotConnected(t *testing.T) {
	drivertest.RouterNotConnected(t, extron.New, func(t *testing.T, addr string) (drivers.Router, *drivertest.Events) {
		return newDriver(t, addr)
	}, extron.ErrClosed)
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
	sc *bufio.Scanner
}

// accept takes the driver's next connection and sends the banner (raw
// bytes, Telnet negotiation allowed).
func (f *fakeDevice) accept(banner string) *fakeConn {
	f.t.Helper()
	nc := f.l.Accept()
	sc := bufio.NewScanner(wire.NewTelnetReader(nc, nil))
	sc.Split(wire.SplitCommands)
	c := &fakeConn{t: f.t, nc: nc, sc: sc}
	c.raw(banner)
	return c
}

func (c *fakeConn) raw(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// send writes lines, each with CR LF.
func (c *fakeConn) send(lines ...string) {
	c.t.Helper()
	c.raw(strings.Join(lines, "\r\n") + "\r\n")
}

// expect reads the next command and checks it.
func (c *fakeConn) expect(want string) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(drivertest.Deadline))
	if !c.sc.Scan() {
		c.t.Fatalf("no command (want %q): %v", want, c.sc.Err())
	}
	if got := c.sc.Text(); got != want {
		c.t.Fatalf("got command %q, want %q", got, want)
	}
}

// answer expects each command in turn and answers it.
func (c *fakeConn) answer(pairs ...string) {
	c.t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		c.expect(pairs[i])
		c.send(pairs[i+1])
	}
}

const fakeBanner = "\r\n(c) Copyright 2012, Extron Electronics, DXP 44 HDMI, V1.05, 60-1234-01\r\nTue, 02 Dec 2025, 10:00:00\r\n"

// prelude answers what the driver reads on connect from a 4x4 device
// without names, outputs tied i ← i.
func (c *fakeConn) prelude() {
	c.t.Helper()
	c.answer("I", "V4X4 A4X4", "\x1b1NI\r", "E10",
		"1%", "01", "2%", "02", "3%", "03", "4%", "04")
}

// connect accepts the driver's connection and answers its reads.
func (f *fakeDevice) connect(ev *drivertest.Events) *fakeConn {
	f.t.Helper()
	c := f.accept(fakeBanner)
	c.prelude()
	ev.WaitFor(drivers.EventConnected)
	return c
}

func TestTelnetNegotiationIsRefused(t *testing.T) {
	f := newFakeDevice(t)
	x, ev := newDriver(t, f.addr)
	// IAC DO ECHO, IAC WILL SUPPRESS-GO-AHEAD, and a subnegotiation, mixed
	// into the banner.
	c := f.accept("\xff\xfd\x01\r\n(c) Copyright 2012, Extron\xff\xfb\x03 Electronics, DXP 44 HDMI\r\n\xff\xfa\x18\x01\xff\xf0")
	answer := make([]byte, 6)
	c.nc.SetReadDeadline(time.Now().Add(drivertest.Deadline))
	if _, err := ioReadFull(c.nc, answer); err != nil {
		t.Fatal(err)
	}
	if want := "\xff\xfc\x01\xff\xfe\x03"; string(answer) != want {
		t.Errorf("negotiation answer %q, want %q (WONT ECHO, DONT SGA)", answer, want)
	}
	c.prelude()
	ev.WaitFor(drivers.EventConnected)
	if b := x.Banner(); b != "(c) Copyright 2012, Extron Electronics, DXP 44 HDMI" {
		t.Errorf("Banner() = %q", b)
	}
}

func ioReadFull(nc net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := nc.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestUnsolicitedNotices(t *testing.T) {
	f := newFakeDevice(t)
	x, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	// A device in verbose mode reports ties made elsewhere as they happen;
	// the audio plane does not change the video routing the driver follows.
	c.send("Out02 In04 All", "Out03 In01 Aud", "Out04 In02 Vid")
	for _, want := range [][2]int{{2, 4}, {4, 2}} {
		got := ev.Next()
		if got.Name != drivers.EventRouteChanged || got.Fields["output"] != want[0] || got.Fields["input"] != want[1] {
			t.Fatalf("event %+v, want route_changed output %d input %d", got, want[0], want[1])
		}
	}
	// Qik (a panel switch on DXP, a quick tie) makes the driver read every
	// output back.
	c.send("Qik")
	c.answer("1%", "03", "2%", "04", "3%", "03", "4%", "02")
	got := ev.Next()
	if got.Fields["output"] != 1 || got.Fields["input"] != 3 {
		t.Errorf("event %+v, want route_changed output 1 input 3", got)
	}
	if r := x.Routing(); !reflect.DeepEqual(r, []int{3, 4, 3, 2}) {
		t.Errorf("Routing() = %v", r)
	}
	// A notice arriving while a route waits for its reply is not taken for
	// the reply.
	errc := make(chan error, 1)
	go func() { errc <- x.Route(drivertest.Context(t), 1, 2) }()
	c.expect("2*1!")
	c.send("Out03 In04 All", "Out01 In02 All")
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if r := x.Routing(); !reflect.DeepEqual(r, []int{2, 4, 4, 2}) {
		t.Errorf("Routing() = %v", r)
	}
}

func TestCloseWithCommandInFlight(t *testing.T) {
	f := newFakeDevice(t)
	x, ev := newDriver(t, f.addr)
	c := f.connect(ev)
	drivertest.RouterCloseWithRouteInFlight(t, x, c.ExpectRoute, extron.ErrClosed)
}

// ExpectRoute reads the command routing output to input.
func (c *fakeConn) ExpectRoute(output, input int) {
	c.t.Helper()
	c.expect(fmt.Sprintf("%d*%d!", input, output))
}

// AnswerRoute confirms a route.
func (c *fakeConn) AnswerRoute(output, input int) {
	c.t.Helper()
	c.send(fmt.Sprintf("Out%02d In%02d All", output, input))
}

func TestRouteContextCancelled(t *testing.T) {
	f := newFakeDevice(t)
	x, ev := newDriver(t, f.addr)
	drivertest.RouterRouteCancelled(t, x, f.connect(ev))
}

func TestBadDeviceReconnects(t *testing.T) {
	f := newFakeDevice(t)
	x, ev := newDriver(t, f.addr, "tie: audio")
	// A device that cannot read audio ties: the driver says so and retries.
	c := f.accept(fakeBanner)
	c.answer("I", "V4X4", "\x1b1NI\r", "In 1", "\x1b2NI\r", "In 2", "\x1b3NI\r", "In 3", "\x1b4NI\r", "In 4",
		"\x1b1NO\r", "Out 1", "\x1b2NO\r", "Out 2", "\x1b3NO\r", "Out 3", "\x1b4NO\r", "Out 4", "1$", "E10")
	down, before := ev.WaitFor(drivers.EventDisconnected)
	if want := "reading the tie of output 1 (1$): the device answered E10 invalid command"; len(before) != 0 || down.Fields["error"] != want {
		t.Errorf("disconnected event %+v after %+v, want error %q", down, before, want)
	}
	// A line longer than the protocol allows drops the connection too.
	c = f.accept(fakeBanner)
	c.expect("I")
	c.send(strings.Repeat("V", wire.MaxLine+1))
	f.accept(fakeBanner).expect("I") // the next connection
	if st := x.Status(); st.Connected || !strings.Contains(st.LastError, "longer than") {
		t.Errorf("Status() = %+v", st)
	}
}

func TestConfig(t *testing.T) {
	// The sample from README.md.
	sample := "address: 192.168.10.60      # port 23 unless given\npassword: extron\ntie: all\ntimeout: 2s\npoll: 10s\n"
	d, err := extron.New(drivertest.Config("router", sample))
	if err != nil {
		t.Fatal(err)
	}
	got := d.(*extron.Extron).Settings()
	if got.Address != "192.168.10.60:23" || got.Password != "extron" || got.Tie != "all" || got.Timeout.D() != 2*time.Second ||
		got.Poll == nil || got.Poll.D() != 10*time.Second || got.BackoffMin.D() != 100*time.Millisecond || got.BackoffMax.D() != 5*time.Second {
		t.Errorf("settings %+v", got)
	}
	if st := d.Status(); st.Connected || st.Address != "192.168.10.60:23" {
		t.Errorf("Status() before Start = %+v", st)
	}
	// Defaults, and poll turned off.
	d, err = extron.New(drivertest.Config("router", "address: '[fe80::1]:2023'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := d.(*extron.Extron).Settings(); s.Address != "[fe80::1]:2023" || s.Tie != "all" || s.Poll.D() != extron.DefaultPoll || s.Timeout.D() != extron.DefaultTimeout {
		t.Errorf("settings %+v", s)
	}
	d, err = extron.New(drivertest.Config("router", "address: sw.local\npoll: 0s\ntie: audio\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := d.(*extron.Extron).Settings(); s.Poll.D() != 0 || s.Tie != "audio" || s.Address != "sw.local:23" {
		t.Errorf("settings %+v", s)
	}

	for _, tc := range []struct{ doc, want string }{
		{"timeout: 2s\n", "address is required"},
		{"address: ''\n", "address is required"},
		{"address: sw\nspeed: fast\n", "speed"},
		{"address: sw\ntimeout: 2 parsecs\n", "bad duration \"2 parsecs\""},
		{"address: sw\npoll: -1s\n", "poll: -1s is negative"},
		{"address: sw\npoll: 0\n", "not a duration"},
		{"address: sw\nbackoff_min: 2s\nbackoff_max: 1s\n", "backoff_max (1s) is less than backoff_min (2s)"},
		{"address: 'sw:99999'\n", "port must be"},
		{"address: sw\ntie: rgb\n", `tie: "rgb" is not all, video or audio`},
		{"address: sw\npassword: \"a\\rb\"\n", "password: control characters"},
	} {
		_, err := extron.New(drivertest.Config("router", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// Through the registry, the error names the driver.
	reg := drivers.NewRegistry(extron.Kind)
	if _, err := reg.New("extron", drivertest.Config("router", "adress: sw\n")); err == nil || !strings.Contains(err.Error(), "driver router (extron)") {
		t.Errorf("registry error %v", err)
	}
	if _, err := extron.New(drivers.Config{Name: "router"}); err == nil {
		t.Error("New without a decoder succeeded")
	}
	// FromSettings: a nil Poll is the default; the caller's value is copied.
	p := units.Duration(time.Second)
	x, err := extron.FromSettings(extron.Settings{Address: "sw", Poll: &p})
	if err != nil {
		t.Fatal(err)
	}
	p = 0
	if s := x.Settings(); s.Poll.D() != time.Second {
		t.Errorf("Poll %v, want 1s", s.Poll)
	}
}

func TestRouteErrorsTellTheRuntimeWhetherToRetry(t *testing.T) {
	for _, tc := range []struct {
		err   error
		retry bool
	}{
		{extron.ErrNotConnected, true}, {extron.ErrTimeout, true},
		{&extron.DeviceError{Code: wire.ErrBusy}, true},
		{&extron.DeviceError{Code: wire.ErrTimedOut}, true},
		{&extron.DeviceError{Code: wire.ErrInvalidInput}, false},
		{&extron.DeviceError{Code: wire.ErrInvalidOutput}, false},
		{&extron.DeviceError{Code: wire.ErrInvalidCommand}, false},
		{&extron.DeviceError{Code: wire.ErrPrivilege}, false},
		{extron.ErrOutOfRange, false},
	} {
		wrapped := fmt.Errorf("extron 10.0.0.5:23 tie output 3 ← input 7: %w", tc.err)
		if refused := errors.Is(wrapped, drivers.ErrRefused); refused == tc.retry {
			t.Errorf("%v: refused=%v, want retry=%v", tc.err, refused, tc.retry)
		}
	}
}

func TestAReconnectReadsTheRoutingBackBeforeDriverConnected(t *testing.T) {
	sim, addr := extronsim.StartLoopback(t, extronsim.Options{Inputs: 8, Outputs: 8})
	x, ev := startDriver(t, addr)
	drivertest.RouterReadsRoutingBackOnReconnect(t, x, ev, drivertest.PanelChangeThenDrop(sim))
}

func TestADeviceRestartIsReadBackOnReconnecting(t *testing.T) {
	sim, addr := extronsim.StartLoopback(t, extronsim.Options{Inputs: 8, Outputs: 8})
	x, ev := startDriver(t, addr)
	drivertest.RouterSeesADeviceRestart(t, x, ev, sim)
}
