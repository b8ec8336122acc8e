//go:build unix

package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/eventually"
	"understudy/fixtures/mosquitto"
	"understudy/fixtures/testhost"
)

// The elected coordinator's host is cut off from the other two candidates
// (a switch port between them fails) while it still reaches the broker,
// the members and the switcher: a minority of one. It must stop acting —
// it still hears the members and would take main over if it believed it
// led — and the majority elects another candidate, which alone routes when
// main is then lost: the switcher's own record names the connection of
// every route. Each candidate runs on a host of its own; the broker and
// the switcher on a fourth; main and backup on a fifth.
func TestALeaderCutOffFromTheOtherCandidatesStopsActing(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 5)
	hosts := map[string]*testhost.Host{"c1": nw.Hosts[0], "c2": nw.Hosts[1], "w": nw.Hosts[2]}
	devices, machines := nw.Hosts[3], nw.Hosts[4]
	mq := mosquitto.StartOn(t, devices)
	l, err := devices.Listen("tcp", net.JoinHostPort(devices.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitcher(t, l)
	// The template's raft addresses are on loopback: each candidate's goes
	// on its own host.
	text := fmt.Sprintf(electedSiteTemplate, "elect-cut", mq.URL, 7951, 7952, 7953, l.Addr().String())
	for i, id := range []string{"c1", "c2", "w"} {
		text = strings.Replace(text, fmt.Sprintf("raft: 127.0.0.1:%d", 7951+i), "raft: "+net.JoinHostPort(hosts[id].Addr.String(), "7950"), 1)
	}
	path := writeSiteFiles(t, text)
	d := map[string]*daemon{}
	for _, id := range []string{"c1", "c2", "w"} {
		d[id] = runIn(t, hosts[id], path, id)
	}
	for _, id := range []string{"main", "backup"} {
		d[id] = runIn(t, machines, path, id)
	}

	var leader *daemon
	eventually.True(t, 40*time.Second, "a candidate coordinates", func() (bool, string) {
		for _, id := range []string{"c1", "c2"} {
			if d[id].has("msg", "elected: coordinating") {
				leader = d[id]
				return true, ""
			}
		}
		return false, "none did yet"
	})
	other := d[map[string]string{"c1": "c2", "c2": "c1"}[leader.id]]
	leader.wait(20*time.Second, "msg", "member alive", "member", "main")
	leader.wait(20*time.Second, "msg", "driver connected")

	// Cut the leader's host off from the other candidates' hosts, both ways.
	leader.mark()
	other.mark()
	for _, id := range []string{other.id, "w"} {
		blackhole(t, hosts[leader.id], hosts[id])
		blackhole(t, hosts[id], hosts[leader.id])
	}
	leader.wait(20*time.Second, "msg", "the coordinator stopped here: its drivers are closed")
	other.wait(30*time.Second, "msg", "elected: coordinating")
	if leader.has("msg", "elected: coordinating") {
		t.Fatal("the cut-off leader coordinated again")
	}
	other.wait(20*time.Second, "msg", "driver connected")

	// main lost: only the new leader routes.
	if err := d["main"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	want := map[[2]int]bool{{1, 3}: true, {2, 4}: true}
	deadline := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case r := <-sw.routes:
			host, _, _ := net.SplitHostPort(r.Remote)
			if host != hosts[other.id].Addr.String() {
				t.Fatalf("route output %d ← input %d from %s: not from the new leader %s (%s)", r.Output, r.Input, r.Remote, other.id, hosts[other.id].Addr)
			}
			delete(want, [2]int{r.Output, r.Input})
		case <-deadline:
			t.Fatalf("routes %v not applied within 30s", want)
		}
	}
	other.wait(20*time.Second, "msg", "takeover_done", "member", "main")
	if leader.has("msg", "takeover_started") {
		t.Fatal("the cut-off leader started a takeover")
	}
	sw.expectNoRoutes(t)
}

// blackhole makes host from drop everything it sends to host to, for the
// rest of the test (the route goes with the namespace).
func blackhole(t *testing.T, from, to *testhost.Host) {
	t.Helper()
	ip, err := testhost.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, ip, "-n", from.Name, "route", "add", "blackhole", to.Addr.String()+"/32").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s route add blackhole %s: %v: %s", from.Name, to.Addr, err, out)
	}
}
