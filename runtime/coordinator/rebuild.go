package coordinator

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/engine"
)

// Rebuilding who covers whom. Every standby's instance reports, retained on
// its covering topic, the members whose duties it has taken over and not
// given back (its agent's own record of the commands it carried out),
// again on every connect and whenever that changes. The coordinator keeps
// the latest report of each (claims) and, for a member a standby reports
// covering that its takeover bookkeeping has no coverage of — its state
// file was corrupt or empty and moved aside, or it never had one —
// restores that coverage through the bookkeeping (takeover.Manager.Rebuild:
// phase covering, as a restart restores one), which records and logs
// coverage_rebuilt and hands it to the policy. The policy then fails the
// member back as usual when it returns.
//
// Two standbys that claim the same member (or a standby that claims one
// another covers) are never settled by guessing: the coverage the
// coordinator has (or the first claim it rebuilt) is kept, and the alarm
// coverage_conflict names the others, until their reports no longer claim
// it.

// AlarmCoverageConflict: more than one standby reports covering a member.
const AlarmCoverageConflict = "coverage_conflict"

// Covering takes an instance's report of the members it covers. Any
// goroutine.
func (c *Coordinator) Covering(r bus.Covering) {
	c.loop.PostBounded("covering", func() { c.covering(r) })
}

// covering takes a report on the loop.
func (c *Coordinator) covering(r bus.Covering) {
	if c.takeover == nil || !c.table.Known(r.Member) {
		return
	}
	affected := map[string]bool{}
	for _, m := range c.claims[r.Member] {
		affected[m] = true
	}
	claimed := make([]string, 0, len(r.Covering))
	for _, cv := range r.Covering {
		claimed = append(claimed, cv.Member)
		affected[cv.Member] = true
		// The earliest of the coverage, kept after the standby lets go
		// until the coverage ends: a failback's copy comes after the
		// release, and a member lost during its failback is taken over
		// again by a standby that reports its new since.
		if !c.table.Known(cv.Member) {
			continue // a name the site does not have: kept nowhere
		}
		if c.claimedSince[r.Member] == nil {
			c.claimedSince[r.Member] = map[string]time.Time{}
		}
		if old, ok := c.claimedSince[r.Member][cv.Member]; !ok || cv.Since.Before(old) {
			c.claimedSince[r.Member][cv.Member] = cv.Since
		}
	}
	if len(claimed) == 0 {
		delete(c.claims, r.Member)
	} else {
		c.claims[r.Member] = claimed
	}
	for _, cv := range r.Covering {
		if _, covered := c.takeover.Covered(cv.Member); covered {
			continue
		}
		why := r.Member + " reports covering " + cv.Member + " and the coordinator had no coverage of it"
		if rec := c.store.Recovered(); rec != nil {
			why += " (its state file was " + rec.Reason + " and moved aside at start)"
		}
		if _, err := c.takeover.Rebuild(cv.Member, r.Member, cv.Since, why); err != nil {
			c.log.Warn("coverage not rebuilt from a standby's report", "member", cv.Member, "standby", r.Member, "error", err)
			continue
		}
		c.assertMember(cv.Member)
	}
	for _, m := range slices.Sorted(maps.Keys(affected)) {
		c.checkClaims(m)
	}
}

// checkClaims raises coverage_conflict for member while a standby other than
// the one covering it claims it, and clears it when none does.
func (c *Coordinator) checkClaims(member string) {
	holder := ""
	if cv, ok := c.takeover.Covered(member); ok {
		holder = cv.Standby
	}
	var others []string
	for standby, claimed := range c.claims {
		if standby != holder && slices.Contains(claimed, member) {
			others = append(others, standby)
		}
	}
	slices.Sort(others)
	key := AlarmCoverageConflict + ":" + member
	if len(others) == 0 {
		c.clearAlarm(key, "no other standby reports covering it")
		return
	}
	who := strings.Join(others, ", ")
	var msg string
	if holder != "" {
		msg = fmt.Sprintf("%s reports covering %s, which %s covers: %s keeps the coverage (and fails it back); %s may still run %s's duties: check it, and release them there by hand", who, member, holder, holder, who, member)
	} else {
		msg = fmt.Sprintf("%s reports covering %s, which nobody covers as far as the coordinator knows: check what runs %s's duties", who, member, member)
	}
	if a, ok := c.alarms.active[key]; ok && a.Message == msg {
		return
	}
	c.raiseAlarm(engine.Alarm{Key: key, Kind: AlarmCoverageConflict, Severity: SeverityAlarm, Member: member, Message: msg,
		Fields: map[string]any{"kept": holder, "claims": others}})
}
