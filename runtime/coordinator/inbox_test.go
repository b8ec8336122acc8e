package coordinator_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

// poisonPolicy logs each handler it runs, so the test sees what the policy
// was handed.
const poisonPolicy = `
local us = require "understudy"
us.on("timer:poison", function(ev) us.log.info("RAN poison " .. tostring(ev.n) .. " confirmed_by=" .. tostring(ev.confirmed_by)) end)
us.on("timer:fine", function(ev) us.log.info("RAN fine redelivered=" .. tostring(ev.redelivered)) end)
`

// storedHarness starts a simulated coordinator on the store at path.
func storedHarness(t *testing.T, dir string, st *store.Store) (*sim.Harness, *bytes.Buffer) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(poisonPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(siteYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	h, err := sim.New(site, sim.Options{Store: st, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	recordsAreRegistered(t, h)
	return h, &log
}

// leftInInbox writes what a coordinator leaves in its inbox when its process
// died in the handlers of an event deliveries times.
func leftInInbox(t *testing.T, st *store.Store, seq uint64, name string, deliveries int, fields map[string]any) {
	t.Helper()
	ev := map[string]any{"seq": seq, "name": name, "at": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "fields": fields, "deliveries": deliveries}
	if err := st.Put("inbox", fmt.Sprintf("%016x", seq), ev); err != nil {
		t.Fatal(err)
	}
}

func ran(log *bytes.Buffer, what string) int { return strings.Count(log.String(), "RAN "+what) }

// An event whose handlers took the process down twice is set aside at the
// next start instead of being handed to the policy a third time (a crash
// loop under Restart=always): recorded, raised as an alarm, shown in the
// status; confirm runs it once more, reject drops it, and a restart does
// neither by itself. An event that died once is redelivered as before.
func TestAPoisonEventIsQuarantinedAtStartNotRedelivered(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	leftInInbox(t, st, 7, "timer:poison", 2, map[string]any{"n": 7})
	leftInInbox(t, st, 8, "timer:poison", 3, map[string]any{"n": 8})
	leftInInbox(t, st, 9, "timer:fine", 1, nil)
	h, log := storedHarness(t, dir, st)

	if n := ran(log, "poison"); n != 0 {
		t.Fatalf("a poison event was handed to the policy again (%d times):\n%s", n, log)
	}
	if n := ran(log, "fine redelivered=true"); n != 1 {
		t.Fatalf("the event that died once ran %d times, want once, redelivered:\n%s", n, log)
	}
	var quarantined []string
	for _, r := range h.Records() {
		if r.Type == events.EventQuarantined {
			quarantined = append(quarantined, fmt.Sprint(r.Fields["proposal"]))
		}
	}
	if strings.Join(quarantined, " ") != "quarantine-7 quarantine-8" {
		t.Fatalf("event_quarantined records %q", quarantined)
	}
	snap := h.Coordinator.Snapshot()
	if len(snap.Quarantined) != 2 || snap.Quarantined[0].Proposal != "quarantine-7" || snap.Quarantined[0].Deliveries != 2 || snap.Quarantined[0].Event != "timer:poison" {
		t.Fatalf("status quarantine %+v", snap.Quarantined)
	}
	alarms := 0
	for _, a := range snap.Alarms {
		if a.Kind == coordinator.AlarmEventQuarantined {
			alarms++
			if !strings.Contains(a.Message, "understudy confirm quarantine-") {
				t.Errorf("alarm message %q does not say how to confirm", a.Message)
			}
		}
	}
	if alarms != 2 {
		t.Fatalf("%d event_quarantined alarms, want 2: %+v", alarms, snap.Alarms)
	}

	// A restart neither runs them nor forgets them.
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := ran(log, "poison"); n != 0 {
		t.Fatalf("a restart handed a quarantined event to the policy:\n%s", log)
	}
	if snap := h.Coordinator.Snapshot(); len(snap.Quarantined) != 2 {
		t.Fatalf("after a restart the quarantine holds %+v", snap.Quarantined)
	}

	h.Command("confirm", map[string]any{"proposal": "quarantine-7"})
	if n := ran(log, "poison 7 confirmed_by=operator"); n != 1 {
		t.Fatalf("confirm ran the event %d times, want once:\n%s", n, log)
	}
	h.Command("reject", map[string]any{"proposal": "quarantine-8"})
	h.Command("confirm", map[string]any{"proposal": "quarantine-8"}) // gone: refused
	if n := ran(log, "poison 8"); n != 0 {
		t.Fatalf("a rejected event ran:\n%s", log)
	}
	snap = h.Coordinator.Snapshot()
	if len(snap.Quarantined) != 0 {
		t.Fatalf("quarantine after confirm and reject: %+v", snap.Quarantined)
	}
	for _, a := range snap.Alarms {
		if a.Kind == coordinator.AlarmEventQuarantined {
			t.Errorf("alarm still raised: %+v", a)
		}
	}
	if !strings.Contains(log.String(), `no quarantined event \"quarantine-8\"`) {
		t.Errorf("confirming a dropped event was not refused with a reason:\n%s", log)
	}
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := ran(log, "poison"); n != 1 {
		t.Fatalf("after confirm, reject and a restart the poison events ran %d times, want once in all:\n%s", n, log)
	}
	h.Stop()
}
