package mdns_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/discovery/mdns"
	"understudy/fixtures/testhost"
)

// Interoperability with Avahi, the reference mDNS stack on Linux.
//
// The recipe in shared/notes/test-hosts.md starts the machine's system bus
// (dbus-daemon --system: socket /run/dbus/system_bus_socket, pid file
// /run/dbus/pid) and avahi-daemon (pid file and socket in /run/avahi-daemon):
// paths shared machine-wide, which a developer's machine or a CI runner may
// already use. startAvahi uses none of them, so it cannot disturb a running
// system bus or Avahi, and no run leaves anything behind for the next:
//   - dbus-daemon runs with a configuration of the test's own: its socket in
//     the test's temporary directory, no pid file. avahi-daemon and the avahi
//     clients find it through DBUS_SYSTEM_BUS_ADDRESS.
//   - avahi-daemon runs on a fresh tmpfs mounted on /run inside the private
//     mount namespace that ip netns exec gives it (the mount does not
//     propagate to the machine), so its pid file and socket vanish with it.
//
// Both run inside the test host, are started with Host.Start and killed in
// t.Cleanup. The tests do not use t.Parallel: one Avahi at a time.

// avahiTimeout bounds each Avahi test.
const avahiTimeout = 30 * time.Second

const dbusConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`

// avahi is an avahi-daemon with its own system bus inside a test host.
type avahi struct {
	host *testhost.Host
	env  []string // environment for avahi clients (avahi-browse, avahi-publish-service)
}

// startAvahi starts a private system bus and an avahi-daemon bound to h's
// interface, inside h, and returns once the daemon has started.
func startAvahi(t *testing.T, h *testhost.Host) *avahi {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	testhost.RequireTools(t, "dbus-daemon", "avahi-daemon", "avahi-browse", "avahi-publish-service", "sh", "mount")
	dir := t.TempDir()
	socket := filepath.Join(dir, "bus")
	if len(socket) > 100 {
		t.Fatalf("bus socket path %q too long for a unix socket", socket)
	}
	busConf := filepath.Join(dir, "dbus.conf")
	if err := os.WriteFile(busConf, []byte(fmt.Sprintf(dbusConfig, socket)), 0o644); err != nil {
		t.Fatal(err)
	}
	avahiConf := filepath.Join(dir, "avahi-daemon.conf")
	conf := "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=" + h.Iface +
		"\nenable-dbus=yes\n[publish]\npublish-workstation=no\npublish-hinfo=no\n"
	if err := os.WriteFile(avahiConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path="+socket)

	bus := h.Start(t, h.Command(context.Background(), "dbus-daemon", "--config-file="+busConf, "--nofork", "--nopidfile", "--print-address"))
	if err := bus.WaitOutput(ctx, "unix:path="+socket); err != nil {
		t.Fatal(err)
	}

	daemonPath, err := testhost.LookPath("avahi-daemon")
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(context.Background(), "sh", "-c", `mount -t tmpfs -o mode=0755 understudy-avahi /run && exec "$0" "$@"`,
		daemonPath, "-f", avahiConf, "--no-rlimits", "--no-drop-root", "--no-chroot", "--no-proc-title")
	cmd.Env = env
	daemon := h.Start(t, cmd)
	if err := daemon.WaitOutput(ctx, "Server startup complete"); err != nil {
		t.Fatal(err)
	}
	if out := daemon.Output(); !strings.Contains(out, "New relevant interface "+h.Iface) {
		t.Fatalf("avahi-daemon does not use %s:\n%s", h.Iface, out)
	}
	return &avahi{host: h, env: env}
}

func TestAvahiBrowsesOurAdvertisement(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	av := startAvahi(t, b)

	advertiseIn(t, a, mdns.Service{Instance: "ours one.x", Service: "_understudy._tcp", Port: 7000, Host: "ours-host.local.",
		TXT: map[string]string{"site": "north", "member": "ours one.x"}})

	// avahi-browse -p escapes the instance name as DNS-SD does (\032 is a space).
	const wantName = `ours\032one\.x`
	want := []string{"=", b.Iface, "IPv4", wantName, "_understudy._tcp", "local", "ours-host.local", a.Addr.String(), "7000"}
	var out string
	for attempt := 1; ; attempt++ {
		cmd := b.Command(ctx, "avahi-browse", "-rtp", "_understudy._tcp")
		cmd.Env = av.env
		raw, err := cmd.CombinedOutput()
		out = string(raw)
		if err != nil {
			t.Fatalf("avahi-browse: %v\n%s", err, out)
		}
		if line, ok := findResolved(out, wantName); ok {
			fields := strings.Split(line, ";")
			for i, w := range want {
				if fields[i] != w {
					t.Fatalf("avahi-browse field %d = %q, want %q in line\n%s", i, fields[i], w, line)
				}
			}
			txt := strings.Join(fields[len(want):], ";")
			if !strings.Contains(txt, `"site=north"`) || !strings.Contains(txt, `"member=ours one.x"`) {
				t.Fatalf("avahi-browse TXT %s, want site=north and member=ours one.x", txt)
			}
			return
		}
		if attempt == 10 || ctx.Err() != nil {
			t.Fatalf("avahi-browse did not resolve %s after %d attempts; last output:\n%s", wantName, attempt, out)
		}
	}
}

// findResolved returns the resolved ("=") line of avahi-browse -p output for
// the instance name (as avahi-browse escapes it).
func findResolved(out, name string) (string, bool) {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, ";"); len(f) > 9 && f[0] == "=" && f[3] == name {
			return line, true
		}
	}
	return "", false
}

func TestWeFindAvahiPublishedService(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	av := startAvahi(t, b)

	cmd := b.Command(ctx, "avahi-publish-service", "-s", "peer one.x", "_understudy._tcp", "7901", "role=main", "Site=north", "bare")
	cmd.Env = av.env
	pub := b.Start(t, cmd)
	if err := pub.WaitOutput(ctx, "Established under name 'peer one.x'"); err != nil {
		t.Fatal(err)
	}

	var found mdns.Entry
	err := a.Do(func() error {
		var err error
		found, err = mdns.Find(ctx, "_understudy._tcp", time.Second, func(e mdns.Entry) bool { return e.Instance == "peer one.x" }, testLogger(t))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"role": "main", "site": "north", "bare": ""}
	if !found.Addr.Equal(b.Addr) || found.Port != 7901 || !strings.HasSuffix(found.Host, ".local.") || !maps.Equal(found.TXT, want) {
		t.Fatalf("found %+v; want %v:7901 on a .local. host with TXT %v", found, b.Addr, want)
	}
}
