package extronsim_test

import (
	"bufio"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers/extron/extronsim"
	"understudy/drivers/extron/wire"
)

const deadline = 10 * time.Second

// rawClient is a test client speaking SIS directly.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	sc *bufio.Scanner
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	sc := bufio.NewScanner(wire.NewTelnetReader(nc, nil))
	sc.Split(wire.SplitReplies)
	return &rawClient{t: t, nc: nc, sc: sc}
}

// send writes raw bytes.
func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// line reads the next line (or the password prompt).
func (c *rawClient) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(deadline))
	if !c.sc.Scan() {
		c.t.Fatalf("read: %v", c.sc.Err())
	}
	return c.sc.Text()
}

// expect reads the next lines and checks them.
func (c *rawClient) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.line(); got != w {
			c.t.Fatalf("got %q, want %q", got, w)
		}
	}
}

// ask sends a command and checks its one-line reply.
func (c *rawClient) ask(cmd, want string) {
	c.t.Helper()
	c.send(cmd)
	c.expect(want)
}

// banner reads the copyright and date lines and returns the copyright.
func (c *rawClient) banner() string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, "(c) Copyright ") {
		c.t.Fatalf("banner %q", l)
	}
	if d := c.line(); !strings.Contains(d, ", ") {
		c.t.Fatalf("date line %q", d)
	}
	return l
}

// closed checks that the simulator closes the connection without sending
// anything more.
func (c *rawClient) closed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(deadline))
	if c.sc.Scan() {
		c.t.Fatalf("got %q, want the connection closed", c.sc.Text())
	}
	var ne net.Error
	if err := c.sc.Err(); errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open: %v", err)
	}
}

func TestCommands(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	c := dial(t, addr)
	if b := c.banner(); b != "(c) Copyright 2024, Extron Electronics, DXP 88 HDMI, V1.23, 60-1234-01" {
		t.Errorf("banner %q", b)
	}
	for _, qa := range [][2]string{
		{"I", "V8X8 A8X8"},
		{"q", "1.23"},
		{"N", "60-1234-01"},
		{"1*3!", "Out03 In01 All"},
		{"3%", "01"},
		{"3&", "01"},
		{"3$", "01"},
		{"07*003%", "Out03 In07 Vid"},
		{"3%", "07"},
		{"3$", "01"}, // audio broken away
		{"5*3$", "Out03 In05 Aud"},
		{"0*2!", "Out02 In00 All"},
		{"2%", "00"},
		{"9*1!", "E01"},
		{"1*9!", "E12"},
		{"1*0!", "E12"},
		{"9%", "E12"},
		{"3!", "E10"}, // not a documented read
		{"X", "E10"},
		{"12345*1!", "E10"},
		{"\x1b1NI\r", "Input 1"},
		{"\x1b8NO\r", "Output 8"},
		{"\x1b9NI\r", "E01"},
		{"\x1b9NO\r", "E12"},
		{"\x1b1,Podium cam 1 ExtraNI\r", "Nmi01,Podium cam 1"}, // 12 characters at most
		{"\x1b1NI\r", "Podium cam 1"},
		{"\x1bCV\r", "0"}, // Telnet connections start in verbose mode 0
		{"\x1b3CV\r", "Vrb3"},
		{"\x1bCV\r", "3"},
		{"\x1b9CV\r", "E13"},
		{"\x1bFOO\r", "E10"},
	} {
		c.ask(qa[0], qa[1])
	}
	// Commands back to back in one write, with and without line ends.
	c.send("6*!\r\n\x1b+Q1*1!2*2%3*3$\r1%")
	c.expect("In06 All", "Qik", "01")
	if got, want := s.Routing(), []int{1, 2, 6, 6, 6, 6, 6, 6}; !reflect.DeepEqual(got, want) {
		t.Errorf("video routing %v, want %v", got, want)
	}
	if got, want := s.AudioRouting(), []int{1, 6, 3, 6, 6, 6, 6, 6}; !reflect.DeepEqual(got, want) {
		t.Errorf("audio routing %v, want %v", got, want)
	}
	// A quick tie is all or nothing.
	c.ask("\x1b+Q1*2!9*3!\r", "E01")
	if got := s.Routing()[1]; got != 2 {
		t.Errorf("output 2 shows %d after a refused quick tie", got)
	}
	if got := s.InputNames()[0]; got != "Podium cam 1" {
		t.Errorf("InputNames()[0] = %q", got)
	}
	// A Telnet client's negotiation is ignored.
	c.ask("\xff\xfd\x01\xff\xfb\x03I", "V8X8 A8X8")
}

func TestRecords(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{Inputs: 4, Outputs: 4})
	routes, stop := s.Subscribe(10)
	defer stop()
	c := dial(t, addr)
	c.banner()
	c.ask("2*1!", "Out01 In02 All")
	c.ask("9*1!", "E01")
	if err := s.SetTie(4, 3, wire.PlaneVideo); err != nil {
		t.Fatal(err)
	}
	for _, want := range []extronsim.RouteRecord{
		{Output: 1, Input: 2, Plane: wire.PlaneAll, Remote: c.nc.LocalAddr().String()},
		{Output: 4, Input: 3, Plane: wire.PlaneVideo, Remote: "panel"},
	} {
		select {
		case got := <-routes:
			got.Time = time.Time{}
			if got != want {
				t.Errorf("route %+v, want %+v", got, want)
			}
		case <-time.After(deadline):
			t.Fatal("no route record")
		}
	}
	if n := len(s.Routes()); n != 2 {
		t.Errorf("%d routes", n)
	}
	cmds := s.Commands()
	if len(cmds) != 2 || cmds[0].Text != "2*1!" || cmds[0].Reply != "Out01 In02 All" || cmds[1].Reply != "E01" || cmds[0].Remote != c.nc.LocalAddr().String() {
		t.Errorf("commands %+v", cmds)
	}
	stop()
	stop() // idempotent
	if _, ok := <-routes; ok {
		t.Error("channel open after stop")
	}
}

func TestPassword(t *testing.T) {
	opts := extronsim.Options{AdminPassword: "admin pw", UserPassword: "user pw", MaxLoginAttempts: 2}
	s, addr := extronsim.StartLoopback(t, opts)

	admin := dial(t, addr)
	admin.banner()
	admin.expect("Password:")
	admin.send("admin pw\r\n")
	admin.expect("Login Administrator")
	admin.ask("\x1b1,StageNO\r", "Nmo01,Stage")

	user := dial(t, addr)
	user.banner()
	user.expect("Password:")
	user.send("nope\r")
	user.expect("Password:")
	user.send("user pw\r1*2!") // a command right behind the password
	user.expect("Login User", "Out02 In01 All")
	user.ask("\x1b1,StageNO\r", "E24") // names need the administrator

	wrong := dial(t, addr)
	wrong.banner()
	wrong.expect("Password:")
	wrong.send("I\r") // not a command before login: a wrong password
	wrong.expect("Password:")
	wrong.send("guess\r")
	wrong.closed()

	var logins []string
	for _, c := range s.Commands() {
		if c.Text == "(password)" {
			logins = append(logins, c.Reply)
		}
	}
	if want := []string{"Login Administrator", "Password:", "Login User", "Password:", ""}; !reflect.DeepEqual(logins, want) {
		t.Errorf("login replies %q, want %q", logins, want)
	}
}

func TestVerboseNotices(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	watcher := dial(t, addr)
	watcher.banner()
	watcher.ask("\x1b3CV\r", "Vrb3")
	quiet := dial(t, addr)
	quiet.banner()
	actor := dial(t, addr)
	actor.banner()
	actor.ask("\x1b1CV\r", "Vrb1")

	actor.ask("5*2!", "Out02 In05 All") // the actor gets its reply, not a notice too
	watcher.expect("Out02 In05 All")
	if err := s.SetRoute(3, 4); err != nil {
		t.Fatal(err)
	}
	watcher.expect("Out03 In04 All")
	actor.expect("Out03 In04 All")
	// A client in verbose mode 0 hears nothing but its own replies.
	quiet.ask("Q", "1.23")
	if n := s.ClientCount(); n != 3 {
		t.Errorf("ClientCount() = %d", n)
	}

	qs, qaddr := extronsim.StartLoopback(t, extronsim.Options{QikOnPanel: true})
	w := dial(t, qaddr)
	w.banner()
	w.ask("\x1b1CV\r", "Vrb1")
	if err := qs.SetRoute(1, 2); err != nil {
		t.Fatal(err)
	}
	w.expect("Qik")
}

func TestFaults(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{})
	c := dial(t, addr)
	c.banner()

	s.RefuseNextWith(2, wire.ErrBusy)
	c.ask("1*2!", "E22")
	c.ask("3%", "03") // reads are not failed
	c.ask("1*2!", "E22")
	c.ask("1*2!", "Out02 In01 All")
	if n := len(s.Routes()); n != 1 {
		t.Errorf("%d routes applied, want 1", n)
	}

	s.DropNext(1)
	c.send("1*3!")
	c.closed()
	if got := s.Routing()[2]; got != 3 {
		t.Errorf("a dropped command was applied: output 3 shows %d", got)
	}
	cmds := s.Commands()
	if last := cmds[len(cmds)-1]; last.Text != "1*3!" || last.Reply != "" {
		t.Errorf("last command %+v", last)
	}

	subCmds, cancel := s.SubscribeCommands(10)
	defer cancel()
	s.SetSilent(true)
	quiet := dial(t, addr)
	quiet.send("I")
	select {
	case c := <-subCmds:
		if c.Text != "I" || c.Reply != "" {
			t.Errorf("silent device recorded %+v", c)
		}
	case <-time.After(deadline):
		t.Fatal("the silent device did not read the command")
	}
	s.SetSilent(false)
	// Neither a banner nor the reply to I came: the first line is Q's.
	quiet.ask("Q", "1.23")
	again := dial(t, addr)
	again.banner()
	again.ask("I", "V8X8 A8X8")

	s.DropConnections()
	again.closed()
}

func TestRefuseNextAndRestart(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{Inputs: 4, Outputs: 6})
	c := dial(t, addr)
	c.banner()
	s.RefuseNext(1)
	c.ask("2*1!", "E14")
	if got := s.Routing()[0]; got != 1 {
		t.Fatalf("a refused tie was applied: output 1 shows %d", got)
	}

	for _, r := range [][2]int{{1, 3}, {2, 4}, {6, 2}} {
		if err := s.SetRoute(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	s.RefuseNext(5)
	s.Restart()
	c.closed()
	if got, want := s.Routing(), []int{1, 2, 3, 4, 0, 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Routing() after Restart = %v, want %v", got, want)
	}
	if got, want := s.AudioRouting(), []int{1, 2, 3, 4, 0, 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("AudioRouting() after Restart = %v, want %v", got, want)
	}
	again := dial(t, addr)
	again.banner()
	again.ask("1%", "01")
	again.ask("2*1!", "Out01 In02 All") // the faults went with the restart
}

func TestOptions(t *testing.T) {
	s, addr := extronsim.StartLoopback(t, extronsim.Options{
		Inputs: 2000, Outputs: 4, AudioInputs: 2, AudioOutputs: 2, NoBanner: true, NoNames: true,
		Model: "XTP\r\nCrossPoint", InputNames: []string{"ignored"},
	})
	if in, out := s.Size(); in != extronsim.MaxPorts || out != 4 {
		t.Errorf("Size() = %d, %d", in, out)
	}
	if in, out := s.AudioSize(); in != 2 || out != 2 {
		t.Errorf("AudioSize() = %d, %d", in, out)
	}
	if got := s.String(); got != "XTP  CrossPoint V999X4 A2X2" {
		t.Errorf("String() = %q", got)
	}
	c := dial(t, addr)
	c.ask("I", "V999X4 A2X2") // no banner first
	c.ask("\x1b1NI\r", "E10")
	c.ask("3*2$", "E01")
	c.ask("1*3$", "E12")
	c.ask("3*3!", "Out03 In03 All") // beyond the audio matrix: video only
	if v, a := s.Routing(), s.AudioRouting(); v[2] != 3 || len(a) != 2 {
		t.Errorf("routing %v %v", v, a)
	}
	if err := s.SetTie(5, 1, wire.PlaneAll); err == nil || !strings.Contains(err.Error(), "E12") {
		t.Errorf("SetTie beyond the outputs: %v", err)
	}
	if err := s.SetTie(1, 1, wire.Plane('x')); err == nil {
		t.Error("SetTie with a bad plane succeeded")
	}
}

func TestServeAndClose(t *testing.T) {
	s := extronsim.New(extronsim.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	c := dial(t, l.Addr().String())
	c.banner()
	c.ask("I", "V8X8 A8X8")
	sub, _ := s.Subscribe(1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Serve did not return after Close")
	}
	c.closed()
	if _, ok := <-sub; ok {
		t.Error("subscription open after Close")
	}
	if _, err := s.Listen("127.0.0.1:0"); !errors.Is(err, extronsim.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
}
