package coordinator

import (
	"maps"
	"slices"

	"understudy/runtime/engine"
)

// Status adds the coordinator's part of the status (engine.Coordinator): the
// drivers and their desired routing, the policy, the takeover state with
// its grace countdowns, copies, drills, alarms, and each member's drill.
func (e *Coordinator) Status(st *engine.Status) {
	for i := range st.Members {
		st.Members[i].Drill = e.drillOf(st.Members[i].ID)
	}
	for _, name := range slices.Sorted(maps.Keys(e.opts.Drivers)) {
		ds := e.opts.Drivers[name].Status()
		st.Drivers = append(st.Drivers, engine.DriverStatus{Name: name, Kind: e.site.Drivers[name].Kind, Connected: ds.Connected, Address: ds.Address, Since: ds.Since, Error: ds.LastError, Desired: e.desiredRouting(name)})
	}
	if e.site.PolicyPath() != "" {
		ps := &engine.PolicyStatus{File: e.site.PolicyPath(), Loaded: e.policyLoaded, Reloads: e.reloads, LastError: e.policyError}
		if e.policy != nil {
			for _, h := range e.policy.Handlers() {
				ps.Handlers = append(ps.Handlers, h.Event)
			}
			s := e.policy.Stats()
			ps.Calls, ps.Errors, ps.Timeouts = s.Calls, s.Errors, s.Timeouts
		}
		st.Policy = ps
	}
	if e.takeover != nil {
		ts := &engine.TakeoverStatus{Snapshot: e.takeover.Snapshot()}
		for _, c := range ts.Coverage {
			if left, ok := e.takeover.GraceRemaining(c.Member); ok {
				ts.Grace = append(ts.Grace, engine.GraceStatus{Member: c.Member, Standby: c.Standby, Until: c.GraceUntil, Remaining: left.Seconds(), Expired: c.GraceExpired})
			}
		}
		st.Takeover = ts
	}
	st.Copies = e.copyStatus()
	st.Drills = e.drillStatus()
	st.Alarms = e.alarmList()
}

// Snapshot is the loop's status at once: call it on the loop, or between
// the steps of a simulation, which has no loop running.
func (e *Coordinator) Snapshot() engine.Status { return e.loop.Snapshot() }

// DriverActions is how many actions are queued or running on the drivers
// (call it on the loop). A simulation waits for them before it moves time.
func (e *Coordinator) DriverActions() int { return len(e.actions.local) }
