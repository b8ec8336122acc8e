package faults

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"understudy/events"
	"understudy/runtime/takeover"
)

// Bounds are the slack the checker allows beyond the site's own timing.
// Each is documented in docs/faults.md.
type Bounds struct {
	// Detect is allowed beyond lost_after for a loss to be noticed: missed
	// heartbeats are judged on the coordinator's ticks (default 2
	// heartbeat intervals + 500 ms, at least 1 s).
	Detect time.Duration
	// Cover is allowed for the takeover's own steps once the loss is
	// known: the bookkeeping, the standby's agent running the takeover and
	// its answer coming back (default 5 s).
	Cover time.Duration
	// Reconnect is allowed after a fault ends until the instance is on the
	// bus again: a restarted process starting, a client noticing a dead
	// connection (1.5 × keep-alive) and its reconnect backoff (default
	// 1.5 × keep-alive + 3 s).
	Reconnect time.Duration
	// Device is allowed after a switcher is reachable again (or restarted)
	// until the coordinator's driver reconnected and re-asserted the
	// routes (default 6 s).
	Device time.Duration
	// Failback is allowed beyond the failback delay for the failback's own
	// steps (default 10 s).
	Failback time.Duration
	// Elect is allowed, on a site whose coordinator is elected, from the
	// moment the leader is lost (killed, stopped, unplugged, cut off from
	// the other candidates) until another candidate coordinates: raft's
	// heartbeat timeout passing without the leader, the election, the new
	// leader's wait for the old lease, its Barrier and start (default 6
	// raft heartbeat timeouts + 1 s; the timeout is 3 heartbeat intervals,
	// 200 ms to 2 s).
	Elect time.Duration
}

// withDefaults fills the zero bounds from the site's timing.
func (b Bounds) withDefaults(f SiteFacts) Bounds {
	var interval time.Duration
	for _, m := range f.Members {
		interval = max(interval, m.Interval)
	}
	if b.Detect == 0 {
		b.Detect = max(2*interval+500*time.Millisecond, time.Second)
	}
	if b.Cover == 0 {
		b.Cover = 5 * time.Second
	}
	if b.Reconnect == 0 {
		b.Reconnect = f.KeepAlive*3/2 + 3*time.Second
	}
	if b.Device == 0 {
		b.Device = 6 * time.Second
	}
	if b.Failback == 0 {
		b.Failback = 10 * time.Second
	}
	if b.Elect == 0 {
		b.Elect = 6*min(max(3*interval, 200*time.Millisecond), 2*time.Second) + time.Second
	}
	return b
}

// The properties.
const (
	PropCoverage    = "coverage"
	PropFalseLoss   = "no-false-loss"
	PropAtMostOnce  = "at-most-once"
	PropFailback    = "failback"
	PropCoverRoutes = "coverage-routing"
	PropBackRoutes  = "failback-routing"
	PropEpochs      = "epochs-monotonic"
	// PropFailbackCopy is property 5's "after its material was copied".
	PropFailbackCopy = "failback-after-copy"
	PropMaterial     = "material-intact"
)

// Violation is a property that does not hold, with the window of the
// history that shows it.
type Violation struct {
	Property string    `json:"property"`
	Member   string    `json:"member,omitempty"`
	At       time.Time `json:"at"`
	Message  string    `json:"message"`
	From     time.Time `json:"from"` // the timeline to show
	To       time.Time `json:"to"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s: %s", v.Property, v.Member, v.Message)
}

// Cover is one outage that had to be covered, and how it went.
type Cover struct {
	Member   string        `json:"member"`
	Kind     OpKind        `json:"kind"` // the fault that began the outage
	Lost     time.Time     `json:"lost"` // when the outage began
	Deadline time.Time     `json:"deadline"`
	Took     time.Duration `json:"took"` // to takeover_done; 0 when already covered
	Already  bool          `json:"already,omitempty"`
	OK       bool          `json:"ok"`
}

// Result is what Check found.
type Result struct {
	Violations []Violation `json:"violations"`
	Covers     []Cover     `json:"covers"`
	// Failbacks counts the returns that had to be failed back (checked).
	Failbacks int `json:"failbacks"`
	// Queued counts outages not checked because the pool had no free
	// standby (capacity or the failover limit).
	Queued int `json:"queued"`
	// Unproven counts outages not shown covered where the coordinator's
	// journal, which would show it, may have lost the records (its state
	// folder full until it was killed or the history ended).
	Unproven int `json:"unproven,omitempty"`
	// Actions counts the commands read in the members' stores (by member
	// and id).
	Actions int `json:"actions"`
	// Losses counts the member_lost records judged for false loss.
	Losses int `json:"losses"`
	// Copies counts the failbacks ended after a material copy whose files
	// were compared; MaterialFiles the recordings compared for them.
	Copies        int `json:"copies"`
	MaterialFiles int `json:"material_files"`
	// ConfigsJudged counts the bundles whose final contents were judged
	// (the site settled before the end); ConfigsUnjudged those it was not.
	ConfigsJudged   int `json:"configs_judged,omitempty"`
	ConfigsUnjudged int `json:"configs_unjudged,omitempty"`
	// Terms counts, on an elected site, the leaders' terms read from the
	// candidates' journals; Routes the routes the switchers applied whose
	// connection was judged (overlapping-terms).
	Terms  int `json:"terms,omitempty"`
	Routes int `json:"routes,omitempty"`
	// RoutingChecked counts the switchers' routings compared at the
	// bound of a coverage (coverage-routing): a bound pushed past the
	// member's outage by the devices' trouble compares none.
	RoutingChecked int `json:"routing_checked,omitempty"`
}

// checker holds a history with the fault intervals worked out.
type checker struct {
	h     *History
	b     Bounds
	end   time.Time
	coord string
	// broker is the label of the broker's host: the coordinator's, or
	// BrokerHost with an external broker ("" on an elected site whose
	// candidates embed a broker each: SiteFacts.BrokerHosts).
	broker string
	// elected: the coordinator is elected among the candidates (elect.go).
	elected bool
	// the candidates' terms, read once (terms)
	termsDone bool
	termList  []term
}

// Check verifies the properties on h. Zero bounds take the defaults.
func Check(h *History, b Bounds) Result {
	c := &checker{h: h, b: b.withDefaults(h.Site), end: h.End, coord: h.Site.Coordinator, broker: h.Site.Coordinator, elected: h.Site.Elected()}
	switch {
	case h.Site.Broker != "":
		c.broker = BrokerHost
	case c.elected:
		c.broker = ""
	}
	var r Result
	c.falseLoss(&r)
	c.coverage(&r)
	c.failback(&r)
	c.atMostOnce(&r)
	c.epochs(&r)
	c.failbackAfterCopy(&r)
	c.materialIntact(&r)
	c.configs(&r)
	c.overlappingTerms(&r)
	slices.SortStableFunc(r.Violations, func(a, b Violation) int { return a.At.Compare(b.At) })
	return r
}

// opEnd is when an op stopped acting (the end of the history if it did not).
func (c *checker) opEnd(o Op) time.Time {
	if o.End.IsZero() || o.End.After(c.end) {
		return c.end
	}
	return o.End
}

// opSpans returns the intervals of the ops for which keep is true.
func (c *checker) opSpans(keep func(Op) bool) spans {
	var out spans
	for _, o := range c.h.Ops {
		if o.Err != "" || o.Start.IsZero() || !keep(o) {
			continue
		}
		if o.instant() {
			out = append(out, span{o.Start, o.Start.Add(time.Millisecond)})
			continue
		}
		out = append(out, span{o.Start, c.opEnd(o)})
	}
	return out.merge(0)
}

// procDown is when member's process was killed or stopped.
func (c *checker) procDown(member string, kinds ...OpKind) spans {
	return c.opSpans(func(o Op) bool { return o.Member == member && slices.Contains(kinds, o.Kind) })
}

// linkDown is when host's link was down.
func (c *checker) linkDown(host string) spans {
	return c.opSpans(func(o Op) bool { return o.Kind == OpLinkDown && o.Host == host || o.Kind == OpLANDown })
}

// cut is when hosts a and b could not reach each other (a partition that
// puts them apart, or a broker cut between them: a member and the broker's
// host).
func (c *checker) cut(a, b string) spans {
	return c.opSpans(func(o Op) bool {
		switch o.Kind {
		case OpPartition:
			return slices.Contains(o.Groups[0], a) && slices.Contains(o.Groups[1], b) ||
				slices.Contains(o.Groups[0], b) && slices.Contains(o.Groups[1], a)
		case OpBrokerCut:
			return o.Member == a && b == c.broker || o.Member == b && a == c.broker
		}
		return false
	})
}

// away is when member could not take part in the site through its own
// faults: process killed or stopped, link down, cut off from the broker's
// host (the coordinator's, or the broker host with an external broker).
func (c *checker) away(member string) spans {
	if c.elected {
		return c.electedAway(member)
	}
	s := c.procDown(member, OpKill, OpStop)
	s = append(s, c.linkDown(member)...)
	if member != c.broker {
		s = append(s, c.cut(member, c.broker)...)
	}
	return s.merge(0)
}

// brokerDown is when an external broker was gone for everyone: killed, or
// its host's link down. Nobody could hear anybody.
func (c *checker) brokerDown() spans {
	if c.broker == c.coord || c.broker == "" {
		return nil // embedded: it goes with the coordinator (away)
	}
	return c.opSpans(func(o Op) bool {
		return o.Kind == OpBrokerKill || o.Kind == OpBrokerStop || o.Kind == OpLinkDown && o.Host == c.broker
	})
}

// coordTrouble is when the coordinator could not decide or hear anyone:
// away itself (with the broker it embeds), or an external broker down.
//
// On an elected site: while no candidate could be elected, and from a
// fault that took the leader out until another could lead (leaderFaults);
// an external broker down as on any site.
func (c *checker) coordTrouble() spans {
	if c.elected {
		return slices.Concat(c.leaderless(), c.leaderFaults(), c.brokerDown()).merge(0)
	}
	return append(c.away(c.coord), c.brokerDown()...).merge(0)
}

// storeStalled is when member's state store commits stalled (store_stall).
func (c *checker) storeStalled(member string) spans {
	return c.opSpans(func(o Op) bool { return o.Kind == OpStoreStall && o.Member == member })
}

// coordBlocked is when the coordinator could not act: in trouble, or its
// state store stalled — it persists what it decides before it acts, so
// its loop waits on the first commit (a stall longer than lost_after is a
// stop of its loop: the stall rule then gives everyone a fresh
// lost_after). Only for the bounds of what it must do; a store stall
// excuses no false loss (its broker and the heartbeats go on).
func (c *checker) coordBlocked() spans {
	if c.elected {
		return append(c.coordTrouble(), c.leaderStalled()...).merge(0)
	}
	return append(c.coordTrouble(), c.storeStalled(c.coord)...).merge(0)
}

// deviceTrouble is when the coordinator could not reach the switchers.
func (c *checker) deviceTrouble() spans {
	if c.elected {
		return c.leaderDeviceTrouble()
	}
	return append(c.linkDown(DevicesHost), c.cut(c.coord, DevicesHost)...).merge(0)
}

// graceAfter is how long after a coordinator trouble span ends it may take
// before it judges again: a restarted coordinator waits startup_grace for
// members it has not heard; any other trouble needs the members' next
// heartbeats (the stall rule: nobody is judged until they had a fresh
// lost_after). With an external broker any trouble may have ended the
// coordinator's own connection to it (the broker killed, the coordinator
// cut off, unplugged or stopped past 1.5 keep-alives), and back on the bus
// it gives every member it has not heard since the startup grace
// (members.Table.SetConnected).
func (c *checker) graceAfter(s span, lostAfter time.Duration) time.Duration {
	if c.elected {
		g := c.electedGrace(s, lostAfter)
		if len(c.brokerDown().overlapping(s)) > 0 {
			g = max(g, c.b.Reconnect+max(c.h.Site.StartupGrace, lostAfter)+c.b.Detect)
		}
		return g
	}
	g := c.b.Reconnect + lostAfter + c.b.Detect
	for _, k := range c.procDown(c.coord, OpKill) {
		if k.To.Equal(s.To) || k.overlaps(s) {
			g = max(g, c.h.Site.StartupGrace+c.b.Reconnect)
		}
	}
	if c.broker != c.coord {
		g = max(g, c.b.Reconnect+max(c.h.Site.StartupGrace, lostAfter)+c.b.Detect)
	}
	return g
}

// falseLoss: no member_lost for a member whose process ran, was not
// stopped, and could reach the broker during the whole lost_after window
// before the record (with Detect and Reconnect as slack), while the
// coordinator itself was not in trouble.
func (c *checker) falseLoss(r *Result) {
	for _, rec := range c.h.Journal {
		if rec.Type != events.MemberLost || rec.At.Before(c.h.Start) || rec.At.After(c.end) {
			continue
		}
		m, ok := c.h.Site.Members[rec.Member]
		if !ok || !m.Instance {
			continue
		}
		r.Losses++
		judge := rec.By(c.h.Site) // the coordinator that judged
		if s, ok := c.judgedAfterStall(judge, rec.At, m.LostAfter); ok {
			r.Violations = append(r.Violations, Violation{
				Property: PropFalseLoss, Member: rec.Member, At: rec.At,
				Message: fmt.Sprintf("declared lost (%s) %s after the coordinator woke from a stop of %s: after a stall of its own loop nobody is judged before a fresh lost_after (%s)",
					rec.Str("reason"), rec.At.Sub(s.To).Round(time.Millisecond), s.To.Sub(s.From).Round(time.Millisecond), m.LostAfter),
				From: s.From.Add(-2 * time.Second), To: rec.At.Add(2 * time.Second),
			})
			continue
		}
		w := span{rec.At.Add(-m.LostAfter - c.b.Detect), rec.At}
		trouble := append(c.away(rec.Member), c.coordTrouble()...).extend(c.b.Reconnect)
		if c.elected {
			// Not heard by the candidate that judged (or it could not
			// judge), whoever else heard it.
			trouble = append(c.notHeardBy(rec.Member, judge), c.brokerDown()...).extend(c.b.Reconnect)
		}
		if len(trouble.overlapping(w)) > 0 {
			continue
		}
		r.Violations = append(r.Violations, Violation{
			Property: PropFalseLoss, Member: rec.Member, At: rec.At,
			Message: fmt.Sprintf("declared lost (%s) although its process ran, was not stopped and reached the broker during the whole %s before (lost_after %s + %s)",
				rec.Str("reason"), w.To.Sub(w.From), m.LostAfter, c.b.Detect),
			From: w.From.Add(-2 * time.Second), To: rec.At.Add(2 * time.Second),
		})
	}
}

// judgedAfterStall finds a stop of the coordinator, at least lostAfter
// long (its loop surely saw the stall), that ended less than half a
// lostAfter before a loss at t, with no kill of the coordinator since it
// began. The stall rule gives every member, away or not, a fresh lostAfter
// from the moment the loop runs again, so a loss this early is the
// silence the stall made being judged. A stopped process records nothing,
// so a loss recorded once the stop had taken hold but before its end was
// stamped (the nemesis stamps it after sending SIGCONT, and the process
// may run first) came after the wake too.
func (c *checker) judgedAfterStall(coord string, t time.Time, lostAfter time.Duration) (span, bool) {
	const takesHold = 100 * time.Millisecond
	kills := c.procDown(coord, OpKill)
	for _, s := range c.procDown(coord, OpStop) {
		if s.To.Sub(s.From) < lostAfter || !s.To.Before(c.end) || t.Before(s.From.Add(takesHold)) || t.Sub(s.To) >= lostAfter/2 {
			continue
		}
		if len(kills.overlapping(span{s.From, t})) == 0 {
			return s, true
		}
	}
	return span{}, false
}

// standbys returns the standbys that may cover m (its pool's that fit it).
func (c *checker) standbys(m MemberFact) []MemberFact {
	var out []MemberFact
	for _, id := range sortedKeys(c.h.Site.Members) {
		s := c.h.Site.Members[id]
		if !s.Standby || s.ID == m.ID || s.Pool != m.Pool {
			continue
		}
		if m.Standbys == nil || slices.Contains(m.Standbys, s.ID) {
			out = append(out, s)
		}
	}
	return out
}

// standbyTrouble is when no standby that may cover m was usable.
func (c *checker) standbyTrouble(m MemberFact) spans {
	var all spans
	for i, s := range c.standbys(m) {
		// A standby whose store stalls cannot record a command: it runs
		// none until the stall is over.
		a := append(c.away(s.ID), c.storeStalled(s.ID)...).extend(c.b.Reconnect)
		if i == 0 {
			all = a.merge(0)
		} else {
			all = all.intersect(a.merge(0))
		}
	}
	return all
}

// covered replays the journal's coverage records: whether member was
// covered at t (takeover_done without a later failback_done or
// takeover_failed), and by whom.
func (c *checker) covered(member string, t time.Time) (bool, string) {
	on, by := false, ""
	for _, rec := range c.h.Journal {
		if rec.At.After(t) {
			break
		}
		if rec.Member != member {
			continue
		}
		switch rec.Type {
		case events.TakeoverDone:
			on, by = true, rec.Str("standby")
		case events.FailbackDone, events.TakeoverFailed:
			on, by = false, ""
		}
	}
	return on, by
}

// poolFull is when a loss of m waits in the queue: the standbys that may
// cover it cover (or are taking over) as many members other than m as
// they can, or the site's failover limit is reached by others.
func (c *checker) poolFull(member string, m MemberFact) spans {
	fit := map[string]bool{}
	capacity := 0
	for _, s := range c.standbys(m) {
		fit[s.ID] = true
		capacity += max(s.Capacity, 1)
	}
	var out spans
	by := map[string]string{} // covered (or being taken over) member → standby
	var from time.Time
	for _, rec := range c.h.Journal {
		switch rec.Type {
		case events.TakeoverStarted, events.TakeoverDone:
			by[rec.Member] = rec.Str("standby")
		case events.FailbackDone, events.TakeoverFailed:
			delete(by, rec.Member)
		default:
			continue
		}
		busy, all := 0, 0
		for covered, standby := range by {
			if covered == member {
				continue
			}
			all++
			if fit[standby] || standby == "" {
				busy++
			}
		}
		full := busy >= capacity || c.h.Site.Limit > 0 && all >= c.h.Site.Limit
		switch {
		case full && from.IsZero():
			from = rec.At
		case !full && !from.IsZero():
			out = append(out, span{from, rec.At})
			from = time.Time{}
		}
	}
	if !from.IsZero() {
		out = append(out, span{from, c.end})
	}
	return out
}

// push moves ready past every trouble span that overlaps [ready-lead,
// deadline(ready)], each followed by its grace, until none does (bounded).
func push(ready time.Time, lead time.Duration, deadline func(time.Time) time.Time, trouble spans, grace func(span) time.Duration) time.Time {
	for range 50 {
		moved := false
		for _, t := range trouble {
			if t.overlaps(span{ready.Add(-lead), deadline(ready)}) {
				if next := t.To.Add(grace(t)); next.After(ready) {
					ready, moved = next, true
				}
			}
		}
		if !moved {
			break
		}
	}
	return ready
}

// startedBy returns the kind of the first op that began at from for member.
func (c *checker) startedBy(member string, from time.Time) OpKind {
	best, kind := time.Duration(1<<62), OpKind("")
	for _, o := range c.h.Ops {
		if o.Start.IsZero() || o.Start.After(from.Add(time.Millisecond)) {
			continue
		}
		apart := func(g [2][]string) bool {
			return slices.Contains(g[0], member) && slices.Contains(g[1], c.broker) ||
				slices.Contains(g[1], member) && slices.Contains(g[0], c.broker)
		}
		if c.elected {
			apart = func(g [2][]string) bool { return slices.Contains(g[0], member) || slices.Contains(g[1], member) }
		}
		hits := o.Kind != OpStateFull && (o.Member == member || o.Host == member || o.Kind == OpPartition && apart(o.Groups) || o.Kind == OpLANDown)
		if d := from.Sub(o.Start); hits && d < best {
			best, kind = d, o.Kind
		}
	}
	return kind
}

// coverage: every protected member that stayed away long enough to be
// judged lost (lost_after + Detect) was covered within the bound
// (takeover_done in the journal by then, or covered since an earlier
// outage), and where it is still away then and has switcher outputs, the
// switcher shows the standby's inputs on them. The bound starts when the
// coordinator (and a standby) could act again.
func (c *checker) coverage(r *Result) {
	if c.h.Site.Mode == "manual" {
		return // a loss is a proposal an operator confirms
	}
	for _, id := range sortedKeys(c.h.Site.Members) {
		m := c.h.Site.Members[id]
		// On an elected site a protected member that leads is covered by
		// the next leader when it is lost.
		if !m.Protected || !m.Instance || id == c.coord && !c.elected || len(c.standbys(m)) == 0 {
			continue
		}
		deadline := func(t time.Time) time.Time {
			return t.Add(m.LostAfter + c.b.Detect + m.Delay + c.b.Cover)
		}
		coordTrouble, standbyTrouble, manual := c.coordBlocked(), c.standbyTrouble(m), c.manual()
		full := c.poolFull(id, m)
		// Faults closer than reconnect are one outage: the member may not
		// have been back between them. With a failover delay each loss
		// starts the delay again, and a member back between two faults
		// (it may have been) restarts it: each fault is its own outage.
		gap := c.b.Reconnect
		if m.Delay > 0 {
			gap = 0
		}
		for _, out := range c.away(id).merge(gap) {
			ready := push(out.From, m.LostAfter, deadline, coordTrouble, func(s span) time.Duration { return c.graceAfter(s, m.LostAfter) })
			ready = push(ready, 0, deadline, standbyTrouble, func(span) time.Duration { return 0 })
			// In manual mode a loss is a proposal; switched back to auto,
			// the coordinator carries out the waiting ones.
			ready = push(ready, 0, deadline, manual, func(span) time.Duration { return 0 })
			// While the pool's standbys are all busy (or the failover
			// limit is reached) by others, the loss waits in the queue;
			// once one frees, the coordinator takes the next from it.
			queued := push(ready, 0, deadline, full, func(span) time.Duration { return 0 })
			if queued != ready {
				r.Queued++
				ready = queued
			}
			dl := deadline(ready)
			if dl.After(c.end) || out.To.Sub(ready) < m.LostAfter+c.b.Detect+m.Delay {
				continue // back before it could be judged lost and its failover delay ran out (or the history ended first): nothing required
			}
			cv := Cover{Member: id, Kind: c.startedBy(id, out.From), Lost: out.From, Deadline: dl}
			already, _ := c.covered(id, out.From)
			on, by := c.covered(id, dl)
			if already {
				cv.Already = true
			} else {
				for _, rec := range c.h.Journal {
					if rec.Type == events.TakeoverDone && rec.Member == id && !rec.At.Before(out.From) && !rec.At.After(dl) {
						cv.Took = rec.At.Sub(out.From)
						on = true // covered in time, maybe failed back already (a member back early)
						if by == "" {
							by = rec.Str("standby")
						}
						break
					}
				}
			}
			if !on && c.journalLost(out.From, dl) {
				r.Unproven++ // the journal that would show it may never have been written
				continue
			}
			cv.OK = on
			r.Covers = append(r.Covers, cv)
			if !on {
				r.Violations = append(r.Violations, Violation{
					Property: PropCoverage, Member: id, At: dl,
					Message: fmt.Sprintf("away from %s (%s) until %s but not covered by %s (bound: lost_after %s + detect %s + delay %s + cover %s from %s)",
						clock(out.From), cv.Kind, clockOrEnd(out.To, c.end), clock(dl), m.LostAfter, c.b.Detect, m.Delay, c.b.Cover, clock(ready)),
					From: out.From.Add(-2 * time.Second), To: dl.Add(2 * time.Second),
				})
				continue
			}
			c.checkRoutes(r, PropCoverRoutes, m, by, span{ready, out.To}, dl)
		}
	}
}

// manual is when the site was in manual mode (an operator's mode command,
// as the coordinator's journal shows it taken).
func (c *checker) manual() spans {
	var out spans
	var from time.Time
	if c.h.Site.Mode == "manual" {
		from = c.h.Start
	}
	for _, rec := range c.h.Journal {
		if rec.Type != events.ModeChanged {
			continue
		}
		switch mode := rec.Str("mode"); {
		case mode == "manual" && from.IsZero():
			from = rec.At
		case mode == "auto" && !from.IsZero():
			out = append(out, span{from, rec.At})
			from = time.Time{}
		}
	}
	if !from.IsZero() {
		out = append(out, span{from, c.end})
	}
	return out
}

// checkRoutes checks that, at the route deadline after dl (pushed past the
// coordinator's trouble with the switcher and switcher restarts that
// overlapped the time the routes were due, by device), m's
// outputs show source's inputs, if m is still in the same state (within
// hold) then.
func (c *checker) checkRoutes(r *Result, prop string, m MemberFact, source string, hold span, dl time.Time) {
	src, ok := c.h.Site.Members[source]
	if m.Switcher == "" || len(m.Outputs) == 0 || !ok || len(src.Inputs) == 0 {
		return
	}
	// A restart, and a switcher refusing or dropping commands while armed:
	// the coordinator re-asserts once it reads the device again.
	restarts := c.opSpans(func(o Op) bool {
		return o.Driver == m.Switcher && (o.Kind == OpSwitcherRestart || o.Kind == OpSwitcherRefuse || o.Kind == OpSwitcherDrop)
	})
	trouble := append(append(c.deviceTrouble(), restarts...), c.coordBlocked()...).merge(0)
	// Any trouble while the routes were due (from hold's start to dl) —
	// not only one still in force at dl — delays them by device.
	rd := push(dl, dl.Sub(hold.From), func(t time.Time) time.Time { return t }, trouble, func(span) time.Duration { return c.b.Device })
	if !hold.contains(rd) || rd.After(c.end) {
		return
	}
	if prop == PropCoverRoutes {
		r.RoutingChecked++
	}
	want := map[int]int{}
	for i, out := range m.Outputs {
		if i < len(src.Inputs) {
			want[out] = src.Inputs[i]
		}
	}
	got := c.routingAt(m.Switcher, rd)
	var wrong []string
	for _, out := range slices.Sorted(maps.Keys(want)) {
		if out-1 >= len(got) || got[out-1] != want[out] {
			shown := 0
			if out-1 < len(got) {
				shown = got[out-1]
			}
			wrong = append(wrong, fmt.Sprintf("output %d shows input %d, want %d (%s)", out, shown, want[out], source))
		}
	}
	if len(wrong) > 0 {
		r.Violations = append(r.Violations, Violation{
			Property: prop, Member: m.ID, At: rd,
			Message: fmt.Sprintf("switcher %s at %s: %s", m.Switcher, clock(rd), strings.Join(wrong, "; ")),
			From:    dl.Add(-4 * time.Second), To: rd.Add(2 * time.Second),
		})
	}
}

// routingAt is the switcher's routing as last seen at or before t.
func (c *checker) routingAt(driver string, t time.Time) []int {
	var got []int
	for _, s := range c.h.Routing {
		if s.At.After(t) {
			break
		}
		if s.Driver == driver {
			got = s.Routing
		}
	}
	return got
}

// failback: a covered member that came back and stayed (with the
// coordinator and its standby usable) past the failback delay was failed
// back within Failback more, and its outputs show its own inputs again —
// only where the member fails back automatically.
func (c *checker) failback(r *Result) {
	if c.h.Site.Mode == "manual" {
		return
	}
	for _, id := range sortedKeys(c.h.Site.Members) {
		m := c.h.Site.Members[id]
		if !m.Protected || !m.AutoFailback || !m.Instance || id == c.coord && !c.elected {
			continue
		}
		away := c.away(id).merge(c.b.Reconnect)
		for i, out := range away {
			if on, _ := c.covered(id, out.To); !on {
				continue
			}
			// A copy back waits copy.settle for the file the standby was
			// writing when it let go (a second pass).
			var settle time.Duration
			if m.CopyMaterial {
				settle = c.h.Site.CopySettle
			}
			deadline := func(t time.Time) time.Time { return t.Add(c.b.Reconnect + m.FailbackDelay + settle + c.b.Failback) }
			ready := push(out.To, 0, deadline, c.coordBlocked(), func(s span) time.Duration { return c.graceAfter(s, m.LostAfter) })
			ready = push(ready, 0, deadline, c.standbyTrouble(m), func(span) time.Duration { return 0 })
			// The member's own agent records the failback's commands.
			ready = push(ready, 0, deadline, c.storeStalled(id).extend(c.b.Reconnect), func(span) time.Duration { return 0 })
			dl := c.copyRetries(id, out.To, deadline(ready), settle)
			next := c.end
			if i+1 < len(away) {
				next = away[i+1].From
			}
			if dl.After(next) || dl.After(c.end) {
				continue // away again, or the history ended, before the bound
			}
			r.Failbacks++
			done := false
			for _, rec := range c.h.Journal {
				if rec.Type == events.FailbackDone && rec.Member == id && rec.At.After(out.To) && !rec.At.After(dl) {
					done = true
				}
			}
			if on, _ := c.covered(id, dl); on || !done {
				r.Violations = append(r.Violations, Violation{
					Property: PropFailback, Member: id, At: dl,
					Message: fmt.Sprintf("back from %s and up since, but not failed back by %s (reconnect %s + failback_delay %s + copy.settle %s + failback %s from %s)",
						clock(out.To), clock(dl), c.b.Reconnect, m.FailbackDelay, settle, c.b.Failback, clock(ready)),
					From: out.To.Add(-2 * time.Second), To: dl.Add(2 * time.Second),
				})
				continue
			}
			c.checkRoutes(r, PropBackRoutes, m, id, span{out.To, next}, dl)
		}
	}
}

// copyRetries pushes a failback's deadline dl past the copies that failed
// on the way (the copy_incomplete alarm, after from): the coordinator
// tries such a copy again after the wait the alarm says (retry_in_s: a
// minute, doubling), then the failback has its own steps and settle again.
func (c *checker) copyRetries(member string, from, dl time.Time, settle time.Duration) time.Time {
	for _, rec := range c.h.Journal {
		if rec.At.After(dl) {
			break
		}
		if rec.Type != events.Alarm || rec.Member != member || rec.Str("kind") != takeover.AlarmCopyIncomplete || !rec.At.After(from) {
			continue
		}
		retry, err := strconv.ParseFloat(fmt.Sprint(rec.Fields["retry_in_s"]), 64)
		if err != nil {
			continue
		}
		if again := rec.At.Add(time.Duration(retry*float64(time.Second)) + settle + c.b.Failback); again.After(dl) {
			dl = again
		}
	}
	return dl
}

// atMostOnce: no action ran twice. It reads the members' command records
// (what the agent persists per command: id, epoch, state, received and
// finished), read after every kill and at the end: a command seen finished
// in one read whose record is gone in a later one (it could run again), or
// that a later read shows received again after it finished, is a repeat. A
// member the journal says answered commands (action_running, action_done
// with it as target) must have records to read: none is a violation, not a
// pass. In the coordinator's journal no action is done twice.
func (c *checker) atMostOnce(r *Result) {
	answered := c.answered()
	reads := map[string][]StoreRead{}
	for _, sr := range c.h.Stores {
		reads[sr.Member] = append(reads[sr.Member], sr)
	}
	for _, member := range sortedKeys(answered) {
		n := 0
		for _, sr := range reads[member] {
			n += len(sr.Records)
		}
		if n > 0 || c.allUnwritable(member) {
			continue
		}
		first := answered[member]
		why := "no read of its store"
		if len(reads[member]) > 0 {
			why = fmt.Sprintf("%d read(s) of its store, all empty or unreadable", len(reads[member]))
		}
		r.Violations = append(r.Violations, Violation{
			Property: PropAtMostOnce, Member: member, At: first,
			Message: fmt.Sprintf("no action records could be read at member %s, although the journal shows it answered commands (first at %s): %s", member, clock(first), why),
			From:    first.Add(-2 * time.Second), To: first.Add(2 * time.Second),
		})
	}
	seen := map[[2]string]bool{}
	for _, member := range sortedKeys(reads) {
		finished := map[string]Stored{} // by id: the record as first seen finished
		readAt := map[string]time.Time{}
		for _, sr := range reads[member] {
			if sr.Err != "" {
				r.Violations = append(r.Violations, Violation{
					Property: PropAtMostOnce, Member: member, At: sr.At,
					Message: fmt.Sprintf("store unreadable after %s: %s", sr.After, sr.Err),
					From:    sr.At.Add(-2 * time.Second), To: sr.At.Add(2 * time.Second),
				})
				continue
			}
			now := map[string]Stored{}
			for _, s := range sr.Records {
				now[s.ID] = s
				seen[[2]string{member, s.ID}] = true
			}
			for _, id := range sortedKeys(finished) {
				was := finished[id]
				s, ok := now[id]
				bad := ""
				switch {
				case !ok:
					bad = fmt.Sprintf("finished (%s) at %s (read at %s), but its record is gone in the read after %s: it would run again if redelivered",
						was.State, clock(was.Finished), clock(readAt[id]), sr.After)
				case s.At.After(was.Finished) || s.State == "running":
					bad = fmt.Sprintf("finished (%s) at %s, then received and run again at %s (state %s in the read after %s)",
						was.State, clock(was.Finished), clock(s.At), s.State, sr.After)
				}
				if bad == "" {
					continue
				}
				r.Violations = append(r.Violations, Violation{
					Property: PropAtMostOnce, Member: member, At: sr.At,
					Message: fmt.Sprintf("action %s (%s) %s", id, was.Verb, bad),
					From:    was.Finished.Add(-2 * time.Second), To: sr.At.Add(2 * time.Second),
				})
				delete(finished, id) // reported once
			}
			for id, s := range now {
				if _, ok := finished[id]; !ok && (s.State == "done" || s.State == "failed") {
					finished[id], readAt[id] = s, sr.At
				}
			}
		}
	}
	r.Actions = len(seen)
	c.stillAcknowledged(r)
	// Across every candidate's journal on an elected site: no action done
	// by two leaders, nor twice by one.
	type doneBy struct {
		at time.Time
		by string
	}
	done := map[string]doneBy{}
	for _, rec := range c.h.Journal {
		if rec.Type != events.ActionDone {
			continue
		}
		id, by := rec.Str("id"), rec.By(c.h.Site)
		if first, twice := done[id]; twice && id != "" && !c.unwritable(first.by, first.at) {
			where := "in the journal"
			if c.elected {
				where = fmt.Sprintf("in the journals (by %s, then by %s)", first.by, by)
			}
			r.Violations = append(r.Violations, Violation{
				Property: PropAtMostOnce, Member: by, At: rec.At,
				Message: fmt.Sprintf("action %s (%s) done twice %s (first at %s)", id, rec.Str("verb"), where, clock(first.at)),
				From:    first.at.Add(-2 * time.Second), To: rec.At.Add(2 * time.Second),
			})
			continue
		}
		done[id] = doneBy{rec.At, by}
	}
}

// stateRetry is how long an instance takes, once its state folder has
// room again, to write what waited for it (it tries every second).
const stateRetry = 2 * time.Second

// unwritable reports whether what member finished at t may never have
// reached its state file, the one exception to at-most-once: its state
// folder was full then (or had been until a second before: the journal's
// record comes a moment after the write that failed), and its process
// was killed, or the history ended, before the folder had room again and
// stateRetry passed. A process that dies with its state unwritten cannot
// remember what it did.
func (c *checker) unwritable(member string, t time.Time) bool {
	for _, full := range c.opSpans(func(o Op) bool { return o.Kind == OpStateFull && o.Member == member }) {
		if t.Before(full.From) || !t.Before(full.To.Add(time.Second)) {
			continue
		}
		until := full.To.Add(stateRetry)
		if !until.Before(c.end) {
			return true
		}
		for _, o := range c.h.Ops {
			if o.Kind == OpKill && o.Member == member && o.Err == "" && !o.Start.IsZero() && !o.Start.Before(t) && o.Start.Before(until) {
				return true
			}
		}
	}
	return false
}

// journalLost reports whether records the coordinator journaled between
// from and to may never have reached its journal: its state folder (the
// journal's) was full then and it was killed, or the history ended,
// before the folder had room again and the records that waited were
// written (unwritable).
func (c *checker) journalLost(from, to time.Time) bool {
	for _, coord := range c.h.Site.CoordinatorsOf() {
		for _, full := range c.opSpans(func(o Op) bool { return o.Kind == OpStateFull && o.Member == coord }) {
			if full.From.Before(to) && full.To.Add(time.Second).After(from) && c.unwritable(coord, later(full.From, from)) {
				return true
			}
		}
	}
	return false
}

// allUnwritable reports whether every command the journal says member
// answered may never have reached its state file (unwritable): then no
// record to read is no violation either.
func (c *checker) allUnwritable(member string) bool {
	for _, rec := range c.h.Journal {
		if (rec.Type == events.ActionRunning || rec.Type == events.ActionDone) && rec.Str("target") == member &&
			!rec.At.After(c.end) && !c.unwritable(member, rec.At) {
			return false
		}
	}
	return true
}

// answered returns the members (running an instance) that the journal says
// answered a command (action_running or action_done with them as target),
// with the first such record's time.
func (c *checker) answered() map[string]time.Time {
	out := map[string]time.Time{}
	for _, rec := range c.h.Journal {
		target := rec.Str("target")
		if rec.Type != events.ActionRunning && rec.Type != events.ActionDone || target == "" || rec.At.After(c.end) {
			continue
		}
		if m, ok := c.h.Site.Members[target]; !ok || !m.Instance {
			continue
		}
		if _, ok := out[target]; !ok {
			out[target] = rec.At
		}
	}
	return out
}

// epochs: at every member, the coordinator epochs of the commands it
// accepted never go backwards in the order it received them (a command of
// an older coordinator's term accepted after a newer one's would be two
// coordinators acting at once). It reads every version of the command
// records the reads saw (a command received again after an interruption is
// recorded again with its new receipt).
func (c *checker) epochs(r *Result) {
	byMember := map[string][]Stored{}
	seen := map[Stored]bool{}
	for _, sr := range c.h.Stores {
		for _, s := range sr.Records {
			k := Stored{Member: s.Member, ID: s.ID, At: s.At, Epoch: s.Epoch}
			if seen[k] {
				continue
			}
			seen[k] = true
			byMember[sr.Member] = append(byMember[sr.Member], s)
		}
	}
	for _, member := range sortedKeys(byMember) {
		recs := byMember[member]
		slices.SortStableFunc(recs, func(a, b Stored) int { return a.At.Compare(b.At) })
		var top Stored
		for i, s := range recs {
			if i > 0 && s.Epoch < top.Epoch {
				r.Violations = append(r.Violations, Violation{
					Property: PropEpochs, Member: member, At: s.At,
					Message: fmt.Sprintf("command %s (%s) of coordinator epoch %d accepted at %s, after command %s (%s) of epoch %d at %s: the epoch went backwards",
						s.ID, s.Verb, s.Epoch, clock(s.At), top.ID, top.Verb, top.Epoch, clock(top.At)),
					From: top.At.Add(-2 * time.Second), To: s.At.Add(2 * time.Second),
				})
				continue
			}
			if i == 0 || s.Epoch > top.Epoch {
				top = s
			}
		}
	}
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

func clockOrEnd(t, end time.Time) string {
	if !t.Before(end) {
		return "the end"
	}
	return clock(t)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// stillAcknowledged: every command the coordinator's journal records as
// done by a member (action_done with a target) is still recorded as done in
// that member's store at the end, whatever restarts came between. Members
// without a read at the end are left to atMostOnce (no records to read).
func (c *checker) stillAcknowledged(r *Result) {
	stored := map[[2]string]Stored{}
	final := map[string]bool{}
	for _, sr := range c.h.Stores {
		if sr.After != ReadEnd || sr.Err != "" {
			continue
		}
		final[sr.Member] = true
		for _, s := range sr.Records {
			stored[[2]string{sr.Member, s.ID}] = s
		}
	}
	for _, rec := range c.h.Journal {
		target := rec.Str("target")
		if rec.Type != events.ActionDone || target == "" || rec.At.After(c.end) || !final[target] {
			continue
		}
		s, ok := stored[[2]string{target, rec.Str("id")}]
		if ok && s.State == "done" || c.unwritable(target, rec.At) {
			continue
		}
		what := "has no record of it"
		if ok {
			what = "records it as " + s.State
		}
		r.Violations = append(r.Violations, Violation{
			Property: PropAtMostOnce, Member: target, At: rec.At,
			Message: fmt.Sprintf("action %s (%s) acknowledged as done, but at the end %s's store %s", rec.Str("id"), rec.Str("verb"), target, what),
			From:    rec.At.Add(-2 * time.Second), To: rec.At.Add(2 * time.Second),
		})
	}
}
