package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/fixtures/avahi"
	"understudy/fixtures/mosquitto"
	"understudy/fixtures/testhost"
)

// A main on host A and its backup on host B (coordinator: it embeds the
// broker and drives the Videohub on B). They find each other and the broker
// by mDNS; the main is killed, restarted, unplugged and plugged back.
func TestFailoverBetweenHostsOverTheEmbeddedBroker(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	l, err := b.Listen("tcp", net.JoinHostPort(b.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitcher(t, l)
	// The status APIs listen on every address of their host: peers find them
	// by mDNS (an API on loopback is not announced).
	site := writeSite(t, siteParams{Name: "stage", MDNS: true, Bus: "discover: 2s", Router: l.Addr().String(), MainAPI: "0.0.0.0:0", BackupAPI: "0.0.0.0:0"})
	backup := runIn(t, b, site, "backup")
	main := runIn(t, a, site, "main")

	// Discovery by mDNS: the broker, and each other.
	backup.wait(30*time.Second, "msg", "embedded broker started")
	main.wait(30*time.Second, "msg", "found the site's broker by mDNS", "broker", "tcp://"+b.Addr.String()+":1883")
	backup.wait(30*time.Second, "msg", "peer found by mDNS", "peer", "main", "address", a.Addr.String())
	main.wait(30*time.Second, "msg", "peer found by mDNS", "peer", "backup", "address", b.Addr.String())
	backup.wait(30*time.Second, "msg", "member alive", "member", "main", "event", "member_seen")
	backup.wait(30*time.Second, "msg", "driver connected")

	t.Run("kill -9 the main", func(t *testing.T) {
		backup.mark()
		if err := main.p.Kill(); err != nil {
			t.Fatal(err)
		}
		sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
		lost := backup.wait(5*time.Second, "msg", "member lost", "member", "main")
		if !strings.Contains(lost.str("reason"), "Last Will") {
			t.Errorf("lost because %q, want the Last Will", lost.str("reason"))
		}
	})
	top := t // processes belong to the whole test, not to a step
	t.Run("restart it: failback after the delay", func(t *testing.T) {
		backup.mark()
		main = runIn(top, a, site, "main")
		backup.wait(30*time.Second, "event", "member_restored", "member", "main")
		sw.expectRoutes(t, 15*time.Second, [2]int{1, 1}, [2]int{2, 2})
	})
	t.Run("unplug the main: lost after lost_after", func(t *testing.T) {
		backup.mark()
		if err := a.Unplug(); err != nil {
			t.Fatal(err)
		}
		sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
		lost := backup.wait(5*time.Second, "msg", "member lost", "member", "main")
		if !strings.HasPrefix(lost.str("reason"), "no heartbeat for ") {
			t.Errorf("lost because %q, want silence", lost.str("reason"))
		}
	})
	t.Run("plug it back: restored, then failback", func(t *testing.T) {
		backup.mark()
		if err := a.Plug(); err != nil {
			t.Fatal(err)
		}
		backup.wait(30*time.Second, "event", "member_restored", "member", "main")
		sw.expectRoutes(t, 15*time.Second, [2]int{1, 1}, [2]int{2, 2})
	})
}

// A member whose broker never appears on mDNS says what it waits for, from
// the first second: in its log, on GET /healthz (503, in words) and in
// systemd's status line. When the broker's member starts, it finds it and
// /healthz says ok.
func TestAMemberWaitingForItsBrokerSaysSo(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	site := writeSite(t, siteParams{Name: "quiet", MDNS: true, Bus: "discover: 2s", Router: "198.18.0.99:9990", MainAPI: "127.0.0.1:7901"})
	sock, systemdStatus := notifySocket(t)
	cmd := a.Command(context.Background(), binary, "run", "-c", site, "--member", "main", "--log-format", "json")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	main := &daemon{t: t, id: "main", p: a.Start(t, cmd)}
	client := &http.Client{Transport: &http.Transport{DialContext: a.Dial}}
	healthz := "http://127.0.0.1:7901/healthz"

	waiting := "waiting for the site's broker: looking for _mqtt._tcp of site quiet by mDNS (embedded on member backup); not found for "
	main.wait(10*time.Second, "level", "WARN", "msg", waiting)
	waitHealthz(t, client, healthz, http.StatusServiceUnavailable, waiting)
	systemdStatus(waiting)

	runIn(t, b, site, "backup")
	main.wait(30*time.Second, "msg", "found the site's broker by mDNS")
	waitHealthz(t, client, healthz, http.StatusOK, "ok")
	systemdStatus("running; bus connected to tcp://" + b.Addr.String())
}

// Two instances on one machine, the broker embedded in the backup, found by
// mDNS: the main starts after the backup's announcements are over, and is
// killed and restarted, so only answers to its own queries can tell it where
// the broker is. The machine's route for 224.0.0.0/4 points at lo: queries
// that followed it left by lo, where no responder answers, and a restarted
// main waited for the broker for ever.
func TestTwoInstancesOnOneMachineFindTheBroker(t *testing.T) {
	testhost.RequireRoot(t)
	h := testhost.NewNetwork(t, 1).Hosts[0]
	if out, err := h.Command(t.Context(), "ip", "route", "replace", "224.0.0.0/4", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	site := writeSite(t, siteParams{Name: "hall", MDNS: true, Bus: `listen: ":21883"`, Router: "198.18.0.99:9990", MainAPI: "127.0.0.1:7901", BackupAPI: "127.0.0.1:7902"})
	backup := runIn(t, h, site, "backup")
	backup.wait(30*time.Second, "msg", "embedded broker started")
	backup.wait(30*time.Second, "msg", "mdns: announced") // its announcements are over: main must ask
	broker := "tcp://" + h.Addr.String() + ":21883"
	main := runIn(t, h, site, "main")
	main.wait(30*time.Second, "msg", "found the site's broker by mDNS", "broker", broker)
	backup.wait(30*time.Second, "msg", "member alive", "member", "main")

	backup.mark()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	backup.wait(10*time.Second, "msg", "member lost", "member", "main")
	main = runIn(t, h, site, "main")
	main.wait(30*time.Second, "msg", "found the site's broker by mDNS", "broker", broker)
	backup.wait(30*time.Second, "event", "member_restored", "member", "main")
}

// The same failover with Debian's mosquitto on a third host as the broker.
// When the broker's host goes away, both instances notice within seconds and
// nobody is declared lost; when it returns, nothing fails over.
func TestFailoverWithMosquittoAsTheBroker(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 3)
	a, b, c := nw.Hosts[0], nw.Hosts[1], nw.Hosts[2]
	mq := mosquitto.StartOn(t, c)
	l, err := b.Listen("tcp", net.JoinHostPort(b.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitcher(t, l)
	site := writeSite(t, siteParams{Name: "studio", Bus: "url: " + mq.URL, Router: l.Addr().String(), BackupAPI: "127.0.0.1:7901"})
	backup := runIn(t, b, site, "backup")
	main := runIn(t, a, site, "main")
	backup.wait(30*time.Second, "msg", "member alive", "member", "main")
	backup.wait(30*time.Second, "msg", "driver connected")

	backup.mark()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	backup.wait(5*time.Second, "msg", "member lost", "member", "main", "reason", "Last Will")
	main = runIn(t, a, site, "main")
	backup.wait(30*time.Second, "event", "member_restored", "member", "main")
	sw.expectRoutes(t, 15*time.Second, [2]int{1, 1}, [2]int{2, 2})

	// The broker's host goes away without a word.
	backup.mark()
	main.mark()
	if err := c.Unplug(); err != nil {
		t.Fatal(err)
	}
	main.wait(15*time.Second, "msg", "bus connection lost")
	backup.wait(15*time.Second, "msg", "bus connection lost")
	if err := c.Plug(); err != nil {
		t.Fatal(err)
	}
	main.wait(30*time.Second, "msg", "bus connected")
	reconnected := backup.wait(30*time.Second, "msg", "bus connected")
	// Wait until the backup has heard the main for a while after the outage.
	client := &http.Client{Transport: &http.Transport{DialContext: b.Dial}}
	heardAfter := timeOf(t, reconnected).Add(time.Second)
	var m statusMember
	eventually.True(t, 30*time.Second, "the backup hears the main again after the broker came back", func() (bool, string) {
		m = memberStatus(t, client, "http://127.0.0.1:7901/status", "main")
		return m.LastHeard.After(heardAfter), fmt.Sprintf("last heard %v", m.LastHeard)
	})
	if m.State != "alive" {
		t.Fatalf("main is %s after the broker outage: %s", m.State, m.Reason)
	}
	if backup.has("msg", "member lost") {
		t.Fatal("a member was declared lost because the broker went away")
	}
	sw.expectNoRoutes(t)
}

type statusMember struct {
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Reason    string    `json:"reason"`
	LastHeard time.Time `json:"last_heard"`
}

func memberStatus(t *testing.T, client *http.Client, url, id string) statusMember {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var st struct{ Members []statusMember }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, m := range st.Members {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("status has no member %s", id)
	return statusMember{}
}

func timeOf(t *testing.T, e logEntry) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, e.str("time"))
	if err != nil {
		t.Fatalf("log time %q: %v", e.str("time"), err)
	}
	return ts
}

// Avahi sees an instance's advertisement, and an instance uses a broker that
// Avahi announced (a mosquitto host with an Avahi service, as sites have).
func TestAvahiInterop(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	av := avahi.Start(t, b)
	mq := mosquitto.StartOn(t, b)
	_, port, _ := net.SplitHostPort(mq.Addr)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	pub := b.Start(t, av.Command(ctx, "avahi-publish-service", "-s", "studio broker", "_mqtt._tcp", port, "site=studio"))
	if err := pub.WaitOutput(ctx, "Established under name 'studio broker'"); err != nil {
		t.Fatal(err)
	}
	site := writeSite(t, siteParams{Name: "studio", MDNS: true, Bus: "discover: 20s", Router: "198.18.0.99:9990", BackupAPI: "0.0.0.0:0"})
	backup := runIn(t, a, site, "backup")
	backup.wait(30*time.Second, "msg", "found the site's broker by mDNS", "broker", "tcp://"+b.Addr.String()+":"+port)
	backup.wait(10*time.Second, "msg", "bus connected")
	if backup.has("msg", "embedded broker started") {
		t.Fatal("embedded a broker although Avahi announced one")
	}

	for attempt := 1; ; attempt++ {
		out, err := av.Command(ctx, "avahi-browse", "-rtp", "_understudy._tcp").CombinedOutput()
		if err != nil {
			t.Fatalf("avahi-browse: %v\n%s", err, out)
		}
		if line, ok := avahi.Resolved(string(out), "studio-backup"); ok {
			// The SRV target is the host's name in .local.
			if !strings.Contains(line, ";"+a.Name+".local;"+a.Addr.String()+";") || !strings.Contains(line, `"member=backup"`) || !strings.Contains(line, `"site=studio"`) {
				t.Fatalf("avahi-browse resolved %s", line)
			}
			break
		}
		if attempt == 10 || ctx.Err() != nil {
			t.Fatalf("avahi-browse did not resolve the instance after %d attempts:\n%s", attempt, out)
		}
	}
}

// A member whose machine has no network configured yet when it starts
// (booting, no DHCP lease yet) has nothing to ask mDNS on: it stays up,
// says it is waiting in its log and on /healthz, and finds the broker once
// the address is there.
func TestAMemberWithoutANetworkYetKeepsLookingForItsBroker(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	site := writeSite(t, siteParams{Name: "unplugged", MDNS: true, Bus: "discover: 2s", Router: "198.18.0.99:9990", MainAPI: "127.0.0.1:7901"})
	// No IPv4 address on its interface (as on a machine whose DHCP lease
	// has not come yet): mDNS has nothing to ask on.
	if out, err := a.Command(t.Context(), "ip", "-4", "addr", "flush", "dev", a.Iface).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	main := runIn(t, a, site, "main")
	client := &http.Client{Transport: &http.Transport{DialContext: a.Dial}}
	healthz := "http://127.0.0.1:7901/healthz"
	waiting := "waiting for the site's broker: looking for _mqtt._tcp of site unplugged by mDNS (embedded on member backup); not found for "
	main.wait(20*time.Second, "level", "WARN", "msg", waiting)
	waitHealthz(t, client, healthz, http.StatusServiceUnavailable, waiting)

	runIn(t, b, site, "backup")
	if out, err := a.Command(t.Context(), "ip", "addr", "add", a.Addr.String()+"/24", "dev", a.Iface).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	main.wait(60*time.Second, "msg", "found the site's broker by mDNS")
	waitHealthz(t, client, healthz, http.StatusOK, "ok")
}
