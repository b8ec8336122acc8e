package engine

import (
	"context"
	"time"

	"understudy/discovery/bus"

	"understudy/runtime/takeover"
)

// Status is a snapshot of the engine for the status API and the CLI.
type Status struct {
	Site        string          `json:"site"`
	Self        string          `json:"self"`
	Coordinator bool            `json:"coordinator"`
	Inputs      InputStatus     `json:"inputs"`
	Members     []MemberStatus  `json:"members"`
	Drivers     []DriverStatus  `json:"drivers,omitempty"`
	Policy      *PolicyStatus   `json:"policy,omitempty"`
	Takeover    *TakeoverStatus `json:"takeover,omitempty"`
	Copies      []CopyStatus    `json:"copies,omitempty"` // material copies in progress
	Drills      []DrillStatus   `json:"drills,omitempty"` // fire drills running
	Alarms      []Alarm         `json:"alarms,omitempty"` // raised alarms (coordinator)
	// Quarantined are the events set aside because their handlers took
	// the process down (coordinator).
	Quarantined []QuarantinedEvent `json:"quarantined,omitempty"`
}

// QuarantinedEvent is a poison event the coordinator set aside: confirm
// Proposal to run it once more, reject it to drop it (a member event: to
// lift its quarantine).
type QuarantinedEvent struct {
	Proposal   string    `json:"proposal"`
	Event      string    `json:"event"`
	Member     string    `json:"member,omitempty"`
	Deliveries int       `json:"deliveries"`
	At         time.Time `json:"at"`    // when the event happened
	Since      time.Time `json:"since"` // when it was set aside
	Why        string    `json:"why"`
	// Held counts the later events of a quarantined member event (its name,
	// its member) that were not handed to the policy either.
	Held int `json:"held,omitempty"`
}

// TakeoverStatus is the coordinator's takeover state, with grace countdowns.
type TakeoverStatus struct {
	takeover.Snapshot
	Grace []GraceStatus `json:"grace,omitempty"`
}

// GraceStatus is the countdown of one member's grace period.
type GraceStatus struct {
	Member    string    `json:"member"`
	Standby   string    `json:"standby"`
	Until     time.Time `json:"until"`
	Remaining float64   `json:"remaining_s"`
	Expired   bool      `json:"expired"`
}

// InputStatus says how the loop keeps up with its inputs: the inputs from
// other instances it dropped because it fell behind (by kind: ack, health,
// config, copy_progress, about, heartbeat), and the heartbeats merged into a
// newer one of the same member before it took them.
type InputStatus struct {
	Dropped          map[string]uint64 `json:"dropped"`
	HeartbeatsMerged uint64            `json:"heartbeats_merged"`
}

// MemberStatus is one row of the member table.
type MemberStatus struct {
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	Reason    string    `json:"reason"`
	LastHeard time.Time `json:"last_heard,omitzero"`
	Roles     []string  `json:"roles,omitempty"`
	Standby   bool      `json:"standby,omitempty"`
	Pool      string    `json:"pool,omitempty"`
	Drill     string    `json:"drill,omitempty"` // the fault of a fire drill it is in
}

// DriverStatus is a driver's connection.
type DriverStatus struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Connected bool      `json:"connected"`
	Address   string    `json:"address,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Error     string    `json:"error,omitempty"`
	// Desired is a switcher's routing as the coordinator decided it: the
	// input it wants on each output it has decided (by output, from 1).
	Desired map[int]int `json:"desired,omitempty"`
}

// PolicyStatus describes the running policy.
type PolicyStatus struct {
	File      string    `json:"file"`
	Loaded    time.Time `json:"loaded,omitzero"`
	Reloads   uint64    `json:"reloads"`
	Handlers  []string  `json:"handlers"`
	Calls     uint64    `json:"calls"`
	Errors    uint64    `json:"errors"`
	Timeouts  uint64    `json:"timeouts"`
	LastError string    `json:"last_error,omitempty"`
}

// Status returns a snapshot, taken on the loop.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	var st Status
	err := e.Do(ctx, func() { st = e.status() })
	return st, err
}

// Snapshot returns the status at once: call it on the loop (e.g. through
// Do), or between the steps of a simulation, which has no loop running.
func (e *Engine) Snapshot() Status { return e.status() }

func (e *Engine) status() Status {
	st := Status{Site: e.site.Name, Self: e.opts.Self, Coordinator: e.Coordinating()}
	st.Inputs.Dropped, st.Inputs.HeartbeatsMerged = e.InputsDropped()
	for _, m := range e.table.All() {
		cm, _ := e.site.Member(m.ID)
		st.Members = append(st.Members, MemberStatus{ID: m.ID, State: e.StateOf(m.ID), Since: m.Since, Reason: m.Reason, LastHeard: m.LastHeard, Roles: cm.Roles, Standby: cm.Standby, Pool: cm.Pool})
	}
	e.coord.Status(&st)
	return st
}

// CopyStatus is a copy in progress as /status shows it.
type CopyStatus struct {
	bus.CopyProgress
	Since time.Time `json:"since"` // when the first report came
}

// DrillStatus is a running drill (and the retained drill topic's entries).
type DrillStatus struct {
	Member    string    `json:"member"`
	Fault     string    `json:"fault"`
	DryRun    bool      `json:"dry_run"`
	Started   time.Time `json:"started"`
	Until     time.Time `json:"until"`
	Remaining float64   `json:"remaining_s"`
	By        string    `json:"by"`
}

// Alarm is one raised alarm.
type Alarm struct {
	Key      string         `json:"key"` // kind and subject: one alarm per key
	Kind     string         `json:"kind"`
	Severity string         `json:"severity"`
	Member   string         `json:"member,omitempty"`
	Message  string         `json:"message"`
	Fields   map[string]any `json:"fields,omitempty"`
	Since    time.Time      `json:"since"`
	Count    int            `json:"count"` // how often it was raised while active
}
