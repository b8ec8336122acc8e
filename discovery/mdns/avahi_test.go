//go:build linux

package mdns_test

import (
	"context"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"understudy/discovery/mdns"
	"understudy/fixtures/avahi"
	"understudy/fixtures/testhost"
)

// Interoperability with Avahi (fixtures/avahi runs it privately in a test
// host). The tests do not use t.Parallel: one Avahi at a time.

// avahiTimeout bounds each Avahi test.
const avahiTimeout = 30 * time.Second

// resolveWithAvahi runs avahi-browse -rtp until it resolves instance (as
// avahi-browse escapes it) and returns the fields of its line.
func resolveWithAvahi(t *testing.T, ctx context.Context, av *avahi.Avahi, instance string) []string {
	t.Helper()
	var out string
	for attempt := 1; ; attempt++ {
		raw, err := av.Command(ctx, "avahi-browse", "-rtp", "_understudy._tcp").CombinedOutput()
		out = string(raw)
		if err != nil {
			t.Fatalf("avahi-browse: %v\n%s", err, out)
		}
		if line, ok := avahi.Resolved(out, instance); ok {
			return strings.Split(line, ";")
		}
		if attempt == 10 || ctx.Err() != nil {
			t.Fatalf("avahi-browse did not resolve %s after %d attempts; last output:\n%s", instance, attempt, out)
		}
	}
}

// checkFields compares the leading fields of an avahi-browse -p line.
func checkFields(t *testing.T, fields, want []string) {
	t.Helper()
	for i, w := range want {
		if fields[i] != w {
			t.Fatalf("avahi-browse field %d = %q, want %q in\n%s", i, fields[i], w, strings.Join(fields, ";"))
		}
	}
}

// Avahi on another host resolves the advertisement from our multicast
// answers (Avahi starts after the announcements, so its cache is empty),
// with the SRV target "<host>.local"; a third host overhears the answer.
func TestAvahiBrowsesOurAdvertisement(t *testing.T) {
	nw := testhost.NewNetwork(t, 3)
	a, b, c := nw.Hosts[0], nw.Hosts[1], nw.Hosts[2]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	bystander := listenPeer(t, c, 5353)
	advertiseIn(t, a, mdns.Service{Instance: "ours one.x", Service: "_understudy._tcp", Port: 7000, Host: "ours-host.local.",
		TXT: map[string]string{"site": "north", "member": "ours one.x"}})
	// Default Host: the machine's name, as one label in .local. (The test
	// hosts share the machine's name, Avahi's host included, so Avahi
	// resolves that name to itself: only the SRV target is checked.)
	advertiseIn(t, a, mdns.Service{Instance: "default host", Service: "_understudy._tcp", Port: 7001})
	// Both announcements of both (Avahi would answer from its cache).
	seen := map[string]int{}
	for seen["ours"] < 2 || seen["default"] < 2 {
		pk := bystander.next(t, ctx, a.Addr, "the announcements", announcement)
		switch {
		case hasPTRTo(pk.msg.Answer, `ours\ one\.x._understudy._tcp.local.`):
			seen["ours"]++
		case hasPTRTo(pk.msg.Answer, `default\ host._understudy._tcp.local.`):
			seen["default"]++
		}
	}

	av := avahi.Start(t, b)
	// avahi-browse -p escapes the instance name as DNS-SD does (\032 is a space).
	const wantName = `ours\032one\.x`
	fields := resolveWithAvahi(t, ctx, av, wantName)
	checkFields(t, fields, []string{"=", b.Iface, "IPv4", wantName, "_understudy._tcp", "local", "ours-host.local", a.Addr.String(), "7000"})
	txt := strings.Join(fields[9:], ";")
	if !strings.Contains(txt, `"site=north"`) || !strings.Contains(txt, `"member=ours one.x"`) {
		t.Fatalf("avahi-browse TXT %s, want site=north and member=ours one.x", txt)
	}
	fields = resolveWithAvahi(t, ctx, av, `default\032host`)
	checkFields(t, fields, []string{"=", b.Iface, "IPv4", `default\032host`, "_understudy._tcp", "local", mdns.HostLabel(hostname) + ".local"})
	// Avahi's question was answered by multicast: c heard it.
	bystander.next(t, ctx, a.Addr, "the multicast answer to Avahi's question", func(pk packet) bool {
		return answerTo(dns.TypePTR)(pk) && pk.multicast() && hasPTRTo(pk.msg.Answer, `ours\ one\.x._understudy._tcp.local.`)
	})
}

// Avahi on the advertiser's own host hears the multicast answers (a unicast
// answer to port 5353 reaches one of the sockets sharing it, not Avahi).
func TestAvahiOnTheSameHostSeesUs(t *testing.T) {
	a := testhost.NewNetwork(t, 1).Hosts[0]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	av := avahi.Start(t, a)
	advertiseIn(t, a, mdns.Service{Instance: "same host", Service: "_understudy._tcp", Port: 7000, Host: "ours-host.local.",
		TXT: map[string]string{"site": "north"}})
	fields := resolveWithAvahi(t, ctx, av, `same\032host`)
	checkFields(t, fields, []string{"=", a.Iface, "IPv4", `same\032host`, "_understudy._tcp", "local", "ours-host.local", a.Addr.String(), "7000"})
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

// Our advertisement and Avahi share port 5353 on one host; Browse, from that
// host and from another, finds both services.
func TestBrowseFindsOursBesideAvahi(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	av := avahi.Start(t, a)
	pub := a.Start(t, av.Command(ctx, "avahi-publish-service", "-s", "theirs", "_understudy._tcp", "7902", "site=north"))
	if err := pub.WaitOutput(ctx, "Established under name 'theirs'"); err != nil {
		t.Fatal(err)
	}
	advertiseIn(t, a, mdns.Service{Instance: "ours", Service: "_understudy._tcp", Port: 7901, TXT: map[string]string{"site": "north"}})

	for _, h := range []*testhost.Host{a, b} {
		var entries []mdns.Entry
		err := h.Do(func() error {
			for len(entries) < 2 && ctx.Err() == nil {
				var err error
				if entries, err = mdns.Browse(ctx, "_understudy._tcp", time.Second, nil, testLogger(t)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			t.Fatalf("browse from %s: %+v, want ours and theirs", h.Name, entries)
		}
		ours, theirs := entries[0], entries[1]
		if ours.Instance != "ours" || ours.Host != mdns.HostLabel(hostname)+".local." || !ours.Addr.Equal(a.Addr) || ours.Port != 7901 {
			t.Errorf("browse from %s: ours %+v", h.Name, ours)
		}
		if theirs.Instance != "theirs" || !theirs.Addr.Equal(a.Addr) || theirs.Port != 7902 || !strings.HasSuffix(theirs.Host, ".local.") {
			t.Errorf("browse from %s: theirs %+v", h.Name, theirs)
		}
	}
}

// The goodbye on Close makes Avahi drop the service at once, not after the
// records' TTL.
func TestAvahiDropsOurServiceOnGoodbye(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), avahiTimeout)
	defer cancel()
	av := avahi.Start(t, b)
	browse := b.Start(t, av.Command(ctx, "avahi-browse", "-p", "_understudy._tcp"))
	adv := advertiseIn(t, a, mdns.Service{Instance: "leaving", Service: "_understudy._tcp", Port: 7000, Host: "a-host.local."})
	line := ";" + b.Iface + ";IPv4;leaving;_understudy._tcp;local"
	if err := browse.WaitOutput(ctx, "+"+line); err != nil {
		t.Fatal(err)
	}
	if err := adv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := browse.WaitOutput(ctx, "-"+line); err != nil {
		t.Fatalf("Avahi kept the closed advertisement: %v", err)
	}
}
