package coordinator_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/sim"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

const rebuildSite = `site: t
coordinator: c
heartbeat: {interval: 1s, lost_after: 3s, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: c
  - id: a
    pool: p
  - id: s
    standby: true
    pool: p
  - id: s2
    standby: true
    pool: p
`

const rebuildPolicy = `local us = require "understudy"
us.on("member_lost", function(ev) if not ev.member.standby then us.takeover(ev.member) end end)
local function back(ev) local c = us.covered(ev.member) if c and c.phase == "covering" then us.failback(ev.member) end end
us.on("member_restored", back)
us.on("member_seen", back)
us.on("coverage_rebuilt", function(ev) us.run("c", "noted", { member = ev.member.id, standby = ev.standby }) end)
`

// rebuildHarness starts the site on the virtual clock on a state file that
// was empty (moved aside at start, as a corrupt one is), with every member
// but a up.
func rebuildHarness(t *testing.T) (*sim.Harness, *store.Store) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(rebuildPolicy), 0o644)
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(rebuildSite), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if st.Recovered() == nil {
		t.Fatal("the empty state file was not recovered")
	}
	h, err := sim.New(site, sim.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	for _, id := range []string{"c", "s", "s2"} {
		h.Up(id)
	}
	return h, st
}

func report(h *sim.Harness, standby string, since time.Time, members ...string) {
	r := bus.Covering{Member: standby, Covering: []bus.Covered{}}
	for _, m := range members {
		r.Covering = append(r.Covering, bus.Covered{Member: m, Since: since, Action: "x1", Epoch: 4})
	}
	h.Coordinator.Covering(r)
	h.Engine.RunPending()
}

// coverage is member's coverage (the harness's goroutine owns the loop).
func coverage(t *testing.T, h *sim.Harness, member string) (takeover.Coverage, bool) {
	t.Helper()
	return h.Coordinator.Takeover().Covered(member)
}

func verbs(cmds []bus.Command) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.Verb+" "+c.Args["member"].(string))
	}
	return out
}

// A coordinator whose state was lost learns from its standby's report that
// the standby covers a lost member: it covers it again (no second
// takeover), keeps it over a restart, and fails it back when it returns.
func TestACoverageIsRebuiltFromTheStandbysReport(t *testing.T) {
	h, _ := rebuildHarness(t)
	since := h.Clock.Now().Add(-time.Hour)
	if _, ok := coverage(t, h, "a"); ok {
		t.Fatal("a is covered before any report")
	}
	report(h, "s", since, "a")
	cv, ok := coverage(t, h, "a")
	if !ok || cv.Standby != "s" || cv.Phase != takeover.PhaseCovering || !cv.Since.Equal(since) || cv.Pending != "" {
		t.Fatalf("after s's report: coverage %+v, %v; want a covered by s since %v, phase covering", cv, ok, since)
	}
	rebuilt := records(h, "coverage_rebuilt")
	if len(rebuilt) != 1 || rebuilt[0].Member != "a" || rebuilt[0].Fields["standby"] != "s" || rebuilt[0].Fields["state_recovered"] != true {
		t.Fatalf("coverage_rebuilt records: %+v", rebuilt)
	}
	h.Advance(time.Millisecond)
	if got := h.Ran("c"); len(got) != 1 || got[0].Verb != "noted" || got[0].Args["member"] != "a" || got[0].Args["standby"] != "s" {
		t.Errorf("the policy's coverage_rebuilt handler ran %+v", got)
	}
	// The same report again (a reconnect) changes nothing.
	report(h, "s", since, "a")
	if n := len(records(h, "coverage_rebuilt")); n != 1 {
		t.Errorf("%d coverage_rebuilt records after the same report again", n)
	}

	// a, never heard, is judged lost: it is covered already, so nobody
	// takes it over again.
	h.Advance(10 * time.Second)
	if len(records(h, "member_lost")) == 0 {
		t.Fatal("a was not judged lost")
	}
	if n := len(records(h, "takeover_started")); n != 0 || len(h.Ran("s")) != 0 || len(h.Ran("s2")) != 0 {
		t.Fatalf("a was taken over again: %d takeover_started, s ran %v, s2 ran %v", n, verbs(h.Ran("s")), verbs(h.Ran("s2")))
	}

	// The rebuilt coverage is in the state file, as any other.
	if err := h.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cv, ok := coverage(t, h, "a"); !ok || cv.Standby != "s" || cv.Phase != takeover.PhaseCovering {
		t.Fatalf("after a restart: coverage %+v, %v", cv, ok)
	}

	// a returns: the policy fails it back as usual.
	h.Up("a")
	h.Advance(5 * time.Second)
	if _, ok := coverage(t, h, "a"); ok {
		t.Fatalf("a is still covered after it returned; records: %v", recordTypes(h))
	}
	if got := verbs(h.Ran("s")); !slices.Equal(got, []string{"release a"}) {
		t.Errorf("s ran %q, want one release of a", got)
	}
	if got := verbs(h.Ran("a")); !slices.Equal(got, []string{"resume a"}) {
		t.Errorf("a ran %q, want one resume", got)
	}
	if n := len(records(h, "failback_done")); n != 1 {
		t.Errorf("%d failback_done records", n)
	}
}

// Two standbys that claim one member: the first claim is kept, and an alarm
// stands until the other no longer claims it. Reports the site cannot be
// right about rebuild nothing.
func TestTwoStandbysClaimingOneMemberRaiseAnAlarm(t *testing.T) {
	h, _ := rebuildHarness(t)
	since := h.Clock.Now().Add(-time.Minute)
	report(h, "s", since, "a")
	report(h, "s2", since, "a")
	if cv, ok := coverage(t, h, "a"); !ok || cv.Standby != "s" {
		t.Fatalf("coverage %+v, %v: want a kept by s, the first to claim it", cv, ok)
	}
	alarms := records(h, "alarm")
	if len(alarms) != 1 || alarms[0].Fields["kind"] != coordinator.AlarmCoverageConflict || alarms[0].Member != "a" ||
		alarms[0].Fields["kept"] != "s" || !slices.Equal(alarms[0].Fields["claims"].([]string), []string{"s2"}) {
		t.Fatalf("alarms: %+v", alarms)
	}
	// s2 reports again, the same: one alarm, not counted again.
	report(h, "s2", since, "a")
	if n := len(records(h, "alarm")); n != 1 {
		t.Errorf("%d alarm records after the same report again", n)
	}
	// s2 lets go: the alarm ends.
	report(h, "s2", since)
	if cleared := records(h, "alarm_cleared"); len(cleared) != 1 || cleared[0].Fields["kind"] != coordinator.AlarmCoverageConflict {
		t.Fatalf("alarm_cleared records: %+v", cleared)
	}
	if cv, ok := coverage(t, h, "a"); !ok || cv.Standby != "s" {
		t.Fatalf("coverage %+v, %v after s2 let go", cv, ok)
	}

	// A member that is no standby, a standby reported covered, an unknown
	// member: nothing is rebuilt.
	report(h, "c", since, "s2")
	report(h, "s2", since, "s")
	report(h, "s2", since, "nobody")
	for _, m := range []string{"s", "s2", "nobody"} {
		if cv, ok := coverage(t, h, m); ok {
			t.Errorf("%s covered after a report that cannot be right: %+v", m, cv)
		}
	}
	if n := len(records(h, "coverage_rebuilt")); n != 1 {
		t.Errorf("%d coverage_rebuilt records, want the one of a", n)
	}
}

func recordTypes(h *sim.Harness) []string {
	var out []string
	for _, r := range h.Records() {
		out = append(out, r.Type+" "+r.Member)
	}
	return out
}
