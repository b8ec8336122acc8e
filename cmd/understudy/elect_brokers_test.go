//go:build unix

package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/eventually"
)

// brokersSiteTemplate: a two-machine site with a witness whose candidates
// each embed a broker (broker:), and no other broker. %s: site name; then
// for main, backup and w their raft and broker ports; the switcher.
const brokersSiteTemplate = `site: %s
coordinator: [main, backup, w]
mdns: false
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
policy:
  file: policy.lua
  settings: {failback_delay: 1s}
members:
  - id: main
    api: 127.0.0.1:0
    roles: [manager]
    raft: 127.0.0.1:%d
    broker: 127.0.0.1:%d
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    api: 127.0.0.1:0
    roles: [manager]
    standby: true
    raft: 127.0.0.1:%d
    broker: 127.0.0.1:%d
    duties: {switcher: router, inputs: [3, 4]}
  - id: w
    api: 127.0.0.1:0
    witness: true
    raft: 127.0.0.1:%d
    broker: 127.0.0.1:%d
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

// Every candidate embeds a broker and every instance is connected to all of
// them. The witness's host killed (its broker with it): only the witness is
// lost, by its Last Will from the brokers that survive it, and nobody else
// is judged lost because a broker went. main's host killed (the leader's,
// with its broker): backup already hears the whole site over its own and
// the witness's broker, takes main's Will from them at once, is elected and
// routes main's outputs to itself — with no broker outside the candidates.
func TestEveryCandidatesBrokerKeepsTheBusWhenOneHostDies(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	es := &electedSite{t: t, d: map[string]*daemon{}, api: map[string]string{}, sw: startSwitcher(t, l)}
	ports := make([]any, 6)
	for i := range ports {
		ports[i] = freeLoopbackPort(t)
	}
	es.path = writeSiteFiles(t, fmt.Sprintf(brokersSiteTemplate, append(append([]any{"brokers"}, ports...), l.Addr().String())...))
	es.start("main", "backup", "w")
	leader := es.leader(40*time.Second, "main", "backup")
	if leader.id != "main" {
		t.Fatalf("%s leads the new group; the lead goes to the first candidate when it is up", leader.id)
	}
	leader.wait(20*time.Second, "msg", "member alive", "member", "backup")
	leader.wait(20*time.Second, "msg", "driver connected")
	backup := es.d["backup"]
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	if st := es.status(backup); len(st.Bus.Paths) != 3 || !st.Bus.Paths[0].Connected || !st.Bus.Paths[1].Connected || !st.Bus.Paths[2].Connected {
		t.Fatalf("backup's paths to the bus: %+v, want three connected", st.Bus.Paths)
	}
	// Every message comes three times: the copies are set aside as
	// duplicates, not counted as bad payloads.
	es.heartbeatsPass(backup, 10)
	if st := es.status(backup); st.Bus.Duplicates == 0 || len(st.Bus.Dropped) > 0 {
		t.Fatalf("backup set aside %d duplicates and dropped %v; want duplicates and no drops", st.Bus.Duplicates, st.Bus.Dropped)
	}

	// The witness's host goes, with its broker.
	leader.mark()
	backup.mark()
	if err := es.d["w"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*daemon{leader, backup} {
		d.wait(20*time.Second, "msg", "member lost", "member", "w", "reason", "Last Will")
	}
	// Anyone judged lost because a broker went would be once a lost_after
	// (three heartbeats) had passed: wait for twelve more of them.
	for _, d := range []*daemon{leader, backup} {
		es.heartbeatsPass(d, 12)
	}
	for _, d := range []*daemon{leader, backup} {
		for _, id := range []string{"main", "backup"} {
			if d.has("msg", "member lost", "member", id) || d.has("msg", "member suspect", "member", id) {
				t.Fatalf("%s judged %s when the witness's broker went", d.id, id)
			}
		}
	}
	es.sw.expectNoRoutes(t)
	es.start("w")
	leader.wait(20*time.Second, "msg", "member alive", "member", "w")
	backup.wait(20*time.Second, "msg", "member alive", "member", "w")

	// The leader's host goes, with its broker.
	backup.mark()
	killed := time.Now()
	if err := leader.p.Kill(); err != nil {
		t.Fatal(err)
	}
	lost := backup.wait(20*time.Second, "msg", "member lost", "member", "main")
	if lost.str("reason") != "connection dropped (Last Will)" {
		t.Errorf("backup judged main lost by %q; its Will comes from the brokers that survive it", lost.str("reason"))
	}
	es.expectRoutesFrom(t, "", [2]int{1, 3}, [2]int{2, 4})
	t.Logf("the leader's host (with its broker) killed → its outputs routed to the backup after %v", time.Since(killed).Round(time.Millisecond))
	backup.wait(20*time.Second, "msg", "elected: coordinating")
	backup.wait(20*time.Second, "msg", "takeover_done", "member", "main")
	if backup.has("msg", "member lost", "member", "w") {
		t.Fatal("backup judged the witness lost when main's broker went")
	}
	es.sw.expectNoRoutes(t)
}

// heartbeatsPass waits until d has received n more heartbeats of other
// members than now.
func (es *electedSite) heartbeatsPass(d *daemon, n uint64) {
	es.t.Helper()
	base := es.status(d).Bus.Heartbeats
	eventually.True(es.t, 20*time.Second, fmt.Sprintf("%s hears %d more heartbeats", d.id, n), func() (bool, string) {
		got := es.status(d).Bus.Heartbeats
		return got >= base+n, fmt.Sprintf("%d since", got-base)
	})
}

// The leader killed while the backup's takeover hook is still running
// (main lost, its outputs routed, the backup busy taking main's duties
// over): the next leader resumes the pending takeover under its own epoch.
// The backup answers from its record: the hook ran once, and the new
// leader records the takeover done.
func TestALeaderKilledMidTakeoverResumesItOnce(t *testing.T) {
	es := newElectedSite(t, "elect-mid-takeover")
	ran := filepath.Join(t.TempDir(), "takeover-ran")
	release := filepath.Join(t.TempDir(), "release")
	data, err := os.ReadFile(es.path)
	if err != nil {
		t.Fatal(err)
	}
	// The backup's takeover hook notes that it ran, then waits for the
	// test to let it finish (a file), as a real one takes its time.
	const from = "    duties: {switcher: router, inputs: [3, 4]}\n"
	hook := fmt.Sprintf(`    hooks: {takeover: [{exec: [/bin/sh, -c, "echo ran >> %s; while [ ! -e %s ]; do sleep 0.05; done"], timeout: 60s}]}`, ran, release) + "\n"
	if !bytes.Contains(data, []byte(from)) {
		t.Fatalf("site.yaml has no %q", from)
	}
	if err := os.WriteFile(es.path, bytes.Replace(data, []byte(from), []byte(from+hook), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	es.start("c1", "c2", "w", "main", "backup")
	first := es.leader(40*time.Second, "c1", "c2")
	first.wait(20*time.Second, "msg", "member alive", "member", "main")
	first.wait(20*time.Second, "msg", "member alive", "member", "backup")
	first.wait(20*time.Second, "msg", "driver connected")

	if err := es.d["main"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	es.expectRoutesFrom(t, "", [2]int{1, 3}, [2]int{2, 4})
	eventually.True(t, 20*time.Second, "the backup's takeover hook runs", func() (bool, string) {
		b, _ := os.ReadFile(ran)
		return len(b) > 0, "not yet"
	})
	other := map[string]string{"c1": "c2", "c2": "c1"}[first.id]
	next := es.d[other]
	next.mark()
	if err := first.p.Kill(); err != nil {
		t.Fatal(err)
	}
	next.wait(30*time.Second, "msg", "elected: coordinating")
	// The new leader sends the pending takeover again; the backup, still
	// running it, does not start it twice. Then it finishes.
	next.wait(20*time.Second, "msg", "resuming an unanswered action", "do", "takeover")
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	next.wait(30*time.Second, "msg", "takeover_done", "member", "main")
	if b, _ := os.ReadFile(ran); strings.Count(string(b), "ran") != 1 {
		t.Fatalf("the takeover hook ran %d times; once is right", strings.Count(string(b), "ran"))
	}
}
