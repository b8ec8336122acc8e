package coordinator_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

const poolSite = `site: t
coordinator: c
heartbeat: {interval: 1s, lost_after: 3s, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: c
  - id: a
    pool: p
    disks: [/srv/a]
  - id: s
    standby: true
    pool: p
    hooks:
      flash: [{exec: [/bin/true]}]
`

// newPoolSite runs policy on a three-member site on the virtual clock.
func newPoolSite(t *testing.T, policy string) (*sim.Harness, string) {
	t.Helper()
	return startSite(t, poolSite, policy)
}

// startSite writes siteYAML and policy.lua to a folder, starts the site on
// the virtual clock with a state store and every member up, and returns it
// with the policy's path.
// siteFiles writes siteYAML and policy into a folder of the test, loads
// the site and opens a state store beside it (closed with the test).
func siteFiles(t testing.TB, siteYAML, policy string) (*config.Site, *store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(policy), 0o644)
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(siteYAML), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return site, st, dir
}

func startSite(t *testing.T, siteYAML, policy string) (*sim.Harness, string) {
	t.Helper()
	site, st, dir := siteFiles(t, siteYAML, policy)
	h, err := sim.New(site, sim.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	for _, id := range site.MemberIDs() {
		h.Up(id)
	}
	h.Advance(time.Second)
	return h, filepath.Join(dir, "policy.lua")
}

func records(h *sim.Harness, typ string) []engine.Record {
	var out []engine.Record
	for _, r := range h.Records() {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func TestTakeoverAPIErrorsNameThePolicyLine(t *testing.T) {
	h, _ := newPoolSite(t, `local us = require "understudy"
us.on("x", function()
  us.takeover("nobody")
end)
us.on("y", function()
  us.failback("a")
end)
us.on("z", function()
  us.takeover("a", "c")
end)
`)
	for _, ev := range []string{"x", "y", "z"} {
		h.Coordinator.Emit(ev, nil)
	}
	h.Engine.RunPending()
	var errs []string
	for _, r := range records(h, "policy_error") {
		errs = append(errs, r.Fields["error"].(string))
	}
	want := []string{`policy.lua:3: takeover of nobody: no member "nobody"`, `policy.lua:6: failback of a: a is not covered`, `policy.lua:9: takeover of a: c is not a standby`}
	if len(errs) != 3 {
		t.Fatalf("errors = %q", errs)
	}
	for i, w := range want {
		if !strings.Contains(errs[i], w) {
			t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
		}
	}
}

func TestBrokenMembersAndRunHooksReachThePolicy(t *testing.T) {
	h, _ := newPoolSite(t, `local us = require "understudy"
us.on("member_broken", function(ev)
  seen = ev.member.state .. " " .. ev.member.reason
  us.run("s", "flash", { member = ev.member.id })
end)
`)
	h.Broken("a", true)
	h.Advance(time.Second)
	ran := h.Ran("s")
	if len(ran) != 1 || ran[0].Verb != "flash" || ran[0].Args["member"] != "a" {
		t.Fatalf("s ran %+v", ran)
	}
	if done := records(h, "action_done"); len(done) != 1 || done[0].Fields["verb"] != "flash" {
		t.Fatalf("action_done = %+v", done)
	}
	if st := records(h, "member_broken"); len(st) != 1 || st[0].Fields["state"] != "broken" {
		t.Fatalf("member_broken = %+v", st)
	}
}

func TestNamedTimersSurviveAPolicyReload(t *testing.T) {
	h, path := newPoolSite(t, `local us = require "understudy"
us.on("go", function() us.after("1h", "later", { n = 1 }) end)
us.on("timer:later", function(t) us.log.info("later fired") end)
`)
	h.Coordinator.Emit("go", nil)
	h.Engine.RunPending()
	os.WriteFile(path, []byte(`local us = require "understudy"
us.on("timer:later", function(t) us.run("s", "flash", { n = t.n }) end)
`), 0o644)
	h.Coordinator.Reload()
	h.Advance(59 * time.Minute)
	if !slices.ContainsFunc(h.Records(), func(r engine.Record) bool { return r.Type == "policy_loaded" && r.Fields["reload"] == true }) {
		t.Fatal("the policy was not reloaded")
	}
	if len(h.Ran("s")) != 0 {
		t.Fatal("the timer fired early")
	}
	h.Advance(2 * time.Minute)
	if errs := records(h, "policy_error"); len(errs) > 0 {
		t.Fatalf("policy errors: %+v", errs)
	}
	if ran := h.Ran("s"); len(ran) != 1 || ran[0].Args["n"] != int64(1) && ran[0].Args["n"] != float64(1) {
		t.Fatalf("after the reload the timer set by the old policy reached the new one: s ran %+v", ran)
	}
}

func TestOperatorCommandsAreCheckedAndRecorded(t *testing.T) {
	h, _ := newPoolSite(t, `local us = require "understudy"
us.on("command:mode", function(c) seen_mode = c.mode end)
`)
	h.Command("confirm", map[string]any{"proposal": "p99"})
	h.Command("mode", map[string]any{"mode": "manual"})
	cmds := records(h, "command")
	if len(cmds) != 2 || !strings.Contains(cmds[0].Fields["error"].(string), `no proposal "p99"`) || cmds[1].Fields["error"] != nil {
		t.Fatalf("command records = %+v", cmds)
	}
	if h.Coordinator.Takeover().Mode() != config.ModeManual || len(records(h, "mode_changed")) != 1 {
		t.Fatalf("mode = %s", h.Coordinator.Takeover().Mode())
	}
}

// Suspect is informational: an action sent to a member whose heartbeats are
// late waits for it as long as it is suspect, instead of failing after the
// action timeout (30s) while the member is merely slow to be heard.
func TestAnActionWaitsForASuspectMember(t *testing.T) {
	h, _ := startSite(t, `site: t
coordinator: c
heartbeat: {interval: 1s, lost_after: 2m, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: c
  - id: a
    hooks:
      flash: [{exec: [/bin/true]}]
`, `local us = require "understudy"
us.on("command:flash", function() us.run("a", "flash") end)
`)
	h.Blip("a", 50*time.Second)
	h.Advance(3 * time.Second)
	h.Command("flash", nil)
	h.Advance(40 * time.Second)
	if f := records(h, "action_failed"); len(f) != 0 {
		t.Fatalf("the action failed while its member was only suspect: %+v", f)
	}
	h.Advance(20 * time.Second)
	if d := records(h, "action_done"); len(d) != 1 || d[0].Fields["verb"] != "flash" {
		t.Fatalf("action_done = %+v", d)
	}
	// A member that is alive and does not answer still fails it in time.
	h.Agent("a", func(bus.Command) sim.Reply { return sim.Reply{Silent: true} })
	h.Command("flash", nil)
	h.Advance(31 * time.Second)
	if f := records(h, "action_failed"); len(f) != 1 || !strings.Contains(f[0].Fields["error"].(string), "no answer from a") {
		t.Fatalf("action_failed = %+v", f)
	}
}

// A command to a member that is lost waits for it, and is sent the moment
// the member is heard again, not on what is left of its backoff: a
// failback's release to a standby that restarted 28 s into its 30 s to
// answer timed out 2 s after it was back (make faults, recorder-standby
// seed 25), and the failback failed.
func TestACommandGoesOutWhenItsTargetIsBack(t *testing.T) {
	h, _ := startSite(t, `site: t
coordinator: c
heartbeat: {interval: 1s, lost_after: 3s, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: c
  - id: a
    hooks:
      flash: [{exec: [/bin/true]}]
`, `local us = require "understudy"
us.on("command:flash", function() us.run("a", "flash") end)
`)
	h.Crash("a")
	h.Advance(5 * time.Second)
	h.Command("flash", nil)
	h.Advance(28 * time.Second) // sent at +0, 1, 3, 7, 15, 23; next at 31
	if d := records(h, "action_done"); len(d) != 0 {
		t.Fatalf("done by a crashed member: %+v", d)
	}
	back := h.Clock.Now()
	h.Up("a")
	h.Advance(100 * time.Millisecond)
	d := records(h, "action_done")
	if len(d) != 1 {
		t.Fatalf("the command did not go out when a was heard again (action_done %+v, failed %+v)", d, records(h, "action_failed"))
	}
	if d[0].At.Sub(back) > 100*time.Millisecond {
		t.Errorf("done %v after a was back", d[0].At.Sub(back))
	}
}

// A command the coordinator could not send while its bus connection was
// down is sent the moment the connection is back, not after what is left
// of its backoff; and the outage does not count against the time the
// standby has to answer.
func TestACommandHeldByABusOutageIsSentAsTheBusComesBack(t *testing.T) {
	h, _ := newPoolSite(t, `local us = require "understudy"
us.on("member_lost", function(ev) us.takeover(ev.member) end)
`)
	h.Broker(false)
	h.Crash("a") // a's Last Will: lost at once, the takeover's command cannot leave
	// 45 s without a bus, past the 30 s an action has to be answered: the
	// command's backoff has grown to its 8 s.
	h.Advance(45 * time.Second)
	if len(h.Ran("s")) != 0 {
		t.Fatalf("s ran %v while the broker was down", h.Ran("s"))
	}
	if fails := records(h, "action_failed"); len(fails) > 0 {
		t.Fatalf("the takeover's command failed while the coordinator had no bus: %v", fails[0].Fields)
	}
	h.Broker(true)
	if ran := h.Ran("s"); len(ran) != 1 || ran[0].Verb != "takeover" {
		t.Fatalf("s ran %v right after the bus came back, want the takeover", ran)
	}
	h.Advance(time.Second)
	if done := records(h, "takeover_done"); len(done) != 1 {
		t.Errorf("takeover_done records: %d", len(done))
	}
}
