package kumosim_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers/kumo/wire"

	"understudy/drivers/kumo"
	"understudy/drivers/kumo/kumosim"
)

const deadline = 10 * time.Second

func ctxDeadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// get makes a raw GET and returns the status, content type and body.
func get(t *testing.T, addr, target string, cookie ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxDeadline(t), http.MethodGet, "http://"+addr+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cookie) > 0 {
		req.Header.Set("Cookie", cookie[0])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func config(action, param string, value ...string) string {
	r := wire.Request{Action: action, ParamID: param}
	if len(value) > 0 {
		r.Value = value[0]
	}
	return wire.ConfigPath + "?" + r.Query()
}

func TestGetAndSet(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	code, ctype, body := get(t, addr, config("get", "eParamID_XPT_Destination2_Status"))
	if code != 200 || ctype != "application/json" || body != `{"paramid":"1002","name":"eParamID_XPT_Destination2_Status","value":"2","value_name":"2"}` {
		t.Errorf("get: %d %s %s", code, ctype, body)
	}
	code, _, body = get(t, addr, config("set", "eParamID_XPT_Destination2_Status", "9"))
	if code != 200 || body != `{"paramid":"1002","name":"eParamID_XPT_Destination2_Status","value":"9","value_name":"9"}` {
		t.Errorf("set: %d %s", code, body)
	}
	if got := s.Routing()[1]; got != 9 {
		t.Errorf("Routing()[1] = %d", got)
	}
	routes := s.Routes()
	if len(routes) != 1 || routes[0].Output != 2 || routes[0].Input != 9 || !strings.HasPrefix(routes[0].Remote, "127.0.0.1:") {
		t.Errorf("Routes() = %+v", routes)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[1].Method != "GET" || reqs[1].Path != "/config" || reqs[1].Action != "set" ||
		reqs[1].ParamID != "eParamID_XPT_Destination2_Status" || reqs[1].Value != "9" || reqs[1].Status != 200 || !strings.Contains(reqs[1].Body, `"value":"9"`) {
		t.Errorf("Requests() = %+v", reqs)
	}
	// The old path answers gets too, and the Go API is what clients see.
	if code, _, body := get(t, addr, strings.Replace(config("get", "eParamID_XPT_Destination2_Status"), "/config", "/options", 1)); code != 200 || !strings.Contains(body, `"value":"9"`) {
		t.Errorf("/options get: %d %s", code, body)
	}
	if err := s.SetRoute(2, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, body := get(t, addr, config("get", "eParamID_XPT_Destination2_Status")); !strings.Contains(body, `"value":"3"`) {
		t.Errorf("after SetRoute: %s", body)
	}
	if r := s.Routes(); r[len(r)-1].Remote != "panel" {
		t.Errorf("panel route %+v", r[len(r)-1])
	}
}

func TestDeviceParameters(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Inputs: 16, Outputs: 4, InputLabels: []string{"CAM 1\nStage Left"}})
	c := kumo.NewClient(addr, deadline)
	ctx := ctxDeadline(t)
	for param, want := range map[string][2]string{
		wire.ParamNumberOfSources:          {"16", "16"},
		wire.ParamNumberOfDestinations:     {"4", "4"},
		wire.ParamProductID:                {"2", "KUMO 16x04 Matrix"},
		"eParamID_XPT_Source1_Line_1":      {"CAM 1", ""},
		"eParamID_XPT_Source1_Line_2":      {"Stage Left", ""},
		"eParamID_XPT_Source16_Line_1":     {"Source 16", ""},
		"eParamID_XPT_Destination4_Line_1": {"Dest 4", ""},
		"eParamID_XPT_Destination4_Line_2": {"", ""},
		"eParamID_XPT_Destination4_Locked": {"0", "Unlocked"},
		wire.ParamDestinationAll:           {"[1,2,3,4]", "[1,2,3,4]"},
	} {
		r, err := c.Get(ctx, param)
		if err != nil || r.Name != param || r.Value != want[0] || r.ValueName != want[1] || !r.HasValue || r.ParamID == "" {
			t.Errorf("Get(%s) = %+v, %v; want %q", param, r, err, want)
		}
	}
	// Names are cut to 20 characters, control characters made spaces.
	r, err := c.Set(ctx, "eParamID_XPT_Destination1_Line_1", "Program\tout, the long name")
	if err != nil || r.Value != "Program out, the lon" {
		t.Errorf("Set label = %+v, %v", r, err)
	}
	if got := s.OutputLabels()[0]; got != "Program out, the lon" {
		t.Errorf("OutputLabels()[0] = %q", got)
	}
	if got := s.InputLabels()[0]; got != "CAM 1 Stage Left" {
		t.Errorf("InputLabels()[0] = %q", got)
	}
	if err := s.SetInputLabel(2, "CAM 2", "Wide"); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Get(ctx, "eParamID_XPT_Source2_Line_2"); r.Value != "Wide" {
		t.Errorf("after SetInputLabel: %+v", r)
	}
	// Locks by request.
	if r, err := c.Set(ctx, "eParamID_XPT_Destination3_Locked", "1"); err != nil || r.Value != "1" || r.ValueName != "Locked" {
		t.Errorf("lock: %+v, %v", r, err)
	}
	if _, err := c.Set(ctx, "eParamID_XPT_Destination3_Status", "1"); !isStatus(err, 403) {
		t.Errorf("route onto a locked destination: %v", err)
	}
	if _, err := c.Set(ctx, "eParamID_XPT_Destination3_Locked", "0"); err != nil {
		t.Fatal(err)
	}
	// What the device refuses (403) and does not have (404).
	for _, tc := range []struct {
		param, value string
		code         int
	}{
		{"eParamID_XPT_Destination5_Status", "1", 403}, // no such destination on a 16x4
		{"eParamID_XPT_Destination1_Status", "17", 403},
		{"eParamID_XPT_Destination1_Status", "0", 403},
		{"eParamID_XPT_Destination1_Status", "one", 403},
		{"eParamID_XPT_Destination1_Locked", "2", 403},
		{wire.ParamNumberOfSources, "8", 403},
		{wire.ParamDestinationAll, "[1]", 403},
		{"eParamID_Unknown", "1", 404},
	} {
		if _, err := c.Set(ctx, tc.param, tc.value); !isStatus(err, tc.code) {
			t.Errorf("set %s=%s: %v, want HTTP %d", tc.param, tc.value, err, tc.code)
		}
	}
	for _, p := range []string{"eParamID_XPT_Destination5_Status", "eParamID_XPT_Source17_Line_1", "eParamID_Unknown"} {
		if _, err := c.Get(ctx, p); !isStatus(err, 404) {
			t.Errorf("get %s: %v, want HTTP 404", p, err)
		}
	}
	if n := len(s.Routes()); n != 0 {
		t.Errorf("%d routes applied", n)
	}
	for _, target := range []string{"/", "/config?action=get", "/config?action=bogus&paramid=eParamID_A", "/config?action=connect&configid=0"} {
		if code, _, _ := get(t, addr, target); code < 400 {
			t.Errorf("GET %s: %d", target, code)
		}
	}
}

func isStatus(err error, code int) bool {
	var se *wire.StatusError
	return errors.As(err, &se) && se.Code == code
}

func TestRoutingList(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Inputs: 4, Outputs: 4})
	if err := s.SetRoute(3, 1); err != nil {
		t.Fatal(err)
	}
	list, err := kumo.NewClient(addr, deadline).RoutingList(ctxDeadline(t))
	if err != nil || !reflect.DeepEqual(list, []int{1, 2, 1, 4}) {
		t.Errorf("RoutingList() = %v, %v", list, err)
	}
	target := "/options?action=get&configid=0&paramid=eParamID_XPT_DestinationAll_Status&alt=text-plain"
	if code, ctype, body := get(t, addr, target); code != 200 || ctype != "text/plain" || body != "[1,2,1,4]" {
		t.Errorf("GET %s: %d %s %q", target, code, ctype, body)
	}

	_, old := kumosim.StartLoopback(t, kumosim.Options{NoRoutingList: true})
	if _, err := kumo.NewClient(old, deadline).RoutingList(ctxDeadline(t)); !errors.Is(err, wire.ErrNoRoutingList) {
		t.Errorf("old firmware: %v", err)
	}
	_, nocount := kumosim.StartLoopback(t, kumosim.Options{NoPortCounts: true, Inputs: 64, Outputs: 64})
	c := kumo.NewClient(nocount, deadline)
	if _, err := c.Get(ctxDeadline(t), wire.ParamNumberOfSources); !isStatus(err, 404) {
		t.Errorf("NoPortCounts: %v", err)
	}
	if r, err := c.Get(ctxDeadline(t), wire.ParamProductID); err != nil || r.Value != "5" || r.ValueName != "KUMO 64x64 Matrix" {
		t.Errorf("product: %+v, %v", r, err)
	}
}

func TestFaults(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	c := kumo.NewClient(addr, deadline)
	ctx := ctxDeadline(t)
	route := "eParamID_XPT_Destination1_Status"

	s.FailNext(2)
	for range 2 {
		if _, err := c.Get(ctx, route); !isStatus(err, 500) || !strings.Contains(err.Error(), "HTTP 500 Internal Server Error") {
			t.Errorf("FailNext: %v", err)
		}
	}
	s.RefuseNext(1)
	if _, err := c.Set(ctx, route, "2"); !isStatus(err, 403) || !strings.HasSuffix(err.Error(), "HTTP 403 Forbidden: Forbidden") {
		t.Errorf("RefuseNext: %v", err)
	}
	s.ErrorNext(1, "Invalid value")
	if r, err := c.Set(ctx, route, "2"); err != nil || !r.Failed() || r.Error != "Invalid value" || r.Value != "1" {
		t.Errorf("ErrorNext: %+v, %v", r, err)
	}
	s.IgnoreNext(1)
	if r, err := c.Set(ctx, route, "2"); err != nil || r.Value != "2" || s.Routing()[0] != 1 {
		t.Errorf("IgnoreNext: %+v, %v; routing %v", r, err, s.Routing())
	}
	s.DropNext(1)
	if _, err := c.Set(ctx, route, "2"); err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("DropNext: %v", err)
	}
	if n := len(s.Routes()); n != 0 {
		t.Errorf("faults applied %d routes", n)
	}
	// Each fault is used up: the next set goes through.
	if r, err := c.Set(ctx, route, "2"); err != nil || r.Value != "2" || s.Routing()[0] != 2 {
		t.Errorf("set after the faults: %+v, %v", r, err)
	}
	var codes []int
	for _, r := range s.Requests() {
		codes = append(codes, r.Status)
	}
	if want := []int{500, 500, 403, 200, 200, 0, 200}; !reflect.DeepEqual(codes, want) {
		t.Errorf("recorded statuses %v, want %v", codes, want)
	}
}

func TestSlowAnswer(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	reqs, stop := s.SubscribeRequests(10)
	defer stop()
	s.SetDelay(time.Hour)
	c := kumo.NewClient(addr, 100*time.Millisecond)
	_, err := c.Set(ctxDeadline(t), "eParamID_XPT_Destination1_Status", "5")
	if !errors.Is(err, kumo.ErrTimeout) || !strings.Contains(err.Error(), "no reply within 100ms") {
		t.Errorf("slow set: %v", err)
	}
	// A slow device still acts on the request.
	if r := <-reqs; r.Action != "set" || r.Status != 200 {
		t.Errorf("request %+v", r)
	}
	if got := s.Routing()[0]; got != 5 {
		t.Errorf("Routing()[0] = %d", got)
	}
	s.SetDelay(0)
	if _, err := c.Get(ctxDeadline(t), wire.ParamProductID); err != nil {
		t.Error(err)
	}
}

func TestGoAwayAndComeBack(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Password: "password"})
	c := kumo.NewClient(addr, deadline)
	ctx := ctxDeadline(t)
	if err := c.Login(ctx, "password"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, wire.ParamProductID); err != nil {
		t.Fatal(err)
	}
	s.GoAway()
	s.GoAway() // twice is fine
	_, err := c.Get(ctx, wire.ParamProductID)
	var oe *net.OpError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("while away: %v", err)
	}
	if err := s.SetRoute(1, 7); err != nil { // the panel still works
		t.Fatal(err)
	}
	if err := s.ComeBack(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Errorf("Addr() = %s, want %s", s.Addr(), addr)
	}
	// A restarted device forgot the session.
	if _, err := c.Get(ctx, wire.ParamProductID); !isStatus(err, 404) {
		t.Errorf("old session after a restart: %v", err)
	}
	if err := c.Login(ctx, "password"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Get(ctx, wire.DestinationStatus(1)); err != nil || r.Value != "7" {
		t.Errorf("after coming back: %+v, %v", r, err)
	}
	if err := s.ComeBack(); err == nil {
		t.Error("ComeBack while serving succeeded")
	}
}

func TestRestartDropsEveryConnectionAndComesBackWithTheDefaultRouting(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Inputs: 4, Outputs: 6, Password: "password"})
	c := kumo.NewClient(addr, deadline)
	ctx := ctxDeadline(t)
	if err := c.Login(ctx, "password"); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int{{1, 3}, {2, 4}, {6, 1}} {
		if err := s.SetRoute(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.LockOutput(3); err != nil {
		t.Fatal(err)
	}
	// A request in progress when the router restarts is never answered.
	reqs, stop := s.SubscribeRequests(1)
	defer stop()
	s.SetDelay(time.Hour)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, wire.ParamProductID)
		errc <- err
	}()
	select {
	case <-reqs:
	case <-time.After(deadline):
		t.Fatal("the request did not arrive")
	}
	s.RefuseNext(5)
	s.Restart()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("the request in progress was answered across the restart")
		}
	case <-time.After(deadline):
		t.Fatal("the request in progress did not end with the restart")
	}
	if got, want := s.Routing(), []int{1, 2, 3, 4, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Routing() after Restart = %v, want %v", got, want)
	}
	// The session went with the restart; a new login works at once, the
	// lock and the faults are gone.
	if _, err := c.Get(ctx, wire.ParamProductID); !isStatus(err, 404) {
		t.Errorf("old session after a restart: %v", err)
	}
	if err := c.Login(ctx, "password"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Set(ctx, wire.DestinationStatus(3), "1"); err != nil || r.Failed() {
		t.Errorf("set after the restart: %+v, %v", r, err)
	}
	if got := s.Routing()[2]; got != 1 {
		t.Errorf("output 3 shows %d after the set, want 1", got)
	}
}

func TestAuthentication(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{Password: "honk"})
	code, _, body := get(t, addr, config("get", wire.ParamProductID))
	if code != 404 || !strings.Contains(body, "404 Not Found") {
		t.Errorf("without a session: %d %q", code, body)
	}
	c := kumo.NewClient(addr, deadline)
	if err := c.Login(ctxDeadline(t), "hnok"); err == nil || !strings.Contains(err.Error(), "no session cookie") {
		t.Errorf("wrong password: %v", err)
	}
	if err := c.Login(ctxDeadline(t), "honk"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Get(ctxDeadline(t), wire.ParamProductID); err != nil || r.Value != "1" {
		t.Errorf("with a session: %+v, %v", r, err)
	}
	if code, _, _ := get(t, addr, config("get", wire.ParamProductID), "session=forged"); code != 404 {
		t.Errorf("forged session: %d", code)
	}
	if code, _, _ := get(t, addr, wire.LoginPath); code != 405 {
		t.Errorf("GET of the login form: %d", code)
	}
	for _, r := range s.Requests() {
		if strings.Contains(r.Value+r.Body+r.ParamID, "honk") {
			t.Errorf("the password is in the request log: %+v", r)
		}
	}
	// Without a password set, logging in is harmless.
	_, open := kumosim.StartLoopback(t, kumosim.Options{})
	if err := kumo.NewClient(open, deadline).Login(ctxDeadline(t), "anything"); err != nil {
		t.Errorf("login without authentication: %v", err)
	}
}

func TestSubscribeCloseAndClientCount(t *testing.T) {
	s, addr := kumosim.StartLoopback(t, kumosim.Options{})
	routes, stopRoutes := s.Subscribe(10)
	reqs, _ := s.SubscribeRequests(10)
	if err := s.SetRoute(4, 2); err != nil {
		t.Fatal(err)
	}
	if r := <-routes; r.Output != 4 || r.Input != 2 || r.Remote != "panel" {
		t.Errorf("route record %+v", r)
	}
	stopRoutes()
	stopRoutes()
	if _, ok := <-routes; ok {
		t.Error("route channel open after its stop")
	}

	// A request held by a slow answer keeps its connection open.
	s.SetDelay(time.Hour)
	c := kumo.NewClient(addr, time.Hour)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), wire.ParamProductID)
		errc <- err
	}()
	<-reqs
	if n := s.ClientCount(); n != 1 {
		t.Errorf("ClientCount() = %d with a request in progress", n)
	}
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(deadline):
		t.Fatal("Close did not return with a request in progress")
	}
	select {
	case <-errc:
	case <-time.After(deadline):
		t.Fatal("the request in progress did not end")
	}
	if n := s.ClientCount(); n != 0 {
		t.Errorf("ClientCount() = %d after Close", n)
	}
	if _, ok := <-reqs; ok {
		t.Error("request channel open after Close")
	}
	if _, err := s.Listen("127.0.0.1:0"); !errors.Is(err, kumosim.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
	if err := s.ComeBack(); !errors.Is(err, kumosim.ErrClosed) {
		t.Errorf("ComeBack after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestServe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := kumosim.New(kumosim.Options{Inputs: 0, Outputs: 1000})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	c := kumo.NewClient(l.Addr().String(), deadline)
	r, err := c.Get(ctxDeadline(t), wire.ParamNumberOfDestinations)
	if err != nil || r.Value != "256" {
		t.Errorf("clamped outputs: %+v, %v", r, err)
	}
	if in, out := s.Size(); in != 16 || out != wire.MaxPorts {
		t.Errorf("Size() = %d, %d", in, out)
	}
	s.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v", err)
	}
	if err := s.SetRoute(0, 1); err == nil {
		t.Error("SetRoute(0, 1) succeeded")
	}
	if err := s.LockOutput(257); err == nil {
		t.Error("LockOutput(257) succeeded")
	}
}
