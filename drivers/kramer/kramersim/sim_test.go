package kramersim_test

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers/kramer/wire"

	"understudy/drivers/kramer/kramersim"
)

const deadline = 10 * time.Second

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

// line reads the next line, without its line end.
func (c *rawClient) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(deadline))
	f, err := c.c.ReadFrame()
	if errors.Is(err, wire.ErrMalformed) {
		return "<malformed>" // a line that is not a frame
	}
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f.String()
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

// closed checks that the simulator closes the connection without sending
// anything more.
func (c *rawClient) closed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(deadline))
	f, err := c.c.ReadFrame()
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", f.String())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open: %v", err)
	}
}

// closedAfterAnyFrames reads what the simulator still sends until the
// connection closes, within the deadline.
func (c *rawClient) closedAfterAnyFrames() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(deadline))
	for {
		_, err := c.c.ReadFrame()
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open: %v", err)
		}
		return
	}
}

func TestCommandsAndReplies(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 4, Outputs: 3, InputLabels: []string{"Camera 1"}})
	c := dial(t, addr)
	for _, tc := range []struct {
		send string
		want []string
	}{
		{"#\r", []string{"~01@ OK"}},
		{"#INFO-IO?\r", []string{"~01@INFO-IO IN 4,OUT 3"}},
		{"#MODEL?\r", []string{"~01@MODEL VS-88UT"}},
		{"#ROUTE? 1,2\r", []string{"~01@ROUTE 1,2,2"}},
		{"#ROUTE? 1,*\r", []string{"~01@ROUTE 1,1,1", "~01@ROUTE 1,2,2", "~01@ROUTE 1,3,3"}},
		{"#ROUTE 1,2,4\r", []string{"~01@ROUTE 1,2,4 OK"}},
		{"#ROUTE? 1,2\r", []string{"~01@ROUTE 1,2,4"}},
		{"#ROUTE? 2,2\r", []string{"~01@ROUTE 2,2,2"}}, // layers are independent
		{"#route 2,3,0\r\n", []string{"~01@ROUTE 2,3,0 OK"}},
		{"#LABEL? 0,1\r", []string{"~01@LABEL 0,1,1,Camera 1"}},
		{"#LABEL? 1,3\r", []string{"~01@LABEL 1,3,1,Output 3"}},
		// Errors, in the device's codes.
		{"#ROUTE 1,4,1\r", []string{"~01@ROUTE ERR 003"}},
		{"#ROUTE 1,1,5\r", []string{"~01@ROUTE ERR 003"}},
		{"#ROUTE 3,1,1\r", []string{"~01@ROUTE ERR 003"}},
		{"#ROUTE 1,1\r", []string{"~01@ROUTE ERR 001"}},
		{"#ROUTE? 1,9\r", []string{"~01@ROUTE? ERR 003"}},
		{"#LABEL? 0,9\r", []string{"~01@LABEL? ERR 003"}},
		{"#FROBNICATE 1\r", []string{"~01@FROBNICATE ERR 002"}},
		{"hello\r", []string{"~01@ERR 001"}},
		// Chained commands: one reply each, in order.
		{"#ROUTE 1,1,3|ROUTE? 1,1|MODEL?\r", []string{"~01@ROUTE 1,1,3 OK", "~01@ROUTE 1,1,3", "~01@MODEL VS-88UT"}},
		// Addressed to this machine, or to another one (no answer: the
		// handshake after it is answered first).
		{"#01@ROUTE? 1,1\r", []string{"~01@ROUTE 1,1,3"}},
		{"#07@ROUTE 1,1,1\r#\r", []string{"~01@ OK"}},
	} {
		c.send(tc.send)
		c.expect(tc.want...)
	}
	if got, want := s.Routing(), []int{3, 4, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("Routing() = %v, want %v", got, want)
	}
	if got, want := s.LayerRouting(2), []int{1, 2, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("LayerRouting(2) = %v, want %v", got, want)
	}
	routes := s.Routes()
	if len(routes) != 3 || routes[0] != (kramersim.RouteRecord{Time: routes[0].Time, Layer: 1, Output: 2, Input: 4, Remote: c.nc.LocalAddr().String()}) {
		t.Errorf("Routes() = %+v", routes)
	}
	cmds := s.Commands()
	var found bool
	for _, cmd := range cmds {
		if cmd.Line == "#ROUTE 1,4,1" {
			found = reflect.DeepEqual(cmd.Replies, []string{"~01@ROUTE ERR 003"})
		}
		if cmd.Line == "#07@ROUTE 1,1,1" && len(cmd.Replies) != 0 {
			t.Errorf("a command for machine 7 was answered: %+v", cmd)
		}
	}
	if !found {
		t.Errorf("refused route not recorded with its reply: %+v", cmds)
	}
}

func TestAnnouncements(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	routes, cancel := s.Subscribe(10)
	defer cancel()
	a, b := dial(t, addr), dial(t, addr)
	a.send("#\r")
	a.expect("~01@ OK")
	b.send("#\r")
	b.expect("~01@ OK")
	if n := s.ClientCount(); n != 2 {
		t.Errorf("ClientCount() = %d, want 2", n)
	}
	// A route from one client: the others hear of it.
	a.send("#ROUTE 1,3,7\r")
	a.expect("~01@ROUTE 1,3,7 OK")
	b.expect("~01@ROUTE 1,3,7")
	select {
	case r := <-routes:
		if r.Layer != 1 || r.Output != 3 || r.Input != 7 || r.Remote != a.nc.LocalAddr().String() {
			t.Errorf("route record %+v", r)
		}
	case <-time.After(deadline):
		t.Fatal("no route record")
	}
	// From the panel, audio following video: every client, every layer.
	if err := s.SetRoute(5, 2); err != nil {
		t.Fatal(err)
	}
	a.expect("~01@ROUTE 1,5,2", "~01@ROUTE 2,5,2")
	b.expect("~01@ROUTE 1,5,2", "~01@ROUTE 2,5,2")
	if r := <-routes; r.Remote != "panel" || r.Output != 5 || r.Input != 2 {
		t.Errorf("panel route record %+v", r)
	}
	// Breakaway: one layer.
	if err := s.SetLayerRoute(2, 1, 0); err != nil {
		t.Fatal(err)
	}
	a.expect("~01@ROUTE 2,1,0")
	b.expect("~01@ROUTE 2,1,0")
	// All outputs at once.
	b.send("#ROUTE 1,*,4\r")
	b.expect("~01@ROUTE 1,*,4 OK")
	a.expect("~01@ROUTE 1,*,4")
	if got := s.Routing(); !reflect.DeepEqual(got, []int{4, 4, 4, 4, 4, 4, 4, 4}) {
		t.Errorf("Routing() = %v", got)
	}
	for _, bad := range [][3]int{{1, 0, 1}, {1, 9, 1}, {1, 1, 9}, {1, 1, -1}, {3, 1, 1}} {
		if err := s.SetLayerRoute(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("SetLayerRoute(%v) accepted", bad)
		}
	}
}

func TestOptions(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{
		Inputs: 2, Outputs: 2, Machine: 5, Model: "MTX3-16-M", Layers: []int{1, 12, 12, 0},
		NoInfoIO: true, NoLabels: true, NoNotify: true, OmitOK: true, Banner: "Welcome to Kramer",
	})
	a, b := dial(t, addr), dial(t, addr)
	a.expect("<malformed>") // the banner is no protocol line
	b.expect("<malformed>")
	for _, tc := range []struct {
		send string
		want []string
	}{
		{"#\r", []string{"~05@ OK"}},
		{"#INFO-IO?\r", []string{"~05@INFO-IO? ERR 002"}},
		{"#LABEL? 0,1\r", []string{"~05@LABEL? ERR 002"}},
		{"#MODEL?\r", []string{"~05@MODEL MTX3-16-M"}},
		{"#ROUTE 12,1,2\r", []string{"~05@ROUTE 12,1,2"}},
		{"#ROUTE 2,1,1\r", []string{"~05@ROUTE ERR 003"}},
		{"#01@\r#05@\r", []string{"~05@ OK"}},
	} {
		a.send(tc.send)
		a.expect(tc.want...)
	}
	if got := s.Layers(); !reflect.DeepEqual(got, []int{1, 12}) {
		t.Errorf("Layers() = %v", got)
	}
	if err := s.SetRoute(2, 1); err != nil {
		t.Fatal(err)
	}
	// No announcement came before the answer to b's first command.
	b.send("#\r")
	b.expect("~05@ OK")
	if got := s.LayerRouting(12); !reflect.DeepEqual(got, []int{2, 1}) {
		t.Errorf("LayerRouting(12) = %v", got)
	}
	if s.LayerRouting(2) != nil {
		t.Error("LayerRouting of a missing layer")
	}
}

func TestDefaults(t *testing.T) {
	s := kramersim.New(kramersim.Options{Inputs: 5000, Outputs: -1, InputLabels: []string{"Cam|1\r\n" + strings.Repeat("x", 100)}})
	if in, out := s.Size(); in != wire.MaxPorts || out != 8 {
		t.Errorf("Size() = %d, %d", in, out)
	}
	if got := s.InputLabels()[0]; got != "Cam 1  "+strings.Repeat("x", kramersim.MaxLabel-7) {
		t.Errorf("label %q", got)
	}
	if got := s.OutputLabels()[7]; got != "Output 8" {
		t.Errorf("label %q", got)
	}
	if got := s.Routing()[7]; got != 8 {
		t.Errorf("output 8 shows %d", got)
	}
	if got := s.Layers(); !reflect.DeepEqual(got, []int{1, 2}) {
		t.Errorf("Layers() = %v", got)
	}
	// Fewer inputs than outputs: the extra outputs show the last input.
	s = kramersim.New(kramersim.Options{Inputs: 2, Outputs: 4})
	if got := s.Routing(); !reflect.DeepEqual(got, []int{1, 2, 2, 2}) {
		t.Errorf("Routing() = %v", got)
	}
}

func TestRefuseNext(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	c := dial(t, addr)
	s.RefuseNext(1)
	c.send("#ROUTE 1,1,2\r")
	c.expect("~01@ROUTE ERR 004")
	s.RefuseNextWith(2, wire.CodeBusy)
	c.send("#ROUTE? 1,1|ROUTE 1,1,2|ROUTE 1,2,3|ROUTE 1,1,2\r")
	c.expect("~01@ROUTE 1,1,1", "~01@ROUTE ERR 006", "~01@ROUTE ERR 006", "~01@ROUTE 1,1,2 OK")
	if rs := s.Routes(); len(rs) != 1 {
		t.Errorf("Routes() = %+v", rs)
	}
	if got := s.Routing()[1]; got != 2 {
		t.Errorf("refused route applied: output 2 shows %d", got)
	}
}

func TestDropNext(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	a, b := dial(t, addr), dial(t, addr)
	s.DropNext(1)
	a.send("#ROUTE 1,1,5\r")
	a.closed()
	cmds := s.Commands()
	if len(cmds) != 1 || cmds[0].Line != "#ROUTE 1,1,5" || len(cmds[0].Replies) != 0 {
		t.Errorf("Commands() = %+v", cmds)
	}
	if got := s.Routing()[0]; got != 1 {
		t.Errorf("dropped command was applied: output 1 shows %d", got)
	}
	// Only once, and the other client is unaffected.
	b.send("#\r")
	b.expect("~01@ OK")
}

func TestRestartDropsEveryConnectionAndComesBackWithTheDefaultRouting(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{Inputs: 2, Outputs: 4, Banner: "~01@Kramer"})
	a := dial(t, addr)
	a.expect("~01@Kramer")
	if err := s.SetRoute(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLayerRoute(2, 3, 1); err != nil {
		t.Fatal(err)
	}
	s.RefuseNext(5)
	s.Restart()
	// The panel routes' notifications may still be on their way: the
	// connection closes after them.
	a.closedAfterAnyFrames()
	for _, l := range s.Layers() {
		if got, want := s.LayerRouting(l), []int{1, 2, 2, 2}; !reflect.DeepEqual(got, want) {
			t.Errorf("layer %d after Restart: %v, want %v", l, got, want)
		}
	}
	b := dial(t, addr)
	b.expect("~01@Kramer")
	b.send("#ROUTE 1,1,2\r") // the faults went with the restart
	b.expect("~01@ROUTE 1,1,2 OK")
}

func TestSilent(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{Banner: "~01@Kramer"})
	cmds, cancel := s.SubscribeCommands(10)
	defer cancel()
	old := dial(t, addr)
	old.expect("~01@Kramer")
	s.SetSilent(true)
	c := dial(t, addr) // gets no banner
	c.send("#\r")
	select {
	case cmd := <-cmds:
		if cmd.Line != "#" || len(cmd.Replies) != 0 {
			t.Fatalf("silent command recorded as %+v", cmd)
		}
	case <-time.After(deadline):
		t.Fatal("command not recorded")
	}
	if err := s.SetRoute(1, 2); err != nil { // applied, but not announced
		t.Fatal(err)
	}
	s.SetSilent(false)
	c.send("#\r")
	c.expect("~01@ OK") // the first thing c ever receives
	old.send("#\r")
	old.expect("~01@ OK") // no announcement came before it
	if got := s.Routing()[0]; got != 2 {
		t.Errorf("output 1 shows %d", got)
	}
}

func TestDropConnectionsAndClose(t *testing.T) {
	s := kramersim.New(kramersim.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() { s.Close() })
	a, b := dial(t, l.Addr().String()), dial(t, l.Addr().String())
	a.send("#\r")
	a.expect("~01@ OK")
	b.send("#\r")
	b.expect("~01@ OK")
	s.DropConnections()
	a.closed()
	b.closed()

	c := dial(t, l.Addr().String())
	c.send("#\r")
	c.expect("~01@ OK")
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
	if _, err := s.Listen("127.0.0.1:0"); !errors.Is(err, kramersim.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
	if nc, err := net.Dial("tcp", l.Addr().String()); err == nil {
		nc.Close()
		t.Error("listener still accepting after Close")
	}
}

func TestLongLineCloses(t *testing.T) {
	s, addr := kramersim.StartLoopback(t, kramersim.Options{})
	c := dial(t, addr)
	go c.nc.Write([]byte("#ROUTE " + strings.Repeat("1", wire.MaxLineSize+10) + "\r"))
	c.closed()
	if n := len(s.Routes()); n != 0 {
		t.Errorf("%d routes", n)
	}
}
