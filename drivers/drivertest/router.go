package drivertest

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers"
)

// The Router* functions check behaviour every drivers.Router shares, so each
// switcher's tests call them instead of repeating the bodies. What a device
// says in its own words stays in the driver's tests.

// RouterNotConnected checks a driver that cannot reach its device: Route
// before Start is ErrNotConnected and nothing is known; once started, the
// driver reports the refused connection, Route says why it is not connected,
// and after Close Route is errClosed. newDriver is the driver's New; start
// starts a driver for addr without waiting for the connection.
func RouterNotConnected(t *testing.T, newDriver func(drivers.Config) (drivers.Driver, error),
	start func(t *testing.T, addr string) (drivers.Router, *Events), errClosed error) {
	t.Helper()
	// Nothing listens here once the listener is closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	d, err := newDriver(Config("router", "address: "+addr))
	if err != nil {
		t.Fatal(err)
	}
	r := d.(drivers.Router)
	if err := r.Route(Context(t), 1, 1); !errors.Is(err, drivers.ErrNotConnected) {
		t.Errorf("Route before Start: %v", err)
	}
	if r.Routing() != nil || r.InputLabels() != nil || r.OutputLabels() != nil {
		t.Error("state before the first read")
	}
	if in, out := r.Size(); in != 0 || out != 0 {
		t.Errorf("Size() = %d, %d before the first read", in, out)
	}

	r, ev := start(t, addr)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if !strings.Contains(down.Fields["error"].(string), "refused") {
		t.Errorf("disconnected event %+v", down)
	}
	err = r.Route(Context(t), 1, 1)
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Route while unreachable: %v", err)
	}
	if st := r.Status(); st.Connected || st.LastError == "" {
		t.Errorf("Status() = %+v", st)
	}
	r.Close()
	if err := r.Route(Context(t), 1, 1); !errors.Is(err, errClosed) {
		t.Errorf("Route after Close: %v", err)
	}
}

// RouterRejectsOutOfRange checks that a connected driver for a device of 4
// inputs and 2 outputs refuses routes beyond its size with errOutOfRange (a
// drivers.ErrRefused) and sends none of them: sent returns the route
// commands the device received.
func RouterRejectsOutOfRange[C any](t *testing.T, r drivers.Router, errOutOfRange error, sent func() []C) {
	t.Helper()
	for _, p := range [][2]int{{0, 1}, {3, 1}, {1, 0}, {1, 5}, {-1, -1}} {
		err := r.Route(Context(t), p[0], p[1])
		if !errors.Is(err, errOutOfRange) || !errors.Is(err, drivers.ErrRefused) {
			t.Errorf("Route(%d, %d) = %v, want ErrOutOfRange", p[0], p[1], err)
		}
	}
	if got := sent(); len(got) != 0 {
		t.Errorf("sent %+v", got)
	}
}

// RouterCloseWithRouteInFlight checks that Close ends a route the device
// never answers with errClosed, and returns. inFlight waits until the
// device has received the route of output 2 to input 3.
func RouterCloseWithRouteInFlight(t *testing.T, r drivers.Router, inFlight func(output, input int), errClosed error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- r.Route(context.Background(), 2, 3) }()
	inFlight(2, 3) // in flight, and never answered
	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, errClosed) {
			t.Errorf("Route error %v, want ErrClosed", err)
		}
	case <-time.After(Deadline):
		t.Fatal("Route did not return after Close")
	}
	select {
	case <-closed:
	case <-time.After(Deadline):
		t.Fatal("Close did not return")
	}
}

// RoutePeer is the device's end of a connection to a driver for a 4x4
// device routed i ← i, answered by hand.
type RoutePeer interface {
	// ExpectRoute waits for the command routing output to input.
	ExpectRoute(output, input int)
	// AnswerRoute confirms that output now shows input.
	AnswerRoute(output, input int)
}

// RouterRouteCancelled checks that a route whose context ends returns
// context.Canceled at once, that the device's late answer leaves the
// connection in step for the next route, and that a route with an ended
// context is not sent.
func RouterRouteCancelled(t *testing.T, r drivers.Router, peer RoutePeer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Route(ctx, 2, 3) }()
	peer.ExpectRoute(2, 3)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Route error %v, want context.Canceled", err)
		}
	case <-time.After(Deadline):
		t.Fatal("Route did not return when its context ended")
	}
	// The device answers late; the connection stays in step.
	peer.AnswerRoute(2, 3)
	errc2 := make(chan error, 1)
	go func() { errc2 <- r.Route(Context(t), 4, 1) }()
	peer.ExpectRoute(4, 1)
	peer.AnswerRoute(4, 1)
	if err := <-errc2; err != nil {
		t.Errorf("second route: %v", err)
	}
	if got := r.Routing(); !reflect.DeepEqual(got, []int{1, 3, 3, 1}) {
		t.Errorf("Routing() = %v", got)
	}
	// An already-ended context is not sent at all.
	if err := r.Route(ctx, 1, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("Route with an ended context: %v", err)
	}
}

// RouterSim is what a switcher simulator offers a test: the front panel,
// every connection dropped, and a power cycle (Restart: every connection
// drops and the routing goes back to the device's power-on default, output
// n ← input n for the first outputs).
type RouterSim interface {
	SetRoute(output, input int) error
	DropConnections()
	Restart()
	Routing() []int
}

// PanelChangeThenDrop is a RouterReadsRoutingBackOnReconnect change: output
// 1 is set to input 5 at the panel, then the connection drops.
func PanelChangeThenDrop(sim RouterSim) func(t *testing.T, ev *Events) {
	return func(t *testing.T, ev *Events) {
		t.Helper()
		if err := sim.SetRoute(1, 5); err != nil {
			t.Fatal(err)
		}
		sim.DropConnections()
		ev.WaitFor(drivers.EventDisconnected)
	}
}

// RouterReadsRoutingBackOnReconnect checks that a connected driver of an
// 8x8 device reads the routing back before it reports driver_connected
// again, so that the runtime can compare it with the routing it decided: it
// routes 1 ← 3 and 2 ← 4, then change sets output 1 to input 5 behind its
// back and drops the connection, returning once the driver saw it drop.
// When driver_connected comes, Routing() shows 5 and 4; the read-back is
// not reported as route_changed, and the driver reports nothing else (the
// comparison is the runtime's).
func RouterReadsRoutingBackOnReconnect(t *testing.T, r drivers.Router, ev *Events, change func(t *testing.T, ev *Events)) {
	t.Helper()
	ctx := Context(t)
	if err := r.Route(ctx, 1, 3); err != nil {
		t.Fatal(err)
	}
	if err := r.Route(ctx, 2, 4); err != nil {
		t.Fatal(err)
	}
	change(t, ev)
	_, before := ev.WaitFor(drivers.EventConnected)
	if got := r.Routing(); len(got) < 2 || got[0] != 5 || got[1] != 4 {
		t.Fatalf("Routing() = %v when driver_connected came, want outputs 1,2 ← 5,4 read back", got)
	}
	for _, e := range before {
		if e.Name == drivers.EventRouteChanged {
			t.Errorf("before driver_connected: %+v (the routing read back is not a change)", e)
		}
	}
	for _, e := range ev.Drain() {
		if e.Name != drivers.EventRouteChanged {
			t.Errorf("after driver_connected: %+v", e)
		}
	}
}

// RouterSeesADeviceRestart checks what a driver tells when its device
// restarts with its power-on default routing (sim.Restart) after the driver
// routed outputs 1 ← 3 and 2 ← 4 on it: either the connection drops and
// driver_connected comes back with the routing read back (a device with a
// connection), or route_changed comes for each output the restart changed
// (a device asked by polls, which cannot tell a restart from a panel). In
// both cases Routing() then shows the device's routing, and the runtime
// can put back what it decided.
func RouterSeesADeviceRestart(t *testing.T, r drivers.Router, ev *Events, sim RouterRestarter) {
	t.Helper()
	ctx := Context(t)
	if err := r.Route(ctx, 1, 3); err != nil {
		t.Fatal(err)
	}
	if err := r.Route(ctx, 2, 4); err != nil {
		t.Fatal(err)
	}
	ev.Drain() // the echoes of our own routes
	sim.Restart()
	want := sim.Routing()
	if want[0] == 3 || want[1] == 4 {
		t.Fatalf("the simulator's default routing %v leaves outputs 1,2 as routed: nothing to see", want[:2])
	}
	down, changed := false, map[int]bool{}
	for {
		e := ev.Next()
		switch e.Name {
		case drivers.EventDisconnected:
			down = true
		case drivers.EventConnected:
			if !down {
				t.Fatalf("driver_connected without driver_disconnected first")
			}
		case drivers.EventRouteChanged:
			if down {
				t.Fatalf("route_changed %v while reconnecting: the routing read back is not a change", e.Fields)
			}
			changed[e.Fields["output"].(int)] = true
		}
		if e.Name == drivers.EventConnected || (changed[1] && changed[2]) {
			break
		}
	}
	if got := r.Routing(); len(got) < 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Routing() = %v after the restart, want outputs 1,2 ← %v", got, want[:2])
	}
}

// RouterRestarter is a simulator that can restart (see RouterSim).
type RouterRestarter interface {
	Restart()
	Routing() []int
}
