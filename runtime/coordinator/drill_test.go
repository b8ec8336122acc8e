package coordinator_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/runtime/engine"
	"understudy/runtime/sim"
)

const drillPolicy = `local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id == "a" then
    drill_seen = ev.drill
    us.takeover(ev.member, nil, { reason = "lost (" .. tostring(ev.drill) .. ")" })
  end
end)
us.on("command:failback", function(c)
  local m = us.member(c.member)
  if m and us.covered(m) then us.failback(m, { reason = "operator" }) end
end)
`

func types(rs []engine.Record, member string) []string {
	var out []string
	for _, r := range rs {
		if r.Member == member || r.Type == "command" {
			out = append(out, r.Type)
		}
	}
	return out
}

// A real drill holds the member lost whatever it sends, the policy takes
// over (and can tell it is a drill), and after revert_after the member is
// back and failed back by the drill; a restart of the coordinator in the
// middle keeps the drill and its deadline.
func TestRealDrillTakesOverAndRevertsOnTime(t *testing.T) {
	h, _ := newPoolSite(t, drillPolicy)
	start := h.Clock.Now()
	h.Command("drill", map[string]any{"member": "a", "dry_run": false, "revert_after": "2m"})
	if errs := records(h, "command"); errs[0].Fields["error"] != nil {
		t.Fatalf("drill refused: %v", errs[0].Fields["error"])
	}
	h.Advance(time.Second)
	lost := records(h, "member_lost")
	if len(lost) != 1 || lost[0].Fields["drill"] != "lost" || lost[0].Fields["reason"] != "fire drill" {
		t.Fatalf("member_lost = %+v", lost)
	}
	if ts := records(h, "takeover_started"); len(ts) != 1 || !strings.Contains(ts[0].Fields["reason"].(string), "lost (lost)") {
		t.Fatalf("takeover_started = %+v", ts)
	}
	st := h.Engine.Snapshot()
	if len(st.Drills) != 1 || st.Drills[0].Member != "a" || st.Drills[0].Until != start.Add(2*time.Minute) {
		t.Fatalf("status drills = %+v", st.Drills)
	}

	// Refused: a second drill of a, a drill of the coordinator, of a member
	// that is not alive, and a bad revert_after.
	for _, args := range []map[string]any{
		{"member": "a", "dry_run": false},
		{"member": "c", "dry_run": false},
		{"member": "nobody"},
		{"member": "s", "dry_run": false, "revert_after": "13h"},
		{"member": "s", "fault": "flood"},
	} {
		n := len(records(h, "command"))
		h.Command("drill", args)
		if rec := records(h, "command")[n]; rec.Fields["error"] == nil {
			t.Errorf("drill %v was accepted", args)
		}
	}

	// The coordinator restarts during the drill: a stays lost, and the
	// revert comes on time.
	h.Advance(30 * time.Second)
	if err := h.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Advance(30 * time.Second)
	if m := h.Engine.Snapshot().Members; !slices.ContainsFunc(m, func(s engine.MemberStatus) bool { return s.ID == "a" && s.State == "lost" && s.Drill == "lost" }) {
		t.Fatalf("after the restart: %+v", m)
	}
	if len(records(h, "drill_ended")) != 0 {
		t.Fatal("the drill ended early")
	}
	h.Advance(time.Minute)
	ended := records(h, "drill_ended")
	if len(ended) != 1 || ended[0].Fields["state"] != "alive" || ended[0].At != start.Add(2*time.Minute) {
		t.Fatalf("drill_ended = %+v", ended)
	}
	h.Advance(5 * time.Second)
	if fb := records(h, "failback_done"); len(fb) != 1 {
		t.Fatalf("no failback after the drill: %v", types(h.Records(), "a"))
	}
	cmds := records(h, "command")
	if last := cmds[len(cmds)-1]; last.Fields["verb"] != "failback" || last.Fields["args"].(map[string]any)["by"] != "drill" {
		t.Fatalf("last command = %+v", last)
	}
	if st := h.Engine.Snapshot(); len(st.Drills) != 0 || st.Takeover != nil && len(st.Takeover.Coverage) != 0 {
		t.Fatalf("after the drill: drills %+v, coverage %+v", st.Drills, st.Takeover.Coverage)
	}
}

// A member that really goes away during its drill stays lost when the drill
// ends (and is not failed back); drill_end ends a drill early; a broken
// drill hides the member's own disk reports until it ends.
func TestDrillEndsEarlyAndLeavesARealLossAlone(t *testing.T) {
	h, _ := newPoolSite(t, drillPolicy)
	h.Command("drill", map[string]any{"member": "a", "dry_run": false, "revert_after": "10m"})
	h.Advance(time.Second)
	h.Crash("a")
	h.Advance(10 * time.Second)
	h.Command("drill_end", map[string]any{"member": "a"})
	h.Advance(10 * time.Second)
	ended := records(h, "drill_ended")
	if len(ended) != 1 || ended[0].Fields["state"] != "lost" || !strings.Contains(ended[0].Fields["why"].(string), "ended by operator") {
		t.Fatalf("drill_ended = %+v", ended)
	}
	if len(records(h, "failback_started")) != 0 {
		t.Fatal("a member that is really lost was failed back")
	}
	h.Command("drill_end", map[string]any{"member": "a"})
	if cmds := records(h, "command"); cmds[len(cmds)-1].Fields["error"] == nil {
		t.Fatal("drill_end of a member in no drill was accepted")
	}

	h.Command("drill", map[string]any{"member": "s", "fault": "broken", "dry_run": false, "revert_after": "1m"})
	if cmds := records(h, "command"); cmds[len(cmds)-1].Fields["error"] != nil {
		t.Fatalf("broken drill refused: %v", cmds[len(cmds)-1].Fields["error"])
	}
	h.Advance(time.Second)
	h.Broken("s", false) // its own report: fine; the drill's fault stands
	h.Advance(time.Second)
	if m := memberState(h, "s"); m != "broken" {
		t.Fatalf("s during a broken drill is %s", m)
	}
	h.Advance(time.Minute)
	if m := memberState(h, "s"); m != "alive" {
		t.Fatalf("s after its broken drill is %s", m)
	}
}

func memberState(h *sim.Harness, id string) string {
	for _, m := range h.Engine.Snapshot().Members {
		if m.ID == id {
			return m.State
		}
	}
	return ""
}

func TestDrillMarksTheMembersEvents(t *testing.T) {
	h, _ := newPoolSite(t, drillPolicy)
	h.Command("drill", map[string]any{"member": "a", "dry_run": false, "revert_after": "1m"})
	h.Advance(2 * time.Minute)
	for _, typ := range []string{"member_lost", "member_restored"} {
		if rs := records(h, typ); len(rs) != 1 || rs[0].Fields["drill"] != "lost" {
			t.Errorf("%s = %+v", typ, rs)
		}
	}
	if st := h.Engine.Snapshot(); len(st.Drills) != 0 {
		t.Fatalf("drills after the revert: %+v", st.Drills)
	}
}
