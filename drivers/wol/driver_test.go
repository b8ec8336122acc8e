package wol_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/wol"
	"understudy/runtime/config"
)

func newWaker(t *testing.T, doc string) (*wol.Waker, *drivertest.Events) {
	t.Helper()
	d, err := wol.New(drivertest.Config("wake", doc))
	if err != nil {
		t.Fatal(err)
	}
	w := d.(*wol.Waker)
	ev := drivertest.NewEvents(t)
	w.Start(context.Background(), ev.Emit)
	t.Cleanup(func() { w.Close() })
	return w, ev
}

// listen returns a UDP listener on 127.0.0.1 that passes on each datagram.
func listen(t *testing.T) (string, <-chan []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []byte, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- append([]byte(nil), buf[:n]...)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String(), ch
}

func receive(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(drivertest.Deadline):
		t.Fatal("no packet within the deadline")
		return nil
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
	ds, err := site.BuildDrivers(drivers.NewRegistry(wol.Kind))
	if err != nil {
		t.Fatal(err)
	}
	w := ds["wake"].(*wol.Waker)
	s := w.Settings()
	if s.Broadcast != "192.168.10.255:9" || s.Timeout.D() != 2*time.Second {
		t.Errorf("settings %+v", s)
	}
	want := map[string]string{"standby-1": "00:1b:21:3c:4d:5e", "render-2": "00:1b:21:3c:4d:5f", "projector": "00:11:22:aa:bb:cc"}
	for k, v := range want {
		if s.Hosts[k] != v {
			t.Errorf("hosts[%s] = %q, want %q", k, s.Hosts[k], v)
		}
	}
	if err := w.Check(map[string]any{"command": "standby-1"}); err != nil {
		t.Error(err)
	}
}

func TestDefaults(t *testing.T) {
	d, err := wol.New(drivertest.Config("wake", "hosts: {a: '001122334455'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := d.(*wol.Waker).Settings(); s.Broadcast != "255.255.255.255:9" || s.Hosts["a"] != "00:11:22:33:44:55" {
		t.Errorf("settings %+v", s)
	}
	d, err = wol.New(drivertest.Config("wake", "broadcast: 10.0.0.255\nhosts: {a: 00:11:22:33:44:55}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := d.(*wol.Waker).Settings(); s.Broadcast != "10.0.0.255:9" {
		t.Errorf("settings %+v", s)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"broadcast: 1.2.3.4:9\n", "hosts: none configured"},
		{"hosts: {a: 00:11:22:33:44}\n", `hosts.a: "00:11:22:33:44" is not a MAC address`},
		{"hosts: {a: 00:11:22:33:44:55:66:77}\n", "is not a 6-byte (EUI-48) MAC address"},
		{"hosts: {a: 00:00:00:00:00:00}\n", "is all zeros"},
		{"hosts: {a: 00112233445g}\n", "is not a MAC address"},
		{"broadcast: 'x:0'\nhosts: {a: 00:11:22:33:44:55}\n", "port must be"},
		{"broadcast: 'a b'\nhosts: {a: 00:11:22:33:44:55}\n", "want an address"},
		{"timeout: -1s\nhosts: {a: 00:11:22:33:44:55}\n", "timeout: -1s is negative"},
		{"hosts: {a: 00:11:22:33:44:55}\nrepeat: 3\n", "repeat"},
	} {
		_, err := wol.New(drivertest.Config("wake", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	site, err := config.Parse("site.yaml", []byte(siteHead+"drivers:\n  w:\n    kind: wol\n    hosts: {a: 1}\n    colour: red\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = site.BuildDrivers(drivers.NewRegistry(wol.Kind)); err == nil || !strings.Contains(err.Error(), "site.yaml:9:") {
		t.Errorf("site.yaml error %v", err)
	}
}

func TestMagicPacket(t *testing.T) {
	mac, _ := wol.ParseMAC("00:1b:21:3c:4d:5e")
	p := wol.MagicPacket(mac)
	if len(p) != 102 || !bytes.Equal(p[:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		t.Fatalf("packet % x", p)
	}
	for i := range 16 {
		if !bytes.Equal(p[6+6*i:12+6*i], mac) {
			t.Fatalf("repetition %d: % x", i, p[6+6*i:12+6*i])
		}
	}
}

func TestWake(t *testing.T) {
	addr, got := listen(t)
	w, ev := newWaker(t, "broadcast: "+addr+"\nhosts: {standby-1: 00-1B-21-3C-4D-5E, render-2: 001b213c4d5f}\n")
	for _, tc := range []struct{ host, mac string }{{"standby-1", "00:1b:21:3c:4d:5e"}, {"render-2", "00:1b:21:3c:4d:5f"}} {
		res, err := w.Do(drivertest.Context(t), map[string]any{"command": tc.host})
		if err != nil {
			t.Fatal(err)
		}
		if res.(map[string]any)["mac"] != tc.mac {
			t.Errorf("result %v", res)
		}
		mac, _ := wol.ParseMAC(tc.mac)
		if p := receive(t, got); !bytes.Equal(p, wol.MagicPacket(mac)) {
			t.Errorf("received % x", p)
		}
	}
	if st := w.Status(); !st.Connected || st.Address != addr {
		t.Errorf("status %+v", st)
	}
	ev.None()
}

func TestCheck(t *testing.T) {
	w, _ := newWaker(t, "broadcast: 127.0.0.1:9\nhosts: {a: 00:11:22:33:44:55, b: 00:11:22:33:44:56}\n")
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{}, "no command"},
		{map[string]any{"command": "c"}, `unknown host "c" (configured: a, b)`},
		{map[string]any{"command": "a", "args": map[string]any{"x": 1}}, "waking a takes no args"},
		{map[string]any{"command": "a", "mac": "x"}, `unknown field "mac"`},
	} {
		if err := w.Check(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%v) = %v, want %q", tc.args, err, tc.want)
		}
		if _, err := w.Do(drivertest.Context(t), tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Do(%v) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestSendFails(t *testing.T) {
	// A name that does not resolve: not sent, retried by the runtime.
	w, ev := newWaker(t, "broadcast: no-such-host.invalid:9\nhosts: {a: 00:11:22:33:44:55}\n")
	_, err := w.Do(drivertest.Context(t), map[string]any{"command": "a"})
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "wol a (00:11:22:33:44:55) via no-such-host.invalid:9: not sent: ") {
		t.Fatalf("error %v", err)
	}
	if e := ev.Next(); e.Name != drivers.EventDisconnected || e.Fields["address"] != "no-such-host.invalid:9" {
		t.Errorf("event %+v", e)
	}
	if st := w.Status(); st.Connected || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
}

func TestClosed(t *testing.T) {
	addr, _ := listen(t)
	w, _ := newWaker(t, "broadcast: "+addr+"\nhosts: {a: 00:11:22:33:44:55}\n")
	w.Close()
	if _, err := w.Do(drivertest.Context(t), map[string]any{"command": "a"}); !errors.Is(err, wol.ErrClosed) {
		t.Errorf("error %v", err)
	}
}
