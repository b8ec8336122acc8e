package scripts_test

import (
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/sim"
)

// recorderSite is an N+standby recorder site; %s is the failover section.
const recorderSite = `site: rec
coordinator: manager
mdns: false
bus: {url: "tcp://127.0.0.1:1"}
heartbeat: {interval: 1s, lost_after: 3s, startup_grace: 5s}
policy: {file: %q}
failover:
%s
members:
  - id: manager
    roles: [manager]
  - id: rec-1
    roles: [recorder]
    priority: 10
    pool: recorders
    duties: {streams: [{name: cam-1, address: "239.1.1.1:5004"}], material: [/srv/rec]}
  - id: rec-2
    roles: [recorder]
    priority: 30
    pool: recorders
    duties: {streams: [{name: cam-2, address: "239.1.1.2:5004"}], material: [/srv/rec]}
  - id: rec-3
    roles: [recorder]
    priority: 20
    pool: recorders
    duties: {streams: [{name: cam-3, address: "239.1.1.3:5004"}], material: [/srv/rec]}
  - id: standby-1
    roles: [recorder]
    standby: true
    material_server: 198.18.0.21:7902
    duties: {material: [/srv/rec]}
    pool: recorders
  - id: standby-2
    roles: [recorder]
    standby: true
    material_server: 198.18.0.22:7902
    duties: {material: [/srv/rec]}
    pool: recorders
`

type recorders struct{ *scenario }

// newRecorders runs the shipped recorder-standby policy on the virtual clock
// with every member up. failover is the site's failover: section (indented).
func newRecorders(t *testing.T, failover string) *recorders {
	t.Helper()
	return &recorders{startScenario(t, "recorder-standby/policy.lua", recorderSite, failover)}
}

func TestLimitOneQueuesTheOthersByPriorityAndStartsThemAsEarlierOnesEnd(t *testing.T) {
	r := newRecorders(t, "  limit: 1\n  failback_delay: 1m")
	mark := len(r.h.Records())
	r.h.Crash("rec-1")
	r.h.Crash("rec-3")
	r.h.Crash("rec-2")
	r.h.Advance(time.Second)

	// rec-1 was lost first and is taken over; rec-2 (priority 30) and rec-3
	// (20) wait, in priority order.
	if got := r.events(mark, "takeover_started", "takeover_queued"); strings.Join(got, ",") != "takeover_started rec-1,takeover_queued rec-3,takeover_queued rec-2" {
		t.Fatalf("events = %v\n%s", got, r.dump(mark))
	}
	if q := r.h.Coordinator.Takeover().Queue(); len(q) != 2 || q[0].Member != "rec-2" || q[1].Member != "rec-3" {
		t.Fatalf("queue = %+v, want rec-2 then rec-3", q)
	}
	if s, phase := r.coveredBy("rec-1"); s != "standby-1" || phase != "covering" {
		t.Fatalf("rec-1 covered by %q (%s), want standby-1 covering", s, phase)
	}

	// Nothing moves while rec-1 is still away, however long.
	r.h.Advance(time.Hour)
	if len(r.h.Coordinator.Takeover().Coverage()) != 1 {
		t.Fatalf("coverage = %+v", r.h.Coordinator.Takeover().Coverage())
	}

	// rec-1 returns: failback after 1m; when the standby has let go, rec-2 starts.
	mark = len(r.h.Records())
	r.h.Up("rec-1")
	r.h.Advance(59 * time.Second)
	if r.has(mark, "failback_started", "rec-1") {
		t.Fatal("failback before failback_delay")
	}
	r.h.Advance(2 * time.Second)
	want := "failback_started rec-1,member_ready rec-1,failback_done rec-1,takeover_started rec-2"
	if got := r.events(mark, "failback_started", "member_ready", "failback_done", "takeover_started"); strings.Join(got, ",") != want {
		t.Fatalf("events = %v, want %s\n%s", got, want, r.dump(mark))
	}
	if q := r.h.Coordinator.Takeover().Queue(); len(q) != 1 || q[0].Member != "rec-3" {
		t.Fatalf("queue = %+v, want rec-3 alone", q)
	}
	if got := r.ran("standby-1"); strings.Join(got, ",") != "takeover rec-1,release rec-1,takeover rec-2" {
		t.Fatalf("standby-1 ran %v", got)
	}
}

func TestFailoverDelayActsOnlyAfterTheMemberWasAwayThatLong(t *testing.T) {
	r := newRecorders(t, "  delay: 2h")
	mark := len(r.h.Records())
	r.h.Silence("rec-1")
	r.h.Advance(3 * time.Second) // lost
	if !r.has(mark, "member_lost", "rec-1") {
		t.Fatalf("rec-1 not lost:\n%s", r.dump(mark))
	}
	r.h.Advance(2*time.Hour - time.Minute - 3*time.Second) // 1 h 59 min after the silence
	if r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("takeover before the delay:\n%s", r.dump(mark))
	}
	r.h.Advance(time.Minute + 3*time.Second)
	if !r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("no takeover 2 h after the loss:\n%s", r.dump(mark))
	}
}

func TestAMemberBackWithinTheDelayIsNeverTakenOver(t *testing.T) {
	r := newRecorders(t, "  delay: 2h")
	mark := len(r.h.Records())
	r.h.Silence("rec-1")
	r.h.Advance(time.Hour)
	r.h.Up("rec-1")
	r.h.Advance(3 * time.Hour)
	if r.has(mark, "takeover_started", "rec-1") || len(r.h.Ran("standby-1")) > 0 {
		t.Fatalf("taken over although back within the delay:\n%s", r.dump(mark))
	}
}

func TestADelayedFailoverSurvivesARestartOfTheCoordinator(t *testing.T) {
	r := newRecorders(t, "  delay: 2h")
	r.h.Silence("rec-1")
	r.h.Advance(time.Hour)
	r.restart()
	mark := len(r.h.Records())
	r.h.Advance(59 * time.Minute)
	if r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("takeover before the delay after a restart:\n%s", r.dump(mark))
	}
	r.h.Advance(2 * time.Minute)
	if !r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("the delayed failover was forgotten by the restart:\n%s", r.dump(mark))
	}
}

func TestFailbackWaitsForReadyAndCopyWithNoMomentWhereNobodyRecords(t *testing.T) {
	r := newRecorders(t, "  failback_delay: 30s\n  copy_material: true")
	// The returned recorder takes 20 s to be ready; the copy takes 10 min.
	r.h.Agent("rec-1", func(c bus.Command) sim.Reply {
		switch c.Verb {
		case config.HookResume:
			return sim.Reply{Delay: 20 * time.Second}
		case config.HookCopy:
			return sim.Reply{Delay: 10 * time.Minute}
		}
		return sim.Reply{}
	})
	r.h.Agent("standby-1", func(c bus.Command) sim.Reply { return sim.Reply{Delay: 5 * time.Second} })
	mark := len(r.h.Records())
	r.h.Crash("rec-1")
	r.h.Advance(time.Hour)
	r.h.Up("rec-1")
	r.h.Advance(30 * time.Minute)

	want := []string{
		"takeover_started rec-1", "takeover_done rec-1", // standby records
		"member_restored rec-1", "failback_started rec-1",
		"member_ready rec-1",                    // rec-1 records again
		"copy_started rec-1", "copy_done rec-1", // after the standby stopped: every file complete
		"failback_done rec-1", // only now does the coverage end
	}
	got := r.events(mark, "takeover_started", "takeover_done", "member_restored", "failback_started", "member_ready", "copy_started", "copy_done", "failback_done")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events =\n  %v\nwant\n  %v\n%s", got, want, r.dump(mark))
	}
	// Who records rec-1's cameras, over time: the standby from its takeover
	// until its release is done, rec-1 until the crash and from ready on.
	var standbyFrom, readyAt, releaseSent, released, copySent, copyDone, coverageEnd time.Time
	for _, rec := range r.h.Since(mark) {
		switch {
		case rec.Type == "takeover_done":
			standbyFrom = rec.At
		case rec.Type == "member_ready":
			readyAt = rec.At
		case rec.Type == "action_started" && rec.Fields["verb"] == "release":
			releaseSent = rec.At
		case rec.Type == "action_done" && rec.Fields["verb"] == "release":
			released = rec.At
		case rec.Type == "copy_started":
			copySent = rec.At
		case rec.Type == "copy_done":
			copyDone = rec.At
		case rec.Type == "failback_done":
			coverageEnd = rec.At
		}
	}
	if standbyFrom.IsZero() || readyAt.Before(standbyFrom) || releaseSent.Before(readyAt) {
		t.Fatalf("a gap: standby records from %v, told to let go at %v, rec-1 ready at %v", standbyFrom, releaseSent, readyAt)
	}
	if copySent.Before(released) || coverageEnd.Before(copyDone) {
		t.Fatalf("the copy started at %v, before the standby let go (%v), or the coverage ended at %v before the copy was done (%v)", copySent, released, coverageEnd, copyDone)
	}
	copyCmd := r.h.Ran("rec-1")[1]
	if copyCmd.Verb != "copy" || copyCmd.Args["from"] != "standby-1" || copyCmd.Args["since"] == nil {
		t.Fatalf("copy command = %+v", copyCmd)
	}
}

func TestAFailedCopyKeepsTheCoverageAndIsTriedAgain(t *testing.T) {
	r := newRecorders(t, "  failback_delay: 30s\n  copy_material: true")
	failures := 2
	r.h.Agent("rec-1", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookCopy && failures > 0 {
			failures--
			return sim.Reply{Delay: time.Minute, Fail: "disk full on rec-1"}
		}
		return sim.Reply{}
	})
	r.h.Crash("rec-1")
	r.h.Advance(time.Minute)
	mark := len(r.h.Records())
	r.h.Up("rec-1")
	r.h.Advance(3 * time.Minute)
	if !r.has(mark, "copy_failed", "rec-1") || r.has(mark, "failback_done", "rec-1") {
		t.Fatalf("records:\n%s", r.dump(mark))
	}
	if s, phase := r.coveredBy("rec-1"); s != "standby-1" || phase != "copying" {
		t.Fatalf("after a failed copy rec-1 is covered by %q (%s), want standby-1 copying", s, phase)
	}
	if a := r.h.Engine.Snapshot().Alarms; len(a) != 1 || a[0].Kind != "copy_incomplete" || !strings.Contains(a[0].Message, "disk full") {
		t.Fatalf("alarms = %+v", a)
	}
	// Tried again after 1 min, then 2 min: the third attempt copies it.
	r.h.Advance(10 * time.Minute)
	if !r.has(mark, "failback_done", "rec-1") || len(r.h.Engine.Snapshot().Alarms) != 0 {
		t.Fatalf("records:\n%s", r.dump(mark))
	}
	if n := strings.Count(strings.Join(r.ran("rec-1"), ","), "copy rec-1"); n != 3 {
		t.Fatalf("%d copies: %v", n, r.ran("rec-1"))
	}
}

func TestAClosedMemberIsIgnoredUnlessClosedIsLost(t *testing.T) {
	r := newRecorders(t, "  limit: 0")
	mark := len(r.h.Records())
	r.h.Shutdown("rec-1")
	r.h.Advance(time.Hour)
	if !r.has(mark, "member_closed", "rec-1") || r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("a graceful log-off was treated as a failure:\n%s", r.dump(mark))
	}

	r = newRecorders(t, "  closed_is_lost: true")
	mark = len(r.h.Records())
	r.h.Shutdown("rec-1")
	r.h.Advance(time.Second)
	if !r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("closed_is_lost: no takeover:\n%s", r.dump(mark))
	}
}

func TestBrokenDisksStartAFailoverAndWorkingDisksEndIt(t *testing.T) {
	r := newRecorders(t, "  failback_delay: 10s")
	mark := len(r.h.Records())
	r.h.Broken("rec-3", true)
	r.h.Advance(time.Second)
	if !r.has(mark, "member_broken", "rec-3") || !r.has(mark, "takeover_started", "rec-3") {
		t.Fatalf("records:\n%s", r.dump(mark))
	}
	r.h.Broken("rec-3", false)
	r.h.Advance(time.Minute)
	if !r.has(mark, "failback_done", "rec-3") {
		t.Fatalf("no failback after the disks came back:\n%s", r.dump(mark))
	}
}

func TestGracePeriodCountsDownAndRaisesAnEventAtExpiry(t *testing.T) {
	r := newRecorders(t, "  grace: 60d\n  auto_failback: false")
	r.h.Crash("rec-2")
	r.h.Advance(time.Second)
	left, ok := r.h.Coordinator.Takeover().GraceRemaining("rec-2")
	if !ok || left < 59*24*time.Hour {
		t.Fatalf("grace remaining = %v, %v", left, ok)
	}
	// Two months of heartbeats every second would be millions of events:
	// the other members log off (a graceful close is not a failure here).
	for _, id := range []string{"rec-1", "rec-3", "standby-1", "standby-2"} {
		r.h.Shutdown(id)
	}
	r.h.Silence("manager")
	mark := len(r.h.Records())
	r.h.Advance(59 * 24 * time.Hour)
	if r.has(mark, "grace_expired", "rec-2") {
		t.Fatal("grace expired early")
	}
	if left, _ := r.h.Coordinator.Takeover().GraceRemaining("rec-2"); left > 24*time.Hour || left <= 0 {
		t.Fatalf("after 59 days, %v left", left)
	}
	r.h.Advance(24 * time.Hour)
	if !r.has(mark, "grace_expired", "rec-2") {
		t.Fatalf("no grace_expired after 60 days:\n%s", r.dump(mark))
	}
}

func TestManualModeProposesAndTheOperatorConfirms(t *testing.T) {
	r := newRecorders(t, "  mode: manual")
	mark := len(r.h.Records())
	r.h.Crash("rec-1")
	r.h.Advance(time.Hour)
	props := r.h.Coordinator.Takeover().Proposals()
	if len(props) != 1 || props[0].Member != "rec-1" || r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("proposals = %+v\n%s", props, r.dump(mark))
	}
	r.h.Command("confirm", map[string]any{"proposal": props[0].ID})
	r.h.Advance(time.Second)
	if !r.has(mark, "proposal_confirmed", "rec-1") || !r.has(mark, "takeover_done", "rec-1") {
		t.Fatalf("records:\n%s", r.dump(mark))
	}
}

func TestManualModeActsByItselfAfterConfirmAfter(t *testing.T) {
	r := newRecorders(t, "  mode: manual\n  confirm_after: 5m")
	mark := len(r.h.Records())
	r.h.Crash("rec-1")
	r.h.Advance(4*time.Minute + 59*time.Second)
	if r.has(mark, "takeover_started", "rec-1") {
		t.Fatal("acted before confirm_after")
	}
	r.h.Advance(2 * time.Second)
	if !r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("did not act after confirm_after:\n%s", r.dump(mark))
	}
}

func TestAProposalIsWithdrawnWhenTheMemberComesBack(t *testing.T) {
	r := newRecorders(t, "  mode: manual")
	mark := len(r.h.Records())
	r.h.Crash("rec-1")
	r.h.Advance(time.Minute)
	r.h.Up("rec-1")
	r.h.Advance(time.Second)
	if len(r.h.Coordinator.Takeover().Proposals()) != 0 || !r.has(mark, "proposal_withdrawn", "rec-1") {
		t.Fatalf("records:\n%s", r.dump(mark))
	}
}

func TestARestartOfTheCoordinatorMidTakeoverNeitherRepeatsNorForgets(t *testing.T) {
	r := newRecorders(t, "  failback_delay: 1m")
	// The standby takes 30 s to take over; the coordinator restarts meanwhile.
	r.h.Agent("standby-1", func(c bus.Command) sim.Reply { return sim.Reply{Delay: 30 * time.Second} })
	r.h.Crash("rec-1")
	r.h.Advance(10 * time.Second)
	if _, phase := r.coveredBy("rec-1"); phase != "starting" {
		t.Fatalf("phase = %q, want starting", phase)
	}
	mark := len(r.h.Records())
	r.restart()
	r.h.Advance(time.Minute)
	if _, phase := r.coveredBy("rec-1"); phase != "covering" {
		t.Fatalf("after the restart rec-1's takeover did not finish (phase %q):\n%s", phase, r.dump(mark))
	}
	// The restarted coordinator asked the standby again (no answer had come)
	// and the standby, which had it already, did not run it twice.
	if !r.has(mark, "action_resumed", "") {
		t.Fatalf("the unanswered takeover was not resumed:\n%s", r.dump(mark))
	}
	if got := r.ran("standby-1"); strings.Join(got, ",") != "takeover rec-1" {
		t.Fatalf("standby-1 ran %v, want the takeover once", got)
	}
	if r.has(mark, "takeover_started", "rec-1") {
		t.Fatalf("the restarted coordinator started the takeover again:\n%s", r.dump(mark))
	}
}
