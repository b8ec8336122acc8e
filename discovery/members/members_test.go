package members

import (
	"strings"
	"testing"
	"time"

	"understudy/runtime/clock"
)

var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type harness struct {
	t      *testing.T
	vc     *clock.Virtual
	table  *Table
	events []Event
}

// newHarness builds a table on a virtual clock. post runs work inline: the
// test goroutine owns the table and is also the one advancing the clock.
func newHarness(t *testing.T, grace time.Duration) *harness {
	h := &harness{t: t, vc: clock.NewVirtual(epoch)}
	h.table = New(h.vc, func(f func()) { f() }, func(ev Event) { h.events = append(h.events, ev) }, Options{StartupGrace: grace})
	return h
}

func (h *harness) beat(id string, every time.Duration, n int) {
	for range n {
		if err := h.table.Heartbeat(Heartbeat{ID: id, Boot: "b1", Conn: 1, Interval: every}); err != nil {
			h.t.Fatal(err)
		}
		h.vc.Advance(every)
	}
}

func (h *harness) kinds() string {
	var ks []string
	for _, ev := range h.events {
		ks = append(ks, ev.Member.ID+":"+strings.TrimPrefix(ev.Kind, "member_"))
	}
	return strings.Join(ks, " ")
}

func (h *harness) state(id string) State {
	m, _ := h.table.Get(id)
	return m.State
}

func TestSilentMemberGoesSuspectThenLostAtLostAfter(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.table.Add("main", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Start()
	h.beat("main", 100*time.Millisecond, 5) // last heartbeat at +400ms, clock at +500ms
	last := epoch.Add(400 * time.Millisecond)
	if got := h.kinds(); got != "main:seen" {
		t.Fatalf("events %q", got)
	}
	h.vc.AdvanceTo(last.Add(149 * time.Millisecond))
	if h.state("main") != Alive {
		t.Fatalf("suspect before 1.5 intervals of silence: %v", h.state("main"))
	}
	h.vc.AdvanceTo(last.Add(150 * time.Millisecond))
	if h.state("main") != Suspect {
		t.Fatalf("state %v after 150ms silence, want suspect", h.state("main"))
	}
	h.vc.AdvanceTo(last.Add(299 * time.Millisecond))
	if h.state("main") != Suspect {
		t.Fatalf("state %v before lost_after, want suspect", h.state("main"))
	}
	h.vc.AdvanceTo(last.Add(300 * time.Millisecond))
	if got := h.kinds(); got != "main:seen main:suspect main:lost" {
		t.Fatalf("events %q", got)
	}
	lost := h.events[2]
	if !lost.At.Equal(last.Add(300*time.Millisecond)) || lost.Silence != 300*time.Millisecond || lost.Previous != Suspect {
		t.Errorf("lost event %+v", lost)
	}
	if !strings.Contains(lost.Member.Reason, "no heartbeat for 300ms") {
		t.Errorf("reason %q", lost.Member.Reason)
	}
	h.beat("main", 100*time.Millisecond, 1)
	if got := h.kinds(); !strings.HasSuffix(got, "main:restored") {
		t.Fatalf("events %q, want restored last", got)
	}
}

func TestLongLostAfterHoldsForHours(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.table.Add("rec1", time.Second, 2*time.Hour)
	h.table.Start()
	h.beat("rec1", time.Second, 1)
	h.vc.Advance(2*time.Hour - 2*time.Second)
	if h.state("rec1") != Suspect {
		t.Fatalf("after 1h59m58s: %v, want suspect", h.state("rec1"))
	}
	h.vc.Advance(time.Second)
	if h.state("rec1") != Lost {
		t.Fatalf("after 2h silence: %v, want lost", h.state("rec1"))
	}
}

func TestHeartbeatJitterWithinLostAfterNeverLoses(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.table.Add("main", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Start()
	for i := range 1000 {
		gap := 100*time.Millisecond + time.Duration(i%5)*40*time.Millisecond // up to 260ms
		h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b", Conn: 1, Interval: 100 * time.Millisecond})
		h.vc.Advance(gap)
	}
	for _, ev := range h.events {
		if ev.Kind == EventLost {
			t.Fatalf("false loss: %+v", ev)
		}
	}
}

func TestLastWillLosesAtOnceButOnlyForTheCurrentConnection(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.table.Add("main", time.Second, 5*time.Second)
	h.table.Start()
	h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b1", Conn: 1})
	h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b1", Conn: 2}) // reconnected
	// The broker publishes the replaced connection's Will after the takeover.
	if err := h.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 1}); err == nil {
		t.Error("stale Will accepted")
	}
	if h.state("main") != Alive {
		t.Fatalf("stale Will changed state to %v", h.state("main"))
	}
	if err := h.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 2}); err != nil {
		t.Fatal(err)
	}
	if h.state("main") != Lost || h.events[len(h.events)-1].Kind != EventLost {
		t.Fatalf("Will of current connection: state %v events %q", h.state("main"), h.kinds())
	}
	if !strings.Contains(h.events[len(h.events)-1].Member.Reason, "Last Will") {
		t.Errorf("reason %q", h.events[len(h.events)-1].Member.Reason)
	}
	// No second loss when the silence timer would have fired.
	h.vc.Advance(time.Minute)
	if got := h.kinds(); got != "main:seen main:lost" {
		t.Fatalf("events %q", got)
	}
	// A new boot comes back.
	h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b2", Conn: 1})
	if got := h.kinds(); got != "main:seen main:lost main:restored" {
		t.Fatalf("events %q", got)
	}
}

func TestGracefulCloseIsClosedNotLost(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.table.Add("main", time.Second, 3*time.Second)
	h.table.Start()
	h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b1", Conn: 1})
	h.table.Presence(Presence{ID: "main", State: PresenceClosed, Boot: "b1", Conn: 1})
	h.vc.Advance(time.Hour)
	if got := h.kinds(); got != "main:seen main:closed" {
		t.Fatalf("events %q", got)
	}
	h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b2", Conn: 1})
	if got := h.kinds(); got != "main:seen main:closed main:restored" {
		t.Fatalf("events %q", got)
	}
}

func TestNeverHeardMemberIsLostAfterStartupGrace(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.table.Add("main", time.Second, 3*time.Second)
	h.table.Add("rec", time.Second, time.Hour) // lost_after longer than the grace wins
	h.table.Start()
	h.vc.Advance(10*time.Second - time.Millisecond)
	if len(h.events) != 0 {
		t.Fatalf("events before grace: %q", h.kinds())
	}
	h.vc.Advance(time.Millisecond)
	if got := h.kinds(); got != "main:lost" {
		t.Fatalf("events %q", got)
	}
	h.vc.Advance(time.Hour)
	if got := h.kinds(); got != "main:lost rec:lost" {
		t.Fatalf("events %q", got)
	}
}

func TestNothingIsLostWhileThisInstanceIsOffTheBus(t *testing.T) {
	h := newHarness(t, 5*time.Second)
	h.table.Add("main", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Add("rec", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Start()
	h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b", Conn: 1})
	h.table.Heartbeat(Heartbeat{ID: "rec", Boot: "b", Conn: 1})
	h.table.SetConnected(false)
	h.vc.Advance(time.Hour)
	if got := h.kinds(); got != "main:seen rec:seen" {
		t.Fatalf("events while disconnected: %q", got)
	}
	// Back on the bus: the others reconnect at their own pace. main takes 2s
	// and then heartbeats again; rec never comes back.
	h.table.SetConnected(true)
	h.vc.Advance(2 * time.Second)
	h.beat("main", 100*time.Millisecond, 40) // to +6s
	if h.state("main") != Alive {
		t.Fatalf("main %v after reconnecting slowly, want alive", h.state("main"))
	}
	if h.state("rec") != Lost {
		t.Fatalf("rec %v, want lost once the grace after reconnecting is over", h.state("rec"))
	}
	lost := h.events[len(h.events)-1]
	if lost.Member.ID != "rec" || !lost.At.Equal(epoch.Add(time.Hour+5*time.Second)) || lost.Member.Reason != "not heard within 5s of rejoining the bus" {
		t.Errorf("rec's loss: %+v", lost)
	}
	// And main is held to its own lost_after again.
	h.vc.Advance(300 * time.Millisecond)
	if h.state("main") != Lost {
		t.Fatalf("main %v 300ms after its last heartbeat, want lost", h.state("main"))
	}
}

func TestUnknownMembersAreRejected(t *testing.T) {
	h := newHarness(t, time.Second)
	h.table.Start()
	if err := h.table.Heartbeat(Heartbeat{ID: "ghost"}); err == nil {
		t.Error("heartbeat from unknown member accepted")
	}
	if err := h.table.Presence(Presence{ID: "ghost", State: PresenceGone}); err == nil {
		t.Error("presence from unknown member accepted")
	}
	if len(h.table.All()) != 0 {
		t.Error("unknown member added")
	}
}

func TestStartupGraceCountsFromTheFirstBusConnection(t *testing.T) {
	h := &harness{t: t, vc: clock.NewVirtual(epoch)}
	h.table = New(h.vc, func(f func()) { f() }, func(ev Event) { h.events = append(h.events, ev) }, Options{StartupGrace: 10 * time.Second, Offline: true})
	h.table.Add("main", time.Second, 3*time.Second)
	h.table.Start()
	h.vc.Advance(time.Minute) // the broker takes a minute to come up
	if len(h.events) != 0 {
		t.Fatalf("events before the bus connected: %q", h.kinds())
	}
	h.table.SetConnected(true)
	h.vc.Advance(10*time.Second - time.Millisecond)
	if len(h.events) != 0 {
		t.Fatalf("lost within the grace after connecting: %q", h.kinds())
	}
	h.vc.Advance(time.Millisecond)
	if got := h.kinds(); got != "main:lost" {
		t.Fatalf("events %q", got)
	}
	if r := h.events[0].Member.Reason; r != "not heard within 10s of joining the bus" {
		t.Errorf("reason %q", r)
	}
}

// A table for the coordinator "backup" with a main, both heartbeating.
func coordinatorHarness(t *testing.T) *harness {
	h := &harness{t: t, vc: clock.NewVirtual(epoch)}
	h.table = New(h.vc, func(f func()) { f() }, func(ev Event) { h.events = append(h.events, ev) }, Options{StartupGrace: 5 * time.Second, Self: "backup"})
	h.table.Add("main", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Add("backup", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Start()
	return h
}

func (h *harness) beatBoth(n int) {
	for range n {
		h.table.Heartbeat(Heartbeat{ID: "main", Boot: "m", Conn: 1})
		h.table.Heartbeat(Heartbeat{ID: "backup", Boot: "b", Conn: 1})
		h.vc.Advance(100 * time.Millisecond)
	}
}

func (h *harness) lostEvents(id string) int {
	n := 0
	for _, ev := range h.events {
		if ev.Kind == EventLost && ev.Member.ID == id {
			n++
		}
	}
	return n
}

func TestSilenceProvesNothingWhileThisInstanceCannotHearItself(t *testing.T) {
	h := coordinatorHarness(t)
	h.beatBoth(3)
	// The broker's host vanishes: nobody's heartbeat arrives, ours neither.
	h.vc.Advance(2 * time.Second)
	if n := h.lostEvents("main"); n != 0 {
		t.Fatalf("main declared lost while the bus was silent: %q", h.kinds())
	}
	if h.state("main") != Alive || h.state("backup") != Alive {
		t.Fatalf("main %v, backup (this instance) %v while the bus was silent, want both alive (no judgement)", h.state("main"), h.state("backup"))
	}
	if got := h.kinds(); got != "backup:seen main:seen backup:bus_silent" {
		t.Fatalf("events %q", got)
	}
	// The bus recovers: we hear ourselves; main gets a fresh lost_after.
	h.table.Heartbeat(Heartbeat{ID: "backup", Boot: "b", Conn: 1})
	h.vc.Advance(100 * time.Millisecond)
	h.table.Heartbeat(Heartbeat{ID: "backup", Boot: "b", Conn: 1})
	h.vc.Advance(100 * time.Millisecond)
	h.beatBoth(3) // main's first heartbeat 200ms after the bus recovered: within lost_after
	if got := h.kinds(); got != "backup:seen main:seen backup:bus_silent backup:bus_heard main:suspect main:alive" {
		t.Fatalf("main lost although it was heard within lost_after of the bus recovering, or wrong events: %q", got)
	}
}

func TestMemberSilentAfterTheBusRecoversIsLostAFreshLostAfterLater(t *testing.T) {
	h := coordinatorHarness(t)
	h.beatBoth(3)
	h.vc.Advance(time.Second) // bus silent
	recovered := h.vc.Now()
	for range 10 { // we hear ourselves again; main stays silent: it really is gone
		h.table.Heartbeat(Heartbeat{ID: "backup", Boot: "b", Conn: 1})
		h.vc.Advance(100 * time.Millisecond)
	}
	if n := h.lostEvents("main"); n != 1 {
		t.Fatalf("main lost %d times: %q", n, h.kinds())
	}
	for _, ev := range h.events {
		if ev.Kind == EventLost && ev.Member.ID == "main" && !ev.At.Equal(recovered.Add(300*time.Millisecond)) {
			t.Errorf("main lost at +%v after recovery, want +300ms", ev.At.Sub(recovered))
		}
	}
}

func TestDeafnessSuppressesLossesOnlyUntilTheGrace(t *testing.T) {
	h := coordinatorHarness(t)
	h.beatBoth(3)
	lastSelf := h.vc.Now().Add(-100 * time.Millisecond)
	h.vc.Advance(time.Minute) // we never hear ourselves again, and nothing tells us the bus is down
	if n := h.lostEvents("main"); n != 1 {
		t.Fatalf("main lost %d times: %q", n, h.kinds())
	}
	for _, ev := range h.events {
		if ev.Kind == EventLost && ev.Member.ID == "main" && !ev.At.Equal(lastSelf.Add(5*time.Second)) {
			t.Errorf("main lost at %v after our last heartbeat, want the 5s grace", ev.At.Sub(lastSelf))
		}
	}
}

func TestRetainedLastWillIsHistory(t *testing.T) {
	h := coordinatorHarness(t)
	h.beatBoth(3)
	// Delivered because we (re)subscribed: the member's connection dropped at
	// some time in the past. Its heartbeats decide.
	if err := h.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "m", Conn: 1, Retained: true}); err == nil {
		t.Error("retained Will accepted")
	}
	if h.state("main") != Alive {
		t.Fatalf("retained Will made main %v", h.state("main"))
	}
	if err := h.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "m", Conn: 1}); err != nil {
		t.Fatal(err)
	}
	if h.state("main") != Lost {
		t.Fatalf("live Will left main %v", h.state("main"))
	}
}

func TestWillOfAConnectionReplacedByANewerOnlineIsStale(t *testing.T) {
	h := coordinatorHarness(t)
	h.beatBoth(3) // main on boot m, conn 1
	// main reconnects after an outage and says so before its first heartbeat
	// on the new connection reaches us; then the old connection's Will.
	h.table.Presence(Presence{ID: "main", State: PresenceOnline, Boot: "m", Conn: 2})
	if err := h.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "m", Conn: 1}); err == nil {
		t.Error("Will of the replaced connection accepted")
	}
	if h.state("main") != Alive {
		t.Fatalf("main %v after a stale Will", h.state("main"))
	}
	// A retained online (history) does not move the current connection.
	h.table.Presence(Presence{ID: "main", State: PresenceOnline, Boot: "m", Conn: 7, Retained: true})
	if err := h.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "m", Conn: 2}); err != nil {
		t.Fatalf("Will of the current connection refused: %v", err)
	}
	if h.state("main") != Lost {
		t.Fatalf("main %v, want lost", h.state("main"))
	}
}

func TestThisInstanceIsAliveFromTheStart(t *testing.T) {
	h := coordinatorHarness(t)
	if h.state("backup") != Alive {
		t.Fatalf("this instance is %v before its first heartbeat came back, want alive", h.state("backup"))
	}
	if got := h.kinds(); got != "backup:seen" {
		t.Fatalf("events %q", got)
	}
	// Its own Will (say, of a connection it already replaced) never loses it.
	if err := h.table.Presence(Presence{ID: "backup", State: PresenceGone, Boot: "b", Conn: 1}); err == nil {
		t.Error("own Last Will accepted")
	}
	// Never heard through the bus and an hour passes: still alive, and no
	// judgement of the bus either (there was never a canary).
	h.vc.Advance(time.Hour)
	if h.state("backup") != Alive || strings.Contains(h.kinds(), "bus_silent") {
		t.Fatalf("after an hour: %v, events %q", h.state("backup"), h.kinds())
	}
}

// A fire drill holds a beating member lost; on release it is restored at
// once, and a member that went silent during the drill stays lost.
func TestHoldKeepsAMemberLostUntilRelease(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.table.Add("main", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Add("rec", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Start()
	beatBoth := func(n int) {
		for range n {
			for _, id := range []string{"main", "rec"} {
				if err := h.table.Heartbeat(Heartbeat{ID: id, Boot: "b1", Conn: 1}); err != nil {
					t.Fatal(err)
				}
			}
			h.vc.Advance(100 * time.Millisecond)
		}
	}
	beatBoth(3)
	if err := h.table.Hold("main", "fire drill"); err != nil {
		t.Fatal(err)
	}
	if err := h.table.Hold("main", "fire drill"); err == nil {
		t.Fatal("a second hold of the same member was accepted")
	}
	if err := h.table.Hold("rec", "fire drill"); err != nil {
		t.Fatal(err)
	}
	beatBoth(20) // two seconds of heartbeats: still lost
	if h.state("main") != Lost || h.state("rec") != Lost {
		t.Fatalf("held members: main %s, rec %s", h.state("main"), h.state("rec"))
	}
	if m, _ := h.table.Get("main"); !m.Held || m.Reason != "fire drill" {
		t.Fatalf("held member %+v", m)
	}
	// rec's process stops during the drill.
	h.beat("main", 100*time.Millisecond, 5)
	if err := h.table.Release("main", "drill ended"); err != nil {
		t.Fatal(err)
	}
	if err := h.table.Release("rec", "drill ended"); err != nil {
		t.Fatal(err)
	}
	if h.state("main") != Alive || h.state("rec") != Lost {
		t.Fatalf("after release: main %s, rec %s", h.state("main"), h.state("rec"))
	}
	if got := h.kinds(); got != "main:seen rec:seen main:lost rec:lost main:restored" {
		t.Fatalf("events %q", got)
	}
	// Released, main is judged by its heartbeats again.
	h.vc.Advance(time.Second)
	if h.state("main") != Lost {
		t.Fatalf("main silent after release is %s", h.state("main"))
	}
	if err := h.table.Release("main", "again"); err == nil {
		t.Fatal("release of a member not held was accepted")
	}
}

// stalledHarness is a table whose loop can be stopped: while it is, the
// clock moves on and the timers' checks (and the heartbeats that arrive)
// wait in the queue, as they do in a process stopped with SIGSTOP or a VM
// paused; resume runs them in order.
type stalledHarness struct {
	*harness
	stopped bool
	queue   []func()
}

func newStalledHarness(t *testing.T) *stalledHarness {
	sh := &stalledHarness{harness: &harness{t: t, vc: clock.NewVirtual(epoch)}}
	post := func(f func()) {
		if sh.stopped {
			sh.queue = append(sh.queue, f)
			return
		}
		f()
	}
	sh.table = New(sh.vc, post, func(ev Event) { sh.events = append(sh.events, ev) }, Options{StartupGrace: time.Second, Self: "coord"})
	return sh
}

func (sh *stalledHarness) resume() {
	sh.stopped = false
	for len(sh.queue) > 0 {
		f := sh.queue[0]
		sh.queue = sh.queue[1:]
		f()
	}
}

// heartbeat queues a heartbeat for the loop (or takes it now if it runs).
func (sh *stalledHarness) heartbeat(id string) {
	hb := func() {
		if err := sh.table.Heartbeat(Heartbeat{ID: id, Boot: "b1", Conn: 1}); err != nil {
			sh.t.Fatal(err)
		}
	}
	if sh.stopped {
		sh.queue = append(sh.queue, hb)
		return
	}
	hb()
}

// A coordinator whose loop stops for longer than lost_after (10s against
// 300ms) judges nobody when it resumes, although every timer fires late at
// once, before the heartbeats that waited: those heard again stay alive, and
// one that really died meanwhile is lost one lost_after after the resume.
func TestAStalledLoopJudgesNobodyUntilAFreshLostAfter(t *testing.T) {
	sh := newStalledHarness(t)
	for _, id := range []string{"coord", "main", "backup", "dead"} {
		sh.table.Add(id, 100*time.Millisecond, 300*time.Millisecond)
	}
	sh.table.Start()
	for range 5 {
		for _, id := range []string{"coord", "main", "backup", "dead"} {
			sh.heartbeat(id)
		}
		sh.vc.Advance(100 * time.Millisecond)
	}
	sh.events = nil

	sh.stopped = true
	sh.vc.Advance(10 * time.Second) // every timer fires; their checks wait
	// The heartbeats sent meanwhile arrive after the timers' checks; "dead"
	// died during the stall and sends none.
	for _, id := range []string{"coord", "main", "backup"} {
		sh.heartbeat(id)
	}
	resumed := sh.vc.Now()
	sh.resume()

	if got := sh.kinds(); got != ":loop_stalled" {
		t.Fatalf("events on resume %q, want only loop_stalled", got)
	}
	if st := sh.events[0]; st.Silence < 9*time.Second {
		t.Errorf("stall %v, want about 10s", st.Silence)
	}
	for _, id := range []string{"main", "backup", "dead"} {
		if s := sh.state(id); s != Alive {
			t.Errorf("%s is %s right after the resume, want alive", id, s)
		}
	}
	// The living keep beating; the dead one is lost at resume + lost_after.
	for sh.vc.Now().Before(resumed.Add(300 * time.Millisecond)) {
		for _, id := range []string{"coord", "main", "backup"} {
			sh.heartbeat(id)
		}
		sh.vc.Advance(50 * time.Millisecond)
	}
	if s := sh.state("dead"); s != Lost {
		t.Fatalf("the member that died during the stall is %s one lost_after after the resume, want lost (events %q)", s, sh.kinds())
	}
	for _, ev := range sh.events {
		if ev.Kind == EventLost && ev.Member.ID != "dead" {
			t.Errorf("%s was declared lost: %q", ev.Member.ID, sh.kinds())
		}
		if ev.Kind == EventLost && ev.At.After(resumed.Add(300*time.Millisecond)) {
			t.Errorf("dead lost at %v, later than one lost_after after the resume", ev.At.Sub(resumed))
		}
	}
}

// Timers that come on time, however long the silence, are no stall.
func TestAMemberSilentWhileTheLoopRunsIsStillLost(t *testing.T) {
	sh := newStalledHarness(t)
	sh.table.Add("coord", 100*time.Millisecond, 300*time.Millisecond)
	sh.table.Add("main", 100*time.Millisecond, 300*time.Millisecond)
	sh.table.Start()
	sh.heartbeat("coord")
	sh.heartbeat("main")
	for range 100 {
		sh.heartbeat("coord")
		sh.vc.Advance(100 * time.Millisecond)
	}
	if got := sh.kinds(); got != "coord:seen main:seen main:suspect main:lost" {
		t.Fatalf("events %q", got)
	}
}

// The broker may drop the connections nobody read during the stall (an
// embedded broker stalls with its process) and publish their Last Wills,
// maybe before any late timer has run: right after a stall a Will proves
// nothing, the heartbeats decide within a fresh lost_after.
func TestLastWillsRightAfterAStallAreLeftToTheHeartbeats(t *testing.T) {
	sh := newStalledHarness(t)
	for _, id := range []string{"coord", "main", "dead"} {
		sh.table.Add(id, 100*time.Millisecond, 300*time.Millisecond)
	}
	sh.table.Start()
	for range 5 {
		for _, id := range []string{"coord", "main", "dead"} {
			sh.heartbeat(id)
		}
		sh.vc.Advance(100 * time.Millisecond)
	}
	sh.events = nil
	sh.stopped = true
	will := func(id string) {
		if err := sh.table.Presence(Presence{ID: id, State: PresenceGone, Boot: "b1", Conn: 1}); err == nil {
			t.Errorf("the Will of %s right after the stall was taken", id)
		}
	}
	// Both Wills are read before the timers' checks.
	sh.vc.Advance(10 * time.Second)
	sh.queue = append([]func(){func() { will("main") }, func() { will("dead") }}, sh.queue...)
	resumed := sh.vc.Now()
	sh.resume()
	if got := sh.kinds(); got != ":loop_stalled" {
		t.Fatalf("events on resume %q, want only loop_stalled", got)
	}
	// main reconnects and beats; dead does not.
	if err := sh.table.Presence(Presence{ID: "main", State: PresenceOnline, Boot: "b1", Conn: 2}); err != nil {
		t.Fatal(err)
	}
	for sh.vc.Now().Before(resumed.Add(300 * time.Millisecond)) {
		for _, id := range []string{"coord", "main"} {
			if err := sh.table.Heartbeat(Heartbeat{ID: id, Boot: "b1", Conn: 2}); err != nil {
				t.Fatal(err)
			}
		}
		sh.vc.Advance(50 * time.Millisecond)
	}
	if sh.state("main") != Alive || sh.state("dead") != Lost {
		t.Fatalf("main %s, dead %s one lost_after after the resume; events %q", sh.state("main"), sh.state("dead"), sh.kinds())
	}
	// Once the fresh lost_after is over, a Will counts again.
	if err := sh.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 2}); err != nil || sh.state("main") != Lost {
		t.Fatalf("a Will after the window: %v, main %s", err, sh.state("main"))
	}
}

// WillCounts tells, without changing anything, whether Presence would take
// a Will as a loss: a live one of another member's current connection
// while it is alive or suspect.
func TestWillCountsIsWhatPresenceWouldTake(t *testing.T) {
	h := &harness{t: t, vc: clock.NewVirtual(epoch)}
	h.table = New(h.vc, func(f func()) { f() }, func(ev Event) { h.events = append(h.events, ev) }, Options{StartupGrace: time.Second, Self: "self"})
	for _, id := range []string{"main", "quiet", "self"} {
		h.table.Add(id, 100*time.Millisecond, 300*time.Millisecond)
	}
	h.table.Start()
	h.beat("main", 100*time.Millisecond, 1)
	will := Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 1}
	for _, tc := range []struct {
		p    Presence
		want bool
	}{
		{will, true},
		{Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 1, Retained: true}, false},
		{Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 0}, false}, // a replaced connection's
		{Presence{ID: "main", State: PresenceClosed, Boot: "b1", Conn: 1}, false},
		{Presence{ID: "self", State: PresenceGone}, false},
		{Presence{ID: "quiet", State: PresenceGone}, false}, // unknown: never heard
		{Presence{ID: "ghost", State: PresenceGone}, false},
	} {
		if got := h.table.WillCounts(tc.p); got != tc.want {
			t.Errorf("WillCounts(%+v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := h.kinds(); got != "self:seen main:seen" {
		t.Fatalf("WillCounts changed something: events %q", got)
	}
	if err := h.table.Presence(will); err != nil || h.state("main") != Lost {
		t.Fatalf("Presence took the Will: %v, main %s", err, h.state("main"))
	}
	if h.table.WillCounts(will) {
		t.Error("a Will counts again for a member already lost")
	}
}

// A broker that was away ends the connections it held as the members come
// back or as their keep-alives run out, and publishes their Last Wills then,
// after this instance has rejoined: a Will of a member not heard since the
// rejoin tells of the outage. The member's heartbeats decide within the
// grace; one that died meanwhile is lost when the grace ends. A member heard
// after the rejoin is judged by its Will at once again.
func TestALastWillJustAfterABusOutageIsLeftToTheHeartbeats(t *testing.T) {
	h := newHarness(t, 5*time.Second)
	h.table.Add("main", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Add("rec", 100*time.Millisecond, 300*time.Millisecond)
	h.table.Start()
	h.table.Heartbeat(Heartbeat{ID: "main", Boot: "b1", Conn: 1})
	h.table.Heartbeat(Heartbeat{ID: "rec", Boot: "r", Conn: 1})
	h.table.SetConnected(false)
	h.vc.Advance(10 * time.Second)
	h.table.SetConnected(true)
	h.vc.Advance(50 * time.Millisecond)
	for _, id := range []string{"main", "rec"} {
		boot := map[string]string{"main": "b1", "rec": "r"}[id]
		p := Presence{ID: id, State: PresenceGone, Boot: boot, Conn: 1}
		if h.table.WillCounts(p) {
			t.Fatalf("%s's Will just after the rejoin counts as a loss", id)
		}
		if err := h.table.Presence(p); err == nil {
			t.Fatalf("%s's Will just after the rejoin was taken", id)
		}
	}
	// main is back (its heartbeats); rec never is.
	h.vc.Advance(time.Second)
	h.beat("main", 100*time.Millisecond, 50) // to rejoin + 6.05s
	if h.state("main") != Alive {
		t.Fatalf("main %v, want alive", h.state("main"))
	}
	if h.state("rec") != Lost {
		t.Fatalf("rec %v once the grace after the rejoin is over, want lost", h.state("rec"))
	}
	// Heard since the rejoin: its Will is a loss at once again.
	if err := h.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 1}); err != nil {
		t.Fatal(err)
	}
	if h.state("main") != Lost {
		t.Fatalf("main %v after its Will on the connection it was heard on, want lost", h.state("main"))
	}
}

// After a stall, the heartbeats that waited in the sockets may be read
// before any late timer runs: the first of them notices the stall (its
// member's timer, or this instance's, is long overdue) before it re-arms
// anything, so a Last Will read right after them is still left to the
// heartbeats — whatever order the wake brings.
func TestHeartbeatsReadFirstAfterAStallStillSetTheWillsAside(t *testing.T) {
	sh := newStalledHarness(t)
	for _, id := range []string{"coord", "main"} {
		sh.table.Add(id, 100*time.Millisecond, 300*time.Millisecond)
	}
	sh.table.Start()
	for range 5 {
		for _, id := range []string{"coord", "main"} {
			sh.heartbeat(id)
		}
		sh.vc.Advance(100 * time.Millisecond)
	}
	sh.events = nil
	sh.stopped = true
	sh.vc.Advance(10 * time.Second)
	// Every member's heartbeats that waited (main's last ones, sent before
	// it died), then main's Will: all read before the timers' checks.
	willTaken := false
	sh.queue = append([]func(){
		func() { sh.table.Heartbeat(Heartbeat{ID: "main", Boot: "b1", Conn: 1}) },
		func() { sh.table.Heartbeat(Heartbeat{ID: "coord", Boot: "b1", Conn: 1}) },
		func() {
			willTaken = sh.table.Presence(Presence{ID: "main", State: PresenceGone, Boot: "b1", Conn: 1}) == nil
		},
	}, sh.queue...)
	sh.resume()
	if willTaken || sh.state("main") == Lost {
		t.Fatalf("the Will right after the stall was taken (main %s); events %q", sh.state("main"), sh.kinds())
	}
	if got := sh.kinds(); !strings.HasPrefix(got, ":loop_stalled") {
		t.Fatalf("events on resume %q, want loop_stalled first", got)
	}
}

// A stalled loop whose connection to the bus dropped meanwhile (the stall
// was longer than the keep-alive) learns of the disconnection before its
// late timers' checks run: the stall is said all the same, before the
// timers stop for the outage.
func TestAStallIsSaidWhenTheBusDroppedDuringIt(t *testing.T) {
	sh := newStalledHarness(t)
	for _, id := range []string{"coord", "main"} {
		sh.table.Add(id, 100*time.Millisecond, 300*time.Millisecond)
	}
	sh.table.SetConnected(true)
	sh.table.Start()
	for range 5 {
		for _, id := range []string{"coord", "main"} {
			sh.heartbeat(id)
		}
		sh.vc.Advance(100 * time.Millisecond)
	}
	sh.events = nil
	sh.stopped = true
	sh.vc.Advance(4 * time.Second) // every timer fires; their checks wait
	// The connection's loss comes first in line.
	sh.queue = append([]func(){func() { sh.table.SetConnected(false) }}, sh.queue...)
	sh.resume()
	if got := sh.kinds(); !strings.HasPrefix(got, ":loop_stalled") {
		t.Fatalf("events on resume %q, want the stall first", got)
	}
}
