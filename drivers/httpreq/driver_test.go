package httpreq_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/httpreq"
	"understudy/runtime/config"
)

func newClient(t *testing.T, doc string) (*httpreq.Client, *drivertest.Events) {
	t.Helper()
	d, err := httpreq.New(drivertest.Config("dev", doc))
	if err != nil {
		t.Fatal(err)
	}
	c := d.(*httpreq.Client)
	ev := drivertest.NewEvents(t)
	c.Start(context.Background(), ev.Emit)
	t.Cleanup(func() { c.Close() })
	return c, ev
}

func send(command string, args map[string]any) map[string]any {
	m := map[string]any{"command": command}
	if args != nil {
		m["args"] = args
	}
	return m
}

// readmeYAML returns the first yaml block of README.md.
func readmeYAML(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml block")
	}
	return block
}

const siteHead = "site: test\ncoordinator: a\nmembers:\n  - id: a\n"

func TestReadmeSample(t *testing.T) {
	site, err := config.Parse("site.yaml", []byte(siteHead+readmeYAML(t)))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := site.BuildDrivers(drivers.NewRegistry(httpreq.Kind))
	if err != nil {
		t.Fatal(err)
	}
	c := ds["mediaserver"].(*httpreq.Client)
	s := c.Settings()
	if s.BaseURL != "http://192.168.10.20:8080/api/v1" || s.Timeout.D() != 5*time.Second || len(s.Requests) != 3 ||
		s.Headers["Authorization"] != "Bearer 7f3c9a" {
		t.Errorf("settings %+v", s)
	}
	if r := s.Requests["layer_opacity"]; r.Method != "PUT" || len(r.Expect) != 2 || r.Body != `{"opacity": {{.opacity}}}` {
		t.Errorf("layer_opacity %+v", r)
	}
	if r := s.Requests["status"]; r.Timeout.D() != 2*time.Second {
		t.Errorf("status %+v", r)
	}
	if err := c.Check(send("cue_go", map[string]any{"cue": int64(12)})); err != nil {
		t.Error(err)
	}
	if err := c.Check(map[string]any{"command": "status"}); err != nil {
		t.Error(err)
	}
	if st := c.Status(); st.Connected || st.Address != "http://192.168.10.20:8080/api/v1" {
		t.Errorf("status before Start %+v", st)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"requests: {a: {}}\n", "base_url is required"},
		{"base_url: ftp://x\nrequests: {a: {}}\n", "want an http:// or https:// URL"},
		{"base_url: http://\nrequests: {a: {}}\n", "has no host"},
		{"base_url: http://x/?a=1\nrequests: {a: {}}\n", "put a query in the request's path"},
		{"base_url: http://x:99999\nrequests: {a: {}}\n", "port must be"},
		{"base_url: http://x\n", "requests: none configured"},
		{"base_url: http://x\nrequests: {a: {method: 'GE T'}}\n", `requests.a.method: "GE T" is not an HTTP method`},
		{"base_url: http://x\nrequests: {a: {path: '/{{.x'}}\n", "requests.a.path: template"},
		{"base_url: http://x\nrequests: {a: {body: '{{if}}'}}\n", "requests.a.body: template"},
		{"base_url: http://x\nrequests: {a: {expect: [42]}}\n", "requests.a.expect: 42 is not an HTTP status code"},
		{"base_url: http://x\nrequests: {a: {headers: {'Bad Name': v}}}\n", `requests.a.headers: "Bad Name" is not a valid header name`},
		{"base_url: http://x\nheaders: {X: '{{'}\nrequests: {a: {}}\n", "headers.X: template"},
		{"base_url: http://x\ntimeout: -1s\nrequests: {a: {}}\n", "timeout: -1s is not between"},
		{"base_url: http://x\ntimeout: 2 parsecs\nrequests: {a: {}}\n", `bad duration "2 parsecs"`},
		{"base_url: http://x\nrequests: {a: {path: '%zz'}}\n", "requests.a.path: path \"%zz\" does not make a valid URL"},
		{"base_url: http://x\nrequest: {a: {}}\n", "request"},
	} {
		_, err := httpreq.New(drivertest.Config("dev", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// In site.yaml, errors name the file and line.
	site, err := config.Parse("site.yaml", []byte(siteHead+"drivers:\n  dev:\n    kind: http\n    base_url: http://x\n    requests:\n      a: {method: GET, expect: [200], colour: blue}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = site.BuildDrivers(drivers.NewRegistry(httpreq.Kind))
	if err == nil || !strings.Contains(err.Error(), "site.yaml:10:39: driver dev: unknown field \"colour\"") || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown key in site.yaml: %v", err)
	}
}

// recorded is one request a test server saw.
type recorded struct {
	method, path, query, body string
	header                    http.Header
}

func recorder(t *testing.T, status int, reply string) (*httptest.Server, <-chan recorded) {
	ch := make(chan recorded, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- recorded{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Header.Clone()}
		w.WriteHeader(status)
		io.WriteString(w, reply)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func TestRequest(t *testing.T) {
	srv, got := recorder(t, 200, "ok\n")
	c, ev := newClient(t, `
base_url: `+srv.URL+`/api/
headers: {Authorization: 'Bearer {{.token}}', X-Site: test}
requests:
  cue_go: {path: '/cues/{{.cue}}/go'}
  opacity:
    method: put
    path: 'layers/{{.layer}}?by={{urlquery .who}}'
    headers: {Content-Type: application/json, X-Site: override}
    body: '{{json .}}'
`)
	if st := c.Status(); !st.Connected || st.Address != srv.URL+"/api/" {
		t.Errorf("status after Start %+v", st)
	}
	res, err := c.Do(drivertest.Context(t), send("cue_go", map[string]any{"cue": float64(1000000), "token": "t1"}))
	if err != nil {
		t.Fatal(err)
	}
	if m := res.(map[string]any); m["status"] != 200 || m["body"] != "ok\n" {
		t.Errorf("result %#v", res)
	}
	r := <-got
	if r.method != "POST" || r.path != "/api/cues/1000000/go" || r.body != "" || r.header.Get("Authorization") != "Bearer t1" ||
		r.header.Get("X-Site") != "test" || r.header.Get("User-Agent") != "understudy" {
		t.Errorf("request %+v", r)
	}
	args := map[string]any{"layer": int64(2), "who": "a b&c", "token": "t2", "level": 0.5}
	if err := c.Check(send("opacity", args)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(drivertest.Context(t), send("opacity", args)); err != nil {
		t.Fatal(err)
	}
	r = <-got
	if r.method != "PUT" || r.path != "/api/layers/2" || r.query != "by=a+b%26c" || r.header.Get("X-Site") != "override" ||
		r.header.Get("Content-Type") != "application/json" || r.body != `{"layer":2,"level":0.5,"token":"t2","who":"a b&c"}` {
		t.Errorf("request %+v", r)
	}
	ev.None()
}

func TestBodyTruncated(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes
	srv, _ := recorder(t, 201, long)
	c, _ := newClient(t, "base_url: "+srv.URL+"\nrequests: {a: {method: GET}}\n")
	res, err := c.Do(drivertest.Context(t), send("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	body := res.(map[string]any)["body"].(string)
	if len(body) != 4096 || body != long[:4096] {
		t.Errorf("body of %d bytes, want the first 4096", len(body))
	}
	if res.(map[string]any)["status"] != 201 {
		t.Errorf("result %v", res)
	}
}

func TestRefusal(t *testing.T) {
	srv, _ := recorder(t, 409, "\n  layer is locked\nby the desk\n")
	c, _ := newClient(t, "base_url: "+srv.URL+"\nrequests:\n  a: {method: PUT, path: /x}\n  b: {expect: [409]}\n")
	res, err := c.Do(drivertest.Context(t), send("a", nil))
	if !errors.Is(err, drivers.ErrRefused) || errors.Is(err, drivers.ErrNotConnected) {
		t.Fatalf("error %v, want a refusal", err)
	}
	if m, _ := res.(map[string]any); m["status"] != 409 || m["body"] != "\n  layer is locked\nby the desk\n" {
		t.Errorf("result with the refusal %#v", res)
	}
	if want := "http PUT " + srv.URL + "/x: 409 Conflict (expected 2xx): layer is locked"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// A listed status is success, whatever it is.
	res, err = c.Do(drivertest.Context(t), send("b", nil))
	if err != nil || res.(map[string]any)["status"] != 409 {
		t.Errorf("expected 409: %v, %v", res, err)
	}
	// The device answered: it counts as connected.
	if !c.Status().Connected {
		t.Error("not connected after an answer")
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login", http.StatusFound)
	}))
	defer srv.Close()
	c, _ := newClient(t, "base_url: "+srv.URL+"\nrequests: {a: {path: /go}}\n")
	_, err := c.Do(drivertest.Context(t), send("a", nil))
	if !errors.Is(err, drivers.ErrRefused) || !strings.Contains(err.Error(), "302 Found (expected 2xx)") {
		t.Errorf("error %v", err)
	}
}

func TestBasicAuthRedacted(t *testing.T) {
	srv, got := recorder(t, 500, "boom")
	u := strings.Replace(srv.URL, "http://", "http://admin:s3cret@", 1)
	c, _ := newClient(t, "base_url: "+u+"\nrequests: {a: {}}\n")
	_, err := c.Do(drivertest.Context(t), send("a", nil))
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "admin:xxxxx@") {
		t.Errorf("error %v", err)
	}
	if r := <-got; r.header.Get("Authorization") != "Basic YWRtaW46czNjcmV0" {
		t.Errorf("auth header %q", r.header.Get("Authorization"))
	}
	if strings.Contains(c.Status().Address, "s3cret") {
		t.Errorf("status address %q", c.Status().Address)
	}
}

func TestNotReachable(t *testing.T) {
	// A port that was just free: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, ev := newClient(t, "base_url: http://"+addr+"\nrequests: {a: {}}\n")
	_, err = c.Do(drivertest.Context(t), send("a", nil))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "http POST http://"+addr+": not reachable: ") ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v, want not reachable (ErrNotConnected)", err)
	}
	e := ev.Next()
	if e.Name != drivers.EventDisconnected || e.Fields["address"] != "http://"+addr || !strings.Contains(e.Fields["error"].(string), "connection refused") {
		t.Errorf("event %+v", e)
	}
	if st := c.Status(); st.Connected || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("status %+v", st)
	}
	// Still down: no second event.
	if _, err := c.Do(drivertest.Context(t), send("a", nil)); !errors.Is(err, drivers.ErrNotConnected) {
		t.Fatal(err)
	}
	ev.None()
	// The device comes up on that port.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	if _, err := c.Do(drivertest.Context(t), send("a", nil)); err != nil {
		t.Fatal(err)
	}
	if e := ev.Next(); e.Name != drivers.EventConnected || e.Fields["address"] != "http://"+addr {
		t.Errorf("event %+v", e)
	}
	if st := c.Status(); !st.Connected || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
}

// silent is a server that reads requests and never answers (until the test
// ends), or drops the connection after reading the request. It reports each
// request read on the channel.
func silent(t *testing.T, drop bool) (string, <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	read := make(chan struct{}, 10)
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				read <- struct{}{}
				if !drop {
					<-done
				}
			}()
		}
	}()
	return ln.Addr().String(), read
}

func TestNoResponse(t *testing.T) {
	addr, _ := silent(t, false)
	c, ev := newClient(t, "base_url: http://"+addr+"\ntimeout: 200ms\nrequests:\n  go: {path: /go}\n  get: {method: GET, path: /state}\n")
	// A POST that was sent may have been carried out: not repeated.
	_, err := c.Do(drivertest.Context(t), send("go", nil))
	if err == nil || errors.Is(err, drivers.ErrNotConnected) || errors.Is(err, drivers.ErrRefused) {
		t.Fatalf("error %v, want a plain failure", err)
	}
	if want := "http POST http://" + addr + "/go: no response within 200ms (the request was sent and may have been carried out, so it is not repeated)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if e := ev.Next(); e.Name != drivers.EventDisconnected {
		t.Errorf("event %+v", e)
	}
	// A GET is safe to repeat: the runtime may try again.
	_, err = c.Do(drivertest.Context(t), send("get", nil))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "no response within 200ms") {
		t.Errorf("error %v, want ErrNotConnected", err)
	}
}

func TestConnectionDropped(t *testing.T) {
	addr, _ := silent(t, true)
	c, _ := newClient(t, "base_url: http://"+addr+"\nrequests:\n  go: {path: /go}\n  del: {method: DELETE, path: /x}\n")
	_, err := c.Do(drivertest.Context(t), send("go", nil))
	if err == nil || errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "no response: ") || !strings.Contains(err.Error(), "not repeated") {
		t.Errorf("POST error %v", err)
	}
	_, err = c.Do(drivertest.Context(t), send("del", nil))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "no response: ") {
		t.Errorf("DELETE error %v", err)
	}
}

func TestCallerCancels(t *testing.T) {
	addr, read := silent(t, false)
	c, _ := newClient(t, "base_url: http://"+addr+"\nrequests: {go: {}}\n")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-read // the request is on its way: the server has read it
		cancel()
	}()
	_, err := c.Do(ctx, send("go", nil))
	if !errors.Is(err, context.Canceled) || errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "sent, no response") {
		t.Errorf("error %v, want context.Canceled", err)
	}
	// Cancelled before it is sent.
	_, err = c.Do(ctx, send("go", nil))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not sent") {
		t.Errorf("error %v", err)
	}
}

func TestCheck(t *testing.T) {
	c, _ := newClient(t, "base_url: http://127.0.0.1:1\nrequests:\n  input: {path: '/input/{{.n}}', body: '{{.a}}{{.b}}'}\n  off: {}\n")
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{}, "no command"},
		{map[string]any{"command": 3}, "command must be a command name"},
		{map[string]any{"command": "on"}, `unknown request "on" (configured: input, off)`},
		{map[string]any{"command": "off", "n": 3}, `unknown field "n"`},
		{map[string]any{"command": "off", "args": "x"}, "args must be a table"},
		{map[string]any{"command": "off", "args": []any{1}}, "args must be a table of named values, like {n = 3}, not a list"},
		{send("input", map[string]any{"a": 1}), `requests.input.path: template "/input/{{.n}}" needs args.n (args has a)`},
		{send("input", map[string]any{"n": 1, "a": 1}), `requests.input.body: template "{{.a}}{{.b}}" needs args.b (args has a, n)`},
		{send("input", map[string]any{"n": "%zz", "a": 1, "b": 2}), `does not make a valid URL`},
	} {
		err := c.Check(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%v) = %v, want an error containing %q", tc.args, err, tc.want)
		}
		if _, err := c.Do(drivertest.Context(t), tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Do(%v) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	for _, args := range []map[string]any{
		{"command": "off"},
		{"command": "off", "args": []any{}}, // an empty Lua table
		send("input", map[string]any{"n": 3, "a": "x", "b": nil}),
	} {
		if err := c.Check(args); err != nil {
			t.Errorf("Check(%v): %v", args, err)
		}
	}
}

func TestClosed(t *testing.T) {
	srv, _ := recorder(t, 200, "")
	c, _ := newClient(t, "base_url: "+srv.URL+"\nrequests: {a: {}}\n")
	c.Close()
	if _, err := c.Do(drivertest.Context(t), send("a", nil)); !errors.Is(err, httpreq.ErrClosed) {
		t.Errorf("error %v", err)
	}
	if c.Status().Connected {
		t.Error("connected after Close")
	}
}
