package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/runtime/clock"
)

// Last Wills over a connection to a broker in another process.
//
// A broker that shuts down (`systemctl restart mosquitto` sends SIGTERM)
// publishes the Last Will of every client still connected on its way out,
// and this instance may receive a member's Will before its own connection
// drops. That Will tells of the broker, not of the member. So when the
// broker is not in this process (CheckWills), a Will the member table would
// take as a loss is held until the broker has carried one of this
// instance's own heartbeats, published after the Will arrived, back to it:
// one round trip (about a millisecond on a LAN) that a broker past its last
// loop never makes. Then the table takes the Will as it would have at once
// (a Will of a connection the member has replaced meanwhile is stale by
// then, as always). If this instance's connection drops first, or the
// member's lost_after runs out first (its silence has decided by then), the
// Will is set aside: the member is judged by its heartbeats — after a
// reconnect within the startup grace — so a member that really died as
// the broker went away is lost then, and no failover is missed.
//
// With the broker embedded in this process nothing is held: it cannot shut
// down without this instance, and a Will it publishes is a member's
// connection that ended (the crash-detection path, unchanged).

// willsAside is what the log says of a Will set aside.
const willsAside = "a Last Will arrived as the broker went away: not taken as a loss; the member is judged by its heartbeats"

// wills are the Last Wills waiting for this instance's way through the
// broker to be confirmed. Only the loop goroutine touches them.
type wills struct {
	// probe publishes this instance's heartbeat out of turn and returns it
	// (bus.Client.Probe); nil: Wills are taken at once.
	probe  func() (bus.Heartbeat, bool)
	held   map[string]*heldWill // by member
	queued bool                 // sendWillProbe waits on the loop
}

type heldWill struct {
	p     members.Presence
	probe bus.Heartbeat // the heartbeat whose return confirms it; Seq 0 until it is sent
	timer clock.Timer   // the member's lost_after from the Will
}

// CheckWills makes the loop confirm its own way through the broker before
// it takes a Last Will as a loss (see wills above): for an instance whose
// broker is another process. probe publishes this instance's heartbeat out
// of turn (bus.Client.Probe); it is called on the loop. Call CheckWills
// before the bus connects. Any goroutine.
func (e *Engine) CheckWills(probe func() (bus.Heartbeat, bool)) {
	e.Post(func() { e.wills.probe = probe })
}

// presence takes a presence message: on a site with several brokers the
// paths merger (members.Paths) decides first what the member table is to
// see of it.
func (e *Engine) presence(p members.Presence) {
	if e.table.Known(p.ID) {
		merged, ok, why := e.paths.Presence(p)
		if !ok {
			e.log.Debug("presence set aside", "member", p.ID, "state", p.State, "path", p.Path, "reason", why)
			return
		}
		p = merged
	}
	e.judgePresence(p)
}

// judgePresence takes a presence as the member table sees it (after the
// paths merger): a Last Will that would mark its member lost waits for the
// round trip when Wills are checked; the rest goes to the table at once.
func (e *Engine) judgePresence(p members.Presence) {
	if e.wills.probe != nil && e.table.WillCounts(p) {
		e.holdWill(p)
		return
	}
	e.takePresence(p)
}

func (e *Engine) takePresence(p members.Presence) {
	err := e.table.Presence(p)
	e.log.Debug("presence", "member", p.ID, "state", p.State, "boot", p.Boot, "conn", p.Conn, "retained", p.Retained, "result", err)
	switch {
	case err == nil:
	case !e.table.Known(p.ID):
		if e.opts.Drops != nil {
			e.opts.Drops.Drop(p.ID, e.topics.Presence(p.ID), -1, fmt.Errorf("%w: %v", bus.ErrUnknownMember, err))
		}
	default:
		e.log.Debug("presence ignored", "reason", err)
	}
}

// holdWill holds p until a probe sent after it comes back. The Wills that
// arrive before the probe is sent (a broker going away publishes all of
// them at once) share it.
func (e *Engine) holdWill(p members.Presence) {
	if old := e.wills.held[p.ID]; old != nil {
		old.timer.Stop()
	}
	m, _ := e.table.Get(p.ID)
	h := &heldWill{p: p}
	h.timer = e.clock.AfterFunc(m.LostAfter, func() { e.Post(func() { e.willExpired(h) }) })
	e.wills.held[p.ID] = h
	e.log.Debug("Last Will held until the broker carries this instance's own heartbeat back", "member", p.ID, "boot", p.Boot, "conn", p.Conn)
	if !e.wills.queued {
		e.wills.queued = true
		e.Post(e.sendWillProbe)
	}
}

// sendWillProbe publishes the probe the Wills held so far wait for.
func (e *Engine) sendWillProbe() {
	e.wills.queued = false
	waiting := false
	for _, h := range e.wills.held {
		waiting = waiting || h.probe.Seq == 0
	}
	if !waiting {
		return // set aside meanwhile (the connection dropped)
	}
	hb, ok := e.wills.probe()
	if !ok {
		e.setWillsAside("this instance's connection to the broker was down when it would have checked it")
		return
	}
	for _, h := range e.wills.held {
		if h.probe.Seq == 0 {
			h.probe = hb
		}
	}
}

// ownHeartbeat takes this instance's own heartbeat back from the broker: the
// Wills whose probe it is (or follows, on the same connection) are
// confirmed — the broker was still carrying messages after them — and taken.
func (e *Engine) ownHeartbeat(hb bus.Heartbeat) {
	for _, id := range slices.Sorted(maps.Keys(e.wills.held)) {
		h := e.wills.held[id]
		if h.probe.Seq == 0 || hb.Boot != h.probe.Boot || hb.Conn != h.probe.Conn || hb.Seq < h.probe.Seq {
			continue
		}
		delete(e.wills.held, id)
		h.timer.Stop()
		e.takePresence(h.p)
	}
}

// setWillsAside drops every held Will: the way through the broker was not
// confirmed, so they prove nothing; the members' heartbeats decide. One log
// line for them all (a broker going away publishes every client's Will):
// the first maxNamed members by name.
func (e *Engine) setWillsAside(why string) {
	if len(e.wills.held) == 0 {
		return
	}
	ids := slices.Sorted(maps.Keys(e.wills.held))
	for _, id := range ids {
		e.wills.held[id].timer.Stop()
	}
	clear(e.wills.held)
	named := strings.Join(ids[:min(len(ids), maxNamed)], ", ")
	if len(ids) > maxNamed {
		named += fmt.Sprintf(" and %d more", len(ids)-maxNamed)
	}
	e.log.Warn(willsAside, "member", named, "wills", len(ids), "why", why)
}

// maxNamed bounds the members a log line names.
const maxNamed = 20

// willExpired sets h aside when no probe came back within the member's
// lost_after; by then its silence has decided (unless this instance cannot
// hear itself either: then nobody is judged until it can).
func (e *Engine) willExpired(h *heldWill) {
	if e.wills.held[h.p.ID] != h {
		return
	}
	delete(e.wills.held, h.p.ID)
	m, _ := e.table.Get(h.p.ID)
	why := fmt.Sprintf("the broker did not carry this instance's own heartbeat back within the member's lost_after (%v)", m.LostAfter)
	if m.State == members.Alive || m.State == members.Suspect {
		e.log.Warn(willsAside, "member", h.p.ID, "why", why)
	} else {
		e.log.Debug("Last Will set aside", "member", h.p.ID, "state", m.State, "why", why)
	}
}
