package coordinator_test

import (
	"context"
	"testing"
	"time"

	"understudy/runtime/sim"
)

// A named timer (a failback delay) set for 30 s, then the coordinator
// started again on a host whose clock was stepped back 90 s meanwhile: its
// deadline, kept as a wall-clock time, is now 2 minutes away. It waits at
// most the 30 s it was set for, not the step on top of it.
func TestANamedTimerWaitsAtMostItsDelayAfterTheClockWentBack(t *testing.T) {
	site, st, _ := siteFiles(t, poolSite, `local us = require "understudy"
us.on("go", function() us.after("30s", "later") end)
us.on("timer:later", function() us.run("s", "flash") end)
`)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	start := func(at time.Time) *sim.Harness {
		h, err := sim.New(site, sim.Options{Store: st, Start: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, id := range site.MemberIDs() {
			h.Up(id)
		}
		return h
	}
	h := start(t0)
	h.Advance(time.Second)
	h.Coordinator.Emit("go", nil)
	h.Engine.RunPending()
	h.Advance(5 * time.Second)
	h.Stop()

	// Started again 10 s later by the machine's clock, which now reads 90
	// s earlier.
	h = start(t0.Add(16 * time.Second).Add(-90 * time.Second))
	defer h.Stop()
	h.Advance(29 * time.Second)
	if len(h.Ran("s")) != 0 {
		t.Fatal("the timer fired before the delay it was set for")
	}
	h.Advance(2 * time.Second)
	if ran := h.Ran("s"); len(ran) != 1 {
		t.Fatalf("30 s after the restart on a clock stepped back 90 s, the 30 s timer has not fired (s ran %+v)", ran)
	}
}
