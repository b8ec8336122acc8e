package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/sim"
)

const copySite = `site: t
coordinator: c
heartbeat: {interval: 1s, lost_after: 3s, startup_grace: 5s}
policy: {file: policy.lua}
copy: {limit_mbit: 80, settle: 10s}
failover: {copy_material: true, failback_delay: 1m}
members:
  - id: c
  - id: rec
    pool: p
    duties: {material: [/srv/rec/a, /srv/rec/b]}
    material_mounts: [/mnt/sb]
  - id: sb
    standby: true
    pool: p
    material_server: 198.18.0.3:7902
    duties: {material: [/srv/sb]}
  - id: old
    hooks:
      copy: [{exec: [/bin/true]}]
`

func newCopySite(t *testing.T, policy string) *sim.Harness {
	t.Helper()
	h, _ := startSite(t, copySite, policy)
	return h
}

// lastRan is the member's last command of verb.
func lastRan(t *testing.T, h *sim.Harness, member, verb string) bus.Command {
	t.Helper()
	ran := h.Ran(member)
	for i := len(ran) - 1; i >= 0; i-- {
		if ran[i].Verb == verb {
			return ran[i]
		}
	}
	t.Fatalf("%s ran no %s command (ran %+v)", member, verb, ran)
	return bus.Command{}
}

func TestCopyMissingGrantsTheSourceAndCopiesToTheMember(t *testing.T) {
	h := newCopySite(t, `local us = require "understudy"
us.on("go", function(ev)
  id = us.copy_missing{member = "rec", from = "sb", since = ev.since}
end)
us.on("mounted", function(ev)
  us.copy_missing{member = "rec", paths = {"/mnt/sb/rec"}, since = ev.since}
end)
us.on("bad", function(ev) us.copy_missing{member = "rec", from = "old", since = ev.since} end)
us.on("unmounted", function(ev) us.copy_missing{member = "rec", paths = {"/etc"}, since = ev.since} end)
us.on("copy_started", function(ev) started = ev.from end)
us.on("copy_progress", function(ev) us.log.info("progress", {done = ev.bytes_done, total = ev.bytes_total}) end)
us.on("copy_done", function(ev) us.run("c", "note", {copied = ev.copied, action = ev.action}) end)
`)
	h.Agent("rec", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookCopy {
			return sim.Reply{Delay: time.Minute, Result: map[string]any{"copied": 7, "bytes": 1024, "summary": "7 copied"}}
		}
		return sim.Reply{}
	})
	since := h.Clock.Now().Add(-2 * time.Hour)
	h.Coordinator.Emit("go", map[string]any{"since": float64(since.Unix())})
	h.Advance(time.Second)

	// The commands name no folders: each instance finds them in its
	// site.yaml (and refuses a command that names any).
	grant := lastRan(t, h, "sb", config.VerbMaterialGrant)
	if grant.Args["member"] != "rec" || len(grant.Args) != 2 {
		t.Fatalf("grant args = %v: want only the member it is for and the token", grant.Args)
	}
	cp := lastRan(t, h, "rec", config.HookCopy)
	token, _ := grant.Args["token"].(string)
	if len(token) < 32 || cp.Args["token"] != token {
		t.Fatalf("copy token %v, grant token %q: want the same, long token", cp.Args["token"], token)
	}
	for _, k := range []string{"roots", "paths", "dest", "url"} {
		if _, ok := cp.Args[k]; ok {
			t.Fatalf("the copy names folders (%s): %v", k, cp.Args)
		}
	}
	if cp.Args["since"] != since.UTC().Format(time.RFC3339) || cp.Args["from"] != "sb" || cp.Args["limit_bps"] != float64(10_000_000) || cp.Args["settle_s"] != float64(10) {
		t.Fatalf("copy args = %v", cp.Args)
	}
	if s := records(h, "copy_started"); len(s) != 1 || s[0].Fields["from"] != "sb" || s[0].Member != "rec" {
		t.Fatalf("copy_started = %+v", s)
	}
	for _, r := range h.Records() {
		if strings.Contains(fmt.Sprint(r.Fields), token) {
			t.Fatalf("the token leaked into record %s: %v", r.Type, r.Fields)
		}
	}

	// Progress reaches the policy and the status; a report about an action
	// nobody waits for is ignored.
	h.Coordinator.CopyProgress(bus.CopyProgress{Action: cp.ID, Member: "rec", From: "sb", BytesDone: 512, BytesTotal: 1024, FilesTotal: 7})
	h.Coordinator.CopyProgress(bus.CopyProgress{Action: "c-x.1.99", Member: "rec"})
	h.Coordinator.CopyProgress(bus.CopyProgress{Action: cp.ID, Member: "sb"})
	h.Engine.RunPending()
	if p := records(h, "copy_progress"); len(p) != 1 || p[0].Fields["bytes_done"] != int64(512) {
		t.Fatalf("copy_progress = %+v", p)
	}
	if st := h.Engine.Snapshot(); len(st.Copies) != 1 || st.Copies[0].Action != cp.ID || st.Copies[0].BytesDone != 512 {
		t.Fatalf("status copies = %+v", st.Copies)
	}

	h.Advance(time.Minute)
	done := records(h, "copy_done")
	if len(done) != 1 || fmt.Sprint(done[0].Fields["copied"]) != "7" || done[0].Fields["summary"] != "7 copied" {
		t.Fatalf("copy_done = %+v", done)
	}
	if note := lastRan(t, h, "c", "note"); note.Args["action"] != cp.ID {
		t.Fatalf("the policy's copy_done handler got %v", note.Args)
	}
	if st := h.Engine.Snapshot(); len(st.Copies) != 0 {
		t.Fatalf("status still lists copies: %+v", st.Copies)
	}

	// Folders mounted on the member's machine (inside its material_mounts):
	// no grant; the paths, and no destination.
	grants := len(h.Ran("sb"))
	h.Coordinator.Emit("mounted", map[string]any{"since": float64(since.Unix())})
	h.Advance(time.Second)
	cp = lastRan(t, h, "rec", config.HookCopy)
	paths, _ := cp.Args["paths"].([]any)
	if len(paths) != 1 || paths[0] != "/mnt/sb/rec" || cp.Args["roots"] != nil || cp.Args["token"] != nil || len(h.Ran("sb")) != grants {
		t.Fatalf("mounted copy args = %v", cp.Args)
	}

	// A source with no material server and a member with no copy hook: a
	// clear error naming the policy line.
	h.Coordinator.Emit("bad", map[string]any{"since": float64(since.Unix())})
	h.Engine.RunPending()
	errs := records(h, "policy_error")
	if len(errs) != 1 || !strings.Contains(errs[0].Fields["error"].(string), "policy.lua:8: copy_missing for rec: old has no material_server to copy from, and rec has no copy hook") {
		t.Fatalf("policy errors = %+v", errs)
	}
	// Paths outside the member's material_mounts: refused at the policy.
	h.Coordinator.Emit("unmounted", map[string]any{"since": float64(since.Unix())})
	h.Engine.RunPending()
	errs = records(h, "policy_error")
	if len(errs) != 2 || !strings.Contains(errs[1].Fields["error"].(string), `policy.lua:9: copy_missing for rec: copy from "/etc": not inside rec's material_mounts [/mnt/sb]`) {
		t.Fatalf("policy errors = %+v", errs)
	}
}

func TestFailbackReleasesTheStandbyThenCopiesTheCoveredPeriod(t *testing.T) {
	h := newCopySite(t, `local us = require "understudy"
us.on("member_lost", function(ev) if ev.member.id == "rec" then us.takeover(ev.member, "sb") end end)
us.on("member_restored", function(ev) if us.covered(ev.member) then us.failback(ev.member) end end)
`)
	failures := 1
	h.Agent("rec", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookCopy && failures > 0 {
			failures--
			return sim.Reply{Delay: time.Second, Fail: "copying 2024-05-01/cam1.mp4: no space left on device"}
		}
		return sim.Reply{}
	})
	t0 := h.Clock.Now()
	h.Crash("rec")
	h.Advance(5 * time.Second)
	c, ok := h.Coordinator.Takeover().Covered("rec")
	if !ok {
		t.Fatal("rec is not covered")
	}
	h.Up("rec")
	h.Advance(10 * time.Second)
	// The standby let go before the copy: it writes nothing more for rec.
	if r := lastRan(t, h, "sb", config.HookRelease); r.Args["member"] != "rec" {
		t.Fatalf("release args = %v", r.Args)
	}
	if f := records(h, "copy_failed"); len(f) != 1 || !strings.Contains(f[0].Fields["error"].(string), "no space left") {
		t.Fatalf("copy_failed = %+v", f)
	}
	// A copy that cannot finish keeps the coverage and says why.
	if c, _ := h.Coordinator.Takeover().Covered("rec"); c.Phase != "copying" {
		t.Fatalf("after a failed copy the coverage must stay open; phase %s", c.Phase)
	}
	alarms := h.Engine.Snapshot().Alarms
	if len(alarms) != 1 || alarms[0].Kind != coordinator.AlarmCopyIncomplete || !strings.Contains(alarms[0].Message, "no space left") {
		t.Fatalf("alarms = %+v", alarms)
	}
	// Trying again copies the same period and ends the coverage.
	if _, err := h.Coordinator.Takeover().Failback("rec", "again"); err != nil {
		t.Fatal(err)
	}
	h.Advance(10 * time.Second)
	cp := lastRan(t, h, "rec", config.HookCopy)
	if cp.Args["since"] != c.Since.UTC().Format(time.RFC3339) || cp.Args["until"] != "" || cp.Args["from"] != "sb" || cp.Args["token"] == nil {
		t.Fatalf("copy args = %v (coverage since %v, crash at %v)", cp.Args, c.Since, t0)
	}
	if g := lastRan(t, h, "sb", config.VerbMaterialGrant); g.Args["token"] != cp.Args["token"] {
		t.Fatalf("grant %v does not match the copy", g.Args)
	}
	if len(records(h, "copy_done")) != 1 || len(records(h, "failback_done")) != 1 {
		t.Fatalf("copy_done %d, failback_done %d", len(records(h, "copy_done")), len(records(h, "failback_done")))
	}
	if alarms := h.Engine.Snapshot().Alarms; len(alarms) != 0 {
		t.Fatalf("alarms after the failback = %+v", alarms)
	}
	if n := len(records(h, events.AlarmCleared)); n != 1 {
		t.Fatalf("%d alarm_cleared records", n)
	}
}

// A copy that finds no folder for the member on the source is a warning on
// every surface, not a silent success.
func TestACopyThatFindsNothingIsAWarning(t *testing.T) {
	h := newCopySite(t, `local us = require "understudy"
us.on("member_lost", function(ev) if ev.member.id == "rec" then us.takeover(ev.member, "sb") end end)
us.on("member_restored", function(ev) if us.covered(ev.member) then us.failback(ev.member) end end)
`)
	nothing := true
	h.Agent("rec", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookCopy && nothing {
			return sim.Reply{Result: map[string]any{"copied": 0, "found_nothing": true, "missing_folders": []any{"http://sb/material?root=1"}}}
		}
		return sim.Reply{}
	})
	h.Crash("rec")
	h.Advance(5 * time.Second)
	h.Up("rec")
	h.Advance(10 * time.Second)
	if len(records(h, "failback_done")) != 1 {
		t.Fatal("the failback did not finish")
	}
	alarms := h.Engine.Snapshot().Alarms
	if len(alarms) != 1 || alarms[0].Kind != coordinator.AlarmCopyFoundNone || alarms[0].Severity != coordinator.SeverityWarning ||
		alarms[0].Member != "rec" || !strings.Contains(alarms[0].Message, "copy.subfolder") {
		t.Fatalf("alarms = %+v", alarms)
	}
	// The next copy that finds material ends it.
	nothing = false
	h.Crash("rec")
	h.Advance(5 * time.Second)
	h.Up("rec")
	h.Advance(10 * time.Second)
	if alarms := h.Engine.Snapshot().Alarms; len(alarms) != 0 {
		t.Fatalf("alarms = %+v", alarms)
	}
}

// A failback's copy is bounded by the standby's own time when it reports
// covering since earlier (its clock, the clock of the files it recorded,
// behind the coordinator's); and a coverage kept across a restart on a
// clock that went back — its start now after the coordinator's now — does
// not bound the copy at all without the standby's time: a copy since a
// future time copied nothing and the failback left every recording behind
// (make faults, recorder-standby seed 7: the coordinator's clock 46 s
// ahead when it took rec-2 over, killed, started again on the right time).
func TestAFailbackCopySinceTheStandbysOwnTime(t *testing.T) {
	policy := `local us = require "understudy"
us.on("member_lost", function(ev) if ev.member.id == "rec" then us.takeover(ev.member, "sb") end end)
us.on("member_restored", function(ev) if us.covered(ev.member) then us.failback(ev.member) end end)
us.on("member_seen", function(ev) if us.covered(ev.member) then us.failback(ev.member) end end)
`
	site, st, _ := siteFiles(t, copySite, policy)
	start := func(at time.Time) *sim.Harness {
		h, err := sim.New(site, sim.Options{Store: st, Start: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, id := range site.MemberIDs() {
			if id != "rec" {
				h.Up(id)
			}
		}
		return h
	}
	copySince := func(h *sim.Harness) string {
		t.Helper()
		return lastRan(t, h, "rec", config.HookCopy).Args["since"].(string)
	}

	// The standby's clock is 20 s behind: its own time bounds the copy.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := start(t0)
	h.Up("rec")
	h.Advance(time.Second)
	h.Crash("rec")
	h.Advance(5 * time.Second)
	cv, ok := h.Coordinator.Takeover().Covered("rec")
	if !ok {
		t.Fatal("rec is not covered")
	}
	own := cv.Since.Add(-20 * time.Second)
	h.Coordinator.Covering(bus.Covering{Member: "sb", Covering: []bus.Covered{{Member: "rec", Since: own}}})
	h.Advance(time.Second)
	h.Up("rec")
	h.Advance(10 * time.Second)
	if got := copySince(h); got != own.Format(time.RFC3339) {
		t.Errorf("copy since %s, want the standby's own %s (the coordinator's %s)", got, own.Format(time.RFC3339), cv.Since.Format(time.RFC3339))
	}
	h.Stop()

	// Covered again, then the coordinator started again on a clock 90 s
	// earlier: the coverage's start is in its future. Without a report
	// from the standby the copy has no lower bound.
	at := h.Clock.Now()
	h = start(at)
	h.Up("rec")
	h.Advance(time.Second)
	h.Crash("rec")
	h.Advance(5 * time.Second)
	if _, ok := h.Coordinator.Takeover().Covered("rec"); !ok {
		t.Fatal("rec is not covered the second time")
	}
	now := h.Clock.Now()
	h.Stop()
	h = start(now.Add(-90 * time.Second))
	defer h.Stop()
	h.Up("rec")
	h.Advance(10 * time.Second)
	if got := copySince(h); got != "" {
		t.Errorf("copy since %q on a clock that went back past the coverage's start, want none", got)
	}
	if n := len(records(h, events.FailbackDone)); n != 1 {
		t.Errorf("%d failback_done after the copy", n)
	}
}

// The standby's own since is the earliest it reported in the coverage: a
// member lost during its failback is taken over again, and the standby's
// new covering record starts then, but the copy must still bring back
// what it recorded before (make faults, vms-pool seed 64: the files the
// first failback found still being written were left behind). Once the
// coverage ended, the next one has its own.
func TestTheStandbysEarliestSinceOfTheCoverage(t *testing.T) {
	h := newCopySite(t, `local us = require "understudy"
us.on("member_lost", function(ev) if ev.member.id == "rec" then us.takeover(ev.member, "sb") end end)
us.on("member_restored", function(ev) if us.covered(ev.member) then us.failback(ev.member) end end)
`)
	copySince := func() string {
		t.Helper()
		return lastRan(t, h, "rec", config.HookCopy).Args["since"].(string)
	}
	report := func(since time.Time) {
		h.Coordinator.Covering(bus.Covering{Member: "sb", Covering: []bus.Covered{{Member: "rec", Since: since}}})
		h.Advance(10 * time.Millisecond)
	}
	h.Crash("rec")
	h.Advance(5 * time.Second)
	cv, ok := h.Coordinator.Takeover().Covered("rec")
	if !ok {
		t.Fatal("rec is not covered")
	}
	first := cv.Since.Add(-20 * time.Second) // the standby's clock is behind
	report(first)
	report(first.Add(30 * time.Second)) // its record after a takeover again
	h.Up("rec")
	h.Advance(10 * time.Second)
	if got := copySince(); got != first.Format(time.RFC3339) {
		t.Fatalf("copy since %s, want the standby's earliest %s", got, first.Format(time.RFC3339))
	}
	if n := len(records(h, events.FailbackDone)); n != 1 {
		t.Fatalf("%d failback_done", n)
	}

	// A new coverage: its own since, not the last one's.
	h.Crash("rec")
	h.Advance(5 * time.Second)
	cv, ok = h.Coordinator.Takeover().Covered("rec")
	if !ok {
		t.Fatal("rec is not covered the second time")
	}
	second := cv.Since.Add(-time.Second)
	report(second)
	h.Up("rec")
	h.Advance(10 * time.Second)
	if got, err := time.Parse(time.RFC3339Nano, copySince()); err != nil || !got.Equal(second) {
		t.Errorf("second coverage copied since %v (%v), want its own %v", got, err, second)
	}
}
