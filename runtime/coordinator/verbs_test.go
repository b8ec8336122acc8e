package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"understudy/runtime/sim"
	"understudy/runtime/store"
)

// A made-up verb from the bus (anyone on it may send any) is refused with
// the known verbs and never reaches the inbox or the policy; a verb the
// policy handles goes through the inbox. Before, every verb of
// [a-z][a-z0-9_]* was written to the inbox and handed to the policy.
func TestAVerbThePolicyDoesNotHandleNeverReachesTheInbox(t *testing.T) {
	site, st, _ := siteFiles(t, poolSite, `local us = require "understudy"
us.on("command:flash", function() us.log.info("flash handled") end)
`)
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
	inboxSeq := func() uint64 {
		var n uint64
		st.View(func(tx *store.Tx) error { n = tx.Counter("meta", "inbox_seq"); return nil })
		return n
	}

	before := inboxSeq()
	for _, verb := range []string{"dance", "x", "takeover_all_now"} {
		h.Coordinator.Command(verb, map[string]any{"member": "a"}, "mqtt")
		h.Engine.RunPending()
	}
	if got := inboxSeq(); got != before {
		t.Errorf("made-up verbs went through the inbox (%d events)", got-before)
	}
	refused := 0
	for _, r := range records(h, "command") {
		if e, _ := r.Fields["error"].(string); strings.HasPrefix(e, `unknown command "`) && strings.Contains(e, "the known commands are confirm, drill, drill_end, flash, mode") {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d of 3 made-up verbs refused with the known verbs: %+v", refused, records(h, "command"))
	}

	h.Coordinator.Command("flash", map[string]any{}, "mqtt")
	h.Engine.RunPending()
	if got := inboxSeq(); got != before+1 {
		t.Errorf("a verb the policy handles: %d inbox events, want 1", got-before)
	}
}
