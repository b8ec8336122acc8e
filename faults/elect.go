package faults

import (
	"fmt"
	"slices"
	"time"

	"understudy/events"
)

// On a site whose coordinator is elected (SiteFacts.Candidates) any
// candidate may coordinate at some time: the history holds every
// candidate's journal (each record with its Source), and the checker finds
// from it who led in which term from when (coordinator_elected and
// coordinator_lost, a kill ending a term). Where a property asks about
// "the coordinator", it asks about the candidate that led then; when the
// leader was in trouble, the bounds wait for the election and the new
// leader's wait for the old lease (Bounds.Elect), not for the old leader to
// come back.
//
// Whether a member is heard, and by whom, follows from the faults in force
// at each moment (world): every instance is connected to every broker (each
// candidate's, or the one external broker), so a member is heard by a
// candidate when some broker that runs is reachable from both; the
// candidates elect among those that are up and reach each other directly
// (raft), a majority of them with one that may coordinate (not a witness).

// PropTerms is the overlapping-terms property: no two leaders acting at
// once.
const PropTerms = "overlapping-terms"

// termSlack is how long a switcher's record of a route may come before the
// journal's coordinator_elected of the term it was sent in (the
// coordinator's first routes race its record), or after the end of that
// term (the bytes of a route written just before the end in flight).
const termSlack = 100 * time.Millisecond

// term is one candidate's time as the coordinator: from its
// coordinator_elected until its coordinator_lost, its process killed, or
// the end of the history.
type term struct {
	Member string
	Term   uint64
	From   time.Time
	To     time.Time
	// Ended says what ended it ("coordinator_lost", "killed", "" at the
	// end of the history).
	Ended string
}

// terms reads the candidates' terms from their journals, in the order
// they began. A term begins with the first record its coordinator wrote
// (it starts, tells its policy what its table knows and may act before it
// records coordinator_elected in the same step), and a candidate whose
// coordinator began but recorded no coordinator_elected (killed, or
// stopped to the end, on its way) had a term all the same: its number is
// the one its log said it led the election in.
func (c *checker) terms() []term {
	if c.termsDone {
		return c.termList
	}
	c.termsDone = true
	var out []term
	open := map[string]int{}        // candidate → its term in force (index in out)
	begun := map[string]time.Time{} // candidate → its first record since its last term
	// provisional is a term begun and never said elected (killed, or
	// stopped to the end, on its way): of the number its log said it led
	// the election in, last before it began.
	provisional := func(src string, from time.Time) term {
		var n uint64
		for _, l := range c.h.Logs {
			if l.Member == src && l.Msg == logLeads && !l.At.After(from) {
				f, _ := l.Fields["term"].(float64)
				n = uint64(f)
			}
		}
		return term{Member: src, Term: n, From: from, To: c.end}
	}
	for _, rec := range c.h.Journal {
		src := rec.By(c.h.Site)
		// Begun, then killed before it recorded coordinator_elected: that
		// term ended there; what its next start records is another's.
		if b, ok := begun[src]; ok && c.killedBetween(src, b, rec.At) {
			out = append(out, provisional(src, b))
			delete(begun, src)
		}
		switch rec.Type {
		case events.BusSilent, events.BusHeard, events.LoopStalled:
			// A candidate's loop records these whether it leads or not.
		case events.CoordinatorElected:
			if i, ok := open[src]; ok {
				out[i].To, out[i].Ended = rec.At, events.CoordinatorElected
			}
			n, _ := rec.Fields["term"].(float64)
			from := rec.At
			if b, ok := begun[src]; ok && b.Before(from) {
				from = b
			}
			delete(begun, src)
			open[src] = len(out)
			out = append(out, term{Member: src, Term: uint64(n), From: from, To: c.end})
		case events.CoordinatorLost:
			if i, ok := open[src]; ok {
				out[i].To, out[i].Ended = rec.At, events.CoordinatorLost
				delete(open, src)
			}
			delete(begun, src)
		default:
			if _, ok := open[src]; !ok {
				if _, ok := begun[src]; !ok {
					begun[src] = rec.At
				}
			}
		}
	}
	for src, from := range begun {
		out = append(out, provisional(src, from))
	}
	slices.SortStableFunc(out, func(a, b term) int { return a.From.Compare(b.From) })
	// A killed candidate records no coordinator_lost: its kill ends its
	// term; a later start begins another.
	for i, t := range out {
		for _, k := range c.procDown(t.Member, OpKill) {
			if k.From.After(t.From) && k.From.Before(t.To) {
				out[i].To, out[i].Ended = k.From, "killed"
				break
			}
		}
	}
	c.termList = out
	return out
}

// killedBetween reports whether member's process was killed after from
// and before to.
func (c *checker) killedBetween(member string, from, to time.Time) bool {
	return slices.ContainsFunc(c.procDown(member, OpKill), func(k span) bool { return k.From.After(from) && k.From.Before(to) })
}

// logLeads is the log line of a candidate that becomes raft's leader (with
// its term), before its wait for the old lease.
const logLeads = "this candidate leads the election"

// leading reports whether member coordinated at t (in one of its terms).
func (c *checker) leading(member string, t time.Time) bool {
	return slices.ContainsFunc(c.terms(), func(x term) bool { return x.Member == member && !t.Before(x.From) && !t.After(x.To) })
}

// anyLeading reports whether some candidate coordinated at t.
func (c *checker) anyLeading(t time.Time) bool {
	return slices.ContainsFunc(c.terms(), func(x term) bool { return !t.Before(x.From) && !t.After(x.To) })
}

// termSpans are member's terms as spans (every candidate's for "").
func (c *checker) termSpans(member string) spans {
	var out spans
	for _, t := range c.terms() {
		if member == "" || t.Member == member {
			out = append(out, span{t.From, t.To})
		}
	}
	return out.merge(0)
}

// world is the faults in force at one moment.
type world struct {
	c   *checker
	ops []Op
}

// worldAt is the faults in force at t (those that hold something: not the
// instantaneous ones).
func (c *checker) worldAt(t time.Time) world {
	w := world{c: c}
	for _, o := range c.h.Ops {
		if o.Err != "" || o.Start.IsZero() || o.instant() {
			continue
		}
		if !t.Before(o.Start) && t.Before(c.opEnd(o)) {
			w.ops = append(w.ops, o)
		}
	}
	return w
}

// when returns the times pred held, evaluated between every two moments a
// fault began or ended, within the history.
func (c *checker) when(pred func(world) bool) spans {
	bounds := []time.Time{c.h.Start, c.end}
	for _, o := range c.h.Ops {
		if o.Err != "" || o.Start.IsZero() || o.instant() {
			continue
		}
		bounds = append(bounds, o.Start, c.opEnd(o))
	}
	slices.SortFunc(bounds, func(a, b time.Time) int { return a.Compare(b) })
	bounds = slices.CompactFunc(bounds, func(a, b time.Time) bool { return a.Equal(b) })
	var out spans
	for i := 0; i+1 < len(bounds); i++ {
		from, to := bounds[i], bounds[i+1]
		if from.Before(c.h.Start) || !to.After(from) {
			continue
		}
		if pred(c.worldAt(from.Add(to.Sub(from) / 2))) {
			out = append(out, span{from, to})
		}
	}
	return out.merge(0)
}

// down reports whether member's process is killed or stopped.
func (w world) down(member string) bool {
	return slices.ContainsFunc(w.ops, func(o Op) bool { return (o.Kind == OpKill || o.Kind == OpStop) && o.Member == member })
}

// unplugged reports whether host's link is down (or the whole LAN).
func (w world) unplugged(host string) bool {
	return slices.ContainsFunc(w.ops, func(o Op) bool { return o.Kind == OpLinkDown && o.Host == host || o.Kind == OpLANDown })
}

// cut reports whether hosts a and b are cut off from each other: a
// partition puts them apart, a broker cut of one from the broker hosts,
// a candidate cut of one from the other candidates.
func (w world) cut(a, b string) bool {
	f := w.c.h.Site
	return slices.ContainsFunc(w.ops, func(o Op) bool {
		switch o.Kind {
		case OpPartition:
			return slices.Contains(o.Groups[0], a) && slices.Contains(o.Groups[1], b) ||
				slices.Contains(o.Groups[0], b) && slices.Contains(o.Groups[1], a)
		case OpBrokerCut:
			return o.Member == a && slices.Contains(f.BrokerHosts, b) || o.Member == b && slices.Contains(f.BrokerHosts, a)
		case OpCandidateCut:
			return o.Member == a && slices.Contains(f.Candidates, b) || o.Member == b && slices.Contains(f.Candidates, a)
		}
		return false
	})
}

// linked reports whether hosts a and b reach each other.
func (w world) linked(a, b string) bool {
	return a == b || !w.unplugged(a) && !w.unplugged(b) && !w.cut(a, b)
}

// brokerUp reports whether the broker on host b runs: an external one not
// killed or stopped, a candidate's with its process.
func (w world) brokerUp(b string) bool {
	if b == BrokerHost {
		return !slices.ContainsFunc(w.ops, func(o Op) bool { return o.Kind == OpBrokerKill || o.Kind == OpBrokerStop })
	}
	return !w.down(b)
}

// onBus reports whether member reaches some broker that runs.
func (w world) onBus(member string) bool {
	return !w.down(member) && slices.ContainsFunc(w.c.h.Site.BrokerHosts, func(b string) bool { return w.brokerUp(b) && w.linked(member, b) })
}

// heard reports whether x hears m: both run and some broker that runs is
// reachable from both.
func (w world) heard(m, x string) bool {
	if w.down(m) || w.down(x) {
		return false
	}
	return slices.ContainsFunc(w.c.h.Site.BrokerHosts, func(b string) bool {
		return w.brokerUp(b) && w.linked(m, b) && w.linked(x, b)
	})
}

// electable are the candidates that may be elected and coordinate: those
// (not witnesses) in a majority of candidates that run and reach each
// other.
func (w world) electable() []string {
	cands := w.c.h.Site.Candidates
	n := len(cands)
	var out []string
	for set := 1; set < 1<<n; set++ {
		var in []string
		for i, id := range cands {
			if set&(1<<i) != 0 {
				in = append(in, id)
			}
		}
		if len(in) <= n/2 {
			continue
		}
		ok := true
		for i, a := range in {
			if w.down(a) {
				ok = false
			}
			for _, b := range in[i+1:] {
				if !w.linked(a, b) {
					ok = false
				}
			}
		}
		if !ok {
			continue
		}
		for _, id := range in {
			if !slices.Contains(w.c.h.Site.Witnesses, id) && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

// electedAway is when member could not be heard by any candidate that
// could be elected (its own process and link aside: those count always).
func (c *checker) electedAway(member string) spans {
	return c.when(func(w world) bool {
		if w.down(member) || w.unplugged(member) {
			return true
		}
		leaders := w.electable()
		return len(leaders) > 0 && !slices.ContainsFunc(leaders, func(x string) bool { return w.heard(member, x) })
	})
}

// leaderless is when no candidate could be elected: no majority of the
// candidates running and reaching each other with one that may coordinate.
func (c *checker) leaderless() spans {
	return c.when(func(w world) bool { return len(w.electable()) == 0 })
}

// leaderFaults is when the leader was hit and the site waited for the next
// election: from a fault that took the leader (or, while nobody led yet,
// any candidate) out — its process, its link, cut off from a majority of
// the candidates or from every broker — for the fault's length, at most
// Bounds.Elect (by then another candidate leads); from a candidate's term
// that began less than startup_grace + reconnect after its process started
// again, until then (a restarted instance gives the members it has not
// heard the startup grace).
func (c *checker) leaderFaults() spans {
	var out spans
	for _, x := range c.h.Site.Candidates {
		raw := c.when(func(w world) bool {
			if w.down(x) || w.unplugged(x) || !w.onBus(x) {
				return true
			}
			return !slices.Contains(w.electable(), x)
		})
		for _, s := range raw {
			if !c.leading(x, s.From) && c.anyLeading(s.From) {
				continue // another candidate leads: nothing to wait for
			}
			out = append(out, span{s.From, earlier(s.To, s.From.Add(c.b.Elect))})
		}
		young := c.h.Site.StartupGrace + c.b.Reconnect
		for _, k := range c.procDown(x, OpKill) {
			for _, t := range c.terms() {
				if t.Member == x && !t.From.Before(k.To) && t.From.Before(k.To.Add(young)) {
					out = append(out, span{t.From, k.To.Add(young)})
				}
			}
		}
	}
	return out.merge(0)
}

// leaderStalled is when the leader's state store stalled (store_stall): it
// persists what it decides before it acts.
func (c *checker) leaderStalled() spans {
	var out spans
	for _, x := range c.h.Site.Candidates {
		out = append(out, c.storeStalled(x).intersect(c.termSpans(x))...)
	}
	return out.merge(0)
}

// leaderDeviceTrouble is when the leader could not reach the devices host.
func (c *checker) leaderDeviceTrouble() spans {
	var out spans
	for _, x := range c.h.Site.Candidates {
		cutOff := c.when(func(w world) bool { return !w.linked(x, DevicesHost) })
		out = append(out, cutOff.intersect(c.termSpans(x))...)
	}
	return append(out, c.linkDown(DevicesHost)...).merge(0)
}

// notHeardBy is when x could not hear member, or could not judge (its own
// process stopped or killed).
func (c *checker) notHeardBy(member, x string) spans {
	return c.when(func(w world) bool { return !w.heard(member, x) })
}

// electedGrace is the wait after a span of the leader's trouble before its
// bound runs again: none after a leader fault (the span is the wait for the
// election, and the new leader's table judged the members all along), the
// election and a member's reconnect and fresh lost_after after a time
// without any leader.
func (c *checker) electedGrace(s span, lostAfter time.Duration) time.Duration {
	if len(c.leaderless().overlapping(s)) > 0 {
		return c.b.Elect + c.b.Reconnect + lostAfter + c.b.Detect
	}
	return 0
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// overlappingTerms: no two leaders acting at once. From the journals: no
// two candidates elected in the same term. From the switchers' own records
// of every route they applied and the connection it came over: every route
// came from a candidate in one of its terms (a route a little before its
// coordinator_elected, or a little after its end, is the same term's:
// termSlack), and none came from a candidate after a candidate of a newer
// term began acting (its coordinator_elected, which the new leader records
// only after it waited out the old leader's lease). That every action ran
// at most once across the leaders is atMostOnce's, on every candidate's
// journal.
func (c *checker) overlappingTerms(r *Result) {
	if !c.h.Site.Elected() {
		return
	}
	terms := c.terms()
	r.Terms = len(terms)
	byTerm := map[uint64]term{}
	for _, t := range terms {
		if prev, ok := byTerm[t.Term]; ok && prev.Member != t.Member {
			r.Violations = append(r.Violations, Violation{
				Property: PropTerms, Member: t.Member, At: t.From,
				Message: fmt.Sprintf("%s coordinates in term %d from %s, and so did %s from %s: two leaders elected in one term", t.Member, t.Term, clock(t.From), prev.Member, clock(prev.From)),
				From:    prev.From.Add(-2 * time.Second), To: t.From.Add(2 * time.Second),
			})
		}
		byTerm[t.Term] = t
	}
	for _, a := range c.h.Applied {
		if a.Remote == "panel" || a.At.After(c.end) {
			continue
		}
		r.Routes++
		what := fmt.Sprintf("route %s output %d ← input %d applied at %s over a connection from %s", a.Driver, a.Output, a.Input, clock(a.At), a.Remote)
		bad := func(msg string, from time.Time) {
			r.Violations = append(r.Violations, Violation{Property: PropTerms, Member: a.Host, At: a.At,
				Message: what + msg, From: from.Add(-2 * time.Second), To: a.At.Add(2 * time.Second)})
		}
		if !c.h.Site.IsCandidate(a.Host) {
			bad(fmt.Sprintf(" (%s): no coordinator candidate's host", or(a.Host, "no test host")), a.At)
			continue
		}
		var own *term
		for i, t := range terms {
			if t.Member == a.Host && !t.From.After(a.At.Add(termSlack)) {
				own = &terms[i]
			}
		}
		if own == nil {
			bad(fmt.Sprintf(" (%s), which had not been elected coordinator", a.Host), a.At)
			continue
		}
		var newer *term
		for i, t := range terms {
			if t.Term > own.Term && t.Member != own.Member && !t.From.After(a.At) && (newer == nil || t.From.Before(newer.From)) {
				newer = &terms[i]
			}
		}
		switch {
		case newer != nil:
			bad(fmt.Sprintf(" (%s, term %d), after %s began acting in the newer term %d at %s: two leaders acting at once", a.Host, own.Term, newer.Member, newer.Term, clock(newer.From)), newer.From)
		case a.At.After(own.To.Add(termSlack)):
			bad(fmt.Sprintf(" (%s), after its term %d ended at %s (%s)", a.Host, own.Term, clock(own.To), or(own.Ended, "the end")), own.To)
		}
	}
}

func or(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}
