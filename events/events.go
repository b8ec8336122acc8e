// Package events is the one registry of understudy's event names: every
// event a policy handler receives (us.on) and every record of the site's
// record stream (the journal, the events topic, the dashboard's timeline,
// what a scenario's event: and no: expectations look at). The way
// policy.API() is the one list of the Lua module's functions, List is the
// one list of events: the code's constants are these, the editor
// definitions' EventName, check's lint of us.on and the scenario checks read
// Known, and the README's and docs/takeover.md's events tables are
// generated from it. After changing it, go test ./events ./runtime/policy
// -update rewrites the tables and editor/understudy.lua.
//
// It is a leaf: it imports nothing of understudy but the suggest leaf, so
// drivers/ and discovery/ take their event names from it too.
package events

import (
	"strings"

	"understudy/suggest"
)

// Group is a section of the documentation's events tables.
type Group string

// The groups, in the order the documentation shows them.
const (
	GroupMembers       Group = "members"
	GroupBus           Group = "bus"
	GroupDrivers       Group = "drivers and switchers"
	GroupActions       Group = "actions"
	GroupTakeover      Group = "takeover and failback"
	GroupCopies        Group = "copies"
	GroupAlarms        Group = "alarms"
	GroupCommands      Group = "commands and timers"
	GroupDrills        Group = "drills"
	GroupPolicy        Group = "policy"
	GroupConfiguration Group = "configuration"
)

// Groups returns the groups in the documentation's order.
func Groups() []Group {
	return []Group{GroupMembers, GroupBus, GroupDrivers, GroupActions, GroupTakeover, GroupCopies,
		GroupAlarms, GroupCommands, GroupDrills, GroupPolicy, GroupConfiguration}
}

// Event names. A record's Type and a policy event's name are these.
const (
	// members
	MemberSeen      = "member_seen"
	MemberSuspect   = "member_suspect"
	MemberAlive     = "member_alive"
	MemberLost      = "member_lost"
	MemberClosed    = "member_closed"
	MemberRestored  = "member_restored"
	MemberBroken    = "member_broken"
	MemberDescribed = "member_described"
	// bus
	BusSilent = "bus_silent"
	BusHeard  = "bus_heard"
	// LoopStalled: this instance's own loop did not run for a while.
	LoopStalled = "loop_stalled"
	// coordinator election
	CoordinatorElected = "coordinator_elected"
	CoordinatorLost    = "coordinator_lost"
	// drivers and switchers
	DriverConnected    = "driver_connected"
	DriverDisconnected = "driver_disconnected"
	RouteChanged       = "route_changed"
	RoutingDiffers     = "routing_differs"
	RoutingAccepted    = "routing_accepted"
	RouteWithheld      = "route_withheld"
	// actions
	ActionStarted = "action_started"
	ActionResumed = "action_resumed"
	ActionRunning = "action_running"
	ActionDone    = "action_done"
	ActionFailed  = "action_failed"
	EpochAdopted  = "epoch_adopted"
	// takeover and failback
	TakeoverStarted   = "takeover_started"
	TakeoverDone      = "takeover_done"
	TakeoverFailed    = "takeover_failed"
	TakeoverQueued    = "takeover_queued"
	TakeoverDequeued  = "takeover_dequeued"
	TakeoverProposed  = "takeover_proposed"
	ProposalConfirmed = "proposal_confirmed"
	ProposalRejected  = "proposal_rejected"
	ProposalWithdrawn = "proposal_withdrawn"
	FailbackStarted   = "failback_started"
	FailbackPaused    = "failback_paused"
	MemberReady       = "member_ready"
	FailbackDone      = "failback_done"
	FailbackFailed    = "failback_failed"
	GraceExpired      = "grace_expired"
	CoverageRebuilt   = "coverage_rebuilt"
	ModeChanged       = "mode_changed"
	// copies
	CopyStarted  = "copy_started"
	CopyProgress = "copy_progress"
	CopyDone     = "copy_done"
	CopyFailed   = "copy_failed"
	// alarms
	Alarm        = "alarm"
	AlarmCleared = "alarm_cleared"
	// EventQuarantined: a poison event set aside.
	EventQuarantined = "event_quarantined"
	// EventHeld: a member event not handed to the policy because its name
	// is quarantined for that member.
	EventHeld = "event_held"
	// commands and timers
	Command = "command" // the record of an operator command; the policy receives command:VERB
	// drills
	DrillStarted = "drill_started"
	DrillEnded   = "drill_ended"
	DrillDryRun  = "drill_dry_run"
	// policy
	Coordinator  = "coordinator"
	PolicyLoaded = "policy_loaded"
	PolicyError  = "policy_error"
	// configuration
	ConfigAccepted = "config_accepted"
	ConfigStale    = "config_stale"

	// CatchAll is the handler name that receives every event: us.on("*", …).
	CatchAll = "*"
)

// The prefixes of the patterns: a named timer, a named cron job, an
// operator command.
const (
	TimerPrefix   = "timer:"
	CronPrefix    = "cron:"
	CommandPrefix = "command:"
)

// TimerEvent is the event a named timer fires: timer:NAME.
func TimerEvent(name string) string { return TimerPrefix + name }

// CronEvent is the event a named cron job fires: cron:NAME.
func CronEvent(name string) string { return CronPrefix + name }

// CommandEvent is the event an operator command reaches the policy as:
// command:VERB.
func CommandEvent(verb string) string { return CommandPrefix + verb }

// Event is one entry of the registry: an event, a record, or both.
type Event struct {
	// Name is exact ("member_lost") or a pattern: a prefix and a word in
	// capitals ("timer:NAME"), standing for every name with that prefix.
	Name  string
	Group Group
	// Policy: handlers receive it (us.on). Record: it is in the record
	// stream. Most events are both; some are records only (action_started),
	// some reach the policy only (coordinator, command:VERB, cron:NAME).
	Policy, Record bool
	// Fields are its own fields: for an event, those of the handler's ev
	// besides name and at (member is the member's table there); for a
	// record only, the record's.
	Fields []Field
	When   string // when it happens (Markdown)
}

// Field is one field of an event.
type Field struct {
	Name string
	Doc  string // a short meaning (Markdown), or ""
}

// Prefix is the prefix of a pattern ("timer:" for "timer:NAME"), "" for an
// exact name.
func (e Event) Prefix() string {
	prefix, word, ok := strings.Cut(e.Name, ":")
	if !ok || word == "" || strings.ToUpper(word) != word {
		return ""
	}
	return prefix + ":"
}

// Matches reports whether name is this event: the same name, or a name with
// the pattern's prefix and something after it.
func (e Event) Matches(name string) bool {
	if p := e.Prefix(); p != "" {
		return len(name) > len(p) && strings.HasPrefix(name, p)
	}
	return name == e.Name
}

// List returns every event and record, by group.
func List() []Event {
	// f makes a list of undocumented fields; its capacity is its length,
	// so an append to it never writes into another event's list.
	f := func(names ...string) []Field {
		out := make([]Field, len(names))
		for i, n := range names {
			out[i] = Field{Name: n}
		}
		return out
	}
	fd := func(name, doc string) Field { return Field{Name: name, Doc: doc} }
	member := f("member", "reason", "previous")
	drill := fd("drill", "the fault, during a fire drill")
	action := f("id", "verb", "cause", "driver", "output", "input", "args", "target", "member")
	copyFields := f("member", "from", "since", "until", "action")
	return []Event{
		// members
		{Name: MemberSeen, Group: GroupMembers, Policy: true, Record: true, Fields: member,
			When: "first heard since this instance joined the bus"},
		{Name: MemberSuspect, Group: GroupMembers, Policy: true, Record: true, Fields: member,
			When: "a heartbeat is overdue"},
		{Name: MemberAlive, Group: GroupMembers, Policy: true, Record: true, Fields: member,
			When: "heard again after suspect (it was never lost)"},
		{Name: MemberLost, Group: GroupMembers, Policy: true, Record: true, Fields: append(member, drill),
			When: "silent for `lost_after`, connection dropped, or never heard within `startup_grace`"},
		{Name: MemberClosed, Group: GroupMembers, Policy: true, Record: true, Fields: member,
			When: "graceful shutdown"},
		{Name: MemberRestored, Group: GroupMembers, Policy: true, Record: true, Fields: append(member, drill),
			When: "heard again after lost or closed, or its material disks work again after broken"},
		{Name: MemberBroken, Group: GroupMembers, Policy: true, Record: true, Fields: []Field{fd("member", ""), fd("reason", ""), fd("disks_failed", ""), drill},
			When: "every material disk of the member failed"},
		{Name: MemberDescribed, Group: GroupMembers, Record: true, Fields: []Field{fd("member", ""), fd("new", "not in site.yaml before"), fd("roles", ""), fd("standby", ""), fd("pool", "")},
			When: "a member described itself on the bus (its roles, standby, pool)"},
		// bus
		{Name: BusSilent, Group: GroupBus, Policy: true, Record: true, Fields: f("silence_ms"),
			When: "this instance stopped hearing itself through the broker: nobody is judged lost meanwhile"},
		{Name: BusHeard, Group: GroupBus, Policy: true, Record: true, Fields: f("silence_ms"),
			When: "it hears itself again"},
		{Name: LoopStalled, Group: GroupBus, Policy: true, Record: true, Fields: []Field{fd("stalled_ms", "how late its timers came")},
			When: "this instance's own loop did not run for longer than a member may be silent (the process stopped, the VM paused, a long garbage collection): nobody is judged until every member has had a fresh `lost_after`"},
		// coordinator election
		{Name: CoordinatorElected, Group: GroupBus, Policy: true, Record: true, Fields: []Field{fd("member", "the candidate that coordinates from now on"), fd("term", "its raft term"), fd("candidates", "")},
			When: "a candidate of a site that elects its coordinator won the election, waited out the old leader's lease, applied everything committed before, and coordinates: its policy's first event"},
		{Name: CoordinatorLost, Group: GroupBus, Record: true, Fields: []Field{fd("member", "the candidate that stopped coordinating"), fd("term", ""), fd("reason", "")},
			When: "the candidate that coordinated stopped: another leads, it lost a quorum, or it stops (its own record; the policy is gone with it)"},
		// drivers and switchers
		{Name: DriverConnected, Group: GroupDrivers, Policy: true, Record: true, Fields: f("driver", "address"),
			When: "a device connection went up (a switcher's once its routing is read back)"},
		{Name: DriverDisconnected, Group: GroupDrivers, Policy: true, Record: true, Fields: f("driver", "address", "error"),
			When: "a device connection went down"},
		{Name: RouteChanged, Group: GroupDrivers, Policy: true, Record: true, Fields: []Field{fd("driver", ""), fd("output", ""), fd("input", "ports from 1")},
			When: "a switcher output changed (panel, another client, or us)"},
		{Name: RoutingDiffers, Group: GroupDrivers, Policy: true, Record: true, Fields: []Field{
			fd("driver", ""), fd("output", ""), fd("expected", ""), fd("actual", ""),
			fd("cause", "`reconnect` or `panel`"),
			fd("duty", "the member whose duty output it is; absent for none"),
			fd("default", "`reassert`, `accept`, `report` or `stop`"),
			fd("member", "the duty's"),
		}, When: "the switcher shows another input than the coordinator decided on that output: read back after the driver (re)connected, or announced by the device. Unless the handler calls `router:route` or `router:keep` on that output, the runtime does what `default` says (see [Switchers](#switchers-the-routing-the-coordinator-decided))"},
		{Name: RoutingAccepted, Group: GroupDrivers, Record: true, Fields: f("driver", "output", "input", "previous", "why"),
			When: "the device's route became the desired one (not a duty output, `router:keep`, a fight given up)"},
		{Name: RouteWithheld, Group: GroupDrivers, Record: true, Fields: f("driver", "output", "input", "actual", "duty", "cause", "why"),
			When: "in manual mode, a start-up route the coordinator would have sent"},
		// actions
		{Name: ActionStarted, Group: GroupActions, Record: true, Fields: action,
			When: "an action was written to the state file and sent: `router:route`, `us.run`, a takeover command, a route the runtime puts back"},
		{Name: ActionResumed, Group: GroupActions, Record: true, Fields: action,
			When: "after a restart of the coordinator, an action not answered yet is sent again"},
		{Name: ActionRunning, Group: GroupActions, Record: true, Fields: action,
			When: "the instance carrying out a command answered `running`"},
		{Name: ActionDone, Group: GroupActions, Policy: true, Record: true, Fields: append(action, f("result", "attempts", "took_ms")...),
			When: "the result of `router:route`, `us.run` or a takeover command"},
		{Name: ActionFailed, Group: GroupActions, Policy: true, Record: true, Fields: append(action, f("result", "attempts", "took_ms", "error")...),
			When: "it failed"},
		{Name: EpochAdopted, Group: GroupActions, Record: true, Fields: f("epoch"),
			When: "an instance had seen a newer coordinator epoch (this coordinator's state was lost): it goes on with a newer one; not when that epoch is more than 2^20 past its own (the action fails with the reason instead: epochs never wrap)"},
		// takeover and failback
		{Name: TakeoverStarted, Group: GroupTakeover, Policy: true, Record: true, Fields: []Field{fd("member", ""), fd("standby", ""), fd("reason", ""), fd("action", ""), fd("grace_until", ""), fd("again", "lost again after its standby let go")},
			When: "a standby was told to take over"},
		{Name: TakeoverDone, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "standby"),
			When: "the standby answered: it covers the member"},
		{Name: TakeoverFailed, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "standby", "error"),
			When: "the standby could not take over"},
		{Name: TakeoverQueued, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "position", "why", "standby", "pool"),
			When: "waiting for the limit or a free standby"},
		{Name: TakeoverDequeued, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "why"),
			When: "it left the queue without a takeover (it came back)"},
		{Name: TakeoverProposed, Group: GroupTakeover, Policy: true, Record: true, Fields: []Field{fd("member", ""), fd("proposal", ""), fd("standby", "the one asked for, or the one that would be picked now"), fd("picked", "`standby` was picked"), fd("reason", ""), fd("act_in_s", "")},
			When: "manual mode: an operator confirms"},
		{Name: ProposalConfirmed, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "proposal", "by"),
			When: "an operator (or `confirm_after`) confirmed it"},
		{Name: ProposalRejected, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "proposal", "by"),
			When: "an operator rejected it"},
		{Name: ProposalWithdrawn, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "proposal", "why"),
			When: "it is no longer needed (the member came back)"},
		{Name: FailbackStarted, Group: GroupTakeover, Policy: true, Record: true, Fields: []Field{fd("member", ""), fd("standby", ""), fd("reason", ""), fd("step", "`copy`: a copy that waited is tried again")},
			When: "`us.failback` began"},
		{Name: FailbackPaused, Group: GroupTakeover, Policy: true, Record: true, Fields: []Field{fd("member", ""), fd("standby", ""), fd("step", "`resume`, `release`, `copy`"), fd("pauses", "")},
			When: "the member is suspect: that step waits until it is alive again"},
		{Name: MemberReady, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "standby"),
			When: "the returned member took its duties again"},
		{Name: FailbackDone, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "standby", "covered_s", "copy_passes"),
			When: "the standby let go and the material is copied back"},
		{Name: FailbackFailed, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "standby", "step", "error"),
			When: "the failback stopped: the standby keeps the duties (or, lost after it let go, takes them again: `takeover_started` with `again`)"},
		{Name: GraceExpired, Group: GroupTakeover, Policy: true, Record: true, Fields: f("member", "standby", "since"),
			When: "the grace period of the member's license-bound duties on its standby ran out"},
		{Name: CoverageRebuilt, Group: GroupTakeover, Policy: true, Record: true, Fields: []Field{fd("member", ""), fd("standby", ""), fd("since", "when the standby took it over, as it says"), fd("reason", ""), fd("grace_until", ""), fd("state_recovered", "the coordinator's state file was found damaged at start")},
			When: "the coordinator had no coverage of a member its standby reports covering (its `covering` topic; the state file was lost): it covers it again, in phase `covering`, and fails it back as usual"},
		{Name: ModeChanged, Group: GroupTakeover, Policy: true, Record: true, Fields: []Field{fd("mode", "`auto` or `manual`"), fd("previous", ""), fd("by", "")},
			When: "the takeover mode was switched"},
		// copies
		{Name: CopyStarted, Group: GroupCopies, Policy: true, Record: true, Fields: copyFields,
			When: "a material copy was sent to the restored member (`us.copy_missing` or the failback's copy step)"},
		{Name: CopyProgress, Group: GroupCopies, Policy: true, Record: true, Fields: append(append(copyFields, f("files_done", "files_total", "bytes_done", "bytes_total")...), fd("rate", "bytes/s"), fd("eta_s", "")),
			When: "about once a second while it copies"},
		{Name: CopyDone, Group: GroupCopies, Policy: true, Record: true, Fields: append(copyFields[:len(copyFields):len(copyFields)],
			fd("summary", ""), fd("copied", ""), fd("bytes", ""), fd("resumed_bytes", ""), fd("skipped", ""), fd("still_writing", ""),
			fd("conflicts", "`{path, reason}` list"), fd("failed", "`{path, reason}` list"), fd("took_s", "")),
			When: "the copy's final report"},
		{Name: CopyFailed, Group: GroupCopies, Policy: true, Record: true, Fields: append(copyFields, fd("error", ""), fd("…", "the report as far as it got")),
			When: "the copy failed"},
		// alarms
		{Name: Alarm, Group: GroupAlarms, Policy: true, Record: true, Fields: []Field{fd("kind", ""), fd("key", ""), fd("severity", "`alarm` or `warning`"), fd("message", ""), fd("member", ""), fd("…", "the alarm's own fields")},
			When: "an alarm was raised (the runtime's kinds: **Alarms** in the README)"},
		{Name: AlarmCleared, Group: GroupAlarms, Policy: true, Record: true, Fields: f("kind", "key", "why", "raised_s", "member"),
			When: "it ended"},
		{Name: EventQuarantined, Group: GroupAlarms, Record: true, Fields: []Field{fd("event", ""), fd("member", ""), fd("seq", ""), fd("deliveries", "deliveries begun that never finished"), fd("why", ""), fd("proposal", "`quarantine-SEQ`: confirm runs the event once more, reject drops it (a member event's: lifts its quarantine)")},
			When: "at start, an event whose handlers took the process down twice (hung and killed, out of memory, crashed) was set aside instead of handed to the policy again; an alarm `event_quarantined` goes with it. For a member event (`member_lost`, `member_broken`, …) later events of that name for that member are held (`event_held`) until the proposal is confirmed or rejected"},
		{Name: EventHeld, Group: GroupAlarms, Record: true, Fields: []Field{fd("event", ""), fd("member", ""), fd("proposal", "the quarantine that holds it"), fd("held", "how many were held since it was quarantined")},
			When: "a member event was not handed to the policy: its name is quarantined for that member (`event_quarantined`); confirm the proposal to run it once more, reject it to lift the quarantine"},
		// commands and timers
		{Name: Command, Group: GroupCommands, Record: true, Fields: []Field{fd("verb", ""), fd("args", "the command's fields and `by`: `api` through the coordinator's local API, `api@<member>` through that member's instance's API, which passed it on signed, `mqtt` from the bus, `operator` in a scenario"), fd("error", "why it was refused")},
			When: "an operator command arrived (refused ones too); a command not refused reaches the policy as `command:VERB`"},
		{Name: CommandPrefix + "VERB", Group: GroupCommands, Policy: true, Fields: []Field{fd("…", "the command's fields"), fd("by", "")},
			When: "an operator command (`understudy/<site>/command/VERB`) that the runtime did not refuse"},
		{Name: TimerPrefix + "NAME", Group: GroupCommands, Policy: true, Record: true, Fields: []Field{fd("name", ""), fd("…", "the timer's args"), fd("late_s", "it was due while the coordinator was down")},
			When: "a named timer fired (`us.after(delay, \"NAME\", args)`)"},
		{Name: CronPrefix + "NAME", Group: GroupCommands, Policy: true, Fields: []Field{fd("name", ""), fd("…", "the job's args")},
			When: "a named cron job fired (`us.cron(expr, \"NAME\", args)`)"},
		// drills
		{Name: DrillStarted, Group: GroupDrills, Record: true, Fields: f("member", "fault", "dry_run", "revert_at", "revert_after_s", "by"),
			When: "a fire drill began"},
		{Name: DrillEnded, Group: GroupDrills, Record: true, Fields: f("member", "fault", "why", "by", "state", "lasted_s"),
			When: "it ended (reverted, or ended by an operator)"},
		{Name: DrillDryRun, Group: GroupDrills, Record: true, Fields: f("member", "fault", "dry_run", "revert_after_s", "by", "decisions", "events", "errors", "wall_ms", "error"),
			When: "a dry run found these decisions (nothing was sent)"},
		// policy
		{Name: Coordinator, Group: GroupPolicy, Policy: true, Fields: f("reload"),
			When: "the policy starts deciding (after each load or reload)"},
		{Name: PolicyLoaded, Group: GroupPolicy, Record: true, Fields: f("file", "reload"),
			When: "the policy was loaded or reloaded"},
		{Name: PolicyError, Group: GroupPolicy, Record: true, Fields: []Field{fd("event", "the handler's"), fd("error", ""), fd("kept", "a reload that failed: `previous policy`"), fd("reloaded", "the policy went over its memory bound (or Go code it called panicked) and was loaded again from its file")},
			When: "a handler failed or ran out of time, or a reload failed, or the policy was stopped and loaded again"},
		// configuration
		{Name: ConfigAccepted, Group: GroupConfiguration, Record: true, Fields: f("member", "bundle", "version", "previous"),
			When: "a member reported a newer version of a configuration bundle"},
		{Name: ConfigStale, Group: GroupConfiguration, Record: true, Fields: f("member", "bundle", "reported", "base", "newest", "why"),
			When: "a member reported an older version (or an edit of one): it is sent the newest"},
	}
}

// Lookup returns the event name is (an exact name, or one a pattern
// stands for).
func Lookup(name string) (Event, bool) {
	for _, e := range List() {
		if e.Matches(name) {
			return e, true
		}
	}
	return Event{}, false
}

// Known reports whether name is an event or record understudy has, or one
// of its patterns (timer:failback), or the catch-all "*".
func Known(name string) bool {
	if name == CatchAll {
		return true
	}
	_, ok := Lookup(name)
	return ok
}

// Handled says whether the policy receives e (for Nearest).
func Handled(e Event) bool { return e.Policy }

// Recorded says whether e is in the record stream (for Nearest).
func Recorded(e Event) bool { return e.Record }

// Nearest is the did-you-mean for an unknown name: the name of an event
// that keep accepts (nil: any) closest to name, or "". A name with a
// mistyped prefix keeps its own rest ("timr:failback": "timer:failback").
func Nearest(name string, keep func(Event) bool) string {
	var exact, prefixes []string
	for _, e := range List() {
		if keep != nil && !keep(e) {
			continue
		}
		if p := e.Prefix(); p != "" {
			prefixes = append(prefixes, strings.TrimSuffix(p, ":"))
		} else {
			exact = append(exact, e.Name)
		}
	}
	if prefix, rest, ok := strings.Cut(name, ":"); ok && rest != "" {
		if near := suggest.Nearest(prefix, prefixes); near != "" {
			return near + ":" + rest
		}
	}
	return suggest.Nearest(name, exact)
}
