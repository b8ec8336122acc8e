package faults

import (
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/events"
	"understudy/runtime/materialcopy"
)

// t0 is the start of every hand-made history.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// managerBackup is a history of the shipped manager-backup site with no
// faults and nothing in its journal: main (protected, outputs 1 and 2 on
// its inputs 1 and 2) and backup (the standby, on inputs 3 and 4, which
// coordinates), 60 s long.
func managerBackup() *History {
	return &History{
		Seed: 1, Start: t0, End: at(60),
		Site: SiteFacts{
			Name: "manager-backup", Coordinator: "backup", Mode: "auto", StartupGrace: 5 * time.Second, KeepAlive: 2 * time.Second,
			Members: map[string]MemberFact{
				"main": {ID: "main", Instance: true, Protected: true, Interval: 250 * time.Millisecond, LostAfter: time.Second,
					AutoFailback: true, FailbackDelay: 30 * time.Second, Switcher: "router", Outputs: []int{1, 2}, Inputs: []int{1, 2}},
				"backup": {ID: "backup", Instance: true, Standby: true, Capacity: 1, Interval: 250 * time.Millisecond, LostAfter: time.Second,
					AutoFailback: true, FailbackDelay: 30 * time.Second, Switcher: "router", Inputs: []int{3, 4}},
			},
		},
		Routing: []RouteSeen{{At: at(-1), Driver: "router", Routing: []int{1, 2, 3, 4}}},
	}
}

func op(kind OpKind, who string, from, to float64) Op {
	o := Op{Kind: kind, Start: at(from)}
	if to > 0 {
		o.End = at(to)
	}
	switch kind {
	case OpLinkDown:
		o.Host = who
	case OpSwitcherRestart:
		o.Driver = who
	default:
		o.Member = who
	}
	return o
}

func rec(s float64, typ, member string, kv ...string) Record {
	r := Record{At: at(s), Type: typ, Member: member, Fields: map[string]any{}}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Fields[kv[i]] = kv[i+1]
	}
	return r
}

func routes(s float64, r ...int) RouteSeen { return RouteSeen{At: at(s), Driver: "router", Routing: r} }

// want checks that Check finds exactly the properties given (in any order).
func want(t *testing.T, h *History, props ...string) Result {
	t.Helper()
	h.Sort()
	res := Check(h, Bounds{})
	var got []string
	for _, v := range res.Violations {
		got = append(got, v.Property)
	}
	if strings.Join(got, ",") != strings.Join(props, ",") {
		var b strings.Builder
		for _, v := range res.Violations {
			Explain(&b, h, v)
		}
		t.Fatalf("violations %v, want %v\n%s", got, props, b.String())
	}
	return res
}

// killedMain is main killed at +10 s and never restarted, lost at once
// (Last Will), taken over by backup with the switcher following.
func killedMain() *History {
	h := managerBackup()
	h.Ops = []Op{op(OpKill, "main", 10, 0)}
	h.Journal = []Record{
		rec(10.01, "member_lost", "main", "reason", "connection dropped (Last Will)"),
		rec(10.02, "takeover_started", "main", "standby", "backup"),
		rec(10.1, "takeover_done", "main", "standby", "backup"),
	}
	h.Routing = append(h.Routing, routes(10.05, 3, 4, 3, 4))
	return h
}

func TestCoverageCovered(t *testing.T) {
	res := want(t, killedMain())
	if len(res.Covers) != 1 || !res.Covers[0].OK || res.Covers[0].Kind != OpKill || res.Covers[0].Took != 100*time.Millisecond {
		t.Errorf("covers %+v, want one kill covered in 100ms", res.Covers)
	}
}

func TestCoverageNotCovered(t *testing.T) {
	h := killedMain()
	h.Journal = h.Journal[:2] // no takeover_done
	want(t, h, PropCoverage)
}

func TestCoverageSwitcherNotFollowing(t *testing.T) {
	h := killedMain()
	h.Routing = h.Routing[:1] // outputs 1 and 2 still on main's inputs
	want(t, h, PropCoverRoutes)
}

// A switcher restarted to its power-on routing while main is covered must
// show the standby again within Device.
func TestCoverageSwitcherRestartReasserted(t *testing.T) {
	h := killedMain()
	h.Ops = append(h.Ops, op(OpSwitcherRestart, "router", 12, 0))
	h.Routing = append(h.Routing, routes(12, 1, 2, 3, 4))
	want(t, h, PropCoverRoutes)
	h.Routing = append(h.Routing, routes(13, 3, 4, 3, 4))
	want(t, h)
}

// With the coordinator down, the bound starts when it is back (plus its
// startup grace): covering late is fine, never covering is not.
func TestCoverageWaitsForTheCoordinator(t *testing.T) {
	h := killedMain()
	h.Ops = append(h.Ops, op(OpKill, "backup", 5, 40))
	h.Journal = []Record{rec(45.5, "member_lost", "main"), rec(45.6, "takeover_done", "main", "standby", "backup")}
	h.Routing = append(h.Routing[:1], routes(45.55, 3, 4, 3, 4))
	want(t, h)
	h.Journal = h.Journal[:1]
	want(t, h, PropCoverage)
	// Coordinator never back: nothing required.
	h.Ops[1].End = time.Time{}
	h.Journal = nil
	if res := want(t, h); len(res.Covers) != 0 {
		t.Errorf("covers %+v while the coordinator was down", res.Covers)
	}
}

// A blip shorter than the bound needs no coverage.
func TestCoverageBlipNeedsNone(t *testing.T) {
	h := managerBackup()
	h.Ops = []Op{op(OpStop, "main", 10, 10.5)}
	if res := want(t, h); len(res.Covers) != 0 {
		t.Errorf("covers %+v for a blip", res.Covers)
	}
}

func TestFalseLoss(t *testing.T) {
	h := managerBackup()
	h.Journal = []Record{rec(30, "member_lost", "main", "reason", "no heartbeat for 1s")}
	want(t, h, PropFalseLoss)
	// Its link was down shortly before: a real loss.
	h.Ops = []Op{op(OpLinkDown, "main", 28.5, 29.5)}
	want(t, h)
	// The coordinator was stopped (the stall rule's business).
	h.Ops = []Op{op(OpStop, "backup", 20, 27)}
	want(t, h)
	// Long after a fault ended: false.
	h.Ops = []Op{op(OpStop, "main", 5, 6.5)}
	want(t, h, PropFalseLoss)
	// Cut off from the broker only: a real loss.
	h.Ops = []Op{op(OpBrokerCut, "main", 28, 29.5)}
	want(t, h)
	// A partition that leaves main with the broker: false.
	h.Ops = []Op{{Kind: OpPartition, Groups: [2][]string{{"backup", "main"}, {"devices"}}, Start: at(25), End: at(35)}}
	want(t, h, PropFalseLoss)
}

// stored is a command record of member: id, epoch, state, received at
// +recv s and finished at +fin s (0: not finished).
func stored(member, id string, epoch uint64, state string, recv, fin float64) Stored {
	s := Stored{Member: member, ID: id, Verb: "takeover", Epoch: epoch, State: state, At: at(recv)}
	if fin > 0 {
		s.Finished = at(fin)
	}
	return s
}

func read(member string, s float64, after string, recs ...Stored) StoreRead {
	return StoreRead{Member: member, At: at(s), After: after, Records: recs}
}

func TestAtMostOnce(t *testing.T) {
	h := managerBackup()
	h.Journal = []Record{rec(10.5, "action_running", "", "id", "a.1", "verb", "takeover", "target", "backup")}
	// Received, interrupted by a kill (still running), received again and
	// done: allowed, it never finished before.
	h.Stores = []StoreRead{
		read("backup", 11, "kill #1", stored("backup", "a.1", 1, "running", 10, 0)),
		read("backup", 60, ReadEnd, stored("backup", "a.1", 1, "done", 12, 12.5)),
	}
	if res := want(t, h); res.Actions != 1 {
		t.Errorf("actions %d, want 1", res.Actions)
	}
	// Finished, then received again after a restart: a repeat.
	h.Stores = []StoreRead{
		read("backup", 11, "kill #1", stored("backup", "a.1", 1, "done", 10, 10.5)),
		read("backup", 60, ReadEnd, stored("backup", "a.1", 1, "done", 14, 14.5)),
	}
	want(t, h, PropAtMostOnce)
	// Finished, then its record gone: it would run again.
	h.Stores = []StoreRead{
		read("backup", 11, "kill #1", stored("backup", "a.1", 1, "done", 10, 10.5)),
		read("backup", 60, ReadEnd),
	}
	want(t, h, PropAtMostOnce)
	// The same id at another member is another command.
	h.Stores = []StoreRead{
		read("backup", 60, ReadEnd, stored("backup", "a.1", 1, "done", 10, 10.5)),
		read("main", 60, ReadEnd, stored("main", "a.1", 1, "done", 11, 11.5)),
	}
	want(t, h)
	// A store that could not be read after a kill.
	h.Stores = append(h.Stores, StoreRead{Member: "main", At: at(30), After: "kill #2", Err: "unreadable"})
	h.Stores[1], h.Stores[2] = h.Stores[2], h.Stores[1]
	want(t, h, PropAtMostOnce)
	// In the journal, an action done twice.
	h.Stores = nil
	h.Journal = []Record{rec(10, "action_done", "", "id", "a.2", "verb", "route"), rec(12, "action_done", "", "id", "a.2", "verb", "route")}
	want(t, h, PropAtMostOnce)
}

// The one exception to at-most-once: what an instance finished while its
// state folder was full and never wrote, because it was killed (or the
// schedule ended) before the folder had room again and it had a second or
// two to write it. A command done in the journal may then be recorded as
// running at the member, and an action answered while the coordinator's
// folder was full may be done twice in its journal. Not otherwise: not
// with the folder full but the process alive for long enough after, not
// with another member's folder full, not when the kill came before.
func TestAtMostOnceStateFolderFull(t *testing.T) {
	h := managerBackup()
	h.Journal = []Record{rec(10.5, "action_done", "", "id", "a.1", "verb", "takeover", "target", "backup")}
	h.Stores = []StoreRead{
		read("backup", 11.1, "kill #2", stored("backup", "a.1", 1, "running", 10, 0)),
		read("backup", 60, ReadEnd, stored("backup", "a.1", 1, "running", 10, 0)),
	}
	full, kill := op(OpStateFull, "backup", 8, 14), op(OpKill, "backup", 11, 12)
	h.Ops = []Op{full, kill}
	want(t, h)
	// Killed two seconds after the folder had room: it had written it.
	h.Ops = []Op{full, op(OpKill, "backup", 16.5, 17)}
	want(t, h, PropAtMostOnce)
	// The folder full until the end of the history.
	h.Ops = []Op{op(OpStateFull, "backup", 8, 0)}
	want(t, h)
	// Another member's folder full.
	h.Ops = []Op{op(OpStateFull, "main", 8, 14), kill}
	want(t, h, PropAtMostOnce)
	// The kill before the command finished: it had nothing to lose.
	h.Ops = []Op{full, op(OpKill, "backup", 9, 10)}
	want(t, h, PropAtMostOnce)

	// Nothing written at all before the kill: no records to read either.
	h.Stores = []StoreRead{read("backup", 11.1, "kill #2"), read("backup", 60, ReadEnd)}
	h.Ops = []Op{full, kill}
	want(t, h)
	h.Ops = []Op{full, op(OpKill, "backup", 16.5, 17)}
	want(t, h, PropAtMostOnce, PropAtMostOnce) // nothing to read, and not done at the end

	// The coordinator (backup) answered while its folder was full and was
	// killed before it could write it: the restart resumes the action.
	h.Stores = nil
	h.Journal = []Record{rec(10, "action_done", "", "id", "a.2", "verb", "route"), rec(12.5, "action_done", "", "id", "a.2", "verb", "route")}
	h.Ops = []Op{full, kill}
	want(t, h)
	h.Ops = []Op{full, op(OpKill, "backup", 16.5, 17)}
	want(t, h, PropAtMostOnce)
	h.Ops = []Op{op(OpStateFull, "main", 8, 14), kill}
	want(t, h, PropAtMostOnce)
}

// A member the journal says answered commands must have command records to
// read: none (the source renamed, moved or empty) fails, it does not pass.
func TestAtMostOnceNothingToRead(t *testing.T) {
	h := managerBackup()
	h.Journal = []Record{rec(10, "action_running", "", "id", "a.1", "verb", "takeover", "target", "backup")}
	res := want(t, h, PropAtMostOnce)
	if !strings.Contains(res.Violations[0].Message, "no action records could be read at member backup") {
		t.Errorf("message %q", res.Violations[0].Message)
	}
	h.Stores = []StoreRead{read("backup", 60, ReadEnd)}
	want(t, h, PropAtMostOnce)
	h.Stores = []StoreRead{read("backup", 60, ReadEnd, stored("backup", "a.1", 1, "running", 10, 0))}
	want(t, h)
	// Commands to the switcher (no target) ask nothing of the members.
	h.Stores = nil
	h.Journal = []Record{rec(10, "action_done", "", "id", "a.2", "verb", "route", "driver", "router")}
	want(t, h)
}

// Epochs never go backwards at a member, in the order it received commands.
func TestEpochsNeverGoBackwards(t *testing.T) {
	h := managerBackup()
	h.Stores = []StoreRead{
		read("backup", 20, "kill #1", stored("backup", "a.1", 1, "done", 10, 10.5), stored("backup", "a.2", 2, "running", 19, 0)),
		read("backup", 60, ReadEnd, stored("backup", "a.1", 1, "done", 10, 10.5), stored("backup", "a.2", 2, "done", 25, 26),
			stored("backup", "b.1", 2, "done", 30, 31)),
		read("main", 60, ReadEnd, stored("main", "a.9", 1, "done", 40, 41)), // another member: its own order
	}
	want(t, h)
	// A command of epoch 1 accepted after one of epoch 2.
	h.Stores[1].Records = append(h.Stores[1].Records, stored("backup", "a.3", 1, "done", 35, 36))
	res := want(t, h, PropEpochs)
	if !strings.Contains(res.Violations[0].Message, "epoch 1") || res.Violations[0].Member != "backup" {
		t.Errorf("violation %s", res.Violations[0])
	}
	// Seen only in a read after a kill (its record replaced later): still caught.
	h.Stores[1].Records = h.Stores[1].Records[:3]
	h.Stores[0].Records = append(h.Stores[0].Records, stored("backup", "a.3", 1, "running", 19.5, 0))
	want(t, h, PropEpochs)
}

// main killed at +5, back at +10, covered meanwhile: with a 30 s failback
// delay it must be failed back by +10 + Reconnect + 30 s + Failback.
func failbackHistory() *History {
	h := managerBackup()
	h.End = at(70)
	h.Ops = []Op{op(OpKill, "main", 5, 10)}
	h.Journal = []Record{
		rec(5.01, "member_lost", "main"),
		rec(5.1, "takeover_done", "main", "standby", "backup"),
		rec(10.5, "member_restored", "main"),
		rec(40.6, "failback_started", "main", "standby", "backup"),
		rec(40.7, "failback_done", "main", "standby", "backup"),
	}
	h.Routing = append(h.Routing, routes(5.05, 3, 4, 3, 4), routes(40.65, 1, 2, 3, 4))
	return h
}

func TestFailback(t *testing.T) {
	res := want(t, failbackHistory())
	if res.Failbacks != 1 {
		t.Errorf("failbacks %d, want 1", res.Failbacks)
	}
	h := failbackHistory()
	h.Journal = h.Journal[:4]
	want(t, h, PropFailback)
	h = failbackHistory()
	h.Routing = h.Routing[:2]
	want(t, h, PropBackRoutes)
	// Not automatic: nothing required.
	h = failbackHistory()
	m := h.Site.Members["main"]
	m.AutoFailback = false
	h.Site.Members["main"] = m
	h.Journal = h.Journal[:3]
	if res := want(t, h); res.Failbacks != 0 {
		t.Errorf("failbacks %d with auto_failback off", res.Failbacks)
	}
}

func TestPhase(t *testing.T) {
	h := failbackHistory()
	for s, p := range map[float64]string{1: PhaseIdle, 5.05: PhaseIdle, 40.65: PhaseFailback, 50: PhaseIdle} {
		if got := Phase(h, at(s)); got != p {
			t.Errorf("phase at +%vs = %s, want %s", s, got, p)
		}
	}
	h.Journal = append(h.Journal, rec(5.02, "takeover_started", "main"))
	h.Sort()
	if got := Phase(h, at(5.05)); got != PhaseTakeover {
		t.Errorf("phase at +5.05s = %s, want takeover", got)
	}
	// A configuration push: from its action's start to its end, by id.
	h.Journal = append(h.Journal,
		rec(45, events.ActionStarted, "", "id", "a1", "verb", "config", "target", "main"),
		rec(45.5, events.ActionStarted, "", "id", "a2", "verb", "route"),
		rec(46, events.ActionDone, "", "id", "a1", "verb", "config", "target", "main"))
	h.Sort()
	for s, p := range map[float64]string{45.2: PhaseConfig, 45.7: PhaseConfig, 46.5: PhaseIdle} {
		if got := Phase(h, at(s)); got != p {
			t.Errorf("phase at +%vs = %s, want %s", s, got, p)
		}
	}
}

// An outage long enough to be judged lost must be covered even when the
// member is back before the bound ends.
func TestCoverageShortOutage(t *testing.T) {
	h := managerBackup()
	h.End = at(50) // before a failback is due
	h.Ops = []Op{op(OpKill, "main", 10, 13)}
	want(t, h, PropCoverage)
	h.Journal = []Record{rec(10.01, "member_lost", "main"), rec(10.1, "takeover_done", "main", "standby", "backup")}
	if res := want(t, h); len(res.Covers) != 1 || res.Covers[0].Took != 100*time.Millisecond {
		t.Errorf("covers %+v, want one in 100ms", res.Covers)
	}
	// Taken over too late.
	h.Journal[1].At = at(17.5)
	want(t, h, PropCoverage)
}

// A command acknowledged as done must still be done in the member's store
// at the end.
func TestStillAcknowledged(t *testing.T) {
	h := managerBackup()
	h.Journal = []Record{rec(10, "action_done", "", "id", "a.1", "verb", "takeover", "target", "backup")}
	h.Stores = []StoreRead{read("backup", 60, ReadEnd, stored("backup", "a.1", 1, "done", 9, 9.5))}
	want(t, h)
	h.Stores[0].Records[0].State = "running"
	want(t, h, PropAtMostOnce)
	h.Stores[0].Records[0].ID = "a.2"
	want(t, h, PropAtMostOnce)
}

// A switcher refusing (or dropping) commands while main is taken over: the
// routes must be right once it is disarmed and Device has passed (the
// coordinator re-asserts when it reads the device again), else the routing
// never converged.
func TestCoverageSwitcherRefusing(t *testing.T) {
	h := killedMain()
	h.Routing = h.Routing[:1]
	h.Ops = append(h.Ops, Op{Kind: OpSwitcherRefuse, Driver: "router", Count: 2, Start: at(9.9), End: at(11)})
	want(t, h, PropCoverRoutes) // never converged
	h.Routing = append(h.Routing, routes(16, 3, 4, 3, 4))
	want(t, h)
	// Armed past the deadline: the bound moves to its end + Device.
	h.Ops[1].End = at(20)
	h.Routing[1].At = at(25)
	want(t, h)
	h.Routing[1].At = at(27)
	want(t, h, PropCoverRoutes)
	h.Ops[1].Kind = OpSwitcherDrop
	want(t, h, PropCoverRoutes)
}

// The report says where faults landed and whether aimed ones hit their
// phase; a missed aimed fault is neither injected nor an error.
func TestReportAimed(t *testing.T) {
	h := failbackHistory()
	h.Journal = append(h.Journal, rec(5.02, "takeover_started", "main", "standby", "backup"))
	h.Sort()
	h.Ops = append(h.Ops,
		Op{Kind: OpStop, Member: "backup", Aim: PhaseTakeover, AimedAt: at(5.02), Start: at(5.023), End: at(6)},
		Op{Kind: OpKill, Member: "backup", Aim: PhaseFailback, Missed: true},
	)
	rep := NewReport("manager-backup")
	rep.Add(h, Check(h, Bounds{}))
	if rep.Landed[PhaseTakeover] != 1 || rep.Aimed[PhaseTakeover] != 1 || rep.AimedHit[PhaseTakeover] != 1 || rep.Missed != 1 || rep.FaultErrs != 0 {
		t.Errorf("landed %v aimed %v hit %v missed %d errors %d", rep.Landed, rep.Aimed, rep.AimedHit, rep.Missed, rep.FaultErrs)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "aimed faults: 1 at a takeover (1 landed in it), 1 missed") {
		t.Errorf("report:\n%s", b.String())
	}
}

// The stall rule: after the coordinator woke from a stop longer than
// lost_after, nobody is judged before a fresh lost_after — not even a
// member that was really killed meanwhile.
func TestFalseLossRightAfterTheCoordinatorsStall(t *testing.T) {
	h := managerBackup()
	h.Ops = []Op{op(OpStop, "backup", 10, 15)}
	h.Journal = []Record{rec(15.05, "member_lost", "main", "reason", "no heartbeat for 5.05s")}
	want(t, h, PropFalseLoss)

	// main killed during the stall, lost a fresh lost_after after the wake:
	// as the rule says.
	h = managerBackup()
	h.Ops = []Op{op(OpStop, "backup", 10, 15), op(OpKill, "main", 12, 0)}
	h.Journal = []Record{rec(16.01, "member_lost", "main", "reason", "no heartbeat for 1s")}
	res := Check(h, Bounds{})
	for _, v := range res.Violations {
		if v.Property == PropFalseLoss {
			t.Errorf("a loss a fresh lost_after after the wake reported: %s", v)
		}
	}
	// The same loss right at the wake is the stall judged; also one
	// recorded a moment before the stop's end was stamped (the process
	// may run before the nemesis notes the time).
	h.Journal = []Record{rec(14.999, "member_lost", "main", "reason", "connection dropped (Last Will)")}
	if res := Check(h, Bounds{}); !slices.ContainsFunc(res.Violations, func(v Violation) bool { return v.Property == PropFalseLoss }) {
		t.Error("a loss recorded 1 ms before the stop's end was stamped was not reported")
	}
	h.Journal = []Record{rec(15.02, "member_lost", "main", "reason", "no heartbeat for 3s")}
	res = Check(h, Bounds{})
	found := false
	for _, v := range res.Violations {
		found = found || v.Property == PropFalseLoss
	}
	if !found {
		t.Error("a loss of a killed member 20 ms after the coordinator woke from a 5 s stop was not reported")
	}
	// A coordinator killed after its stop restarts: its startup grace rules.
	h.Ops = append(h.Ops, op(OpKill, "backup", 15, 15.01))
	res = Check(h, Bounds{})
	for _, v := range res.Violations {
		if v.Property == PropFalseLoss && strings.Contains(v.Message, "woke from a stop") {
			t.Errorf("the stall rule applied to a coordinator killed after its stop: %s", v)
		}
	}
}

// recorders is a history of the shipped recorder-standby site reduced to
// rec-1 (copy_material, material in /srv/rec) and standby-1 (material in
// /srv/standby), coordinated by manager, 60 s long: rec-1 covered by
// standby-1 from +10 s, failed back from +30 s with two copy passes (the
// first finds the file standby-1 was writing when it let go still being
// written), failback_done at +34.2 s. The recorder emulation's files:
// rec-1's own seg-0000 and seg-0002, standby-1's seg-0002 (the name
// conflict, other content), seg-0003 and seg-0004 (closed when it let go,
// at +30.5 s), all where they belong at the end.
func recorders() *History {
	h := &History{
		Seed: 1, Start: t0, End: at(60),
		Site: SiteFacts{
			Name: "recorders", Coordinator: "manager", Mode: "auto", StartupGrace: 10 * time.Second, KeepAlive: 2 * time.Second, CopySettle: 3 * time.Second,
			Members: map[string]MemberFact{
				"manager": {ID: "manager", Instance: true, Interval: time.Second, LostAfter: 3 * time.Second},
				"rec-1": {ID: "rec-1", Instance: true, Protected: true, Pool: "recorders", Interval: time.Second, LostAfter: 3 * time.Second,
					AutoFailback: true, FailbackDelay: 5 * time.Second, CopyMaterial: true, Material: []string{"/srv/rec"}},
				"standby-1": {ID: "standby-1", Instance: true, Standby: true, Pool: "recorders", Interval: time.Second, LostAfter: 3 * time.Second,
					AutoFailback: true, FailbackDelay: 5 * time.Second, CopyMaterial: true, Material: []string{"/srv/standby"}},
			},
		},
		Journal: []Record{
			rec(10, "takeover_done", "rec-1", "standby", "standby-1"),
			rec(30, "failback_started", "rec-1", "standby", "standby-1"),
			rec(30.5, "copy_started", "rec-1", "from", "standby-1"),
			copyDone(30.6, 1),
			rec(34, "copy_started", "rec-1", "from", "standby-1"),
			copyDone(34.1, 0),
			rec(34.2, "failback_done", "rec-1", "standby", "standby-1"),
		},
	}
	file := func(host, forM, root, path, rel, content string, opened, closed float64) Recorded {
		return Recorded{Host: host, For: forM, Root: root, Path: path, Rel: rel, Size: int64(len(content)), Hash: hashOf([]byte(content)), Opened: at(opened), Closed: at(closed)}
	}
	h.Recorded = []Recorded{
		file("rec-1", "rec-1", "/srv/rec", "cam-1/seg-0000.rec", "cam-1/seg-0000.rec", "M own zero", -1, -1),
		file("rec-1", "rec-1", "/srv/rec", "cam-1/seg-0002.rec", "cam-1/seg-0002.rec", "M own two", -1, -1),
		file("standby-1", "rec-1", "/srv/standby", "rec-1/cam-1/seg-0002.rec", "cam-1/seg-0002.rec", "S the conflict", 10.1, 12),
		file("standby-1", "rec-1", "/srv/standby", "rec-1/cam-1/seg-0003.rec", "cam-1/seg-0003.rec", "S three", 12.1, 20),
		file("standby-1", "rec-1", "/srv/standby", "rec-1/cam-1/seg-0004.rec", "cam-1/seg-0004.rec", "S four, written when it let go", 20.1, 30.5),
	}
	for _, w := range h.Recorded {
		h.Material = append(h.Material, FileSeen{Host: w.Host, Root: w.Root, Path: w.Path, Size: w.Size, Hash: w.Hash})
		if w.Host != w.For && w.Rel != "cam-1/seg-0002.rec" {
			h.Material = append(h.Material, FileSeen{Host: w.For, Root: "/srv/rec", Path: w.Rel, Size: w.Size, Hash: w.Hash})
		}
	}
	return h
}

func copyDone(s float64, stillWriting int) Record {
	r := copyDoneOf("rec-1", s, stillWriting)
	r.Fields["from"] = "standby-1"
	return r
}

// seen returns the index in h.Material of host's file path (-1: none).
func seen(h *History, host, path string) int {
	for i, f := range h.Material {
		if f.Host == host && f.Path == path {
			return i
		}
	}
	return -1
}

func TestMaterialIntact(t *testing.T) {
	res := want(t, recorders())
	if res.Copies != 1 || res.MaterialFiles != 3 {
		t.Errorf("copies %d, files compared %d; want 1 failback with a copy and 3 files (the conflict among them)", res.Copies, res.MaterialFiles)
	}
	// A file the standby finished before the last copy began is missing at
	// the member.
	h := recorders()
	h.Material = slices.Delete(h.Material, seen(h, "rec-1", "cam-1/seg-0003.rec"), seen(h, "rec-1", "cam-1/seg-0003.rec")+1)
	want(t, h, PropMaterial)
	// … or truncated there.
	h = recorders()
	h.Material[seen(h, "rec-1", "cam-1/seg-0004.rec")].Size -= 3
	want(t, h, PropMaterial)
	// … or there with other content.
	h = recorders()
	h.Material[seen(h, "rec-1", "cam-1/seg-0004.rec")].Hash = hashOf([]byte("something else"))
	want(t, h, PropMaterial)
	// The conflict overwritten: rec-1's own seg-0002 has the standby's
	// content.
	h = recorders()
	i := seen(h, "rec-1", "cam-1/seg-0002.rec")
	h.Material[i].Size, h.Material[i].Hash = h.Recorded[2].Size, h.Recorded[2].Hash
	want(t, h, PropMaterial)
	// A member's own recording gone (no copy needed for that).
	h = recorders()
	h.Journal = nil
	h.Material = slices.Delete(h.Material, seen(h, "rec-1", "cam-1/seg-0000.rec"), seen(h, "rec-1", "cam-1/seg-0000.rec")+1)
	want(t, h, PropMaterial)
	// The standby's recording lost at the standby.
	h = recorders()
	h.Material = slices.Delete(h.Material, seen(h, "standby-1", "rec-1/cam-1/seg-0003.rec"), seen(h, "standby-1", "rec-1/cam-1/seg-0003.rec")+1)
	want(t, h, PropMaterial)
	// A file the standby closed after the last copy began is not owed.
	h = recorders()
	h.Recorded[4].Closed = at(34.05)
	h.Material = slices.Delete(h.Material, seen(h, "rec-1", "cam-1/seg-0004.rec"), seen(h, "rec-1", "cam-1/seg-0004.rec")+1)
	if res := want(t, h); res.MaterialFiles != 2 {
		t.Errorf("files compared %d, want 2 (seg-0004 closed after the copy began)", res.MaterialFiles)
	}
}

// A copy that never finished (the schedule ended first, or it failed) is
// not checked: its files may be missing, its temporary file left.
func TestMaterialCopyUnfinished(t *testing.T) {
	h := recorders()
	h.Journal = h.Journal[:5] // the second pass never reported
	h.Material = slices.Delete(h.Material, seen(h, "rec-1", "cam-1/seg-0004.rec"), seen(h, "rec-1", "cam-1/seg-0004.rec")+1)
	h.Material = append(h.Material, FileSeen{Host: "rec-1", Root: "/srv/rec", Path: "cam-1/.seg-0004.rec" + materialcopy.TempSuffix, Size: 5})
	if res := want(t, h); res.Copies != 0 || res.MaterialFiles != 0 {
		t.Errorf("copies %d, files %d: a copy that never finished was checked", res.Copies, res.MaterialFiles)
	}
	h.Journal = append(h.Journal, rec(35, "copy_failed", "rec-1", "from", "standby-1", "error", "connection reset"))
	want(t, h)
}

func TestMaterialTemporaryFileLeft(t *testing.T) {
	h := recorders()
	h.Material = append(h.Material, FileSeen{Host: "rec-1", Root: "/srv/rec", Path: "cam-1/.seg-0004.rec" + materialcopy.TempSuffix, Size: 5})
	want(t, h, PropMaterial)
	// In a folder no copy ever went to.
	h = recorders()
	h.Material = append(h.Material, FileSeen{Host: "standby-1", Root: "/srv/standby", Path: "rec-1/cam-1/.x" + materialcopy.TempSuffix, Size: 5})
	want(t, h, PropMaterial)
	// Not a copy's temporary file: a name that merely ends like one.
	h = recorders()
	h.Material = append(h.Material, FileSeen{Host: "rec-1", Root: "/srv/rec", Path: "cam-1/x" + materialcopy.TempSuffix, Size: 5})
	want(t, h)
}

func TestFailbackAfterCopy(t *testing.T) {
	// failback_done before the copy was done.
	h := recorders()
	h.Journal[6].At = at(33)
	want(t, h, PropFailbackCopy)
	// After a copy that still found a file being written.
	h = recorders()
	h.Journal = append(h.Journal[:4], h.Journal[6])
	want(t, h, PropFailbackCopy)
	// With no copy at all.
	h = recorders()
	h.Journal = append(h.Journal[:2], h.Journal[6])
	want(t, h, PropFailbackCopy)
	// After a failed copy.
	h = recorders()
	h.Journal[5] = rec(34.1, "copy_failed", "rec-1", "from", "standby-1", "error", "disk full")
	want(t, h, PropFailbackCopy)
	// Without copy_material nothing is owed.
	h = recorders()
	h.Journal = append(h.Journal[:2], h.Journal[6])
	m := h.Site.Members["rec-1"]
	m.CopyMaterial = false
	h.Site.Members["rec-1"] = m
	want(t, h)
}

// A failback with a copy is allowed copy.settle more (a second pass for
// the file the standby was writing when it let go).
func TestFailbackWaitsForTheCopy(t *testing.T) {
	h := failbackHistory()
	h.End = at(100)
	m := h.Site.Members["main"]
	m.CopyMaterial = true
	h.Site.Members["main"] = m
	h.Site.CopySettle = 30 * time.Second
	h.Journal = append(h.Journal[:3],
		rec(40.6, "failback_started", "main", "standby", "backup"),
		rec(41, "copy_started", "main", "from", "backup"), copyDoneOf("main", 41.1, 1),
		rec(71.1, "copy_started", "main", "from", "backup"), copyDoneOf("main", 71.2, 0),
		rec(71.3, "failback_done", "main", "standby", "backup"))
	h.Routing[len(h.Routing)-1].At = at(71.25)
	if res := want(t, h); res.Failbacks != 1 {
		t.Errorf("failbacks %d, want 1", res.Failbacks)
	}
	h.Site.CopySettle = 0
	want(t, h, PropFailback)
}

func copyDoneOf(member string, s float64, stillWriting int) Record {
	r := rec(s, "copy_done", member, "from", "backup")
	r.Fields["still_writing"] = float64(stillWriting)
	return r
}

// onMosquitto is managerBackup on an external broker (Debian's mosquitto
// on the broker host).
func onMosquitto(h *History) *History {
	h.Site.Broker = BrokerMosquitto
	return h
}

// mainKilledDuringBrokerKill is main killed at +12 s (never restarted)
// while the external broker is down from +10 s to +14 s, and taken over at
// +takeover s.
func mainKilledDuringBrokerKill(takeover float64) *History {
	h := onMosquitto(managerBackup())
	h.Ops = []Op{op(OpBrokerKill, "", 10, 14), op(OpKill, "main", 12, 0)}
	h.Journal = []Record{
		rec(takeover-0.1, "member_lost", "main", "reason", "no heartbeat"),
		rec(takeover-0.05, "takeover_started", "main", "standby", "backup"),
		rec(takeover, "takeover_done", "main", "standby", "backup"),
	}
	h.Routing = append(h.Routing, routes(takeover-0.02, 3, 4, 3, 4))
	return h
}

// While the external broker is down nobody hears anybody: an outage that
// overlaps it is judged from when the coordinator is back on the bus and
// gave every member the startup grace (reconnect 6 s + startup_grace 5 s +
// detect 1 s after +14 s, then lost_after + detect + cover: +33 s). Taken
// over at +20.5 s is in time; never taken over is a violation; the same
// takeover without the broker kill is late (bound +19 s).
func TestCoverageWaitsForTheBroker(t *testing.T) {
	res := want(t, mainKilledDuringBrokerKill(20.5))
	if len(res.Covers) != 1 || !res.Covers[0].OK || res.Covers[0].Kind != OpKill || !res.Covers[0].Deadline.Equal(at(33)) {
		t.Errorf("covers %+v, want main's kill covered, bound +33 s", res.Covers)
	}
	want(t, mainKilledDuringBrokerKill(32.5))
	want(t, mainKilledDuringBrokerKill(33.5), PropCoverage)
	h := mainKilledDuringBrokerKill(20.5)
	h.Journal = h.Journal[:2] // no takeover_done
	want(t, h, PropCoverage)
	h = mainKilledDuringBrokerKill(20.5)
	h.Ops = h.Ops[1:] // no broker kill: the bound is +19 s
	want(t, h, PropCoverage)
	// A stopped broker is as deaf as a killed one.
	h = mainKilledDuringBrokerKill(32.5)
	h.Ops[0].Kind = OpBrokerStop
	want(t, h)
}

// A loss during the broker's outage, or within the slack after it, is no
// false loss; a healthy member judged lost long after the broker came
// back is.
func TestFalseLossAroundABrokerKill(t *testing.T) {
	h := onMosquitto(managerBackup())
	h.Ops = []Op{op(OpBrokerKill, "", 10, 14)}
	for _, s := range []float64{12, 14.5, 21} {
		h.Journal = []Record{rec(s, "member_lost", "main", "reason", "no heartbeat")}
		want(t, h)
	}
	h.Journal = []Record{rec(25, "member_lost", "main", "reason", "no heartbeat")}
	want(t, h, PropFalseLoss)
	// A broker kill is nothing with the embedded broker (it cannot happen).
	h.Site.Broker = ""
	h.Journal = []Record{rec(12, "member_lost", "main", "reason", "no heartbeat")}
	want(t, h, PropFalseLoss)
}

// With an external broker, being cut off from the broker means from the
// broker's host: a partition that keeps main and the coordinator together
// but away from the broker takes both off the bus (with the embedded
// broker the two together are on it: main's loss is false), and a broker
// cut leaves main away even though it still reaches the coordinator's
// host.
func TestExternalBrokerCuts(t *testing.T) {
	h := onMosquitto(managerBackup())
	h.Ops = []Op{{Kind: OpPartition, Groups: [2][]string{{"backup", "main"}, {BrokerHost, "devices"}}, Start: at(10), End: at(20)}}
	h.Journal = []Record{rec(15, "member_lost", "main", "reason", "no heartbeat")}
	want(t, h)
	h.Site.Broker = ""
	h.Ops[0].Groups = [2][]string{{"backup", "main"}, {"devices"}}
	want(t, h, PropFalseLoss)

	// main cut off from the broker host for 20 s: lost and covered in time.
	h = onMosquitto(managerBackup())
	h.Ops = []Op{op(OpBrokerCut, "main", 10, 30)}
	h.Journal = []Record{rec(11.2, "member_lost", "main"), rec(11.3, "takeover_started", "main", "standby", "backup"), rec(11.5, "takeover_done", "main", "standby", "backup")}
	h.Routing = append(h.Routing, routes(11.4, 3, 4, 3, 4))
	want(t, h)
	h.Journal = h.Journal[:1]
	want(t, h, PropCoverage)
	// The main side of a partition with the broker on the other: away.
	h.Ops = []Op{{Kind: OpPartition, Groups: [2][]string{{"main"}, {"backup", BrokerHost, "devices"}}, Start: at(10), End: at(30)}}
	want(t, h, PropCoverage)
}

// With an external broker, the coordinator's link down cuts it off from
// the broker (and the switchers): back on the bus, it gives every member
// the startup grace, so main killed meanwhile is judged from then (bound
// +14 + 12 + 7 = +33 s); with the embedded broker the members' next
// heartbeats decide (+14 + 8 + 7 = +29 s).
func TestCoordinatorUnpluggedFromAnExternalBroker(t *testing.T) {
	h := mainKilledDuringBrokerKill(31)
	h.Ops[0] = op(OpLinkDown, "backup", 10, 14)
	want(t, h)
	h.Site.Broker = ""
	want(t, h, PropCoverage)
}

// In manual mode a loss is a proposal: the bound starts when the mode is
// switched back to auto (the journal's mode_changed, not the operator's
// command), and runs as usual from there.
func TestCoverageWaitsForAutoMode(t *testing.T) {
	manualMain := func(auto float64) *History {
		h := killedMain()
		h.Ops = append(h.Ops, Op{Kind: OpOperator, Verb: VerbMode, Member: "main", Start: at(8), End: at(auto)})
		h.Journal = []Record{
			rec(8, events.ModeChanged, "", "mode", "manual", "previous", "auto"),
			rec(10.01, events.MemberLost, "main", "reason", "connection dropped (Last Will)"),
			rec(10.02, events.TakeoverProposed, "main", "standby", "backup"),
			rec(auto, events.ModeChanged, "", "mode", "auto", "previous", "manual"),
			rec(auto+0.02, events.TakeoverStarted, "main", "standby", "backup"),
			rec(auto+0.1, events.TakeoverDone, "main", "standby", "backup"),
		}
		h.Routing = []RouteSeen{routes(-1, 1, 2, 3, 4), routes(auto+0.05, 3, 4, 3, 4)}
		return h
	}
	want(t, manualMain(30))
	// Still manual at the end: nothing owed.
	h := manualMain(30)
	h.Journal = h.Journal[:3]
	h.Routing = h.Routing[:1]
	want(t, h)
	// Back in auto at +30 but never covered: a violation.
	h = manualMain(30)
	h.Journal = h.Journal[:4]
	want(t, h, PropCoverage)
}

// With the failover limit reached by another member's coverage, a loss
// waits in the queue: nothing is owed while the pool is full, and once the
// standby is free again (the other failed back) the coordinator must take
// the next from the queue within the bound.
func TestCoverageQueuedUntilTheStandbyIsFree(t *testing.T) {
	queued := func(back float64, journal ...Record) *History {
		h := recorders()
		h.Site.Limit = 1
		h.Site.Members["rec-3"] = MemberFact{ID: "rec-3", Instance: true, Protected: true, Pool: "recorders", Interval: time.Second, LostAfter: 3 * time.Second}
		h.Ops = []Op{op(OpStop, "rec-1", 6, 25), op(OpStop, "rec-3", 6.2, back)}
		h.Journal = append([]Record{
			rec(9.5, events.TakeoverStarted, "rec-1", "standby", "standby-1"),
			rec(9.6, events.TakeoverQueued, "rec-3"),
		}, h.Journal...)
		h.Journal = append(h.Journal, journal...)
		return h
	}
	// rec-3 back at +30, before rec-1's failback freed the standby.
	if res := want(t, queued(30)); res.Queued != 1 {
		t.Errorf("queued %d, want rec-3's outage counted as queued", res.Queued)
	}
	// rec-3 still away when rec-1 failed back at +34.2: taken from the
	// queue at +35.
	want(t, queued(0, rec(35, events.TakeoverDone, "rec-3", "standby", "standby-1")))
	// ... or never: a violation.
	want(t, queued(0), PropCoverage)
}

// With a failover delay, a member is owed coverage only when it stayed
// away past lost_after + detect + the delay; and each loss starts the
// delay again, so two faults with the member back between them (make
// faults, vms-pool seed 6: killed 1.4 s, back, then its link down 4.1 s
// 6 s later, delay 4 s) are two outages, neither long enough.
func TestCoverageWithAFailoverDelay(t *testing.T) {
	delayed := func(ops ...Op) *History {
		h := recorders()
		m := h.Site.Members["rec-1"]
		m.Delay = 4 * time.Second
		m.AutoFailback = false // coverage alone
		h.Site.Members["rec-1"] = m
		h.Ops = ops
		h.Journal = nil
		return h
	}
	// 7 s away: lost, but back before its delay ran out.
	want(t, delayed(op(OpStop, "rec-1", 10, 17)))
	// Two faults 6 s apart, each shorter than lost_after + detect + delay.
	want(t, delayed(op(OpKill, "rec-1", 12.7, 14.2), op(OpLinkDown, "rec-1", 20.1, 24.8)))
	// 12 s away in one fault: owed by +10 + 3 + 2.5 + 4 + 5.
	want(t, delayed(op(OpStop, "rec-1", 10, 22)), PropCoverage)
	h := delayed(op(OpStop, "rec-1", 10, 22))
	h.Journal = []Record{rec(17.1, events.TakeoverDone, "rec-1", "standby", "standby-1")}
	want(t, h)
}

// A failback whose copy failed (the standby killed during it: make faults,
// recorder-standby seed 19) is owed once the coordinator has tried the
// copy again after the wait its copy_incomplete alarm says, not before.
func TestFailbackAfterACopyRetry(t *testing.T) {
	retried := func(done bool) *History {
		h := recorders()
		h.End = at(120)
		h.Ops = []Op{op(OpStop, "rec-1", 5, 20)}
		h.Journal = []Record{
			rec(9, events.TakeoverDone, "rec-1", "standby", "standby-1"),
			rec(30, events.FailbackStarted, "rec-1", "standby", "standby-1"),
			rec(30.5, events.CopyStarted, "rec-1", "from", "standby-1"),
			rec(31, events.CopyFailed, "rec-1", "from", "standby-1", "error", "connection refused"),
			rec(31, events.Alarm, "rec-1", "kind", "copy_incomplete", "retry_in_s", "60"),
		}
		if done {
			h.Journal = append(h.Journal,
				rec(91, events.CopyStarted, "rec-1", "from", "standby-1"),
				copyDone(91.1, 0),
				rec(91.2, events.FailbackDone, "rec-1", "standby", "standby-1"))
		}
		return h
	}
	if res := want(t, retried(true)); res.Failbacks != 1 {
		t.Errorf("failbacks judged %d, want 1", res.Failbacks)
	}
	want(t, retried(false), PropFailback)
}

// A standby of the pool that does not fit a member (another disk layout,
// a capability it lacks: MemberFact.Standbys) cannot cover it: with the
// only one that fits busy, the loss waits in the queue although the other
// is free (make faults, vms-pool seed 3: srv-1 queued behind srv-2 on fo-1,
// fo-big free but with another disk layout).
func TestCoverageQueuedBehindTheOnlyStandbyThatFits(t *testing.T) {
	queued := func(fits []string, journal ...Record) *History {
		h := recorders()
		h.Site.Members["standby-big"] = MemberFact{ID: "standby-big", Instance: true, Standby: true, Pool: "recorders", Interval: time.Second, LostAfter: 3 * time.Second}
		h.Site.Members["rec-3"] = MemberFact{ID: "rec-3", Instance: true, Protected: true, Pool: "recorders", Standbys: fits, Interval: time.Second, LostAfter: 3 * time.Second}
		h.Ops = []Op{op(OpStop, "rec-1", 6, 25), op(OpStop, "rec-3", 6.2, 0)}
		h.Journal = append([]Record{
			rec(9.5, events.TakeoverStarted, "rec-1", "standby", "standby-1"),
			rec(9.6, events.TakeoverQueued, "rec-3"),
		}, h.Journal...)
		h.Journal = append(h.Journal, journal...)
		return h
	}
	// Only standby-1 fits rec-3: queued until rec-1 failed back (+34.2),
	// then taken from the queue.
	if res := want(t, queued([]string{"standby-1"}, rec(35, events.TakeoverDone, "rec-3", "standby", "standby-1"))); res.Queued != 1 {
		t.Errorf("queued %d, want rec-3's outage counted as queued", res.Queued)
	}
	want(t, queued([]string{"standby-1"}), PropCoverage)
	// standby-big fits too and was free all along: owed at once.
	want(t, queued([]string{"standby-1", "standby-big"}, rec(35, events.TakeoverDone, "rec-3", "standby", "standby-1")), PropCoverage)
}

// With the coordinator's state folder full, its journal records wait in
// memory: killed before the folder had room again, the takeover it made
// may be missing from the journal. Such an outage is not provable, not a
// violation; the same with the coordinator alive past the folder's return
// is a violation.
func TestCoverageUnprovableWhenTheJournalWasLost(t *testing.T) {
	lost := func(killAt float64) *History {
		h := killedMain()
		h.Journal = h.Journal[:1] // member_lost only: the takeover's records never reached the journal
		h.Ops = append(h.Ops, Op{Kind: OpStateFull, Member: "backup", Start: at(9), End: at(20)}, op(OpKill, "backup", killAt, killAt+1))
		return h
	}
	if res := want(t, lost(15)); res.Unproven != 1 {
		t.Errorf("unproven %d, want main's outage counted as not provable", res.Unproven)
	}
	want(t, lost(40), PropCoverage)
}

// A partition between the coordinator and the switcher that ended before
// the coverage bound still delays the routes by device: the driver must
// reconnect and send them (make faults, manager-backup seed 23: the routes
// landed 3.4 s after the partition healed, 160 ms past the bound itself).
func TestCoverageRoutesAfterADeviceTroubleThatEndedBeforeTheBound(t *testing.T) {
	h := killedMain()
	h.Ops = append(h.Ops, Op{Kind: OpPartition, Groups: [2][]string{{DevicesHost}, {"backup", "main"}}, Start: at(8), End: at(14)})
	h.Routing = []RouteSeen{routes(-1, 1, 2, 3, 4), routes(17.5, 3, 4, 3, 4)}
	want(t, h) // bound +17; the partition ended at +14: routes due by +20
	h.Routing = []RouteSeen{routes(-1, 1, 2, 3, 4), routes(20.5, 3, 4, 3, 4)}
	want(t, h, PropCoverRoutes)
}
