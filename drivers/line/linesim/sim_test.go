package linesim_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"understudy/drivers/line/linesim"
)

const deadline = 10 * time.Second

func ctxDeadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// client is a raw TCP client of the simulator.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(deadline))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	return s
}

var replies = map[string]string{"PWR ON": "OK", "PWR?": "PWR=1", "MUTE": ""}

func TestTCP(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: replies})
	c := dial(t, addr)
	c.send("PWR ON\r")
	if got := c.line(); got != "OK\r\n" {
		t.Errorf("reply %q", got)
	}
	// Commands end with \r, \n or both; empty lines are ignored; a
	// command with reply "" is answered with nothing.
	c.send("MUTE\r\n\r\nPWR?\nBOGUS\r")
	if got := c.line(); got != "PWR=1\r\n" {
		t.Errorf("reply %q", got)
	}
	if got := c.line(); got != "ERR 1\r\n" {
		t.Errorf("reply to an unknown command %q", got)
	}
	sim.SetReply("BOGUS", "OK BOGUS")
	c.send("BOGUS\r")
	if got := c.line(); got != "OK BOGUS\r\n" {
		t.Errorf("reply %q", got)
	}
	var lines, got []string
	for _, cmd := range sim.Commands() {
		lines = append(lines, cmd.Line)
		got = append(got, cmd.Reply)
		if cmd.Transport != "tcp" || cmd.Remote != c.nc.LocalAddr().String() {
			t.Errorf("command %+v", cmd)
		}
	}
	if want := []string{"PWR ON", "MUTE", "PWR?", "BOGUS", "BOGUS"}; !reflect.DeepEqual(lines, want) {
		t.Errorf("log %q, want %q", lines, want)
	}
	if want := []string{"OK", "", "PWR=1", "ERR 1", "OK BOGUS"}; !reflect.DeepEqual(got, want) {
		t.Errorf("replies %q, want %q", got, want)
	}
	if sim.Count("BOGUS") != 2 || sim.Accepted() != 1 || sim.ClientCount() != 1 {
		t.Errorf("count %d, accepted %d, clients %d", sim.Count("BOGUS"), sim.Accepted(), sim.ClientCount())
	}
}

func TestFaults(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: replies, Terminator: "\r", Unknown: "ERR 9"})
	c := dial(t, addr)
	sim.NoReplyNext(1)
	sim.GarbageNext(1)
	c.send("PWR ON\rPWR ON\rPWR?\rX\r")
	r := bufio.NewReader(c.nc)
	for _, want := range []string{linesim.Garbage + "\r", "PWR=1\r", "ERR 9\r"} {
		got, err := r.ReadString('\r')
		if err != nil || got != want {
			t.Errorf("reply %q, %v; want %q", got, err, want)
		}
	}
	faults := []linesim.Fault{}
	for _, cmd := range sim.Commands() {
		faults = append(faults, cmd.Fault)
	}
	if want := []linesim.Fault{linesim.NoReply, linesim.Junk, linesim.None, linesim.None}; !reflect.DeepEqual(faults, want) {
		t.Errorf("faults %q", faults)
	}

	sim.SetSilent(true)
	c.send("PWR?\r")
	if err := sim.WaitCommands(ctxDeadline(t), 5); err != nil {
		t.Fatal(err)
	}
	sim.SetSilent(false)
	sim.DropNext(1)
	c.send("PWR?\r")
	if _, err := r.ReadString('\r'); !errors.Is(err, io.EOF) {
		t.Errorf("after a drop: %v, want EOF", err)
	}
	cmds := sim.Commands()
	if last := cmds[len(cmds)-1]; last.Fault != linesim.Drop || last.Reply != "" {
		t.Errorf("last command %+v", last)
	}
	if cmds[4].Fault != linesim.NoReply {
		t.Errorf("silent command %+v", cmds[4])
	}
}

// The shared vocabulary: RefuseNext answers the error reply whatever the
// command, DropNext drops each of the next n, Restart drops the connection
// and brings the replies and faults back to power-on.
func TestRefuseNextDropNextAndRestart(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: replies})
	c := dial(t, addr)
	sim.RefuseNext(2)
	c.send("PWR ON\nPWR?\nPWR?\n")
	for _, want := range []string{"ERR 1\r\n", "ERR 1\r\n", "PWR=1\r\n"} {
		if got := c.line(); got != want {
			t.Errorf("reply %q, want %q", got, want)
		}
	}
	if cmds := sim.Commands(); cmds[0].Fault != linesim.Refuse || cmds[0].Reply != "ERR 1" || cmds[2].Fault != linesim.None {
		t.Errorf("commands %+v", cmds)
	}

	sim.DropNext(2)
	for range 2 {
		c := dial(t, addr)
		c.send("PWR?\n")
		if s, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
			t.Errorf("after a drop: %q, %v; want EOF", s, err)
		}
	}

	sim.SetReply("PWR?", "PWR=0")
	sim.NoReplyNext(5)
	c = dial(t, addr)
	c.send("MUTE\n") // no reply by the table: the command is in the log once answered
	if err := sim.WaitCommands(ctxDeadline(t), 6); err != nil {
		t.Fatal(err)
	}
	sim.Restart()
	if s, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Errorf("after the restart: %q, %v; want EOF", s, err)
	}
	c = dial(t, addr)
	c.send("PWR?\n")
	if got := c.line(); got != "PWR=1\r\n" {
		t.Errorf("after the restart PWR? answers %q, want the power-on reply and no fault", got)
	}
}

func TestBannerPushAndDrop(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: replies, Banner: "Projector Co. V1.2"})
	c := dial(t, addr)
	if got := c.line(); got != "Projector Co. V1.2\r\n" {
		t.Errorf("banner %q", got)
	}
	c.send("PWR?\r")
	c.line()
	sim.Push("LAMP=1200")
	if got := c.line(); got != "LAMP=1200\r\n" {
		t.Errorf("pushed %q", got)
	}
	sim.DropConnections()
	if _, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Errorf("after DropConnections: %v", err)
	}
	// Stop and start listening again on the same address.
	sim.StopListening()
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("connected after StopListening")
	}
	if _, err := sim.ListenTCP(addr); err != nil {
		t.Skipf("listen again on %s: %v", addr, err)
	}
	c2 := dial(t, addr)
	c2.line() // banner
	c2.send("PWR ON\r")
	if got := c2.line(); got != "OK\r\n" {
		t.Errorf("reply %q", got)
	}
	if n := sim.Accepted(); n != 2 {
		t.Errorf("accepted %d", n)
	}
}

func TestUDP(t *testing.T) {
	sim, addr := linesim.StartUDP(t, linesim.Options{Replies: replies})
	nc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(deadline))
	// Two commands in one datagram: two reply datagrams.
	if _, err := nc.Write([]byte("PWR ON\rPWR?\r")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	for _, want := range []string{"OK\r\n", "PWR=1\r\n"} {
		n, err := nc.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("datagram %q, %v; want %q", buf[:n], err, want)
		}
	}
	if got := sim.Commands(); len(got) != 2 || got[0].Transport != "udp" || got[1].Line != "PWR?" {
		t.Errorf("log %+v", got)
	}
}

func TestServeStream(t *testing.T) {
	sim := linesim.New(linesim.Options{Replies: replies})
	defer sim.Close()
	dev, host := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- sim.ServeStream(dev) }()
	_ = host.SetDeadline(time.Now().Add(deadline))
	r := bufio.NewReader(host)
	if _, err := io.WriteString(host, "PWR?\r"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadString('\n'); err != nil || got != "PWR=1\r\n" {
		t.Errorf("reply %q, %v", got, err)
	}
	sim.Close() // closes the stream
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("ServeStream did not return after Close")
	}
	if got := sim.Commands(); len(got) != 1 || got[0].Transport != "stream" {
		t.Errorf("log %+v", got)
	}
	if err := sim.ServeStream(dev); !errors.Is(err, linesim.ErrClosed) {
		t.Errorf("ServeStream after Close: %v", err)
	}
}
