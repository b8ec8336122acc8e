package kumo_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"understudy/drivers/kumo/wire"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/kumo"
	"understudy/drivers/kumo/kumosim"
	"understudy/units"
)

// startDriver starts a kumo driver for addr with the given extra settings
// (YAML lines) and waits until it is connected.
func startDriver(t *testing.T, addr string, extra ...string) (*kumo.Kumo, *drivertest.Events) {
	t.Helper()
	k, ev := newDriver(t, addr, extra...)
	ev.Connected()
	return k, ev
}

// startDriverShortTimeout is startDriver for a test that sets a short
// timeout: on a loaded machine a request may miss it while connecting, so
// disconnections before the connection is up are allowed.
func startDriverShortTimeout(t *testing.T, addr string, extra ...string) (*kumo.Kumo, *drivertest.Events) {
	t.Helper()
	k, ev := newDriver(t, addr, extra...)
	if _, before := ev.WaitFor(drivers.EventConnected); len(before) > 0 {
		for _, e := range before {
			if e.Name != drivers.EventDisconnected {
				t.Fatalf("events before the connection was ready: %+v", before)
			}
		}
	}
	return k, ev
}

// newDriver starts a driver without waiting for the connection. Unless the
// test says otherwise, reconnection is fast and the routing is not polled.
func newDriver(t *testing.T, addr string, extra ...string) (*kumo.Kumo, *drivertest.Events) {
	t.Helper()
	return drivertest.Start[*kumo.Kumo](t, kumo.New, drivertest.Doc(addr, extra, "backoff_min: 10ms", "backoff_max: 50ms", "poll: 1h"))
}

// sets returns the crosspoint sets the simulator received.
func sets(s *kumosim.Sim) []kumosim.Request {
	var out []kumosim.Request
	for _, r := range s.Requests() {
		if r.Action == wire.ActionSet {
			out = append(out, r)
		}
	}
	return out
}

func TestConnectReadsTheDevice(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{
		Inputs: 8, Outputs: 4,
		InputLabels:  []string{"CAM 1\nStage L", "CAM 2"},
		OutputLabels: []string{"PGM", "\nRec A"},
	})
	if err := s.SetRoute(4, 8); err != nil {
		t.Fatal(err)
	}
	k, _ := startDriver(t, addr)
	if in, out := k.Size(); in != 8 || out != 4 {
		t.Errorf("Size() = %d, %d; want 8, 4", in, out)
	}
	if got, want := k.Routing(), []int{1, 2, 3, 8}; !reflect.DeepEqual(got, want) {
		t.Errorf("Routing() = %v, want %v", got, want)
	}
	if got := k.InputLabels(); len(got) != 8 || got[0] != "CAM 1 Stage L" || got[1] != "CAM 2" || got[7] != "Source 8" {
		t.Errorf("InputLabels() = %q", got)
	}
	if got := k.OutputLabels(); len(got) != 4 || got[0] != "PGM" || got[1] != "Rec A" || got[3] != "Dest 4" {
		t.Errorf("OutputLabels() = %q", got)
	}
	st := k.Status()
	if !st.Connected || st.Address != addr || st.LastError != "" || st.Since.IsZero() {
		t.Errorf("Status() = %+v", st)
	}
	// The routing came in one read, and the driver changed nothing.
	var whole int
	for _, r := range s.Requests() {
		if r.ParamID == wire.ParamDestinationAll {
			whole++
		}
		if r.Action != wire.ActionGet || r.Status != 200 {
			t.Errorf("request %+v", r)
		}
	}
	if whole != 1 {
		t.Errorf("%d reads of the whole routing, want 1", whole)
	}
}

func TestRoute(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, ev := startDriver(t, addr)
	if err := k.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatal(err)
	}
	if got := k.Routing()[2]; got != 7 {
		t.Errorf("driver Routing()[2] = %d, want 7", got)
	}
	if got := s.Routing()[2]; got != 7 {
		t.Errorf("sim Routing()[2] = %d, want 7", got)
	}
	routes := s.Routes()
	if len(routes) != 1 || routes[0].Output != 3 || routes[0].Input != 7 || routes[0].Remote == "panel" {
		t.Errorf("sim applied %+v, want output 3 ← input 7 once", routes)
	}
	// On the wire: one set, destination and source from 1, then a read-back.
	reqs := s.Requests()
	last := reqs[len(reqs)-2:]
	if last[0].Action != "set" || last[0].ParamID != "eParamID_XPT_Destination3_Status" || last[0].Value != "7" || last[0].Status != 200 {
		t.Errorf("set request %+v", last[0])
	}
	if last[1].Action != "get" || last[1].ParamID != "eParamID_XPT_Destination3_Status" || !strings.Contains(last[1].Body, `"value":"7"`) {
		t.Errorf("read-back %+v", last[1])
	}
	got := ev.Next()
	if got.Name != drivers.EventRouteChanged || got.Fields["output"] != 3 || got.Fields["input"] != 7 {
		t.Errorf("event %+v, want route_changed output 3 input 7", got)
	}
	// Routing to what is already shown succeeds too, with no event.
	if err := k.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Errorf("repeated route: %v", err)
	}
	ev.None()
}

func TestRouteRefusedLocked(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, _ := startDriver(t, addr)
	if err := s.LockOutput(3); err != nil {
		t.Fatal(err)
	}
	err := k.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, kumo.ErrRefusedByDevice) || !errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("Route error %v, want a refusal", err)
	}
	want := "kumo " + addr + ": route output 3 ← input 7 refused: set eParamID_XPT_Destination3_Status: HTTP 403 Forbidden: Forbidden (output 3 is locked)"
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	var se *wire.StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Errorf("error does not carry the HTTP status: %#v", se)
	}
	if got := k.Routing()[2]; got != 3 {
		t.Errorf("Routing()[2] = %d, want 3", got)
	}
	if n := len(s.Routes()); n != 0 {
		t.Errorf("sim applied %d routes", n)
	}
	// Another output is not locked; a refusal leaves the connection up.
	if err := k.Route(drivertest.Context(t), 4, 7); err != nil {
		t.Errorf("route to an unlocked output: %v", err)
	}
	// A 403 for another reason says so without the lock.
	s.RefuseNext(1)
	err = k.Route(drivertest.Context(t), 5, 1)
	if !errors.Is(err, drivers.ErrRefused) || strings.Contains(err.Error(), "locked") {
		t.Errorf("Route error %v", err)
	}
}

func TestRouteServerError(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, ev := startDriver(t, addr)
	s.FailNext(1)
	err := k.Route(drivertest.Context(t), 3, 7)
	if err == nil || errors.Is(err, drivers.ErrRefused) || errors.Is(err, drivers.ErrNotConnected) {
		t.Fatalf("Route error %v, want an HTTP error the runtime retries", err)
	}
	want := "kumo " + addr + ": route output 3 ← input 7: set eParamID_XPT_Destination3_Status: HTTP 500 Internal Server Error: 500 Internal Server Error The server encountered an internal error."
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	// The device answered: the connection stays, and the retry goes through.
	if !k.Status().Connected {
		t.Error("disconnected by an HTTP error")
	}
	if err := k.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatal(err)
	}
	if got := s.Routes(); len(got) != 1 {
		t.Errorf("sim applied %+v", got)
	}
	ev.WaitFor(drivers.EventRouteChanged)
	ev.None()
}

func TestRouteErrorInReply(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, _ := startDriver(t, addr)
	s.ErrorNext(1, "Invalid value")
	err := k.Route(drivertest.Context(t), 2, 5)
	if !errors.Is(err, kumo.ErrRefusedByDevice) {
		t.Fatalf("Route error %v, want a refusal", err)
	}
	if want := `route output 2 ← input 5 refused: the device answered error "Invalid value"`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if n := len(s.Routes()); n != 0 {
		t.Errorf("sim applied %d routes", n)
	}
}

func TestRouteNotApplied(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, _ := startDriverShortTimeout(t, addr, "timeout: 1s")
	s.IgnoreNext(1)
	err := k.Route(drivertest.Context(t), 2, 5)
	if !errors.Is(err, kumo.ErrNotApplied) || !errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("Route error %v, want ErrNotApplied", err)
	}
	if want := "route output 2 ← input 5 not applied: the device still shows input 2 after 1s"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	// It kept reading back until the timeout.
	var reads int
	for _, r := range s.Requests() {
		if r.Action == "get" && r.ParamID == "eParamID_XPT_Destination2_Status" {
			reads++
		}
	}
	if reads < 2 {
		t.Errorf("%d read-backs", reads)
	}
	if !k.Status().Connected {
		t.Error("disconnected")
	}
}

func TestDroppedMidRequest(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, ev := startDriver(t, addr)
	s.DropNext(1)
	err := k.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, kumo.ErrNotConnected) || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("Route error %v, want ErrNotConnected (connection lost)", err)
	}
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if down.Fields["address"] != addr || !strings.Contains(down.Fields["error"].(string), "closed the connection") {
		t.Errorf("disconnected event %+v", down)
	}
	up, before := ev.WaitFor(drivers.EventConnected)
	if up.Fields["address"] != addr || len(before) != 0 {
		t.Errorf("connected event %+v after %+v", up, before)
	}
	if err := k.Route(drivertest.Context(t), 3, 7); err != nil {
		t.Fatalf("route after reconnecting: %v", err)
	}
	// The dropped set was received but not answered or applied; the route
	// was applied once, by the second set.
	got := sets(s)
	if len(got) != 2 || got[0].Status != 0 || got[0].Value != "7" || got[1].Status != 200 {
		t.Errorf("sets %+v", got)
	}
	if r := s.Routes(); len(r) != 1 || r[0].Output != 3 || r[0].Input != 7 {
		t.Errorf("routes %+v", r)
	}
}

func TestSlowDevice(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, ev := startDriverShortTimeout(t, addr, "timeout: 200ms")
	s.SetDelay(drivertest.Deadline) // answered only when the client has gone
	err := k.Route(drivertest.Context(t), 3, 7)
	if !errors.Is(err, kumo.ErrNotConnected) || !errors.Is(err, kumo.ErrTimeout) || !strings.Contains(err.Error(), "no reply within 200ms") {
		t.Fatalf("Route error %v, want no reply within 200ms", err)
	}
	ev.WaitFor(drivers.EventDisconnected)
	if k.Status().Connected {
		t.Error("still connected after a timeout")
	}
	if err := k.Route(drivertest.Context(t), 3, 7); !errors.Is(err, kumo.ErrNotConnected) || !strings.Contains(err.Error(), "last error") {
		t.Errorf("Route while disconnected: %v, want ErrNotConnected with the last error", err)
	}
	s.SetDelay(0)
	ev.WaitFor(drivers.EventConnected)
	// The slow device did act on the set: the routing read on reconnecting
	// shows it, so the retry is already done and sends nothing more.
	if got := k.Routing()[2]; got != 7 {
		t.Errorf("Routing()[2] = %d after reconnecting", got)
	}
	if r := s.Routes(); len(r) != 1 {
		t.Errorf("routes %+v, want one", r)
	}
}

func TestPanelChangeSeenByPolling(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{NoRoutingList: true, Inputs: 4, Outputs: 4})
	reqs, stop := s.SubscribeRequests(1000)
	defer stop()
	k, ev := startDriver(t, addr, "poll: 20ms")
	if err := s.SetRoute(2, 4); err != nil {
		t.Fatal(err)
	}
	got := ev.Next()
	if got.Name != drivers.EventRouteChanged || got.Fields["output"] != 2 || got.Fields["input"] != 4 {
		t.Fatalf("event %+v, want route_changed output 2 input 4", got)
	}
	if r := k.Routing(); !reflect.DeepEqual(r, []int{1, 4, 3, 4}) {
		t.Errorf("Routing() = %v", r)
	}
	// Without the whole-routing read, each destination is read.
	seen := map[string]bool{}
	for len(seen) < 4 {
		select {
		case r := <-reqs:
			if strings.HasSuffix(r.ParamID, "_Status") && r.ParamID != wire.ParamDestinationAll {
				seen[r.ParamID] = true
			}
		case <-time.After(drivertest.Deadline):
			t.Fatalf("polls read only %v", seen)
		}
	}
	// A route set to what it was changes nothing: no event for it.
	if err := s.SetRoute(2, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRoute(3, 1); err != nil {
		t.Fatal(err)
	}
	got = ev.Next()
	if got.Fields["output"] != 3 || got.Fields["input"] != 1 {
		t.Errorf("event %+v, want route_changed output 3 input 1", got)
	}
}

func TestPollFailureReconnects(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	_, ev := startDriver(t, addr, "poll: 20ms")
	s.FailNext(1)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if e := down.Fields["error"].(string); !strings.Contains(e, "reading the routing") || !strings.Contains(e, "HTTP 500") {
		t.Errorf("disconnected event %+v", down)
	}
	ev.WaitFor(drivers.EventConnected)
}

func TestDeviceGoesAwayAndComesBack(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Inputs: 8, Outputs: 8})
	k, ev := startDriver(t, addr, "poll: 20ms")
	ctx := drivertest.Context(t)
	if err := k.Route(ctx, 1, 3); err != nil {
		t.Fatal(err)
	}
	if err := k.Route(ctx, 2, 4); err != nil {
		t.Fatal(err)
	}
	s.GoAway()
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	// The device going away is seen as a refused connection, or as the
	// kept-alive connection of a poll under way closed by it.
	if e := down.Fields["error"].(string); !strings.Contains(e, "refused") && !strings.Contains(e, "server closed idle connection") {
		t.Errorf("disconnected event %+v", down)
	}
	if err := k.Route(ctx, 1, 2); !errors.Is(err, kumo.ErrNotConnected) {
		t.Errorf("Route while away: %v", err)
	}
	// Someone changes output 1 at the panel while the driver cannot see.
	if err := s.SetRoute(1, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.ComeBack(); err != nil {
		t.Fatal(err)
	}
	// The routing is read back before driver_connected, and the read-back
	// is not reported as a change.
	_, before := ev.WaitFor(drivers.EventConnected)
	for _, e := range before {
		if e.Name != drivers.EventDisconnected {
			t.Errorf("before reconnecting: %+v", e)
		}
	}
	if r := k.Routing(); r[0] != 5 || r[1] != 4 {
		t.Errorf("Routing() = %v when driver_connected came", r)
	}
}

func TestADeviceRestartIsSeenByThePoll(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Inputs: 8, Outputs: 8})
	k, ev := startDriver(t, addr, "poll: 20ms")
	drivertest.RouterSeesADeviceRestart(t, k, ev, s)
}

func TestOldFirmwareAndNoPortCounts(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Inputs: 16, Outputs: 4, NoRoutingList: true, NoPortCounts: true})
	k, _ := startDriver(t, addr)
	if in, out := k.Size(); in != 16 || out != 4 {
		t.Errorf("Size() = %d, %d from the product name", in, out)
	}
	if err := k.Route(drivertest.Context(t), 4, 16); err != nil {
		t.Fatal(err)
	}
	if got := s.Routing(); !reflect.DeepEqual(got, []int{1, 2, 3, 16}) {
		t.Errorf("sim routing %v", got)
	}
}

func TestAuthentication(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Password: "honk"})

	// No password: every request is a 404, and the error says what to do.
	_, ev := newDriver(t, addr)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if e := down.Fields["error"].(string); !strings.Contains(e, "HTTP 404 Not Found") || !strings.Contains(e, "set password") {
		t.Errorf("disconnected event %+v", down)
	}
	// The wrong one.
	_, ev = newDriver(t, addr, "password: hnok")
	down, _ = ev.WaitFor(drivers.EventDisconnected)
	if e := down.Fields["error"].(string); !strings.Contains(e, "HTTP 404") || !strings.Contains(e, "no session cookie (wrong password?)") || strings.Contains(e, "hnok") {
		t.Errorf("disconnected event %+v", down)
	}
	// A password for a router whose authentication is off does no harm.
	_, open := kumosim.StartLoopback(t, kumosim.Options{})
	startDriver(t, open, "password: honk")
	// The right one.
	k, _ := startDriver(t, addr, "password: honk")
	if err := k.Route(drivertest.Context(t), 1, 2); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Requests() {
		if strings.Contains(r.Value+r.Body, "honk") {
			t.Errorf("the password is in the request log: %+v", r)
		}
	}
}

func TestReloginAfterRestart(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Password: "honk"})
	k, ev := startDriver(t, addr, "password: honk", "poll: 20ms")
	s.GoAway()
	if err := s.ComeBack(); err != nil {
		t.Fatal(err)
	}
	// Requests with the old cookie are 404s: a poll fails, the driver
	// reconnects and logs in again.
	ev.WaitFor(drivers.EventDisconnected)
	ev.WaitFor(drivers.EventConnected)
	if err := k.Route(drivertest.Context(t), 1, 3); err != nil {
		t.Fatal(err)
	}
	var logins int
	for _, r := range s.Requests() {
		if r.Path == wire.LoginPath {
			logins++
		}
	}
	if logins < 2 {
		t.Errorf("%d logins", logins)
	}
}

func TestRouteRejectedWithoutSending(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Inputs: 4, Outputs: 2})
	k, _ := startDriver(t, addr)
	drivertest.RouterRejectsOutOfRange(t, k, kumo.ErrOutOfRange, func() []kumosim.Request { return sets(s) })
}

func TestNotConnected(t *testing.T) {
	drivertest.RouterNotConnected(t, kumo.New, func(t *testing.T, addr string) (drivers.Router, *drivertest.Events) {
		return newDriver(t, addr)
	}, kumo.ErrClosed)
}

func TestCloseWithRouteInFlight(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, _ := startDriver(t, addr, "timeout: 1h")
	reqs, stop := s.SubscribeRequests(100)
	defer stop()
	s.SetDelay(time.Hour)
	drivertest.RouterCloseWithRouteInFlight(t, k, func(int, int) {
		for r := range reqs {
			if r.Action == wire.ActionSet {
				break // in flight, and answered only in an hour
			}
		}
	}, kumo.ErrClosed)
}

func TestRouteContextCancelled(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	k, ev := startDriver(t, addr, "timeout: 1h")
	reqs, stop := s.SubscribeRequests(100)
	defer stop()
	s.SetDelay(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- k.Route(ctx, 2, 3) }()
	for r := range reqs {
		if r.Action == wire.ActionSet {
			break
		}
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Route error %v, want context.Canceled", err)
		}
	case <-time.After(drivertest.Deadline):
		t.Fatal("Route did not return when its context ended")
	}
	// The caller gave up, the device did not fail: still connected.
	s.SetDelay(0)
	if !k.Status().Connected {
		t.Error("disconnected by a cancelled route")
	}
	if err := k.Route(drivertest.Context(t), 4, 1); err != nil {
		t.Errorf("next route: %v", err)
	}
	// An already-ended context is not sent at all.
	n := len(sets(s))
	if err := k.Route(ctx, 1, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("Route with an ended context: %v", err)
	}
	if len(sets(s)) != n {
		t.Error("sent a route whose context had ended")
	}
	for _, e := range ev.Drain() {
		if e.Name == drivers.EventDisconnected {
			t.Errorf("event %+v", e)
		}
	}
}

// fakeKumo is a server the test answers by hand, for replies the simulator
// does not give.
func fakeKumo(t *testing.T, h http.HandlerFunc) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestMalformedRepliesReconnect(t *testing.T) {
	var bad atomic.Bool
	addr := fakeKumo(t, func(w http.ResponseWriter, r *http.Request) {
		b := bad.Load()
		switch p := r.URL.Query().Get("paramid"); {
		case p == wire.ParamNumberOfSources || p == wire.ParamNumberOfDestinations:
			fmt.Fprintf(w, `{"paramid":"2","name":%q,"value":2,"value_name":"2"}`, p)
		case p == wire.ParamDestinationAll && b:
			fmt.Fprint(w, "[1,x]")
		case p == wire.ParamDestinationAll:
			fmt.Fprint(w, " [2, 1]\n")
		case strings.HasSuffix(p, "_Status"):
			fmt.Fprint(w, `{"value":"1"}`)
		default:
			fmt.Fprintf(w, `{"name":%q,"value":"x"}`, p)
		}
	})
	// The login sets no cookie here: the driver goes on without one.
	k, ev := startDriver(t, addr, "poll: 20ms", "password: x")
	if r := k.Routing(); !reflect.DeepEqual(r, []int{2, 1}) {
		t.Errorf("Routing() = %v", r)
	}
	if l := k.InputLabels(); !reflect.DeepEqual(l, []string{"x x", "x x"}) {
		t.Errorf("InputLabels() = %q", l)
	}
	bad.Store(true)
	down, _ := ev.WaitFor(drivers.EventDisconnected)
	if e := down.Fields["error"].(string); !strings.Contains(e, `routing list "[1,x]"`) {
		t.Errorf("disconnected event %+v", down)
	}
	bad.Store(false)
	ev.WaitFor(drivers.EventConnected)
}

func TestConfig(t *testing.T) {
	// The sample from README.md.
	d, err := kumo.New(drivertest.Config("router", "address: 192.168.10.60      # port 80 unless given\ntimeout: 2s\npoll: 2s\n# password: secret        # only if the KUMO's user authentication is on\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := d.(*kumo.Kumo).Settings()
	want := kumo.Settings{Address: "192.168.10.60:80", Timeout: units.Duration(2 * time.Second), Poll: units.Duration(2 * time.Second),
		BackoffMin: units.Duration(100 * time.Millisecond), BackoffMax: units.Duration(5 * time.Second)}
	if got != want {
		t.Errorf("settings %+v, want %+v", got, want)
	}
	if st := d.Status(); st.Connected || st.Address != "192.168.10.60:80" {
		t.Errorf("Status() before Start = %+v", st)
	}
	for doc, addr := range map[string]string{
		"address: kumo.local:8080\n":          "kumo.local:8080",
		"address: http://10.0.0.9/\n":         "10.0.0.9:80",
		"address: HTTP://10.0.0.9:81\n":       "10.0.0.9:81",
		"address: fe80::1\n":                  "[fe80::1]:80",
		"address: '[fe80::1]:8080'\n":         "[fe80::1]:8080",
		"address: kumo\npassword: password\n": "kumo:80",
	} {
		d, err := kumo.New(drivertest.Config("router", doc))
		if err != nil {
			t.Errorf("New(%q): %v", doc, err)
			continue
		}
		if s := d.(*kumo.Kumo).Settings(); s.Address != addr {
			t.Errorf("New(%q) address %q, want %q", doc, s.Address, addr)
		}
	}

	for _, tc := range []struct{ doc, want string }{
		{"timeout: 2s\n", "address is required"},
		{"address: ''\n", "address is required"},
		{"address: kumo\nspeed: fast\n", "speed"},
		{"address: kumo\nusername: admin\n", "username"},
		{"address: kumo\ntimeout: 2 parsecs\n", "bad duration \"2 parsecs\""},
		{"address: kumo\npoll: -1s\n", "poll: -1s is negative"},
		{"address: kumo\nbackoff_min: 2s\nbackoff_max: 1s\n", "backoff_max (1s) is less than backoff_min (2s)"},
		{"address: 'kumo:99999'\n", "port must be"},
		{"address: https://kumo\n", "want host or host:port"},
		{"address: http://kumo/config\n", "want host or host:port"},
	} {
		_, err := kumo.New(drivertest.Config("router", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// Through the registry, the error names the driver.
	reg := drivers.NewRegistry(kumo.Kind)
	if _, err := reg.New("kumo", drivertest.Config("router", "adress: kumo\n")); err == nil || !strings.Contains(err.Error(), "driver router (kumo)") {
		t.Errorf("registry error %v", err)
	}
	if _, err := kumo.New(drivers.Config{Name: "router"}); err == nil {
		t.Error("New without a decoder succeeded")
	}
}

func TestRouteErrorsTellTheRuntimeWhetherToRetry(t *testing.T) {
	for _, tc := range []struct {
		err   error
		retry bool
	}{
		{kumo.ErrNotConnected, true}, {kumo.ErrTimeout, true}, {&wire.StatusError{Code: 500, Status: "500 Internal Server Error"}, true},
		{kumo.ErrRefusedByDevice, false}, {kumo.ErrNotApplied, false}, {kumo.ErrOutOfRange, false},
	} {
		wrapped := fmt.Errorf("kumo 10.0.0.5:80: route output 3 ← input 7: %w", tc.err)
		if refused := errors.Is(wrapped, drivers.ErrRefused); refused == tc.retry {
			t.Errorf("%v: refused=%v, want retry=%v", tc.err, refused, tc.retry)
		}
	}
}
