package faults

import (
	"strings"
	"testing"
	"time"
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

func logLine(s float64, member, msg string, kv ...string) LogLine {
	l := LogLine{At: at(s), Member: member, Level: "INFO", Msg: msg, Fields: map[string]any{}}
	for i := 0; i+1 < len(kv); i += 2 {
		l.Fields[kv[i]] = kv[i+1]
	}
	return l
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

func TestAtMostOnce(t *testing.T) {
	h := managerBackup()
	h.Logs = []LogLine{
		logLine(10, "backup", "command received", "id", "a.1", "verb", "takeover"),
		logLine(11, "backup", "command was interrupted before it finished (the instance stopped mid-hook); running it again", "id", "a.1"),
		logLine(12, "backup", "command done", "id", "a.1"),
		logLine(13, "backup", "duplicate of a finished command; answering again", "id", "a.1"),
	}
	if res := want(t, h); res.Actions != 1 {
		t.Errorf("actions %d, want 1", res.Actions)
	}
	h.Logs = append(h.Logs, logLine(14, "backup", "command received", "id", "a.1", "verb", "takeover"))
	want(t, h, PropAtMostOnce)
	h.Logs = h.Logs[:1]
	h.Logs = append(h.Logs, logLine(14, "backup", "command received", "id", "a.1", "verb", "takeover"))
	want(t, h, PropAtMostOnce)
	// The same id at another member is another execution.
	h.Logs = []LogLine{logLine(10, "backup", "command received", "id", "a.1"), logLine(11, "main", "command received", "id", "a.1")}
	want(t, h)
	// In the journal, an action done twice.
	h.Logs = nil
	h.Journal = []Record{rec(10, "action_done", "", "id", "a.2", "verb", "route"), rec(12, "action_done", "", "id", "a.2", "verb", "route")}
	want(t, h, PropAtMostOnce)
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
	h.Stored = []Stored{{Member: "backup", ID: "a.1", Verb: "takeover", State: "done"}}
	want(t, h)
	h.Stored[0].State = "running"
	want(t, h, PropAtMostOnce)
	h.Stored[0].ID = "a.2"
	want(t, h, PropAtMostOnce)
}
