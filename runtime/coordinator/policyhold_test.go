package coordinator_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/runtime/engine"
)

// TestPolicyOverItsMemoryBoundIsLoadedAgain: a handler that grows a string
// without end is stopped over the memory bound (policy.memory_limit_mb: 8), the
// policy's Lua state is discarded and loaded again from its file, and the
// named timer the old state set still fires into the new one; the loop goes
// on, and the next member_lost still reaches the policy.
func TestPolicyOverItsMemoryBoundIsLoadedAgain(t *testing.T) {
	// A deadline far enough for the bound to be reached first, even with the
	// race detector (which makes large copies slow).
	site := strings.Replace(siteYAML, "handler_timeout: 100ms}", "handler_timeout: 20s, memory_limit_mb: 8}", 1)
	h, _, log := newHarnessSite(t, site, `local us = require "understudy"
us.on("go", function() us.after("1h", "later", { n = 1 }) end)
us.on("bomb", function() local s = "x" while true do s = s .. s end end)
us.on("timer:later", function(t) us.log.info("later fired n=" .. t.n) end)
us.on("member_lost", function(ev) us.log.info("saw lost " .. ev.member.id) end)
`)
	h.Coordinator.Emit("go", nil)
	h.Engine.RunPending()
	mark := len(h.Records())
	h.Coordinator.Emit("bomb", nil)
	h.Engine.RunPending()
	var stopped, reloaded bool
	for _, r := range h.Since(mark) {
		if r.Type == "policy_error" && r.Fields["reloaded"] == true && strings.Contains(r.Fields["error"].(string), "policy stopped") {
			stopped = true
		}
		if r.Type == "policy_loaded" && r.Fields["reload"] == true {
			reloaded = true
		}
	}
	if !stopped || !reloaded {
		t.Fatalf("over its memory bound: stopped %v, reloaded %v; records %v\n%s", stopped, reloaded, published(h, mark), log)
	}
	st := h.Coordinator.Snapshot().Policy
	if st == nil || st.Reloads != 1 || !strings.Contains(st.LastError, "policy stopped") {
		t.Errorf("status %+v", st)
	}
	h.Up("main")
	h.Advance(100 * time.Millisecond)
	h.Crash("main")
	h.Advance(time.Hour)
	out := log.String()
	if !strings.Contains(out, "saw lost main") || !strings.Contains(out, "later fired n=1") {
		t.Fatalf("after the reload:\n%s", out)
	}
	if slices.ContainsFunc(h.Records(), func(r engine.Record) bool {
		return r.Type == "policy_error" && !strings.Contains(r.Fields["error"].(string), "policy stopped")
	}) {
		t.Errorf("other policy errors: %v", published(h, 0))
	}
}
