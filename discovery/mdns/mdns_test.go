//go:build linux

package mdns_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/discovery/mdns"
	"understudy/fixtures/testhost"
)

// deadline is the generous bound for waits in these tests.
const deadline = 20 * time.Second

// testLogger logs to t until the test ends (an advertisement closed in a
// cleanup may still log a moment later).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func advertiseIn(t *testing.T, h *testhost.Host, svc mdns.Service) *mdns.Advertisement {
	t.Helper()
	var a *mdns.Advertisement
	err := h.Do(func() error {
		var err error
		a, err = mdns.Advertise(svc, testLogger(t))
		return err
	})
	if err != nil {
		t.Fatalf("advertise %+v in %s: %v", svc, h.Name, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func browseIn(t *testing.T, h *testhost.Host, service string, timeout time.Duration, match func(mdns.Entry) bool) []mdns.Entry {
	t.Helper()
	var entries []mdns.Entry
	err := h.Do(func() error {
		var err error
		entries, err = mdns.Browse(t.Context(), service, timeout, match, testLogger(t))
		return err
	})
	if err != nil {
		t.Fatalf("browse %s in %s: %v", service, h.Name, err)
	}
	return entries
}

func equalEntry(a, b mdns.Entry) bool {
	return a.Instance == b.Instance && a.Host == b.Host && a.Addr.Equal(b.Addr) && a.Port == b.Port && maps.Equal(a.TXT, b.TXT)
}

func checkEntries(t *testing.T, got, want []mdns.Entry) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = equalEntry(got[i], want[i])
	}
	if !ok {
		t.Fatalf("entries:\n got %+v\nwant %+v", got, want)
	}
}

func TestAdvertiseInOneHostBrowseFromAnother(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	txt := map[string]string{"site": "north", "member": "member one.a", "version": "1.2.3"}
	// Default Host and IPs: the machine's host name and host A's address.
	advertiseIn(t, a, mdns.Service{Instance: "member one.a", Service: "_understudy._tcp", Port: 7000, TXT: txt})

	// The SRV target is the host name as one label in .local., never a bare
	// "hostname.".
	got := browseIn(t, b, "_understudy._tcp", time.Second, nil)
	checkEntries(t, got, []mdns.Entry{{Instance: "member one.a", Host: mdns.HostLabel(hostname) + ".local.", Addr: a.Addr, Port: 7000, TXT: txt}})
	if hp := got[0].HostPort(); hp != "198.18.0.1:7000" {
		t.Fatalf("HostPort() = %q", hp)
	}

	// Browse's sockets belong to the namespace of the thread that calls it:
	// the same call from a host on another (unconnected) network finds nothing.
	other := testhost.NewNetwork(t, 1).Hosts[0]
	if got := browseIn(t, other, "_understudy._tcp", time.Second, nil); len(got) != 0 {
		t.Fatalf("browse from a host of another network found %+v", got)
	}
}

func TestTwoHostsServiceTypesAndMatch(t *testing.T) {
	nw := testhost.NewNetwork(t, 3)
	a, b, c := nw.Hosts[0], nw.Hosts[1], nw.Hosts[2]
	advertiseIn(t, a, mdns.Service{Instance: "a", Service: "_understudy._tcp", Port: 7000, Host: "a-host.local.",
		TXT: map[string]string{"site": "north", "member": "a"}})
	advertiseIn(t, a, mdns.Service{Instance: "a broker", Service: "_mqtt._tcp", Port: 1883, Host: "a-host.local.",
		TXT: map[string]string{"site": "north"}})
	advertiseIn(t, b, mdns.Service{Instance: "b", Service: "_understudy._tcp", Port: 7001, Host: "b-host.local.",
		TXT: map[string]string{"site": "south", "member": "b"}})

	wantA := mdns.Entry{Instance: "a", Host: "a-host.local.", Addr: a.Addr, Port: 7000, TXT: map[string]string{"site": "north", "member": "a"}}
	wantB := mdns.Entry{Instance: "b", Host: "b-host.local.", Addr: b.Addr, Port: 7001, TXT: map[string]string{"site": "south", "member": "b"}}
	wantBroker := mdns.Entry{Instance: "a broker", Host: "a-host.local.", Addr: a.Addr, Port: 1883, TXT: map[string]string{"site": "north"}}

	checkEntries(t, browseIn(t, c, "_understudy._tcp", time.Second, nil), []mdns.Entry{wantA, wantB})
	south := func(e mdns.Entry) bool { return e.TXT["site"] == "south" }
	checkEntries(t, browseIn(t, c, "_understudy._tcp", time.Second, south), []mdns.Entry{wantB})
	checkEntries(t, browseIn(t, c, "_mqtt._tcp.local.", time.Second, nil), []mdns.Entry{wantBroker})

	var found mdns.Entry
	err := c.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		var err error
		found, err = mdns.Find(ctx, "_understudy._tcp", 500*time.Millisecond, func(e mdns.Entry) bool { return e.TXT["member"] == "b" }, nil)
		return err
	})
	if err != nil || !equalEntry(found, wantB) {
		t.Fatalf("Find = %+v, %v; want %+v", found, err, wantB)
	}
}

func TestClosedAdvertisementIsNotFound(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	adv := advertiseIn(t, a, mdns.Service{Instance: "short-lived", Service: "_understudy._tcp", Port: 7000, IPs: []net.IP{a.Addr}})
	if got := browseIn(t, b, "_understudy._tcp", time.Second, nil); len(got) != 1 {
		t.Fatalf("before Close: found %+v, want the advertisement", got)
	}
	if err := adv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := adv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := browseIn(t, b, "_understudy._tcp", time.Second, nil); len(got) != 0 {
		t.Fatalf("after Close: found %+v", got)
	}
}

func TestBrowseEndsWithContext(t *testing.T) {
	nw := testhost.NewNetwork(t, 1)
	h := nw.Hosts[0]
	advertiseIn(t, h, mdns.Service{Instance: "x", Service: "_understudy._tcp", Port: 7000})
	start := time.Now()
	const timeout = 10 * time.Second
	var err error
	var entries []mdns.Entry
	doErr := h.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		entries, err = mdns.Browse(ctx, "_understudy._tcp", timeout, nil, nil)
		return nil
	})
	if doErr != nil {
		t.Fatal(doErr)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Browse = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed >= timeout {
		t.Fatalf("Browse took %v, not bounded by its context", elapsed)
	}
	// The first round (1 s) finished before the deadline: its entries are kept.
	if len(entries) != 1 || entries[0].Instance != "x" {
		t.Fatalf("entries with the context's error: %+v", entries)
	}
}

// The responder joins the group and sends on each interface by its index: it
// needs no multicast route (hashicorp/mdns failed with "no such device").
func TestAdvertiseWithoutMulticastRoute(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	if out, err := a.Command(ctx, "ip", "route", "del", "224.0.0.0/4").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	advertiseIn(t, a, mdns.Service{Instance: "no-route", Service: "_understudy._tcp", Port: 7000, Host: "a-host.local."})
	var found mdns.Entry
	err := b.Do(func() error {
		var err error
		found, err = mdns.Find(ctx, "_understudy._tcp", time.Second, nil, testLogger(t))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if found.Instance != "no-route" || !found.Addr.Equal(a.Addr) || found.Host != "a-host.local." {
		t.Fatalf("found %+v", found)
	}
}
