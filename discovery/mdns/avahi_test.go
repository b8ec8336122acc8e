package mdns_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"understudy/discovery/mdns"
	"understudy/fixtures/avahi"
	"understudy/fixtures/testhost"
)

// Interoperability with Avahi (fixtures/avahi runs it privately in a test
// host). The tests do not use t.Parallel: one Avahi at a time.

// avahiTimeout bounds each Avahi test.
const avahiTimeout = 30 * time.Second

func TestAvahiBrowsesOurAdvertisement(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	av := avahi.Start(t, b)

	advertiseIn(t, a, mdns.Service{Instance: "ours one.x", Service: "_understudy._tcp", Port: 7000, Host: "ours-host.local.",
		TXT: map[string]string{"site": "north", "member": "ours one.x"}})

	// avahi-browse -p escapes the instance name as DNS-SD does (\032 is a space).
	const wantName = `ours\032one\.x`
	want := []string{"=", b.Iface, "IPv4", wantName, "_understudy._tcp", "local", "ours-host.local", a.Addr.String(), "7000"}
	var out string
	for attempt := 1; ; attempt++ {
		cmd := av.Command(ctx, "avahi-browse", "-rtp", "_understudy._tcp")
		raw, err := cmd.CombinedOutput()
		out = string(raw)
		if err != nil {
			t.Fatalf("avahi-browse: %v\n%s", err, out)
		}
		if line, ok := avahi.Resolved(out, wantName); ok {
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

func TestWeFindAvahiPublishedService(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	av := avahi.Start(t, b)

	cmd := av.Command(ctx, "avahi-publish-service", "-s", "peer one.x", "_understudy._tcp", "7901", "role=main", "Site=north", "bare")
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
