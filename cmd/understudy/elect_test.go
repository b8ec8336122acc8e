//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"understudy/fixtures/eventually"
	"understudy/fixtures/mosquitto"
	"understudy/runtime/instance"
)

// electedSiteTemplate: the coordinator is elected among c1, c2 and the
// witness w; main's outputs go to backup when main is lost. %s: site name,
// bus URL, the three raft ports, the switcher's address.
const electedSiteTemplate = `site: %s
coordinator: [c1, c2, w]
mdns: false
bus: {url: "%s"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
policy:
  file: policy.lua
  settings: {failback_delay: 1s}
members:
  - id: c1
    api: 127.0.0.1:0
    roles: [control]
    raft: 127.0.0.1:%d
  - id: c2
    api: 127.0.0.1:0
    roles: [control]
    raft: 127.0.0.1:%d
  - id: w
    api: 127.0.0.1:0
    witness: true
    raft: 127.0.0.1:%d
  - id: main
    api: 127.0.0.1:0
    roles: [manager]
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    api: 127.0.0.1:0
    roles: [manager]
    standby: true
    duties: {switcher: router, inputs: [3, 4]}
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

// electedSite is a site whose coordinator is elected, on loopback, with
// Debian's mosquitto as its broker and a Videohub simulator.
type electedSite struct {
	t    *testing.T
	path string
	sw   *switcher
	d    map[string]*daemon
	api  map[string]string // each daemon's API address
}

func newElectedSite(t *testing.T, name string) *electedSite {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	es := writeElectedSite(t, name, l.Addr().String())
	es.sw = startSwitcher(t, l)
	return es
}

// writeElectedSite writes the site, its policy and its key, with the
// switcher at router (not started).
func writeElectedSite(t *testing.T, name, router string) *electedSite {
	t.Helper()
	mq := mosquitto.Start(t)
	es := &electedSite{t: t, d: map[string]*daemon{}, api: map[string]string{}}
	es.path = writeSiteFiles(t, fmt.Sprintf(electedSiteTemplate, name, mq.URL, freeLoopbackPort(t), freeLoopbackPort(t), freeLoopbackPort(t), router))
	return es
}

func (es *electedSite) start(ids ...string) {
	for _, id := range ids {
		es.d[id] = runIn(es.t, nil, es.path, id)
	}
	for _, id := range ids {
		es.api[id] = apiAddress(es.t, es.d[id])
	}
}

// leader waits until one of the candidates coordinates and returns it.
func (es *electedSite) leader(timeout time.Duration, among ...string) *daemon {
	es.t.Helper()
	var found *daemon
	eventually.True(es.t, timeout, "a candidate coordinates", func() (bool, string) {
		for _, id := range among {
			if d := es.d[id]; d != nil && d.has("msg", "elected: coordinating") {
				found = d
				return true, ""
			}
		}
		return false, "none of the candidates logged that it coordinates"
	})
	return found
}

// get is the body of a GET of path on a daemon's API.
func (es *electedSite) get(d *daemon, path string) string {
	es.t.Helper()
	resp, err := http.Get(es.api[d.id] + path)
	if err != nil {
		es.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}

// status is a daemon's /status.
func (es *electedSite) status(d *daemon) instance.Status {
	es.t.Helper()
	resp, err := http.Get(es.api[d.id] + "/status")
	if err != nil {
		es.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st instance.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		es.t.Fatal(err)
	}
	return st
}

// kill -9 of the elected coordinator's host: another candidate is elected,
// waits out the old lease and coordinates, and a main lost after that is
// taken over by its standby with one route per output — where a site with
// one named coordinator would have waited for that machine to come back.
func TestAnElectedCoordinatorKilledIsReplaced(t *testing.T) {
	es := newElectedSite(t, "elect-kill")
	es.start("c1", "c2", "w", "main", "backup")
	first := es.leader(40*time.Second, "c1", "c2")
	if first.id != "c1" {
		t.Logf("the first leader is %s (the lead goes to the first candidate when it can)", first.id)
	}
	first.wait(20*time.Second, "msg", "member alive", "member", "main")
	first.wait(20*time.Second, "msg", "driver connected")
	st := es.status(first)
	if st.Election == nil || st.Election.Leader != first.id || !st.Election.Coordinates {
		t.Fatalf("the leader's status says %+v", st.Election)
	}
	metrics := es.get(first, "/metrics")
	for _, want := range []string{"understudy_election_coordinating 1", "understudy_election_term " + fmt.Sprint(st.Election.Term)} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("the leader's /metrics has no %q", want)
		}
	}
	for _, h := range []string{"understudy_election_commit_seconds", "understudy_election_log_write_seconds"} {
		if m := regexp.MustCompile(h + `_count (\d+)`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
			t.Errorf("the leader's /metrics counts nothing in %s: %v", h, m)
		}
	}

	other := map[string]string{"c1": "c2", "c2": "c1"}[first.id]
	es.d[other].mark()
	es.d["w"].mark()
	killed := time.Now()
	if err := first.p.Kill(); err != nil {
		t.Fatal(err)
	}
	next := es.d[other]
	elected := next.wait(30*time.Second, "msg", "elected: coordinating")
	t.Logf("coordinator killed → %s coordinates after %v (term %v)", other, timeOf(t, elected).Sub(killed).Round(time.Millisecond), elected["term"])
	if es.d["w"].has("msg", "elected: coordinating") {
		t.Fatal("the witness coordinated")
	}
	next.wait(20*time.Second, "msg", "driver connected")
	// Every instance hears who coordinates now, in which term.
	eventually.True(t, 20*time.Second, "backup knows the new coordinator", func() (bool, string) {
		ci := es.status(es.d["backup"]).CoordinatorInfo
		return ci != nil && ci.Member == other && ci.Term > 0, fmt.Sprintf("%+v", ci)
	})

	// main lost under the new coordinator: taken over, routed once.
	lost := time.Now()
	if err := es.d["main"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	es.sw.expectRoutes(t, 20*time.Second, [2]int{1, 3}, [2]int{2, 4})
	t.Logf("main killed → routed by the new coordinator after %v", time.Since(lost).Round(time.Millisecond))
	es.d["backup"].wait(20*time.Second, "msg", "command received", "verb", "takeover")
	es.sw.expectNoRoutes(t)
}

// A leader stopped (SIGSTOP) for longer than its lease, after it took
// main's outputs to the backup; another candidate is elected and, when
// main returns, routes its outputs back; then the old leader is continued.
// Its driver wakes to the switcher's announcements of routes it did not
// make, and it would put its own back (the re-assert of a duty output) —
// but it asks the lease first, which has lapsed, and the leader stands
// down. The switcher's own record shows no route of the old leader's after
// the new leader's first.
func TestAStoppedLeaderWakesWithoutRouting(t *testing.T) {
	es := newElectedSite(t, "elect-stop")
	es.start("c1", "c2", "w", "main", "backup")
	first := es.leader(40*time.Second, "c1", "c2")
	first.wait(20*time.Second, "msg", "member alive", "member", "main")
	first.wait(20*time.Second, "msg", "driver connected")
	other := es.d[map[string]string{"c1": "c2", "c2": "c1"}[first.id]]

	if err := es.d["main"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	oldLeader := es.expectRoutesFrom(t, "", [2]int{1, 3}, [2]int{2, 4})
	if err := first.p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			first.p.Signal(syscall.SIGCONT)
		}
	})
	other.wait(30*time.Second, "msg", "elected: coordinating")
	// main returns: the new leader routes its outputs back to it.
	es.start("main")
	newLeader := es.expectRoutesFrom(t, "", [2]int{1, 1}, [2]int{2, 2})
	if newLeader == oldLeader {
		t.Fatalf("the new leader's routes came over the old leader's connection %s", oldLeader)
	}

	// The old leader wakes, its desired routing still output 1 ← input 3.
	first.mark()
	if err := first.p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	first.wait(20*time.Second, "msg", "the coordinator stopped here: its drivers are closed")
	select {
	case r := <-es.sw.routes:
		t.Fatalf("route output %d ← input %d from %s after the new leader (%s) routed: two leaders routed", r.Output, r.Input, r.Remote, newLeader)
	default:
	}
	if got := es.sw.Routing()[:2]; got[0] != 1 || got[1] != 2 {
		t.Fatalf("outputs 1 and 2 show inputs %v after the old leader woke, want 1 and 2 (main's)", got)
	}
}

// expectRoutesFrom waits for the routes given (output, input), in any
// order, all over one connection: from, or any one when from is "". It
// returns that connection's address.
func (es *electedSite) expectRoutesFrom(t *testing.T, from string, pairs ...[2]int) string {
	t.Helper()
	want := map[[2]int]bool{}
	for _, p := range pairs {
		want[p] = true
	}
	for len(want) > 0 {
		select {
		case r := <-es.sw.routes:
			if from == "" {
				from = r.Remote
			}
			if p := [2]int{r.Output, r.Input}; !want[p] || r.Remote != from {
				t.Fatalf("route output %d ← input %d from %s, waiting for %v from %s", r.Output, r.Input, r.Remote, want, from)
			}
			delete(want, [2]int{r.Output, r.Input})
		case <-time.After(30 * time.Second):
			t.Fatalf("routes %v not applied within 30s; switcher routing %v", want, es.sw.Routing()[:4])
		}
	}
	return from
}

// twoMachineSiteTemplate: main and backup are both candidates, with the
// witness w as the third: whichever machine dies, the other is elected
// (with the witness's vote) and covers. %s: site name, bus URL, three raft
// ports, the switcher.
const twoMachineSiteTemplate = `site: %s
coordinator: [main, backup, w]
mdns: false
bus: {url: "%s"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
policy:
  file: policy.lua
  settings: {failback_delay: 1s}
members:
  - id: main
    api: 127.0.0.1:0
    roles: [manager]
    raft: 127.0.0.1:%d
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    api: 127.0.0.1:0
    roles: [manager]
    standby: true
    raft: 127.0.0.1:%d
    duties: {switcher: router, inputs: [3, 4]}
  - id: w
    api: 127.0.0.1:0
    witness: true
    raft: 127.0.0.1:%d
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

// A two-machine site with a witness: main leads (the first candidate).
// The witness is lost: nothing changes. The witness is back; main's host
// is killed: backup is elected with the witness's vote and takes main over
// — the loss of the coordinator's own machine is covered, which a site with
// one named coordinator cannot do.
func TestATwoMachineSiteWithAWitnessCoversTheLeadersHost(t *testing.T) {
	mq := mosquitto.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	es := &electedSite{t: t, d: map[string]*daemon{}, api: map[string]string{}, sw: startSwitcher(t, l)}
	es.path = writeSiteFiles(t, fmt.Sprintf(twoMachineSiteTemplate, "two-machines", mq.URL, freeLoopbackPort(t), freeLoopbackPort(t), freeLoopbackPort(t), l.Addr().String()))
	es.start("main", "backup", "w")
	leader := es.leader(40*time.Second, "main", "backup")
	if leader.id != "main" {
		t.Fatalf("%s leads the new group; the lead goes to the first candidate when it is up", leader.id)
	}
	leader.wait(20*time.Second, "msg", "member alive", "member", "backup")
	leader.wait(20*time.Second, "msg", "driver connected")

	// The witness lost: main still leads (two of three), nothing routed.
	leader.mark()
	if err := es.d["w"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	leader.wait(20*time.Second, "msg", "member lost", "member", "w")
	if st := es.status(leader); st.Election == nil || !st.Election.Coordinates || st.Election.Leader != "main" {
		t.Fatalf("main's election status after the witness was lost: %+v", st.Election)
	}
	if leader.has("msg", "no longer the coordinator") {
		t.Fatal("main stopped coordinating when the witness was lost")
	}
	es.sw.expectNoRoutes(t)
	es.start("w")
	leader.wait(20*time.Second, "msg", "member alive", "member", "w")

	backup := es.d["backup"]
	backup.mark()
	killed := time.Now()
	if err := leader.p.Kill(); err != nil {
		t.Fatal(err)
	}
	es.expectRoutesFrom(t, "", [2]int{1, 3}, [2]int{2, 4})
	t.Logf("the leader's host killed → its outputs routed to the backup after %v", time.Since(killed).Round(time.Millisecond))
	backup.wait(20*time.Second, "msg", "elected: coordinating")
	backup.wait(20*time.Second, "msg", "takeover_done", "member", "main")
	es.sw.expectNoRoutes(t)

	// main back: the operator hands the lead to it (the default: the first
	// candidate alive that can coordinate, never the witness).
	es.start("main")
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	var out, errs bytes.Buffer
	if code := run([]string{"leader", "transfer", "w", "-c", es.path, "--member", "backup"}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "is the witness") {
		t.Fatalf("leader transfer w: exit %d\n%s%s", code, out.String(), errs.String())
	}
	out.Reset()
	errs.Reset()
	if code := run([]string{"leader", "transfer", "-c", es.path, "--member", "backup"}, &out, &errs); code != 0 {
		t.Fatalf("leader transfer: exit %d\n%s%s", code, out.String(), errs.String())
	}
	backup.wait(20*time.Second, "msg", "no longer the coordinator", "reason", "the lead was handed on, as asked")
	es.d["main"].wait(20*time.Second, "msg", "elected: coordinating")
}

// writeSiteFiles writes site.yaml (text), the shipped manager-backup policy
// and a site key to a temporary folder; it returns site.yaml's path.
func writeSiteFiles(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	policy, err := os.ReadFile("../../scripts/manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), policy, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", path}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
	}
	return path
}

// The upgrade of a running site from one named coordinator to candidates:
// c1 coordinates alone and has main covered by backup; every instance is
// stopped, site.yaml lists c1, c2 and w, and every instance starts again.
// The group's first leader takes over c1's state: main stays covered
// (nobody takes it over again), and when main returns the elected
// coordinator routes it back — the coverage came through. Members accept
// the new coordinator's commands (its epoch continues the old one's).
func TestAnUpgradeToAnElectedCoordinatorKeepsTheState(t *testing.T) {
	mq := mosquitto.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	es := &electedSite{t: t, d: map[string]*daemon{}, api: map[string]string{}, sw: startSwitcher(t, l)}
	elected := fmt.Sprintf(electedSiteTemplate, "upgrade", mq.URL, freeLoopbackPort(t), freeLoopbackPort(t), freeLoopbackPort(t), l.Addr().String())
	single := strings.Replace(elected, "coordinator: [c1, c2, w]", "coordinator: c1", 1)
	single = regexp.MustCompile(`(?m)^    (raft|witness): .*\n`).ReplaceAllString(single, "")
	es.path = writeSiteFiles(t, single)
	es.start("c1", "main", "backup")
	c1 := es.d["c1"]
	c1.wait(20*time.Second, "msg", "coordinating")
	c1.wait(20*time.Second, "msg", "member alive", "member", "main")
	c1.wait(20*time.Second, "msg", "driver connected")
	if err := es.d["main"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	es.expectRoutesFrom(t, "", [2]int{1, 3}, [2]int{2, 4})
	c1.wait(20*time.Second, "msg", "takeover_done", "member", "main")
	oldEpoch := c1.wait(5*time.Second, "msg", "coordinating")["epoch"]
	for _, id := range []string{"c1", "backup"} {
		stopDaemon(t, es.d[id])
	}

	if err := os.WriteFile(es.path, []byte(elected), 0o644); err != nil {
		t.Fatal(err)
	}
	es.start("c1", "c2", "w", "backup")
	leader := es.leader(40*time.Second, "c1", "c2")
	if leader.id != "c1" {
		t.Fatalf("%s leads; the lead goes to the first candidate, which holds the state", leader.id)
	}
	leader.wait(20*time.Second, "msg", "the state of the site's coordinator before the election is the group's first state")
	epoch := leader.wait(20*time.Second, "msg", "coordinating")["epoch"]
	if e, o := epoch.(float64), oldEpoch.(float64); e <= o {
		t.Fatalf("the elected coordinator's epoch %v does not continue the old one's %v", e, o)
	}
	es.coverageKept(t, leader, "the elected coordinator took main over again: the coverage did not come through")
}

// A candidate whose raft state is lost (its disk replaced) starts again as
// a new raft server: it takes no part in the group, refuses what is meant
// for the server it was, and says on its status what to run; once an
// operator admits it (from any instance) it replaces the server it was,
// votes, and can lead: with the leader killed, it is elected.
func TestACandidateThatLostItsRaftStateIsAdmittedAsANewServer(t *testing.T) {
	es := newElectedSite(t, "elect-rejoin")
	es.start("c1", "c2", "w", "main", "backup")
	first := es.leader(40*time.Second, "c1", "c2")
	lostID := map[string]string{"c1": "c2", "c2": "c1"}[first.id]
	eventually.True(t, 20*time.Second, lostID+" in the group and following", func() (bool, string) {
		el := es.status(es.d[lostID]).Election
		return el != nil && el.Leader == first.id && len(el.Servers) == 3, fmt.Sprintf("%+v", el)
	})
	before := es.status(es.d[lostID]).Election.Server

	if err := es.d[lostID].p.Kill(); err != nil {
		t.Fatal(err)
	}
	<-es.d[lostID].p.Exited()
	stateDir := filepath.Join(filepath.Dir(es.path), ".understudy")
	for _, p := range []string{"elect-rejoin-" + lostID + ".raft", "elect-rejoin-" + lostID + "-coordinator.db"} {
		if err := os.RemoveAll(filepath.Join(stateDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	es.start(lostID)
	lost := es.d[lostID]
	var waiting string
	eventually.True(t, 30*time.Second, lostID+" waiting to be admitted", func() (bool, string) {
		el := es.status(lost).Election
		if el == nil {
			return false, "no election status"
		}
		waiting = el.Waiting
		return strings.Contains(waiting, "understudy candidates admit "+lostID), fmt.Sprintf("%+v", el)
	})
	after := es.status(lost).Election.Server
	if after == before {
		t.Fatalf("%s came back with its old raft server id %s", lostID, before)
	}
	t.Logf("%s, its state lost: %s", lostID, waiting)
	lost.wait(20*time.Second, "msg", "meant for another raft server", "meant_for", before)
	// The leader says so too, as a warning: it coordinates all the same.
	eventually.True(t, 20*time.Second, "the leader's status warning of the candidate waiting", func() (bool, string) {
		el := es.status(first).Election
		return strings.Contains(el.Warning, "understudy candidates admit "+lostID) && el.Problem == "", fmt.Sprintf("%+v", el)
	})
	if code := httpStatus(t, es.api[first.id]+"/healthz"); code != 200 {
		t.Errorf("the leader's /healthz is %d while a candidate waits to be admitted; want 200", code)
	}
	if first.has("msg", "coordinator lost") {
		t.Fatal("the leader lost the lead meanwhile")
	}

	var out, errs bytes.Buffer
	if code := run([]string{"candidates", "admit", lostID, "-c", es.path, "--member", "backup"}, &out, &errs); code != 0 {
		t.Fatalf("candidates admit: %d %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "admitted as "+after) || !strings.Contains(out.String(), "in place of "+before) {
		t.Errorf("candidates admit said: %s", out.String())
	}
	eventually.True(t, 20*time.Second, lostID+" following the leader", func() (bool, string) {
		el := es.status(lost).Election
		return el.Waiting == "" && el.Leader == first.id && slices.Contains(el.Servers, after) && !slices.Contains(el.Servers, before), fmt.Sprintf("%+v", el)
	})
	// What the leader refuses, and why.
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"candidates", "admit", lostID}, "is in the group already"},
		{[]string{"candidates", "admit", "main"}, "main is not a candidate"},
		{[]string{"candidates", "remove", first.id}, "hand the lead on first"},
		{[]string{"candidates", "admit"}, "usage"},
	} {
		out.Reset()
		errs.Reset()
		code := run(append(c.args, "-c", es.path, "--member", "backup"), &out, &errs)
		if code == 0 || !strings.Contains(errs.String(), c.says) {
			t.Errorf("%v: exit %d, %s%s; want a refusal saying %q", c.args, code, out.String(), errs.String(), c.says)
		}
	}

	lost.mark()
	if err := first.p.Kill(); err != nil {
		t.Fatal(err)
	}
	lost.wait(30*time.Second, "msg", "elected: coordinating")
}

// Every candidate killed at once (a power cut) and started again: the
// group comes back with the same servers and the state intact — main,
// covered by backup before, is not taken over again, and fails back when
// it returns.
func TestAllCandidatesRestartedKeepTheGroupAndTheState(t *testing.T) {
	es := newElectedSite(t, "elect-restart")
	es.start("c1", "c2", "w", "main", "backup")
	first := es.leader(40*time.Second, "c1", "c2")
	first.wait(20*time.Second, "msg", "member alive", "member", "main")
	first.wait(20*time.Second, "msg", "driver connected")
	servers := es.status(first).Election.Servers
	if err := es.d["main"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	es.expectRoutesFrom(t, "", [2]int{1, 3}, [2]int{2, 4})
	first.wait(20*time.Second, "msg", "takeover_done", "member", "main")

	for _, id := range []string{"c1", "c2", "w"} {
		if err := es.d[id].p.Kill(); err != nil {
			t.Fatal(err)
		}
		<-es.d[id].p.Exited()
	}
	es.start("c1", "c2", "w")
	leader := es.leader(40*time.Second, "c1", "c2")
	eventually.True(t, 20*time.Second, "the group's servers as before", func() (bool, string) {
		got := es.status(leader).Election.Servers
		return slices.Equal(got, servers), fmt.Sprintf("%v, before %v", got, servers)
	})
	for _, id := range []string{"c1", "c2", "w"} {
		if es.d[id].has("msg", "is a new server") || es.d[id].has("msg", "the coordinator group is formed") {
			t.Errorf("%s made its raft state anew after a restart", id)
		}
	}
	es.coverageKept(t, leader, "main was taken over again after the restart: the coverage was lost")
}

// A candidate whose site.yaml names other candidates (a stale copy) does
// not form a group with the others: every new candidate says why it waits,
// and the group forms once the copy is right.
func TestCandidatesWithDifferentListsFormNoGroup(t *testing.T) {
	es := newElectedSite(t, "elect-stale")
	good, err := os.ReadFile(es.path)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(filepath.Dir(es.path), "stale.yaml")
	if err := os.WriteFile(stale, []byte(strings.Replace(string(good), "coordinator: [c1, c2, w]", "coordinator: [c2, c1, w]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	es.start("c1", "w")
	es.d["c2"] = runIn(t, nil, stale, "c2")
	es.api["c2"] = apiAddress(t, es.d["c2"])
	for _, id := range []string{"c1", "w"} {
		eventually.True(t, 30*time.Second, id+" saying why it waits", func() (bool, string) {
			el := es.status(es.d[id]).Election
			return el != nil && strings.Contains(el.Waiting, "the site.yaml of c2 names other coordinator candidates"), fmt.Sprintf("%+v", el)
		})
	}
	es.d["c1"].wait(20*time.Second, "msg", "does not take part in the coordinator election yet")
	if es.d["c1"].has("msg", "elected: coordinating") || es.d["c2"].has("msg", "elected: coordinating") {
		t.Fatal("a candidate coordinates without a group")
	}
	stopDaemon(t, es.d["c2"])
	es.start("c2")
	es.leader(40*time.Second, "c1", "c2")
}

// httpStatus is the status code of a GET of url.
func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// coverageKept checks that the leader, with main (covered by backup
// before) still away, does not take it over again (why: what that would
// mean), and that main fails back once it is started.
func (es *electedSite) coverageKept(t *testing.T, leader *daemon, why string) {
	t.Helper()
	leader.wait(20*time.Second, "msg", "member lost", "member", "main")
	if leader.has("msg", "takeover_started") {
		t.Fatal(why)
	}
	es.start("main")
	es.expectRoutesFrom(t, "", [2]int{1, 1}, [2]int{2, 2})
	leader.wait(30*time.Second, "msg", "failback_done", "member", "main")
}

// A candidate removed from the group (`candidates remove`) says so, on
// /healthz and in its status, rather than that no coordinator is elected —
// also once restarted with its old raft state — until it is admitted again.
func TestARemovedCandidateSaysItWasRemoved(t *testing.T) {
	es := newElectedSite(t, "elect-removed")
	es.start("c1", "c2", "w", "main", "backup")
	first := es.leader(40*time.Second, "c1", "c2")
	otherID := map[string]string{"c1": "c2", "c2": "c1"}[first.id]
	other := es.d[otherID]
	eventually.True(t, 20*time.Second, otherID+" in the group and following", func() (bool, string) {
		el := es.status(other).Election
		return el != nil && el.Leader == first.id && len(el.Servers) == 3, fmt.Sprintf("%+v", el)
	})
	var out, errs bytes.Buffer
	if code := run([]string{"candidates", "remove", otherID, "-c", es.path, "--member", "backup"}, &out, &errs); code != 0 {
		t.Fatalf("candidates remove: %d %s%s", code, out.String(), errs.String())
	}
	removed := func(why string) {
		t.Helper()
		eventually.True(t, 30*time.Second, otherID+" saying it was removed "+why, func() (bool, string) {
			resp, err := http.Get(es.api[otherID] + "/healthz")
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(b.String(), "was removed") && strings.Contains(b.String(), "understudy candidates admit "+otherID), fmt.Sprintf("%d %s", resp.StatusCode, b.String())
		})
	}
	removed("after the remove")
	if err := other.p.Kill(); err != nil {
		t.Fatal(err)
	}
	<-other.p.Exited()
	es.start(otherID)
	other = es.d[otherID]
	removed("restarted with its raft state")
	if other.has("msg", "elected: coordinating") {
		t.Fatal("the removed candidate coordinated")
	}
}
