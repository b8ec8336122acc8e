package coordinator_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/sim"
)

// A fresh coordinator whose command a member answers "stale" moves past the
// member's newest epoch, once; but not past an epoch no coordinator got to
// (a member that stored a forged 2^64-1): Newest+1 wrapped around to 0.
// The action fails with the reason instead.
func TestAStaleAnswerNeverWrapsTheEpoch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		newest uint64
		adopt  bool
	}{
		{"a lost state", 41, true},
		{"a forged epoch", math.MaxUint64, false},
		{"just past what a member takes", 1 + 1<<20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := startSite(t, poolSite, `local us = require "understudy"
us.on("command:flash", function() us.run("s", "flash") end)
`)
			stale := true
			h.Agent("s", func(c bus.Command) sim.Reply {
				if stale {
					stale = false
					h.Coordinator.Ack(bus.Ack{ID: c.ID, Epoch: c.Epoch, Member: "s", State: bus.AckStale, Newest: tc.newest})
					return sim.Reply{Silent: true}
				}
				if c.Epoch != tc.newest+1 {
					t.Errorf("command sent again with epoch %d, want %d", c.Epoch, tc.newest+1)
				}
				return sim.Reply{}
			})
			h.Command("flash", nil)
			h.Advance(10 * time.Second)
			adopted, done, failed := records(h, "epoch_adopted"), records(h, "action_done"), records(h, "action_failed")
			if !tc.adopt {
				if len(adopted) != 0 || len(done) != 0 || len(failed) != 1 || !strings.Contains(failed[0].Fields["error"].(string), "no coordinator got that far") {
					t.Fatalf("adopted %+v, done %+v, failed %+v", adopted, done, failed)
				}
				return
			}
			if len(adopted) != 1 || adopted[0].Fields["epoch"] != tc.newest+1 || len(done) != 1 || len(failed) != 0 {
				t.Fatalf("adopted %+v, done %+v, failed %+v", adopted, done, failed)
			}
		})
	}
}
