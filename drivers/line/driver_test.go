package line_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/line"
	"understudy/drivers/line/linesim"
)

// The projector used by most tests: its commands, and the simulator's
// replies.
const projector = `
commands:
  power_on:  { send: 'PWR ON\r',  expect: '^OK$', error: '^ERR' }
  power_off: { send: 'PWR OFF\r', expect: '^OK$', error: '^ERR' }
  power:     { send: 'PWR?\r',    expect: '^PWR=(?P<power>[01])$', error: '^ERR' }
  input:     { send: 'INPUT {{.n}}\r', expect: '^OK$', error: '^ERR' }
  mute:      { send: 'MUTE ON\r' }
  name:      { send: 'NAME {{.name}}\r', expect: '^OK$' }
  ping:      { send: 'PING\r', expect: '^PONG$', timeout: 250ms }
`

func projectorReplies() map[string]string {
	return map[string]string{
		"PWR ON":  "OK",
		"PWR OFF": "OK",
		"PWR?":    "PWR=1",
		"INPUT 3": "OK",
		"INPUT 9": "ERR 2",
		"MUTE ON": "",
		"PING":    "PONG",
	}
}

// newDriver builds and starts a line driver from YAML settings; fast
// reconnection, and a timeout generous enough for a loaded machine, unless
// the settings say otherwise. Tests that need a reply to time out use the
// ping command (250ms).
func newDriver(t *testing.T, doc string) (*line.Line, *events) {
	t.Helper()
	for _, def := range []string{"backoff_min: 10ms", "backoff_max: 50ms", "timeout: 10s"} {
		key, _, _ := strings.Cut(def, ":")
		if !strings.Contains(doc, key+":") {
			doc += "\n" + def + "\n"
		}
	}
	d, err := line.New(drivertest.Config("projector", doc))
	if err != nil {
		t.Fatal(err)
	}
	l := d.(*line.Line)
	ev := &events{drivertest.NewEvents(t), t}
	l.Start(context.Background(), ev.Emit)
	t.Cleanup(func() { l.Close() })
	return l, ev
}

func tcpDriver(t *testing.T, addr string, extra ...string) (*line.Line, *events) {
	t.Helper()
	return newDriver(t, "address: "+addr+"\n"+strings.Join(extra, "\n")+"\n"+projector)
}

func do(t *testing.T, d *line.Line, args map[string]any) (any, error) {
	t.Helper()
	return d.Do(drivertest.Context(t), args)
}

func cmd(name string) map[string]any { return map[string]any{"command": name} }

// mustDo sends a command that must succeed and returns its result.
func mustDo(t *testing.T, d *line.Line, args map[string]any) map[string]any {
	t.Helper()
	res, err := do(t, d, args)
	if err != nil {
		t.Fatalf("Do(%v): %v", args, err)
	}
	m, ok := res.(map[string]any)
	if !ok {
		t.Fatalf("Do(%v) result %#v is not a map", args, res)
	}
	return m
}

// isFinal checks an error that the runtime must not retry and that is not
// a refusal.
func isFinal(t *testing.T, err error, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", contains)
	}
	if errors.Is(err, drivers.ErrNotConnected) || errors.Is(err, drivers.ErrRefused) {
		t.Errorf("error %q: retryable=%v refused=%v, want neither", err,
			errors.Is(err, drivers.ErrNotConnected), errors.Is(err, drivers.ErrRefused))
	}
	if !strings.Contains(err.Error(), contains) {
		t.Errorf("error %q, want one containing %q", err, contains)
	}
}

func TestCommandsOverTCP(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, ev := tcpDriver(t, addr)

	// Nothing connects before the first command.
	if st := d.Status(); st.Connected || st.Address != addr || st.LastError != "" {
		t.Errorf("Status() before any command = %+v", st)
	}
	if err := d.Check(cmd("power_on")); err != nil {
		t.Fatal(err)
	}
	if n := sim.Accepted(); n != 0 {
		t.Errorf("%d connections before the first command, want 0", n)
	}

	if got := mustDo(t, d, cmd("power_on")); !reflect.DeepEqual(got, map[string]any{"reply": "OK"}) {
		t.Errorf("power_on result %v", got)
	}
	ev.expect(drivers.EventConnected)
	if got := mustDo(t, d, cmd("power")); !reflect.DeepEqual(got, map[string]any{"reply": "PWR=1", "power": "1"}) {
		t.Errorf("power result %v", got)
	}
	if got := mustDo(t, d, map[string]any{"command": "input", "args": map[string]any{"n": int64(3)}}); got["reply"] != "OK" {
		t.Errorf("input result %v", got)
	}
	// A value that came through JSON (a resumed action) renders the same,
	// even a large one (1e+06 as a float).
	if got := mustDo(t, d, map[string]any{"command": "input", "args": map[string]any{"n": float64(3)}}); got["reply"] != "OK" {
		t.Errorf("input result %v", got)
	}
	sim.SetReply("INPUT 1000000", "OK")
	if got := mustDo(t, d, map[string]any{"command": "input", "args": map[string]any{"n": float64(1e6)}}); got["reply"] != "OK" {
		t.Errorf("input result %v", got)
	}
	// A command that awaits no reply returns once sent.
	if got := mustDo(t, d, cmd("mute")); len(got) != 0 {
		t.Errorf("mute result %v, want {}", got)
	}
	if err := sim.WaitCommands(drivertest.Context(t), 6); err != nil {
		t.Fatal(err)
	}
	want := []string{"PWR ON", "PWR?", "INPUT 3", "INPUT 3", "INPUT 1000000", "MUTE ON"}
	if got := sim.Lines(); !reflect.DeepEqual(got, want) {
		t.Errorf("device received %q, want %q", got, want)
	}
	if n := sim.Accepted(); n != 1 {
		t.Errorf("%d connections, want 1 (the connection is kept)", n)
	}
	if st := d.Status(); !st.Connected || st.LastError != "" {
		t.Errorf("Status() = %+v", st)
	}
	ev.none()
}

func TestRefusalInTheDevicesWords(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, _ := tcpDriver(t, addr)
	_, err := do(t, d, map[string]any{"command": "input", "args": map[string]any{"n": 9}})
	if !errors.Is(err, drivers.ErrRefused) || errors.Is(err, drivers.ErrNotConnected) {
		t.Fatalf("error %v, want a refusal", err)
	}
	if want := addr + " refused input: ERR 2"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The device answered: the connection is fine and stays.
	mustDo(t, d, cmd("power_on"))
	if n, c := sim.Accepted(), sim.Count("INPUT 9"); n != 1 || c != 1 {
		t.Errorf("%d connections, INPUT 9 sent %d times; want 1, 1", n, c)
	}
	if st := d.Status(); !st.Connected {
		t.Errorf("Status() = %+v", st)
	}
}

func TestUnexpectedReply(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, _ := tcpDriver(t, addr)
	sim.GarbageNext(1)
	_, err := do(t, d, cmd("power_on"))
	isFinal(t, err, fmt.Sprintf(`%s power_on: unexpected reply %q (want ^OK$)`, addr, linesim.Garbage))
	// An unknown command gets the device's generic error; a command with
	// no error regexp reports it as unexpected.
	_, err = do(t, d, map[string]any{"command": "name", "args": map[string]any{"name": "Hall A"}})
	isFinal(t, err, `unexpected reply "ERR 1"`)
	if got := mustDo(t, d, cmd("power")); got["power"] != "1" {
		t.Errorf("power after garbage: %v", got)
	}
}

func TestSilentDeviceTimesOutAndTheCommandIsNotRetried(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, ev := tcpDriver(t, addr)
	mustDo(t, d, cmd("power"))
	ev.expect(drivers.EventConnected)

	sim.NoReplyNext(1)
	_, err := do(t, d, cmd("ping"))
	isFinal(t, err, addr+" ping: no reply within 250ms")
	// The stream is out of step: the connection was dropped.
	if e := ev.expect(drivers.EventDisconnected); !strings.Contains(e.Fields["error"].(string), "no reply within 250ms") {
		t.Errorf("disconnect event %+v", e)
	}
	if st := d.Status(); st.Connected || !strings.Contains(st.LastError, "no reply") {
		t.Errorf("Status() = %+v", st)
	}
	// The next command connects again.
	mustDo(t, d, cmd("power_off"))
	ev.expect(drivers.EventConnected)
	// PING came on the first connection, which the device may read after
	// the second: wait for all three commands.
	if err := sim.WaitCommands(drivertest.Context(t), 3); err != nil {
		t.Fatal(err)
	}
	if n, c := sim.Accepted(), sim.Count("PING"); n != 2 || c != 1 {
		t.Errorf("%d connections, PING sent %d times; want 2, 1", n, c)
	}
}

func TestConnectionDroppedMidCommand(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, ev := tcpDriver(t, addr)
	mustDo(t, d, cmd("power"))
	ev.expect(drivers.EventConnected)

	sim.DropNext(1)
	_, err := do(t, d, cmd("power_on"))
	// The device may have acted on it: not retried.
	isFinal(t, err, addr+" power_on: sent, then the connection was lost: connection closed by the device")
	ev.expect(drivers.EventDisconnected)

	mustDo(t, d, cmd("power_off"))
	ev.expect(drivers.EventConnected)
	if n, c := sim.Accepted(), sim.Count("PWR ON"); n != 2 || c != 1 {
		t.Errorf("%d connections, PWR ON sent %d times; want 2, 1", n, c)
	}
	got := sim.Commands()
	if len(got) != 3 || got[1].Fault != linesim.Drop || got[1].Reply != "" {
		t.Errorf("device log %+v", got)
	}
}

func TestDeviceNotListeningThenBack(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	sim.StopListening()
	d, ev := tcpDriver(t, addr)

	_, err := do(t, d, cmd("power_on"))
	if !errors.Is(err, drivers.ErrNotConnected) || errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("error %v, want ErrNotConnected (nothing was sent: the runtime retries)", err)
	}
	if !strings.Contains(err.Error(), addr+" power_on: not connected: ") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %q", err)
	}
	e := ev.expect(drivers.EventDisconnected)
	if e.Fields["address"] != addr || !strings.Contains(e.Fields["error"].(string), "refused") {
		t.Errorf("event %+v", e)
	}
	if st := d.Status(); st.Connected || !strings.Contains(st.LastError, "refused") {
		t.Errorf("Status() = %+v", st)
	}
	// A second failure is not reported again.
	if _, err := do(t, d, cmd("power_on")); !errors.Is(err, drivers.ErrNotConnected) {
		t.Fatalf("second attempt: %v", err)
	}
	ev.none()

	// The device comes back on the same address; the command waits out the
	// backoff and goes through.
	if _, err := sim.ListenTCP(addr); err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	mustDo(t, d, cmd("power_on"))
	ev.expect(drivers.EventConnected)
	if c := sim.Count("PWR ON"); c != 1 {
		t.Errorf("PWR ON sent %d times, want 1", c)
	}
}

func TestBackoffWaitsOrFailsFast(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	sim.StopListening()
	d, _ := tcpDriver(t, addr, "backoff_min: 1h", "backoff_max: 1h")
	if _, err := do(t, d, cmd("power_on")); !errors.Is(err, drivers.ErrNotConnected) {
		t.Fatalf("first attempt: %v", err)
	}
	// The next attempt is an hour away, past the command's deadline: the
	// command fails at once, unsent, for the runtime to retry.
	_, err := do(t, d, cmd("power_on"))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "next attempt in") {
		t.Fatalf("error %v, want not connected, next attempt in …", err)
	}
	// Without a deadline it waits, until cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := d.Do(ctx, cmd("power_on"))
		res <- err
	}()
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, drivers.ErrNotConnected) || !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want not connected and cancelled", err)
		}
	case <-time.After(drivertest.Deadline):
		t.Fatal("Do did not return after cancel")
	}
}

func TestDeviceClosesIdleConnection(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, ev := tcpDriver(t, addr)
	mustDo(t, d, cmd("power_on"))
	ev.expect(drivers.EventConnected)

	sim.DropConnections()
	e := ev.expect(drivers.EventDisconnected)
	if e.Fields["error"] != "connection closed by the device" {
		t.Errorf("event %+v", e)
	}
	if st := d.Status(); st.Connected {
		t.Errorf("Status() = %+v", st)
	}
	// The next command connects again at once (an idle close is no
	// failure) and is sent once.
	mustDo(t, d, cmd("power_on"))
	ev.expect(drivers.EventConnected)
	if n, c := sim.Accepted(), sim.Count("PWR ON"); n != 2 || c != 2 {
		t.Errorf("%d connections, PWR ON sent %d times; want 2, 2", n, c)
	}
}

func TestStaleBytesAreDrainedBeforeEachCommand(t *testing.T) {
	replies := projectorReplies()
	replies["MUTE ON"] = "OK" // the device answers a command the driver awaits no reply to
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: replies})
	d, _ := tcpDriver(t, addr)
	ctx := drivertest.Context(t)

	mustDo(t, d, cmd("mute"))
	if err := line.WaitBuffered(ctx, d, len("OK\r\n")); err != nil {
		t.Fatal(err)
	}
	sim.Push("LAMP HOURS=1200") // and reports something by itself
	if err := line.WaitBuffered(ctx, d, len("OK\r\nLAMP HOURS=1200\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := mustDo(t, d, cmd("power")); got["reply"] != "PWR=1" {
		t.Errorf("power result %v, want PWR=1 (stale lines must be discarded)", got)
	}
	// A partial stale line too.
	sim.Push("PARTIAL")
	if err := line.WaitBuffered(ctx, d, len("PARTIAL")); err != nil {
		t.Fatal(err)
	}
	if got := mustDo(t, d, cmd("power_on")); got["reply"] != "OK" {
		t.Errorf("power_on result %v", got)
	}
}

func TestGreeting(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies(), Banner: "(c) Copyright 2026, Projector Co.\r\nV1.2"})
	d, ev := tcpDriver(t, addr, "greeting: '^V\\d'")
	if got := mustDo(t, d, cmd("power_on")); got["reply"] != "OK" {
		t.Errorf("power_on result %v", got)
	}
	ev.expect(drivers.EventConnected)
	if got := sim.Lines(); !reflect.DeepEqual(got, []string{"PWR ON"}) {
		t.Errorf("device received %q", got)
	}

	// A device that does not greet: nothing is sent.
	silent, addr2 := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d2, _ := tcpDriver(t, addr2, "greeting: '^V\\d'", "timeout: 100ms")
	_, err := do(t, d2, cmd("power_on"))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), `no greeting matching ^V\d within 100ms`) {
		t.Errorf("error %v", err)
	}
	if n := len(silent.Lines()); n != 0 {
		t.Errorf("device received %d commands", n)
	}
}

func TestContextCancelled(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, _ := tcpDriver(t, addr, "timeout: 1h")

	// Cancelled before sending: not connected (retryable), nothing sent.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.Do(ctx, cmd("power_on"))
	if !errors.Is(err, drivers.ErrNotConnected) || !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want not connected and cancelled", err)
	}

	// Cancelled while waiting for the reply: sent, so not retryable.
	sim.SetSilent(true)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() {
		_, err := d.Do(ctx, cmd("power_on"))
		res <- err
	}()
	if err := sim.WaitCommands(drivertest.Context(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) || errors.Is(err, drivers.ErrNotConnected) {
			t.Errorf("error %v, want cancelled and not retryable", err)
		}
	case <-time.After(drivertest.Deadline):
		t.Fatal("Do did not return after cancel")
	}
	if c := sim.Count("PWR ON"); c != 1 {
		t.Errorf("PWR ON sent %d times", c)
	}
	// The driver goes on.
	sim.SetSilent(false)
	mustDo(t, d, cmd("power_off"))
}

func TestCloseWithCommandInFlight(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	sim.SetSilent(true)
	d, _ := tcpDriver(t, addr, "timeout: 1h")
	res := make(chan error, 1)
	go func() {
		_, err := d.Do(context.Background(), cmd("power_on"))
		res <- err
	}()
	if err := sim.WaitCommands(drivertest.Context(t), 1); err != nil {
		t.Fatal(err)
	}
	d.Close()
	select {
	case err := <-res:
		if !errors.Is(err, line.ErrClosed) {
			t.Errorf("error %v, want ErrClosed", err)
		}
	case <-time.After(drivertest.Deadline):
		t.Fatal("Do did not return after Close")
	}
	if _, err := do(t, d, cmd("power_on")); !errors.Is(err, line.ErrClosed) {
		t.Errorf("Do after Close: %v", err)
	}
	if st := d.Status(); st.Connected {
		t.Errorf("Status() after Close = %+v", st)
	}
}

func TestNotStarted(t *testing.T) {
	d, err := line.New(drivertest.Config("projector", "address: 127.0.0.1:1\n"+projector))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.(*line.Line).Do(drivertest.Context(t), cmd("power_on")); !errors.Is(err, drivers.ErrNotConnected) {
		t.Errorf("Do before Start: %v", err)
	}
	d.Close()
}

func TestCheck(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, _ := tcpDriver(t, addr)
	raw, _ := tcpDriver(t, addr, "raw: true")
	for _, tc := range []struct {
		d    *line.Line
		args map[string]any
		want string // "" = valid
	}{
		{d, cmd("power_on"), ""},
		{d, map[string]any{"command": "input", "args": map[string]any{"n": 3}}, ""},
		{d, map[string]any{"command": "name", "args": map[string]any{"name": "Hall A – left"}}, ""},
		{d, cmd("power_onn"), `unknown command "power_onn" (known: input, mute, name, ping, power, power_off, power_on)`},
		{d, cmd("input"), "command input: args.n is missing (the command's send uses {{.n}})"},
		{d, map[string]any{"command": "input", "args": []any{3}}, "args must be a table of named values"},
		{d, map[string]any{"command": "power_on", "args": []any{}}, ""}, // an empty Lua table
		{d, map[string]any{"command": "input", "args": "3"}, "args must be a table of named values"},
		{d, map[string]any{"command": "name", "args": map[string]any{"name": "x\rPWR OFF"}}, `args.name holds a control character ('\r')`},
		{d, map[string]any{"command": 3}, "command must be a name"},
		{d, map[string]any{"command": "power_on", "expect": "x"}, "expect comes from the command's settings"},
		{d, map[string]any{"command": "power_on", "member": "x"}, `unknown field "member"`},
		{d, map[string]any{}, "want a command (one of input, mute, name, ping, power, power_off, power_on)"},
		{d, map[string]any{"send": "PWR ON\r"}, "raw sends are off for this driver (set raw: true"},
		{raw, map[string]any{"send": "PWR ON\r", "expect": "^OK$", "error": "^ERR"}, ""},
		{raw, map[string]any{"send": "PWR ON\r"}, ""},
		{raw, map[string]any{"send": ""}, "send must be the text"},
		{raw, map[string]any{"send": "X\r", "expect": "("}, "expect: error parsing regexp"},
		{raw, map[string]any{"send": "X\r", "error": "^ERR"}, "error needs expect"},
		{raw, map[string]any{"send": "X\r", "command": "power_on"}, "give command or send, not both"},
		{raw, map[string]any{"send": "X\r", "args": map[string]any{}}, "args go with command"},
	} {
		err := tc.d.Check(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%v): %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check(%v) = %v, want an error containing %q", tc.args, err, tc.want)
		}
		if tc.want != "" {
			// Do refuses the same, before anything is sent.
			if _, err := do(t, tc.d, tc.args); err == nil || errors.Is(err, drivers.ErrNotConnected) {
				t.Errorf("Do(%v) = %v", tc.args, err)
			}
		}
	}
	if n := sim.Accepted(); n != 0 {
		t.Errorf("checks connected %d times", n)
	}
}

func TestRawSend(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, _ := tcpDriver(t, addr, "raw: true")
	if got := mustDo(t, d, map[string]any{"send": "PWR?\r", "expect": `^PWR=(?P<p>\d)$`}); !reflect.DeepEqual(got, map[string]any{"reply": "PWR=1", "p": "1"}) {
		t.Errorf("result %v", got)
	}
	_, err := do(t, d, map[string]any{"send": "INPUT 9\r", "expect": "^OK$", "error": "^ERR"})
	if !errors.Is(err, drivers.ErrRefused) || err.Error() != addr+` refused raw send "INPUT 9\r": ERR 2` {
		t.Errorf("error %v", err)
	}
	if got := mustDo(t, d, map[string]any{"send": "MUTE ON\r"}); len(got) != 0 {
		t.Errorf("result %v", got)
	}
	if err := sim.WaitCommands(drivertest.Context(t), 3); err != nil {
		t.Fatal(err)
	}
	if got := sim.Lines(); !reflect.DeepEqual(got, []string{"PWR?", "INPUT 9", "MUTE ON"}) {
		t.Errorf("device received %q", got)
	}
}

// The send templates: a comment is not sent, json and join are there as in
// the other control drivers, and what a command renders is bounded by
// MaxLine.
func TestSendTemplates(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{})
	d, _ := newDriver(t, "address: "+addr+"\ncommands:\n"+
		"  note: { send: 'A{{/* not sent */}}B\\r' }\n"+
		"  list: { send: 'SET {{join .l \",\"}} {{json .m}}\\r' }\n"+
		"  echo: { send: '{{.s}}{{.t}}' }\n")
	mustDo(t, d, cmd("note"))
	mustDo(t, d, map[string]any{"command": "list", "args": map[string]any{"l": []any{float64(1), "x"}, "m": map[string]any{"k": 2.5}}})
	if err := sim.WaitCommands(drivertest.Context(t), 2); err != nil {
		t.Fatal(err)
	}
	if got := sim.Lines(); !reflect.DeepEqual(got, []string{"AB", `SET 1,x {"k":2.5}`}) {
		t.Errorf("device received %q", got)
	}
	half := strings.Repeat("x", line.MaxLine/2)
	for _, tc := range []struct {
		s, t string
		want string // "" = valid
	}{
		{half, half, ""},
		{half, half + "y", fmt.Sprintf("command echo: renders to more than %d bytes", line.MaxLine)},
		{"", "", "command echo: renders to nothing to send"},
	} {
		err := d.Check(map[string]any{"command": "echo", "args": map[string]any{"s": tc.s, "t": tc.t}})
		if (tc.want == "" && err != nil) || (tc.want != "" && (err == nil || err.Error() != tc.want)) {
			t.Errorf("Check(%d+%d bytes) = %v, want %q", len(tc.s), len(tc.t), err, tc.want)
		}
	}
}

func TestPerCommandTimeout(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: map[string]string{"SLOW": ""}})
	d, _ := newDriver(t, "address: "+addr+"\ntimeout: 1h\ncommands:\n  slow: { send: 'SLOW\\r', expect: '^OK$', timeout: 50ms }\n")
	_, err := do(t, d, cmd("slow"))
	isFinal(t, err, "no reply within 50ms")
	if err := sim.WaitCommands(drivertest.Context(t), 1); err != nil {
		t.Fatal(err)
	}
	if c := sim.Count("SLOW"); c != 1 {
		t.Errorf("sent %d times", c)
	}
}

func TestOneCommandAtATime(t *testing.T) {
	sim, addr := linesim.StartTCP(t, linesim.Options{Replies: projectorReplies()})
	d, _ := tcpDriver(t, addr)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"power_on", "power", "power_off"}[i%3]
			res, err := d.Do(drivertest.Context(t), cmd(name))
			if err == nil {
				want := map[string]string{"power_on": "OK", "power": "PWR=1", "power_off": "OK"}[name]
				if got := res.(map[string]any)["reply"]; got != want {
					err = fmt.Errorf("%s: reply %v, want %s", name, got, want)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(sim.Lines()); n != 20 {
		t.Errorf("device received %d commands, want 20", n)
	}
}

func TestUDP(t *testing.T) {
	sim, addr := linesim.StartUDP(t, linesim.Options{Replies: projectorReplies()})
	d, ev := newDriver(t, "transport: udp\naddress: "+addr+"\n"+projector)
	if got := mustDo(t, d, cmd("power")); !reflect.DeepEqual(got, map[string]any{"reply": "PWR=1", "power": "1"}) {
		t.Errorf("power result %v", got)
	}
	ev.expect(drivers.EventConnected)
	if st := d.Status(); !st.Connected {
		t.Errorf("Status() = %+v", st)
	}
	_, err := do(t, d, map[string]any{"command": "input", "args": map[string]any{"n": 9}})
	if !errors.Is(err, drivers.ErrRefused) || err.Error() != addr+" refused input: ERR 2" {
		t.Errorf("error %v", err)
	}
	// Fire and forget.
	if got := mustDo(t, d, cmd("mute")); len(got) != 0 {
		t.Errorf("mute result %v", got)
	}
	if err := sim.WaitCommands(drivertest.Context(t), 3); err != nil {
		t.Fatal(err)
	}
	// No reply: sent, not retried.
	sim.NoReplyNext(1)
	_, err = do(t, d, cmd("ping"))
	isFinal(t, err, addr+" ping: no reply within 250ms")
	ev.expect(drivers.EventDisconnected)
	mustDo(t, d, cmd("power_on"))
	ev.expect(drivers.EventConnected)
	if got := sim.Lines(); !reflect.DeepEqual(got, []string{"PWR?", "INPUT 9", "MUTE ON", "PING", "PWR ON"}) {
		t.Errorf("device received %q", got)
	}
	for _, c := range sim.Commands() {
		if c.Transport != "udp" {
			t.Errorf("command %+v", c)
		}
	}
}

func TestUDPPortUnreachable(t *testing.T) {
	// A UDP port nobody listens on: the kernel answers ICMP port
	// unreachable, so the datagram was not taken and is safe to send again.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	d, ev := newDriver(t, "transport: udp\naddress: "+addr+"\n"+projector)
	_, err = do(t, d, cmd("power_on"))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "nothing listens on the device's port") {
		t.Errorf("error %v, want not connected", err)
	}
	ev.expect(drivers.EventDisconnected)
}

// driverConfig is drivertest.Config, for config_test.go.
func driverConfig(name, doc string) drivers.Config { return drivertest.Config(name, doc) }

// events is a drivertest.Events with the methods serial_test.go uses.
type events struct {
	*drivertest.Events
	t *testing.T
}

func (e *events) none() {
	e.t.Helper()
	e.None()
}

// expect checks that the next event has the given name and returns it.
func (e *events) expect(name string) drivers.Event {
	e.t.Helper()
	ev := e.Next()
	if ev.Name != name {
		e.t.Fatalf("event %+v, want %s", ev, name)
	}
	return ev
}
