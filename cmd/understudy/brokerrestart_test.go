package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"understudy/fixtures/eventually"
	"understudy/fixtures/mosquitto"
)

// debianMosquitto is a mosquitto.conf as Debian's package ships it where it
// matters here: persistence on (retained messages, the Wills mosquitto
// publishes as it shuts down included, are saved on the way out and back
// after the start), anonymous clients on one listener. Its database is in a
// folder of its own that mosquitto's user may write (started as root,
// mosquitto drops to that user).
func debianMosquitto(t *testing.T) func(host string, port int) string {
	dir, err := os.MkdirTemp("", "understudy-mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return func(host string, port int) string {
		return fmt.Sprintf(`listener %d %s
allow_anonymous true
persistence true
persistence_location %s/
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp true
`, port, host, dir)
	}
}

// `systemctl restart mosquitto` with the site's broker external: mosquitto
// publishes the Last Will of every client as it shuts down (SIGTERM), so the
// coordinator receives main's Will before its own connection drops. That
// is the broker going away, not main: nobody is declared lost, nothing is
// taken over, the switcher keeps its routing; after the restart a retained
// "gone" saved on the way out is history. A real kill -9 of main afterwards
// is still taken over by its Last Will, at once.
func TestARestartOfMosquittoFailsNothingOver(t *testing.T) {
	mq := mosquitto.StartConfigured(t, debianMosquitto(t))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitcher(t, l)
	site := writeSite(t, siteParams{Name: "restart", Bus: "url: " + mq.URL, Router: l.Addr().String()})
	backup := runIn(t, nil, site, "backup")
	main := runIn(t, nil, site, "main")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")
	main.wait(20*time.Second, "msg", "member alive", "member", "backup")
	routing := slices.Clone(sw.Routing())

	setAside := 0 // rounds in which the backup received main's Will and set it aside
	for round := 1; round <= 2; round++ {
		backup.mark()
		main.mark()
		mq.RestartGracefully(t)
		backup.wait(20*time.Second, "msg", "bus connection lost")
		main.wait(20*time.Second, "msg", "bus connection lost")
		reconnected := backup.wait(30*time.Second, "msg", "bus connected")
		main.wait(30*time.Second, "msg", "bus connected")
		// Hear main for a while after the backup's reconnect: lost_after and
		// the startup grace have had every chance to run out meanwhile.
		heardAfter := timeOf(t, reconnected).Add(time.Second)
		var m statusMember
		eventually.True(t, 30*time.Second, "the backup hears main again after the broker's restart", func() (bool, string) {
			m = memberStatus(t, http.DefaultClient, api+"/status", "main")
			return m.LastHeard.After(heardAfter), fmt.Sprintf("last heard %v, %s (%s)", m.LastHeard, m.State, m.Reason)
		})
		if m.State != "alive" {
			t.Fatalf("round %d: main is %s after the broker's restart: %s", round, m.State, m.Reason)
		}
		for _, d := range []*daemon{backup, main} {
			if d.has("msg", "member lost") {
				t.Fatalf("round %d: %s declared a member lost because the broker restarted", round, d.id)
			}
		}
		sw.expectNoRoutes(t)
		if now := sw.Routing(); !slices.Equal(now, routing) {
			t.Fatalf("round %d: the switcher's routing changed with the broker's restart: %v, was %v", round, now[:4], routing[:4])
		}
		// mosquitto sends the Wills before it ends the connections; were
		// the backup's to end first, it would not receive main's.
		if backup.has("msg", "a Last Will arrived as the broker went away", "member", "main") {
			setAside++
		}
		if backup.has("msg", "presence", "member", "main", "state", "gone", "retained", "true") {
			t.Logf("round %d: the backup received main's retained \"gone\" saved by the old mosquitto", round)
		}
	}

	if setAside == 0 {
		t.Fatal("the backup received no Last Will of main as mosquitto shut down, twice: this test no longer shows what it is for")
	}

	// A real crash is still taken over by the Last Will.
	backup.mark()
	killed := time.Now()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	lost := backup.wait(5*time.Second, "msg", "member lost", "member", "main", "reason", "Last Will")
	t.Logf("kill -9 of main after the restarts: lost %v after the kill (by the backup's log time stamp)", timeOf(t, lost).Sub(killed).Round(time.Millisecond))
}
