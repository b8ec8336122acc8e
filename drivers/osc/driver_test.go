package osc_test

import (
	"context"
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/osc"
	"understudy/runtime/config"
)

func newSender(t *testing.T, doc string) (*osc.Sender, *drivertest.Events) {
	t.Helper()
	d, err := osc.New(drivertest.Config("qlab", doc))
	if err != nil {
		t.Fatal(err)
	}
	s := d.(*osc.Sender)
	ev := drivertest.NewEvents(t)
	s.Start(context.Background(), ev.Emit)
	t.Cleanup(func() { s.Close() })
	return s, ev
}

func send(command string, args map[string]any) map[string]any {
	m := map[string]any{"command": command}
	if args != nil {
		m["args"] = args
	}
	return m
}

// receiver is a UDP listener that decodes every datagram it gets.
type receiver struct {
	addr string
	msgs chan received
}

type received struct {
	msg osc.Message
	err error
	raw []byte
}

func listen(t *testing.T) *receiver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{addr: pc.LocalAddr().String(), msgs: make(chan received, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 70000)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			raw := append([]byte(nil), buf[:n]...)
			m, err := osc.Parse(raw)
			r.msgs <- received{m, err, raw}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return r
}

func (r *receiver) next(t *testing.T) osc.Message {
	t.Helper()
	select {
	case got := <-r.msgs:
		if got.err != nil {
			t.Fatalf("received %q: %v", got.raw, got.err)
		}
		return got.msg
	case <-time.After(drivertest.Deadline):
		t.Fatal("nothing received within the deadline")
		return osc.Message{}
	}
}

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
	ds, err := site.BuildDrivers(drivers.NewRegistry(osc.Kind))
	if err != nil {
		t.Fatal(err)
	}
	s := ds["qlab"].(*osc.Sender)
	set := s.Settings()
	if set.Address != "192.168.10.30:53000" || set.Timeout.D() != 2*time.Second || len(set.Messages) != 4 {
		t.Errorf("settings %+v", set)
	}
	wantFade := []osc.Arg{{Type: 'f', Value: "{{.level}}"}, {Type: 'i', Value: "500"}, {Type: 's', Value: "{{.who}}"}, {Type: 'T'}}
	if got := set.Messages["fade"].Args; !reflect.DeepEqual(got, wantFade) {
		t.Errorf("fade args %+v, want %+v", got, wantFade)
	}
	m, err := s.Build(send("fade", map[string]any{"layer": int64(2), "level": 0.5, "who": "understudy"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (osc.Message{Address: "/layer/2/opacity", Args: []any{float32(0.5), int32(500), "understudy", true}}); !reflect.DeepEqual(m, want) {
		t.Errorf("fade message %#v, want %#v", m, want)
	}
	m, err = s.Build(send("mute", map[string]any{"ch": int64(4), "on": true}))
	if err != nil || !reflect.DeepEqual(m, osc.Message{Address: "/ch/4/mute", Args: []any{true}}) {
		t.Errorf("mute message %#v, %v", m, err)
	}
	if err := s.Check(map[string]any{"command": "go"}); err != nil {
		t.Error(err)
	}
}

func TestArgForms(t *testing.T) {
	s, _ := newSender(t, `
address: 127.0.0.1:9
messages:
  all:
    address: /all
    args: [T, F, N, true, false, {i: -7}, {f: .25}, {s: hi}, {b: raw}, {bool: "F"}, {i: 3.0}]
`)
	m, err := s.Build(send("all", nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{true, false, nil, true, false, int32(-7), float32(0.25), "hi", []byte("raw"), false, int32(3)}
	if !reflect.DeepEqual(m.Args, want) {
		t.Errorf("args %#v, want %#v", m.Args, want)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"messages: {a: {address: /a}}\n", "address is required"},
		{"address: host\nmessages: {a: {address: /a}}\n", `address "host": want host:port`},
		{"address: 'host:0'\nmessages: {a: {address: /a}}\n", "port must be"},
		{"address: h:1\n", "messages: none configured"},
		{"address: h:1\nmessages: {a: {}}\n", "messages.a.address: missing"},
		{"address: h:1\nmessages: {a: {address: go}}\n", "messages.a.address: OSC address \"go\" must start with /"},
		{"address: h:1\nmessages: {a: {address: '/a b'}}\n", "not allowed"},
		{"address: h:1\nmessages: {a: {address: '/{{.x'}}\n", "messages.a.address: template"},
		{"address: h:1\nmessages: {a: {address: /a, args: [{i: 1.5}]}}\n", `messages.a.args[0]: "1.5" is not a 32-bit integer`},
		{"address: h:1\nmessages: {a: {address: /a, args: [{i: 3000000000}]}}\n", "not a 32-bit integer"},
		{"address: h:1\nmessages: {a: {address: /a, args: [{f: loud}]}}\n", `"loud" is not a 32-bit float`},
		{"address: h:1\nmessages: {a: {address: /a, args: [{bool: maybe}]}}\n", `"maybe" is not true or false`},
		{"address: h:1\nmessages: {a: {address: /a, args: [{x: 1}]}}\n", `"x" is not an OSC argument type`},
		{"address: h:1\nmessages: {a: {address: /a, args: [{i: 1, f: 2}]}}\n", "one type and value per argument"},
		{"address: h:1\nmessages: {a: {address: /a, args: [yes]}}\n", `"yes": an OSC argument is`},
		{"address: h:1\nmessages: {a: {address: /a, args: [{s: [1]}]}}\n", "the value of s must be"},
		{"address: h:1\nmessages: {a: {address: /a, args: [{s: '{{'}]}}\n", "messages.a.args[0]: template"},
		{"address: h:1\ntimeout: -1s\nmessages: {a: {address: /a}}\n", "timeout: -1s is negative"},
		{"address: h:1\nmessages: {a: {address: /a, colour: red}}\n", "colour"},
	} {
		_, err := osc.New(drivertest.Config("qlab", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// In site.yaml, a bad argument names the file and line.
	site, err := config.Parse("site.yaml", []byte(siteHead+"drivers:\n  q:\n    kind: osc\n    address: h:1\n    messages:\n      a:\n        address: /a\n        args:\n          - {q: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = site.BuildDrivers(drivers.NewRegistry(osc.Kind))
	if err == nil || !strings.Contains(err.Error(), "site.yaml:13:") || !strings.Contains(err.Error(), `"q" is not an OSC argument type`) {
		t.Errorf("bad argument in site.yaml: %v", err)
	}
}

func TestSend(t *testing.T) {
	r := listen(t)
	s, ev := newSender(t, `
address: `+r.addr+`
messages:
  go: {address: /go}
  start: {address: '/cue/{{.cue}}/start', args: [{s: '{{.cue}}'}, {i: '{{.n}}'}, {f: '{{.level}}'}, {b: '{{.data}}'}, {bool: '{{.on}}'}]}
`)
	res, err := s.Do(drivertest.Context(t), map[string]any{"command": "go"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); got.Address != "/go" || got.Args != nil {
		t.Errorf("received %#v", got)
	}
	if res.(map[string]any)["bytes"] != 8 {
		t.Errorf("result %#v, want 8 bytes", res)
	}
	args := map[string]any{"cue": "12.5", "n": float64(7), "level": int64(1), "data": "\x01\x02", "on": false}
	if err := s.Check(send("start", args)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do(drivertest.Context(t), send("start", args)); err != nil {
		t.Fatal(err)
	}
	want := osc.Message{Address: "/cue/12.5/start", Args: []any{"12.5", int32(7), float32(1), []byte{1, 2}, false}}
	if got := r.next(t); !reflect.DeepEqual(got, want) {
		t.Errorf("received %#v, want %#v", got, want)
	}
	if st := s.Status(); !st.Connected || st.Address != r.addr || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
	ev.None()
}

func TestCheck(t *testing.T) {
	s, _ := newSender(t, `
address: 127.0.0.1:9
messages:
  level: {address: '/ch/{{.ch}}', args: [{f: '{{.level}}'}]}
  big: {address: /big, args: [{b: '{{.data}}'}]}
`)
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"command": "lvl"}, `unknown message "lvl" (configured: big, level)`},
		{send("level", map[string]any{"level": 1}), `messages.level.address: template "/ch/{{.ch}}" needs args.ch (args has level)`},
		{send("level", map[string]any{"ch": "a b", "level": 1}), "messages.level.address: OSC address \"/ch/a b\""},
		{send("level", map[string]any{"ch": 1, "level": "loud"}), `messages.level.args[0]: "loud" is not a 32-bit float`},
		{send("big", map[string]any{"data": strings.Repeat("x", 70000)}), "larger than 65507"},
		{map[string]any{"command": "level", "ch": 1}, `unknown field "ch"`},
	} {
		if err := s.Check(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%.60v) = %v, want %q", tc.args, err, tc.want)
		}
		if _, err := s.Do(drivertest.Context(t), tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Do(%.60v) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// A receiver that is not there: the network reports its port closed for an
// earlier datagram, and the driver reports not connected until a send goes
// out again.
func TestPortUnreachable(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	s, ev := newSender(t, "address: "+addr+"\nmessages: {go: {address: /go}}\n")
	var notConnected error
	for i := 0; i < 100 && notConnected == nil; i++ {
		if _, err := s.Do(drivertest.Context(t), send("go", nil)); err != nil {
			notConnected = err
		}
	}
	if !errors.Is(notConnected, drivers.ErrNotConnected) || !strings.Contains(notConnected.Error(), "osc "+addr+" /go: not sent: ") ||
		!strings.Contains(notConnected.Error(), "connection refused") {
		t.Fatalf("error %v, want a refused send (ErrNotConnected)", notConnected)
	}
	if e := ev.Next(); e.Name != drivers.EventDisconnected || e.Fields["address"] != addr {
		t.Errorf("event %+v", e)
	}
	if st := s.Status(); st.Connected || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("status %+v", st)
	}
	// A receiver comes up on the port: the next send reaches it.
	pc, err = net.ListenPacket("udp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer pc.Close()
	if _, err := s.Do(drivertest.Context(t), send("go", nil)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	pc.SetReadDeadline(time.Now().Add(drivertest.Deadline))
	if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "/go\x00,\x00\x00\x00" {
		t.Errorf("received %q, %v", buf[:n], err)
	}
	if e := ev.Next(); e.Name != drivers.EventConnected {
		t.Errorf("event %+v", e)
	}
}

func TestUnresolvable(t *testing.T) {
	s, _ := newSender(t, "address: no-such-host.invalid:53000\nmessages: {go: {address: /go}}\n")
	_, err := s.Do(drivertest.Context(t), send("go", nil))
	if !errors.Is(err, drivers.ErrNotConnected) {
		t.Errorf("error %v, want ErrNotConnected", err)
	}
}

func TestClosed(t *testing.T) {
	r := listen(t)
	s, _ := newSender(t, "address: "+r.addr+"\nmessages: {go: {address: /go}}\n")
	if _, err := s.Do(drivertest.Context(t), send("go", nil)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Do(drivertest.Context(t), send("go", nil)); !errors.Is(err, osc.ErrClosed) {
		t.Errorf("error %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s2, _ := newSender(t, "address: "+r.addr+"\nmessages: {go: {address: /go}}\n")
	if _, err := s2.Do(ctx, send("go", nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
