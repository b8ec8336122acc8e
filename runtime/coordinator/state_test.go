package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/runtime/config"
	"understudy/runtime/sim"
)

// What a policy keeps in us.state outlives its Lua state: a restarted (or
// newly elected) coordinator's policy reads it back, where a Lua global
// starts over.
func TestPolicyStateOutlivesTheLuaState(t *testing.T) {
	dir, st := cueFiles(t)
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(`local us = require "understudy"
count = count or 0
us.on("command:count", function()
  count = count + 1
  local n = (us.state.get("count") or 0) + 1
  us.state.set("count", n)
  us.state.set("seen", {by = "policy", n = n})
  us.driver("cue"):send({command = "counted", global = count, state = n, keys = table.concat(us.state.keys(), ","), by = us.state.get("seen").by})
end)
us.on("command:forget", function() us.state.set("count", nil) end)
`), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := &cueDriver{}
	start := func() *sim.Harness {
		h, err := sim.New(site, sim.Options{Store: st, Drivers: map[string]drivers.Driver{"cue": d}})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		recordsAreRegistered(t, h)
		return h
	}
	h := start()
	sent := 0
	count := func(n int) {
		for range n {
			h.Command("count", nil)
			h.Advance(time.Second)
			sent++
			// Sent before the next step: a send cut short by the stop
			// below would not be sent again (outcome unknown).
			waitFor(t, func() bool { return d.count() == sent })
		}
	}
	count(2)
	h.Stop()
	h = start() // a restart, as a new leader would start: a new Lua state
	t.Cleanup(h.Stop)
	count(1)
	h.Command("forget", nil)
	h.Advance(time.Second)
	count(1)
	var got []string
	d.mu.Lock()
	for _, s := range d.sent {
		got = append(got, fmt.Sprintf("global=%v state=%v keys=%v by=%v", s["global"], s["state"], s["keys"], s["by"]))
	}
	d.mu.Unlock()
	want := []string{
		"global=1 state=1 keys=count,seen by=policy",
		"global=2 state=2 keys=count,seen by=policy",
		"global=1 state=3 keys=count,seen by=policy", // the global started over; the state did not
		"global=2 state=1 keys=count,seen by=policy", // forgotten: counted from nothing again
	}
	if !slices.Equal(got, want) {
		t.Fatalf("sent\n%q\nwant\n%q", got, want)
	}
}
