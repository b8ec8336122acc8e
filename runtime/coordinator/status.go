package coordinator

import (
	"maps"
	"slices"

	"understudy/runtime/engine"
)

// Status adds the coordinator's part of the status (engine.Coordinator): the
// drivers and their desired routing, the policy, the takeover state with
// its grace countdowns, copies, drills, alarms, and each member's drill.
func (c *Coordinator) Status(st *engine.Status) {
	for i := range st.Members {
		st.Members[i].Drill = c.drillOf(st.Members[i].ID)
	}
	for _, name := range slices.Sorted(maps.Keys(c.opts.Drivers)) {
		ds := c.opts.Drivers[name].Status()
		st.Drivers = append(st.Drivers, engine.DriverStatus{Name: name, Kind: c.site.Drivers[name].Kind, Connected: ds.Connected, Address: ds.Address, Since: ds.Since, Error: ds.LastError, Desired: c.desiredRouting(name)})
	}
	if c.site.PolicyPath() != "" {
		ps := &engine.PolicyStatus{File: c.site.PolicyPath(), Loaded: c.policyLoaded, Reloads: c.reloads, LastError: c.policyError}
		if c.policy != nil {
			for _, h := range c.policy.Handlers() {
				ps.Handlers = append(ps.Handlers, h.Event)
			}
			s := c.policy.Stats()
			ps.Calls, ps.Errors, ps.Timeouts = s.Calls, s.Errors, s.Timeouts
		}
		st.Policy = ps
	}
	if c.takeover != nil {
		ts := &engine.TakeoverStatus{Snapshot: c.takeover.Snapshot()}
		for _, cv := range ts.Coverage {
			if left, ok := c.takeover.GraceRemaining(cv.Member); ok {
				ts.Grace = append(ts.Grace, engine.GraceStatus{Member: cv.Member, Standby: cv.Standby, Until: cv.GraceUntil, Remaining: left.Seconds(), Expired: cv.GraceExpired})
			}
		}
		st.Takeover = ts
	}
	st.Copies = c.copyStatus()
	st.Drills = c.drillStatus()
	st.Alarms = c.alarmList()
	st.Quarantined = c.quarantinedList()
}

// Snapshot is the loop's status at once: call it on the loop, or between
// the steps of a simulation, which has no loop running.
func (c *Coordinator) Snapshot() engine.Status { return c.loop.Snapshot() }

// DriverActions is how many actions are queued or running on the drivers
// (call it on the loop). A simulation waits for them before it moves time.
func (c *Coordinator) DriverActions() int { return len(c.actions.local) }
