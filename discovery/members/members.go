// Package members keeps the table of a site's members and runs their liveness
// state machine on the runtime's Clock:
//
//	unknown ──heartbeat──▶ alive ──silence > suspect_after──▶ suspect ──silence > lost_after──▶ lost
//	   │                    ▲  ▲                                │
//	   └─startup grace──▶ lost │ └──────────heartbeat───────────┘
//	                           └── heartbeat after lost/closed: restored
//	alive ──Last Will (connection dropped)──▶ lost     alive ──graceful close──▶ closed
//
// A Table is not safe for concurrent use: one goroutine (the runtime's event
// loop) owns it. Timer callbacks come back to that goroutine through the post
// function given to New, so bus callbacks and timers never touch it directly.
package members

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"understudy/events"
	"understudy/guards"
	"understudy/runtime/clock"
)

// State is a member's liveness state.
type State string

// Member states.
const (
	Unknown State = "unknown" // not heard since this instance started
	Alive   State = "alive"
	Suspect State = "suspect" // heartbeats overdue, not yet lost
	Lost    State = "lost"
	Closed  State = "closed" // shut down gracefully
)

// Event kinds, as the policy sees them: the names of the events registry.
const (
	EventSeen     = events.MemberSeen     // first heard since start
	EventSuspect  = events.MemberSuspect  // heartbeats overdue
	EventAlive    = events.MemberAlive    // heard again after suspect (no loss in between)
	EventLost     = events.MemberLost     // silent longer than lost_after, or its connection dropped
	EventClosed   = events.MemberClosed   // graceful shutdown
	EventRestored = events.MemberRestored // heard again after lost or closed
	// This instance stopped / started hearing its own heartbeats through the
	// broker: the bus (or the way to it) is silent, so nobody is judged.
	EventBusSilent = events.BusSilent
	EventBusHeard  = events.BusHeard
	// This instance's own loop did not run for a while (the process was
	// stopped, the VM paused, a long garbage collection): the silence it
	// sees is its own, so every member gets a fresh lost_after.
	EventLoopStalled = events.LoopStalled
)

// Member is a snapshot of one member's liveness.
type Member struct {
	ID        string
	State     State
	Since     time.Time // when State was entered
	LastHeard time.Time // last heartbeat (zero: never)
	Boot      string    // the instance's boot id from its last heartbeat
	Conn      uint64    // its bus connection number within that boot
	Interval  time.Duration
	LostAfter time.Duration
	Reason    string // why it is in State, in words
	Held      bool   // held lost for a fire drill (Hold), whatever it sends
}

// Event is a state change.
type Event struct {
	Kind     string
	Member   Member // after the change
	Previous State
	At       time.Time
	// Silence is how long the member had not been heard when the change was
	// decided (for detection latency); zero for connection drops and closes.
	Silence time.Duration
}

// Heartbeat is what the table needs from a heartbeat message.
type Heartbeat struct {
	ID       string
	Boot     string
	Conn     uint64
	Interval time.Duration // the sender's own interval (0: use the configured one)
}

// Presence values carried by presence messages.
const (
	PresenceOnline = "online"
	PresenceClosed = "closed"
	PresenceGone   = "gone" // the broker published the member's Last Will
)

// Presence is a presence message: online on connect, closed on graceful
// shutdown, gone when the broker publishes the Last Will.
type Presence struct {
	ID    string
	State string
	Boot  string
	Conn  uint64
	// Retained is set for a message the broker kept and delivered because this
	// instance (re)subscribed: history, not news.
	Retained bool
	// Path is the broker it came through, on a site with several (Paths).
	Path int
}

// Options tune a Table.
type Options struct {
	// StartupGrace is how long a member never heard since start (or since
	// this instance reconnected to the bus) may stay unknown before it is
	// declared lost; at least the member's lost_after.
	StartupGrace time.Duration
	// Offline starts the table as if this instance were not connected to the
	// bus yet: no timing runs until SetConnected(true).
	Offline bool
	// Self is this instance's own member id. Its heartbeats travel through the
	// broker like everyone's, so while it cannot hear itself the silence of
	// others proves nothing: nobody is declared suspect or lost until it hears
	// itself again (or the startup grace runs out), and then they get a fresh
	// lost_after. This covers the seconds before the MQTT client notices a
	// dead broker.
	Self string
}

// Table is the member table.
type Table struct {
	clock   clock.Clock
	post    func(func())
	emit    func(Event)
	opts    Options
	members map[string]*entry
	paused  bool
	started time.Time // when timing began: Start, or the last (re)connection to the bus
	deaf    bool      // this instance cannot hear its own heartbeats (bus_silent sent)
	// leftBus: this instance's connection to the bus has dropped at least
	// once; rejoined: the last (re)connection followed such a drop.
	leftBus, rejoined bool
}

type entry struct {
	Member
	configuredInterval time.Duration
	quietSince         time.Time // silence is counted from here: last heartbeat, or this instance's reconnect to the bus
	waitingForSelf     bool      // silent while this instance could not hear itself either; rechecked when it can
	timer              clock.Timer
	due                time.Time // when timer should fire
	stallUntil         time.Time // after a stall of this instance's loop: until then its Last Will proves nothing
	gen                uint64    // invalidates timers armed before the last change
}

// New returns an empty table. post must run f on the goroutine that owns the
// table (later, never inline from a foreign goroutine); emit receives state
// changes on that goroutine.
func New(c clock.Clock, post func(func()), emit func(Event), opts Options) *Table {
	return &Table{clock: c, post: post, emit: emit, opts: opts, members: map[string]*entry{}, paused: opts.Offline}
}

// Add declares a member with its configured heartbeat interval and lost_after.
func (t *Table) Add(id string, interval, lostAfter time.Duration) {
	t.members[id] = &entry{Member: Member{ID: id, State: Unknown, Interval: interval, LostAfter: lostAfter, Reason: "not heard yet"}, configuredInterval: interval}
}

// Start begins timing: members not heard within the startup grace (or their
// lost_after if longer) of start, or of the first bus connection when the
// table starts offline, become lost.
func (t *Table) Start() {
	t.started = t.clock.Now()
	if self, ok := t.members[t.opts.Self]; ok {
		// This instance is running: it needs no heartbeat to know that (its
		// own heartbeats only tell whether the bus carries them).
		t.change(self, Alive, EventSeen, "this instance", 0)
	}
	for _, e := range t.members {
		e.Since = t.started
		if e.State == Unknown && !t.paused {
			t.arm(e, t.grace(e))
		}
	}
}

func (t *Table) grace(e *entry) time.Duration { return max(t.opts.StartupGrace, e.LostAfter) }

// Known reports whether id is a member of the table.
func (t *Table) Known(id string) bool { _, ok := t.members[id]; return ok }

// Get returns a snapshot of one member.
func (t *Table) Get(id string) (Member, bool) {
	e, ok := t.members[id]
	if !ok {
		return Member{}, false
	}
	return e.Member, true
}

// All returns snapshots of all members, sorted by id.
func (t *Table) All() []Member {
	out := make([]Member, 0, len(t.members))
	for _, e := range t.members {
		out = append(out, e.Member)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Heartbeat records a heartbeat. It returns an error for unknown members.
func (t *Table) Heartbeat(hb Heartbeat) error {
	e, ok := t.members[hb.ID]
	if !ok {
		return fmt.Errorf("heartbeat from unknown member %q", hb.ID)
	}
	now := t.clock.Now()
	t.noticeStall(now, e)
	e.LastHeard, e.quietSince = now, now
	e.Boot, e.Conn = hb.Boot, hb.Conn
	if hb.Interval > 0 {
		e.Interval = hb.Interval
	} else {
		e.Interval = e.configuredInterval
	}
	if hb.ID == t.opts.Self {
		t.selfHeard(e, now)
	}
	if e.Held {
		return nil // heard, and lost until Release
	}
	switch e.State {
	case Unknown:
		t.change(e, Alive, EventSeen, "heartbeat", 0)
	case Lost, Closed:
		t.change(e, Alive, EventRestored, "heartbeat after "+string(e.State), 0)
	case Suspect:
		t.change(e, Alive, EventAlive, "heartbeat after suspect", 0)
	}
	if !t.paused {
		t.arm(e, e.suspectAfter())
	}
	return nil
}

// Presence records a presence message. A Last Will ("gone") counts only if it
// belongs to the member's current connection: the broker may publish the Will
// of a connection the member has already replaced (a session takeover after a
// reconnect), and that must not mark a live member lost.
func (t *Table) Presence(p Presence) error {
	e, ok := t.members[p.ID]
	if !ok {
		return fmt.Errorf("presence from unknown member %q", p.ID)
	}
	current := e.current(p)
	switch p.State {
	case PresenceOnline:
		// The member's newest connection: a Will of any earlier one that the
		// broker publishes late (a takeover, a FIN retransmitted after a
		// network outage) is stale from now on.
		if !p.Retained || e.Boot == "" {
			e.Boot, e.Conn = p.Boot, p.Conn
		}
		return nil
	case PresenceGone:
		if p.ID == t.opts.Self {
			return fmt.Errorf("ignored the Last Will of this instance itself: it is running")
		}
		if !current {
			return fmt.Errorf("stale Last Will of member %q (boot %s conn %d; current boot %s conn %d)", p.ID, p.Boot, p.Conn, e.Boot, e.Conn)
		}
		if now := t.clock.Now(); t.overdue(now) || now.Before(e.stallUntil) {
			// This instance's loop has just stalled: the broker (maybe in
			// this very process) may have dropped the member's connection
			// because nobody read it. Its heartbeats decide within a fresh
			// lost_after.
			return fmt.Errorf("the Last Will of member %q came right after this instance's loop stalled: its heartbeats decide", p.ID)
		}
		if p.Retained {
			// Kept by the broker from before this instance (re)subscribed, e.g.
			// from a broker outage: the heartbeats will tell whether it is back.
			return fmt.Errorf("retained Last Will of member %q is history; its heartbeats decide", p.ID)
		}
		if t.willOfOutage(e, t.clock.Now()) {
			return fmt.Errorf("the Last Will of member %q, not heard since this instance rejoined the bus, may tell of the outage: its heartbeats decide", p.ID)
		}
		if e.State == Alive || e.State == Suspect {
			// How long it had been silent: the detection latency's upper bound.
			var silence time.Duration
			if !e.LastHeard.IsZero() {
				silence = t.clock.Now().Sub(e.LastHeard)
			}
			t.change(e, Lost, EventLost, "connection dropped (Last Will)", silence)
			t.disarm(e)
		}
	case PresenceClosed:
		if !current {
			return fmt.Errorf("stale close of member %q", p.ID)
		}
		if e.Held {
			return nil // lost for a drill; silent from now on, so Release leaves it lost
		}
		if e.State != Closed {
			t.change(e, Closed, EventClosed, "shut down", 0)
			t.disarm(e)
		}
	default:
		return fmt.Errorf("unknown presence state %q from %q", p.State, p.ID)
	}
	return nil
}

// current reports whether p belongs to the member's current connection (or
// the member has not said which that is yet).
func (e *entry) current(p Presence) bool {
	return e.Boot == "" || (p.Boot == e.Boot && p.Conn == e.Conn)
}

// WillCounts reports whether p is a Last Will that Presence would take as a
// loss now: live (not retained), of another member's current connection,
// while that member is alive or suspect. It changes nothing. (Presence
// still sets aside a Will that comes right after a stall of this
// instance's loop.)
func (t *Table) WillCounts(p Presence) bool {
	e, ok := t.members[p.ID]
	if !ok || p.State != PresenceGone || p.ID == t.opts.Self || p.Retained || e.Held || !e.current(p) || t.willOfOutage(e, t.clock.Now()) {
		return false
	}
	return e.State == Alive || e.State == Suspect
}

// Hold declares a member lost for a fire drill: it stays lost, whatever it
// sends, until Release. Its heartbeats are still noted, so Release knows
// whether it is really there.
func (t *Table) Hold(id, reason string) error {
	e, ok := t.members[id]
	if !ok {
		return fmt.Errorf("unknown member %q", id)
	}
	if id == t.opts.Self {
		return errors.New("an instance cannot hold itself lost")
	}
	if e.Held {
		return fmt.Errorf("%s is held lost already", id)
	}
	e.Held = true
	t.disarm(e)
	if e.State != Lost {
		t.change(e, Lost, EventLost, reason, 0)
	}
	return nil
}

// Release ends a Hold. A member heard within its lost_after is restored at
// once (with reason); one that has been silent stays lost until it is heard.
func (t *Table) Release(id, reason string) error {
	e, ok := t.members[id]
	if !ok {
		return fmt.Errorf("unknown member %q", id)
	}
	if !e.Held {
		return fmt.Errorf("%s is not held", id)
	}
	e.Held = false
	if t.paused || e.LastHeard.IsZero() || t.clock.Now().Sub(e.quietSince) >= e.LostAfter {
		return nil
	}
	t.change(e, Alive, EventRestored, reason, 0)
	t.arm(e, e.suspectAfter())
	return nil
}

// willOfOutage reports whether a Last Will of e now may tell of a bus
// outage this instance has just come back from rather than of e: e was
// heard before the outage, not since this instance rejoined, and the grace
// every member gets after a rejoin is not over. A broker that was away (its
// host unplugged, restarted) ends the connections it held for the members
// as they come back or as their keep-alives run out, and publishes their
// Wills then. The member's heartbeats decide within that grace: one that
// really died is lost when it ends.
func (t *Table) willOfOutage(e *entry, now time.Time) bool {
	return t.rejoined && !e.LastHeard.IsZero() && e.LastHeard.Before(t.started) && now.Before(t.started.Add(t.grace(e)))
}

// Connected reports whether this instance is connected to the bus, as
// SetConnected last said.
func (t *Table) Connected() bool { return !t.paused }

// SetConnected tells the table whether this instance is connected to the bus.
// While it is not, nobody can be heard, so nobody is declared suspect or lost;
// on reconnect every member gets a fresh lost_after to be heard again.
func (t *Table) SetConnected(connected bool) {
	if connected == !t.paused {
		return
	}
	if !connected {
		// A stall whose late timers have not run yet (their checks wait
		// behind this): said now, before the timers stop — a process
		// stopped past its keep-alive wakes to a dropped connection too.
		t.overdue(t.clock.Now())
	}
	t.paused = !connected
	now := t.clock.Now()
	if connected {
		t.rejoined = t.leftBus
		t.started = now
	} else {
		t.leftBus = true
	}
	for _, e := range t.members {
		e.waitingForSelf = false
		if t.paused {
			t.disarm(e)
			continue
		}
		// After a bus outage every instance reconnects at its own pace, so
		// members not heard since get the startup grace, not lost_after.
		if !e.LastHeard.IsZero() {
			e.quietSince = now
		}
		if e.State == Alive || e.State == Suspect || e.State == Unknown {
			t.arm(e, t.grace(e))
		}
	}
}

// checkSelf runs when this instance's own timer fires. The instance is alive
// by definition; not hearing its own heartbeats means the bus is silent.
func (t *Table) checkSelf(e *entry, now time.Time) {
	if e.LastHeard.IsZero() {
		return // never heard: no canary yet
	}
	silence := now.Sub(e.quietSince)
	switch {
	case silence < e.suspectAfter():
		t.arm(e, e.suspectAfter()-silence)
	case !t.deaf:
		t.deaf = true
		t.emit(Event{Kind: EventBusSilent, Member: e.Member, Previous: e.State, At: now, Silence: silence})
	}
}

// cannotHearSelf reports whether this instance has stopped hearing its own
// heartbeats (heard since it joined the bus, silent past its suspect time,
// and not yet for longer than the startup grace), which makes e's silence
// meaningless, and how long until that grace runs out. It never applies to
// the instance itself.
func (t *Table) cannotHearSelf(e *entry, now time.Time) (time.Duration, bool) {
	self, ok := t.members[t.opts.Self]
	if !ok || e == self || self.LastHeard.IsZero() || self.LastHeard.Before(t.started) {
		return 0, false
	}
	silence := now.Sub(self.LastHeard)
	if silence < self.suspectAfter() || silence >= t.grace(self) {
		return 0, false
	}
	return t.grace(self) - silence, true
}

// selfHeard gives the members that fell silent while this instance could not
// hear itself a fresh lost_after from now.
func (t *Table) selfHeard(self *entry, now time.Time) {
	if t.deaf {
		t.deaf = false
		t.emit(Event{Kind: EventBusHeard, Member: self.Member, Previous: self.State, At: now, Silence: now.Sub(self.LastHeard)})
	}
	for _, e := range t.members {
		if e.waitingForSelf {
			e.waitingForSelf = false
			e.quietSince = now
			t.arm(e, e.suspectAfter())
		}
	}
}

// suspectAfter is the silence after which a member is suspect: one heartbeat
// plus half an interval of slack, and always before it would be lost.
func (e *entry) suspectAfter() time.Duration {
	return min(e.Interval+e.Interval/2, e.LostAfter/2)
}

func (t *Table) change(e *entry, to State, kind, reason string, silence time.Duration) {
	prev := e.State
	e.State, e.Since, e.Reason = to, t.clock.Now(), reason
	t.emit(Event{Kind: kind, Member: e.Member, Previous: prev, At: e.Since, Silence: silence})
}

func (t *Table) disarm(e *entry) {
	e.gen++
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

// arm (re)sets the member's one timer to check it after d.
func (t *Table) arm(e *entry, d time.Duration) {
	t.disarm(e)
	gen := e.gen
	e.due = t.clock.Now().Add(d)
	e.timer = t.clock.AfterFunc(d, func() {
		t.post(func() { t.check(e, gen) })
	})
}

// check runs when a member's timer fires, on the owning goroutine.
func (t *Table) check(e *entry, gen uint64) {
	if gen != e.gen || t.paused {
		return
	}
	e.timer = nil
	now := t.clock.Now()
	if late := now.Sub(e.due); late >= e.suspectAfter() && !guards.Off(guards.StallRule) {
		// The timer came this late because this instance's loop did not
		// run: the silence since then is its own, not the members'.
		t.stalled(now, late)
		return
	}
	if e.ID == t.opts.Self {
		t.checkSelf(e, now)
		return
	}
	if e.LastHeard.IsZero() {
		if e.State == Unknown {
			t.change(e, Lost, EventLost, fmt.Sprintf("not heard within %v of joining the bus", now.Sub(t.started).Round(time.Millisecond)), now.Sub(t.started))
		}
		return
	}
	if e.LastHeard.Before(t.started) {
		// Not heard since this instance (re)joined the bus: the grace is over.
		if e.State == Alive || e.State == Suspect {
			t.change(e, Lost, EventLost, fmt.Sprintf("not heard within %v of rejoining the bus", now.Sub(t.started).Round(time.Millisecond)), now.Sub(e.LastHeard))
		}
		return
	}
	silence := now.Sub(e.quietSince)
	if wait, ok := t.cannotHearSelf(e, now); ok && silence >= e.suspectAfter() {
		// selfHeard rechecks it; if this instance stays deaf, the suppression
		// ends with the grace and this timer decides.
		e.waitingForSelf = true
		t.arm(e, wait)
		return
	}
	switch {
	case silence >= e.LostAfter:
		if e.State == Alive || e.State == Suspect {
			t.change(e, Lost, EventLost, fmt.Sprintf("no heartbeat for %v", silence.Round(time.Millisecond)), silence)
		}
	case silence >= e.suspectAfter():
		if e.State == Alive {
			t.change(e, Suspect, EventSuspect, fmt.Sprintf("no heartbeat for %v", silence.Round(time.Millisecond)), silence)
		}
		t.arm(e, e.LostAfter-silence)
	default:
		t.arm(e, e.suspectAfter()-silence)
	}
}

// stalled follows a gap in this instance's own loop, found by a timer that
// came later than a member could be suspect: a stopped process (SIGSTOP), a
// paused VM, a long garbage collection. The heartbeats that arrived
// meanwhile have not been read yet, so nobody is judged until every member
// has had a fresh lost_after from now: those heard again stay alive, one
// that really died is lost one lost_after from now.
func (t *Table) stalled(now time.Time, late time.Duration) {
	t.emit(Event{Kind: EventLoopStalled, At: now, Silence: late})
	for _, e := range t.members {
		if e.Held || e.State == Lost || e.State == Closed {
			continue
		}
		e.waitingForSelf = false
		e.stallUntil = now.Add(e.LostAfter)
		switch {
		case e.LastHeard.IsZero():
			// Not heard yet: the rest of its startup grace, and at least
			// a lost_after.
			t.arm(e, max(e.due.Sub(now), e.LostAfter))
		case e.LastHeard.Before(t.started):
			// Not heard since this instance rejoined the bus: at least a
			// lost_after more to be heard.
			t.arm(e, max(e.due.Sub(now), e.LostAfter))
		default:
			e.quietSince = now
			t.arm(e, e.suspectAfter())
		}
	}
}

// noticeStall finds a stall at the first heartbeat read after it, from e
// or from this instance itself: its timer is due longer ago than it may be
// silent. The heartbeats that waited in the sockets meanwhile may be read
// before the late timers run; they would re-arm those timers unseen, and a
// Last Will read right after them would be taken as news. O(1): a
// heartbeat looks at two timers.
func (t *Table) noticeStall(now time.Time, e *entry) {
	if t.paused || guards.Off(guards.StallRule) {
		return
	}
	for _, x := range []*entry{e, t.members[t.opts.Self]} {
		if x == nil || x.timer == nil {
			continue
		}
		if late := now.Sub(x.due); late >= x.suspectAfter() {
			t.stalled(now, late)
			return
		}
	}
}

// overdue finds a stall before the late timers' checks have run (a Last
// Will may come first): a member's timer is due longer ago than the member
// may be silent. Then it handles the stall and reports true.
func (t *Table) overdue(now time.Time) bool {
	if t.paused || guards.Off(guards.StallRule) {
		return false
	}
	for _, e := range t.members {
		if e.timer != nil {
			if late := now.Sub(e.due); late >= e.suspectAfter() {
				t.stalled(now, late)
				return true
			}
		}
	}
	return false
}
