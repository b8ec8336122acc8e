package faults

import (
	"slices"
	"testing"
	"time"
)

// stepped is what a host whose clock reads off ahead of the machine's
// stamps at +s on the machine's clock.
func stepped(s float64, off time.Duration) time.Time { return at(s).Add(off) }

// The coordinator's clock stepped back by 90 s at +8, main killed at +10,
// lost and covered: the journal, backup's log and backup's command records
// after the step read 90 s early. Unstep puts them back where they were on
// the machine's clock, and the checker then finds nothing; without it the
// takeover would be before the kill and a newer command before an older
// one.
func TestUnstepPlacesASteppedHostsRecords(t *testing.T) {
	const back = -90 * time.Second
	build := func() *History {
		h := killedMain()
		step := op(OpClockStep, "backup", 8, 8.001)
		step.Offset, step.JournalMarks = back, [2]int{1, 1}
		h.Ops = append(h.Ops, step)
		// In the order they were written, as read from their files.
		h.Journal = []Record{
			rec(2, "member_seen", "main"),
			{At: stepped(10.01, back), Type: "member_lost", Member: "main", Fields: map[string]any{"reason": "connection dropped (Last Will)"}},
			{At: stepped(10.02, back), Type: "takeover_started", Member: "main", Fields: map[string]any{"standby": "backup"}},
			{At: stepped(10.06, back), Type: "action_running", Fields: map[string]any{"id": "a.2", "target": "backup", "verb": "takeover"}},
			{At: stepped(10.1, back), Type: "takeover_done", Member: "main", Fields: map[string]any{"standby": "backup"}},
		}
		h.Logs = []LogLine{
			{At: at(0.5), Member: "backup", Msg: logHooksEnabled, Fields: map[string]any{"clock_step": 0.0}},
			{At: at(3), Member: "backup", Msg: "command received"},
			{At: stepped(8.0005, back), Member: "backup", Msg: logClockStepped, Fields: map[string]any{"step": float64(back), "clock_step": float64(back)}},
			{At: stepped(10.05, back), Member: "backup", Msg: "command received"},
			{At: at(9), Member: "main", Msg: "main's clock is the machine's"},
		}
		h.Stores = []StoreRead{read("backup", 60, ReadEnd,
			stored("backup", "a.1", 1, "done", 3, 3.5),
			Stored{Member: "backup", ID: "a.2", Verb: "takeover", Epoch: 2, State: "done", At: stepped(10.05, back), Finished: stepped(10.08, back)},
		)}
		return h
	}
	// Unplaced, the history is wrong in three ways.
	raw := build()
	raw.Sort()
	if got := props(Check(raw, Bounds{})); len(got) == 0 {
		t.Fatal("the raw history of a stepped coordinator passes: the test proves nothing")
	}
	h := build()
	h.Unstep()
	want(t, h)
	for _, r := range h.Journal {
		if r.Type == "takeover_done" && (!r.At.Equal(at(10.1)) || r.Stepped != back) {
			t.Errorf("takeover_done placed at %s (stepped %s), want +10.1s (-1m30s)", r.At.Sub(t0), r.Stepped)
		}
	}
	for _, l := range h.Logs {
		wantAt := map[string]float64{logHooksEnabled: 0.5, logClockStepped: 8.0005, "main's clock is the machine's": 9}[l.Msg]
		if l.Msg == "command received" {
			wantAt = 3
			if l.Stepped != 0 {
				wantAt = 10.05
			}
		}
		if !l.At.Equal(at(wantAt)) {
			t.Errorf("%s's %q placed at %s, want +%vs", l.Member, l.Msg, l.At.Sub(t0), wantAt)
		}
	}
	for _, s := range h.Stores[0].Records {
		if s.ID == "a.2" && (!s.At.Equal(at(10.05)) || !s.Finished.Equal(at(10.08))) {
			t.Errorf("a.2 placed at %s–%s, want +10.05s–+10.08s", s.At.Sub(t0), s.Finished.Sub(t0))
		}
	}
}

// A step forward on main, with records between the nemesis' count and the
// hook's answer on the coordinator: each placed by the reading that falls
// within the step's moment.
func TestUnstepForwardAndWithinTheStep(t *testing.T) {
	const ahead = 45 * time.Second
	h := managerBackup()
	s1 := op(OpClockStep, "main", 20, 20.002)
	s1.Offset = ahead
	s2 := op(OpClockStep, "backup", 30, 30.002)
	s2.Offset, s2.JournalMarks = -time.Minute, [2]int{1, 3}
	h.Ops = []Op{s1, s2}
	h.Journal = []Record{
		rec(29.9, "member_seen", "main"),
		rec(30.0005, "bus_heard", "backup"),                     // written before the step took hold
		{At: stepped(30.0015, -time.Minute), Type: "bus_heard"}, // after it
		{At: stepped(31, -time.Minute), Type: "member_seen", Member: "main"},
	}
	h.Logs = []LogLine{
		{At: at(19), Member: "main", Msg: "before"},
		{At: stepped(20.001, ahead), Member: "main", Msg: logClockStepped, Fields: map[string]any{"clock_step": float64(ahead)}},
		{At: stepped(25, ahead), Member: "main", Msg: "after"},
	}
	h.Unstep()
	for i, s := range []float64{29.9, 30.0005, 30.0015, 31} {
		if !h.Journal[i].At.Equal(at(s)) {
			t.Errorf("journal record %d placed at %s, want +%vs", i, h.Journal[i].At.Sub(t0), s)
		}
	}
	for i, s := range []float64{19, 20.001, 25} {
		if !h.Logs[i].At.Equal(at(s)) {
			t.Errorf("log line %d placed at %s, want +%vs", i, h.Logs[i].At.Sub(t0), s)
		}
	}
}

func props(r Result) []string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, v.Property)
	}
	return out
}

// The coordinator's store stalled from +8 to +20 (longer than lost_after:
// its loop waits on its first commit as a stopped one would), main killed
// at +10: the takeover may wait until the stall is over and the stall rule
// gave a fresh lost_after; not covered at all is still a violation, and a
// loss of a main that was not away is still false (the broker and the
// heartbeats went on).
func TestCoverageWaitsForTheCoordinatorsStoreStall(t *testing.T) {
	h := killedMain()
	h.Ops = append(h.Ops, op(OpStoreStall, "backup", 8, 20))
	h.Journal = []Record{
		rec(10.01, "member_lost", "main", "reason", "connection dropped (Last Will)"),
		rec(20.02, "takeover_started", "main", "standby", "backup"),
		rec(22, "takeover_done", "main", "standby", "backup"),
	}
	h.Routing = append(h.Routing[:1], routes(22.05, 3, 4, 3, 4))
	want(t, h)
	h.Journal = h.Journal[:2]
	want(t, h, PropCoverage)

	h = managerBackup()
	h.Ops = []Op{op(OpStoreStall, "backup", 8, 20)}
	h.Journal = []Record{rec(15, "member_lost", "main", "reason", "no heartbeat for 1s")}
	want(t, h, PropFalseLoss)
}

// A standby whose store stalls records no command until the stall is over:
// the takeover may wait for it.
func TestCoverageWaitsForTheStandbysStoreStall(t *testing.T) {
	h := killedMain()
	h.Site.Coordinator = "main" // the standby does not coordinate here
	h.Site.Members["other"] = MemberFact{ID: "other", Instance: true, Protected: true, Interval: 250 * time.Millisecond, LostAfter: time.Second}
	h.Ops = []Op{op(OpKill, "other", 10, 0), op(OpStoreStall, "backup", 9, 21)}
	h.Journal = []Record{
		rec(10.01, "member_lost", "other", "reason", "connection dropped (Last Will)"),
		rec(10.02, "takeover_started", "other", "standby", "backup"),
		rec(21.5, "takeover_done", "other", "standby", "backup"),
	}
	want(t, h)
	h.Ops = h.Ops[:1]
	want(t, h, PropCoverage)
}

// A command record read before a step back and read again, unchanged,
// after it is placed before the first read that saw it, though its reading
// would fit after the step too and the journal has no record of the
// command to place it by (make faults, manager-backup seed 20: placed 10 s
// late, it looked run twice).
func TestUnstepACommandRecordSeenBeforeTheStep(t *testing.T) {
	h := managerBackup()
	step := op(OpClockStep, "backup", 27, 27.001)
	step.Offset, step.JournalMarks = -10*time.Second, [2]int{0, 0}
	h.Ops = []Op{step}
	done := stored("backup", "a1", 1, "done", 19.695, 19.6951)
	h.Stores = []StoreRead{read("backup", 19.7, "kill #1", done), read("backup", 50, ReadEnd, done)}
	h.Unstep()
	for _, sr := range h.Stores {
		if r := sr.Records[0]; !r.At.Equal(at(19.695)) || !r.Finished.Equal(at(19.6951)) {
			t.Errorf("read %s: record placed at %s–%s, want +19.695s", sr.After, r.At.Sub(t0), r.Finished.Sub(t0))
		}
	}
	h.Sort()
	if res := Check(h, Bounds{}); slices.Contains(props(res), PropAtMostOnce) {
		t.Errorf("the same record read twice is a repeat: %v", res.Violations)
	}
}
