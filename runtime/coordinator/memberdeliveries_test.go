package coordinator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

const memberPoisonSite = `site: t
coordinator: c
heartbeat: {interval: 1s, lost_after: 3s, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: c
  - id: a
    pool: p
  - id: b
    pool: p
  - id: s
    standby: true
    pool: p
  - id: s2
    standby: true
    pool: p
`

// poisonMemberPolicy covers a lost member by a standby of its pool, except
// that for a its member_lost handler never gets there: at DIES the process
// dies (the test's stand-in for a hang the watchdog kills, or running out
// of memory).
const poisonMemberPolicy = `
local us = require "understudy"
us.on("member_lost", function(ev)
  us.log.info("RAN member_lost " .. ev.member.id .. " confirmed_by=" .. tostring(ev.confirmed_by))
  if ev.member.id == "a" then
    us.log.info("DIES in member_lost of a")
    return
  end
  us.takeover(ev.member)
end)
us.on("member_restored", function(ev) us.log.info("RAN member_restored " .. ev.member.id) end)
`

// fixedMemberPolicy is poisonMemberPolicy fixed: a is covered too.
const fixedMemberPolicy = `
local us = require "understudy"
us.on("member_lost", function(ev)
  us.log.info("RAN member_lost " .. ev.member.id .. " confirmed_by=" .. tostring(ev.confirmed_by))
  us.takeover(ev.member)
end)
`

// deathLog is the coordinator's log. Once armed with a line, the first log
// line that contains it is where the process dies: the member event
// deliveries the state file holds then are kept, and die writes them back,
// so that the store is left as a process that died there leaves it (its
// handlers never returned, so nothing removed them).
type deathLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	st   *store.Store
	at   string
	left map[string]json.RawMessage
}

func (l *deathLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at != "" && bytes.Contains(p, []byte(l.at)) {
		left, err := store.Load[json.RawMessage](l.st, "member_deliveries")
		if err != nil {
			return 0, err
		}
		l.left, l.at = left, ""
	}
	return l.buf.Write(p)
}

func (l *deathLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// arm sets where the process dies next.
func (l *deathLog) arm(at string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at, l.left = at, nil
}

// die leaves the state file as the process that died at the armed line
// leaves it, and returns the deliveries counted then, by key.
func (l *deathLog) die(t *testing.T) map[string]int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.left == nil {
		t.Fatalf("the process never got to %q:\n%s", l.at, l.buf.String())
	}
	counts := map[string]int{}
	for key, raw := range l.left {
		if err := l.st.Put("member_deliveries", key, raw); err != nil {
			t.Fatal(err)
		}
		var d struct{ Deliveries int }
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		counts[key] = d.Deliveries
	}
	return counts
}

// memberDeliveriesLeft is how many member event deliveries the store holds.
func memberDeliveriesLeft(t *testing.T, st *store.Store) int {
	t.Helper()
	left, err := store.Load[json.RawMessage](st, "member_deliveries")
	if err != nil {
		t.Fatal(err)
	}
	return len(left)
}

// startMemberSite runs memberPoisonSite with policy on a store on the
// virtual clock, every member up.
func startMemberSite(t *testing.T, policy string) (*sim.Harness, *deathLog, *store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.lua")
	if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(memberPoisonSite), 0o644); err != nil {
		t.Fatal(err)
	}
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := &deathLog{st: st}
	h, err := sim.New(site, sim.Options{Store: st, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	recordsAreRegistered(t, h)
	for _, id := range site.MemberIDs() {
		h.Up(id)
	}
	h.Advance(time.Second)
	return h, log, st, policyFile
}

// diesTwiceInMemberLost crashes a; the coordinator dies in a's member_lost
// handler, is restarted, judges a lost again, dies in it again and is
// restarted once more: the start after the second death.
func diesTwiceInMemberLost(t *testing.T, h *sim.Harness, log *deathLog) {
	t.Helper()
	log.arm("DIES in member_lost of a")
	h.Crash("a")
	if left := log.die(t); left["member_lost/a"] != 1 {
		t.Fatalf("while the handler ran the state file counted %v, want member_lost/a: 1 (counted before the handler)", left)
	}
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "event quarantined") {
		t.Fatalf("quarantined after one death:\n%s", log)
	}
	log.arm("DIES in member_lost of a")
	h.Advance(10 * time.Second) // a is not heard: lost again
	if left := log.die(t); left["member_lost/a"] != 2 {
		t.Fatalf("at the second delivery the state file counted %v, want member_lost/a: 2", left)
	}
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func coveredBy(h *sim.Harness, member string) string {
	if cv, ok := h.Coordinator.Takeover().Covered(member); ok {
		return cv.Standby
	}
	return ""
}

func quarantineAlarm(snap engine.Status) (engine.Alarm, int) {
	var found engine.Alarm
	n := 0
	for _, a := range snap.Alarms {
		if a.Kind == coordinator.AlarmEventQuarantined {
			found = a
			n++
		}
	}
	return found, n
}

// A member_lost handler that takes the process down would do so at every
// start: the restarted coordinator judges the member lost again and hands
// it the same event. After the second death the event is quarantined for
// that member at start: recorded, an alarm that is a proposal, shown in the
// status; the member's later member_lost events are held (recorded, not
// handed to the policy), so the instance stays up and the rest of the site
// goes on failing over; a restart neither runs nor forgets it.
func TestAPoisonMemberLostIsQuarantinedAndHeld(t *testing.T) {
	h, log, st, _ := startMemberSite(t, poisonMemberPolicy)
	diesTwiceInMemberLost(t, h, log)
	if n := strings.Count(log.String(), "RAN member_lost a"); n != 2 {
		t.Fatalf("the handler ran %d times before the quarantine, want 2:\n%s", n, log)
	}

	var proposal string
	for _, r := range h.Records() {
		if r.Type == events.EventQuarantined {
			if r.Member != "a" || r.Fields["event"] != "member_lost" || r.Fields["deliveries"] != 2 {
				t.Errorf("event_quarantined %+v", r)
			}
			proposal = fmt.Sprint(r.Fields["proposal"])
		}
	}
	if !strings.HasPrefix(proposal, "quarantine-") {
		t.Fatalf("no event_quarantined record with a proposal: %+v", h.Records())
	}
	if !strings.Contains(log.String(), "event quarantined: member_lost of a is not handed to the policy again") {
		t.Errorf("the quarantine was not logged:\n%s", log)
	}
	if strings.Contains(log.String(), "handing the policy an event it had not finished with") {
		t.Errorf("an event was redelivered at start (the quarantine's alarm, read from the inbox it had just entered?):\n%s", log)
	}
	if n := memberDeliveriesLeft(t, st); n != 0 {
		t.Errorf("%d member event deliveries left in the store after the quarantine", n)
	}
	snap := h.Coordinator.Snapshot()
	if len(snap.Quarantined) != 1 || snap.Quarantined[0].Proposal != proposal || snap.Quarantined[0].Event != "member_lost" || snap.Quarantined[0].Member != "a" || snap.Quarantined[0].Deliveries != 2 {
		t.Fatalf("status quarantine %+v", snap.Quarantined)
	}
	alarm, n := quarantineAlarm(snap)
	if n != 1 || alarm.Member != "a" {
		t.Fatalf("%d event_quarantined alarms: %+v", n, snap.Alarms)
	}
	for _, want := range []string{"understudy confirm " + proposal, "understudy reject " + proposal, "a is not covered"} {
		if !strings.Contains(alarm.Message, want) {
			t.Errorf("alarm message %q does not say %q", alarm.Message, want)
		}
	}

	// a is judged lost again: its member_lost is held, not run.
	from := len(h.Records())
	h.Advance(10 * time.Second)
	if n := strings.Count(log.String(), "RAN member_lost a"); n != 2 {
		t.Fatalf("a held member_lost was handed to the policy:\n%s", log)
	}
	var held []engine.Record
	for _, r := range h.Since(from) {
		if r.Type == events.EventHeld {
			held = append(held, r)
		}
	}
	if len(held) != 1 || held[0].Member != "a" || held[0].Fields["event"] != "member_lost" || held[0].Fields["proposal"] != proposal || held[0].Fields["held"] != 1 {
		t.Fatalf("event_held records %+v", held)
	}
	if !strings.Contains(log.String(), "event held: member_lost of a is quarantined") {
		t.Errorf("the held event was not logged:\n%s", log)
	}
	snap = h.Coordinator.Snapshot()
	if snap.Quarantined[0].Held != 1 {
		t.Errorf("status held %d, want 1", snap.Quarantined[0].Held)
	}
	if alarm, _ := quarantineAlarm(snap); alarm.Count != 2 || !strings.Contains(alarm.Message, "1 held so far") {
		t.Errorf("alarm after a held event: count %d, %q", alarm.Count, alarm.Message)
	}
	if by := coveredBy(h, "a"); by != "" {
		t.Errorf("a covered by %s: its takeover is the policy's, and the policy did not get the event", by)
	}

	// The instance goes on failing over the rest of the site.
	h.Crash("b")
	h.Advance(time.Second)
	if by := coveredBy(h, "b"); by == "" {
		t.Fatalf("b lost while a's member_lost is quarantined was not covered:\n%s", log)
	}
	// And other events of a reach the policy.
	h.Up("a")
	h.Advance(time.Second)
	if !strings.Contains(log.String(), "RAN member_restored a") {
		t.Errorf("a's member_restored was held too:\n%s", log)
	}

	// A restart neither runs it nor forgets it; a lost again is held again.
	h.Crash("a")
	h.Advance(time.Second)
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.Advance(10 * time.Second)
	if n := strings.Count(log.String(), "RAN member_lost a"); n != 2 {
		t.Fatalf("after a restart a held member_lost was handed to the policy:\n%s", log)
	}
	snap = h.Coordinator.Snapshot()
	if len(snap.Quarantined) != 1 || snap.Quarantined[0].Held != 3 {
		t.Fatalf("after a restart the quarantine holds %+v, want member_lost of a held 3 times", snap.Quarantined)
	}
	if _, n := quarantineAlarm(snap); n != 1 {
		t.Fatalf("%d event_quarantined alarms after a restart", n)
	}
	if n := memberDeliveriesLeft(t, st); n != 0 {
		t.Errorf("%d member event deliveries left in the store", n)
	}
}

// Confirm hands the policy the member event once more (the latest held,
// with confirmed_by) and lifts the quarantine: with the policy fixed, the
// member is covered. Reject lifts it without running anything: the next
// member_lost goes to the policy.
func TestAQuarantinedMemberEventIsConfirmedOrRejected(t *testing.T) {
	t.Run("confirm", func(t *testing.T) {
		h, log, st, policyFile := startMemberSite(t, poisonMemberPolicy)
		diesTwiceInMemberLost(t, h, log)
		h.Advance(10 * time.Second) // held once
		proposal := h.Coordinator.Snapshot().Quarantined[0].Proposal
		if err := os.WriteFile(policyFile, []byte(fixedMemberPolicy), 0o644); err != nil {
			t.Fatal(err)
		}
		h.Coordinator.Reload()
		h.Engine.RunPending()
		h.Command("confirm", map[string]any{"proposal": proposal})
		h.Advance(time.Second)
		if n := strings.Count(log.String(), "RAN member_lost a confirmed_by=operator"); n != 1 {
			t.Fatalf("confirm ran member_lost of a %d times, want once:\n%s", n, log)
		}
		if by := coveredBy(h, "a"); by == "" {
			t.Fatalf("a not covered after the confirm:\n%s", log)
		}
		snap := h.Coordinator.Snapshot()
		if len(snap.Quarantined) != 0 {
			t.Fatalf("quarantine after confirm: %+v", snap.Quarantined)
		}
		if _, n := quarantineAlarm(snap); n != 0 {
			t.Fatalf("alarm still raised after confirm: %+v", snap.Alarms)
		}
		if n := memberDeliveriesLeft(t, st); n != 0 {
			t.Errorf("%d member event deliveries left after the confirmed one finished", n)
		}
		// No longer held: the next loss goes to the policy.
		h.Up("a")
		h.Advance(5 * time.Second)
		h.Crash("a")
		h.Advance(time.Second)
		if n := strings.Count(log.String(), "RAN member_lost a confirmed_by=nil"); n != 3 {
			t.Fatalf("after confirm a's member_lost ran %d times unconfirmed, want 3 (2 deaths, then this one):\n%s", n, log)
		}
	})
	t.Run("confirm, and it dies again", func(t *testing.T) {
		h, log, _, _ := startMemberSite(t, poisonMemberPolicy)
		diesTwiceInMemberLost(t, h, log)
		first := h.Coordinator.Snapshot().Quarantined[0].Proposal
		log.arm("DIES in member_lost of a")
		h.Command("confirm", map[string]any{"proposal": first}) // the policy is not fixed
		if left := log.die(t); left["member_lost/a"] != 3 {
			t.Fatalf("the confirmed delivery was counted %v, want member_lost/a: 3 (after the 2 quarantined)", left)
		}
		if err := h.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		q := h.Coordinator.Snapshot().Quarantined
		if len(q) != 1 || q[0].Proposal == first || q[0].Event != "member_lost" || q[0].Member != "a" || q[0].Deliveries != 3 {
			t.Fatalf("after dying in the confirmed delivery the quarantine holds %+v, want member_lost of a again, 3 deliveries", q)
		}
	})
	t.Run("reject", func(t *testing.T) {
		h, log, st, _ := startMemberSite(t, poisonMemberPolicy)
		diesTwiceInMemberLost(t, h, log)
		proposal := h.Coordinator.Snapshot().Quarantined[0].Proposal
		h.Command("reject", map[string]any{"proposal": proposal})
		h.Command("confirm", map[string]any{"proposal": proposal}) // gone: refused
		if n := strings.Count(log.String(), "RAN member_lost a"); n != 2 {
			t.Fatalf("reject (or a confirm after it) ran the event:\n%s", log)
		}
		if !strings.Contains(log.String(), `no quarantined event \"`+proposal+`\"`) {
			t.Errorf("confirming a rejected quarantine was not refused with a reason:\n%s", log)
		}
		snap := h.Coordinator.Snapshot()
		if len(snap.Quarantined) != 0 {
			t.Fatalf("quarantine after reject: %+v", snap.Quarantined)
		}
		if _, n := quarantineAlarm(snap); n != 0 {
			t.Fatalf("alarm still raised after reject: %+v", snap.Alarms)
		}
		// Lifted: a judged lost again goes to the policy, counted afresh.
		h.Advance(10 * time.Second)
		if n := strings.Count(log.String(), "RAN member_lost a"); n != 3 {
			t.Fatalf("after reject a's member_lost ran %d times in all, want 3:\n%s", n, log)
		}
		if n := memberDeliveriesLeft(t, st); n != 0 {
			t.Errorf("%d member event deliveries left", n)
		}
		if err := h.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		if snap := h.Coordinator.Snapshot(); len(snap.Quarantined) != 0 {
			t.Fatalf("a rejected quarantine came back after a restart: %+v", snap.Quarantined)
		}
	})
}

// One death is not enough: the process may have died for another reason.
// The delivery stays counted (and is not made again by itself); the next
// loss hands the handler the event again, and once it finishes the count is
// gone.
func TestAMemberEventThatDiedOnceIsNotQuarantined(t *testing.T) {
	h, log, st, _ := startMemberSite(t, poisonMemberPolicy)
	log.arm("DIES in member_lost of a")
	h.Crash("a")
	log.die(t)
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "the handlers of a member event did not finish before the restart") {
		t.Errorf("the unfinished delivery was not reported at start:\n%s", log)
	}
	if n := strings.Count(log.String(), "RAN member_lost a"); n != 1 {
		t.Fatalf("the unfinished delivery was made again at start (%d runs):\n%s", n, log)
	}
	if n := memberDeliveriesLeft(t, st); n != 1 {
		t.Fatalf("%d deliveries counted after one death, want 1", n)
	}
	h.Advance(10 * time.Second) // a is lost again: its handler runs (and, here, finishes)
	if n := strings.Count(log.String(), "RAN member_lost a"); n != 2 {
		t.Fatalf("after one death the handler ran %d times, want 2:\n%s", n, log)
	}
	snap := h.Coordinator.Snapshot()
	if len(snap.Quarantined) != 0 {
		t.Fatalf("quarantined after one death: %+v", snap.Quarantined)
	}
	if n := memberDeliveriesLeft(t, st); n != 0 {
		t.Fatalf("%d deliveries counted after the handler finished, want none", n)
	}
	if err := h.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if snap := h.Coordinator.Snapshot(); len(snap.Quarantined) != 0 {
		t.Fatalf("quarantined at the next start: %+v", snap.Quarantined)
	}
}

// Member events whose handlers finish leave nothing in the store: a
// member that comes and goes for hours does not grow the state file.
func TestMemberEventsLeaveNoDeliveriesBehind(t *testing.T) {
	h, log, st, _ := startMemberSite(t, `
local us = require "understudy"
us.on("member_lost", function(ev) us.log.info("RAN member_lost " .. ev.member.id) end)
us.on("member_restored", function(ev) us.log.info("RAN member_restored " .. ev.member.id) end)
us.on("*", function(ev) end)
`)
	size := func() int64 {
		fi, err := os.Stat(st.Path())
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	cycle := func(n int) {
		for range n {
			h.Crash("b")
			h.Advance(time.Second)
			h.Up("b")
			h.Advance(time.Second)
			h.Silence("b")
			h.Advance(5 * time.Second) // suspect, then lost
			h.Up("b")
			h.Advance(time.Second)
			h.Broken("b", true)
			h.Broken("b", false)
		}
	}
	cycle(20)
	warm := size()
	cycle(200)
	if n := strings.Count(log.String(), "RAN member_lost b"); n != 440 {
		t.Fatalf("member_lost of b ran %d times, want 440", n)
	}
	if n := memberDeliveriesLeft(t, st); n != 0 {
		t.Fatalf("%d member event deliveries left in the store", n)
	}
	if now := size(); now > warm {
		t.Errorf("the state file grew from %d to %d bytes over 200 more losses and returns", warm, now)
	}
	if snap := h.Coordinator.Snapshot(); len(snap.Quarantined) != 0 {
		t.Fatalf("quarantine %+v", snap.Quarantined)
	}
}
