package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// OpKind is a kind of fault the nemesis injects.
type OpKind string

// The fault kinds.
const (
	// OpKill: SIGKILL of a member's instance; it is started again after
	// For (For 0: not before the end of the schedule).
	OpKill OpKind = "kill"
	// OpStop: SIGSTOP of a member's instance, SIGCONT after For.
	OpStop OpKind = "stop"
	// OpLinkDown: a host's cable pulled (its link loses carrier; nothing is
	// sent to anyone), plugged back after For.
	OpLinkDown OpKind = "link_down"
	// OpPartition: hosts split into two groups that cannot reach each other
	// (blackhole routes inside each namespace), healed after For.
	OpPartition OpKind = "partition"
	// OpBrokerCut: one member's host cut off from the broker's host only.
	OpBrokerCut OpKind = "broker_cut"
	// OpSwitcherRestart: a switcher simulator power-cycled: connections
	// drop, routing back to output n ← input n (instantaneous).
	OpSwitcherRestart OpKind = "switcher_restart"
	// OpSwitcherRefuse: a switcher simulator refuses each of the next Count
	// commands as the device refuses one (its error reply), acting on none;
	// disarmed after For if not used up.
	OpSwitcherRefuse OpKind = "switcher_refuse"
	// OpSwitcherDrop: a switcher simulator closes the connection of each of
	// the next Count commands on receipt, without answering or acting on it;
	// disarmed after For if not used up.
	OpSwitcherDrop OpKind = "switcher_drop"
	// OpLANDown: the whole LAN down: every host's cable pulled at once (the
	// devices host's too), plugged back after For.
	OpLANDown OpKind = "lan_down"
	// OpBrokerKill: SIGKILL of the external broker (mosquitto on its own
	// host): every connection ends at once, no Last Will is published and
	// it forgets every retained message; started again after For. Only with
	// an external broker (Target.Broker).
	OpBrokerKill OpKind = "broker_kill"
	// OpBrokerStop: SIGSTOP of the external broker: its connections stay
	// open but nothing moves (the clients' keep-alives run out), then
	// SIGCONT after For: it wakes with what waited in its sockets. Only
	// with an external broker.
	OpBrokerStop OpKind = "broker_stop"
	// OpConfigEdit: an installer's edit of a member's configuration bundle
	// file on its host (instantaneous): new content written in place, as an
	// editor saves it. Only on sites whose members have duties.config.
	OpConfigEdit OpKind = "config_edit"
	// OpOperator: an operator's command through a member's local API (as
	// `understudy VERB` sends it; the member passes it to the coordinator):
	// Verb "mode" switches the site to manual mode and back to auto after
	// For (sent again every second until taken, as an operator would);
	// "reassert" has the coordinator route every duty output again
	// (instantaneous). What the coordinator answered is in Reply.
	OpOperator OpKind = "operator"
	// OpStateFull: a member's state folder (its state store, and on the
	// coordinator its journal: a tmpfs of its own on the test host) filled
	// to the last byte by a file of the nemesis'; the file removed after
	// For.
	OpStateFull OpKind = "state_full"
	// OpClockStep: a member's host clock stepped by Offset (either way),
	// through the instance's fault hook (runtime/faulthook): its wall
	// reading jumps, its monotonic one does not. Instantaneous, and the
	// host stays stepped (a later step may move it again).
	OpClockStep OpKind = "clock_step"
	// OpStoreStall: every commit of a member's state store waits (its
	// fsync stalled, through the instance's fault hook) until For has
	// passed.
	OpStoreStall OpKind = "store_stall"
	// OpCandidateCut: on an elected site, a coordinator candidate's host
	// (the leader's, found when the fault begins: Op.Leader) cut off from
	// the other candidates' hosts only — it still reaches the members, the
	// switchers and (with an external broker) the broker; healed after For.
	OpCandidateCut OpKind = "candidate_cut"
)

// TheLeader is the member of an op aimed at the elected coordinator
// (Op.Leader) until it lands: the runner finds the leader then, from the
// instances' /status (election.leader), or for a fault aimed at a phase,
// from whose journal shows the phase begin.
const TheLeader = "(leader)"

// The operator commands the nemesis sends (Op.Verb).
const (
	VerbMode     = "mode"
	VerbReassert = "reassert"
)

// instant reports whether o happens at one moment and is not healed (For
// is 0 and does not mean "to the end").
func (o Op) instant() bool {
	return o.Kind == OpSwitcherRestart || o.Kind == OpConfigEdit || o.Kind == OpClockStep || o.Kind == OpOperator && o.Verb != VerbMode
}

// OpKinds lists every kind, in report order.
var OpKinds = []OpKind{OpKill, OpStop, OpLinkDown, OpPartition, OpBrokerCut, OpCandidateCut, OpLANDown, OpBrokerKill, OpBrokerStop, OpStateFull, OpSwitcherRestart, OpSwitcherRefuse, OpSwitcherDrop, OpConfigEdit, OpOperator, OpClockStep, OpStoreStall}

// Phases a fault can be aimed at (Target.Aim): it waits, from its time, for
// the coordinator's journal to show the phase beginning (takeover_started,
// failback_started, copy_started, a config action's action_started) and
// lands within a few milliseconds of it.
var AimPhases = []string{PhaseTakeover, PhaseFailback, PhaseCopy, PhaseConfig}

// DevicesHost is the host label of the switcher simulators.
const DevicesHost = "devices"

// BrokerHost is the host label of an external broker (Options.Broker
// mosquitto); with the embedded broker, the coordinator's host is the
// broker's.
const BrokerHost = "broker"

// Op is one fault of a schedule. At and For are planned offsets from the
// start of the schedule; Start and End are when the runner really began and
// ended it (wall clock), filled in as it runs.
type Op struct {
	ID     int           `json:"id"`
	Kind   OpKind        `json:"kind"`
	Member string        `json:"member,omitempty"` // kill, stop, broker_cut, state_full, config_edit, operator (the API it is sent to), clock_step, store_stall
	Host   string        `json:"host,omitempty"`   // link_down: a member id or "devices"
	Groups [2][]string   `json:"groups,omitzero"`  // partition: host labels
	Driver string        `json:"driver,omitempty"` // switcher_restart, switcher_refuse, switcher_drop
	Count  int           `json:"count,omitempty"`  // switcher_refuse, switcher_drop: commands hit
	Verb   string        `json:"verb,omitempty"`   // operator: VerbMode or VerbReassert
	Offset time.Duration `json:"offset,omitempty"` // clock_step: the step, either way
	// Reply is what the member's API answered an operator command ("ok",
	// or the refusal), each answer when it was sent more than once.
	Reply string        `json:"reply,omitempty"`
	At    time.Duration `json:"at"`
	For   time.Duration `json:"for"` // 0 for a kill: not restarted before the end
	// Aim, when set, is the phase the fault is aimed at: from At on it waits
	// for the journal to show the phase beginning and lands then (a few
	// milliseconds later), where no other fault holds what it holds.
	Aim string `json:"aim,omitempty"`
	// AimedAt is the journal record of the phase's beginning it landed on;
	// Missed says the phase never came (or never where it could land) before
	// the end: the fault was not injected.
	AimedAt time.Time `json:"aimed_at,omitzero"`
	Missed  bool      `json:"missed,omitempty"`
	// Planted marks the outage of a protected member that every schedule
	// gets with Target.Outage (a takeover to aim at).
	Planted bool `json:"planted,omitempty"`
	// Leader marks a fault aimed at the elected coordinator (kill, stop,
	// candidate_cut): drawn with Member TheLeader, it hits the candidate
	// that leads when it lands (Member then names it).
	Leader bool `json:"leader,omitempty"`
	// JournalMarks, for a clock step of the coordinator, are how many
	// records its journal had before the step was sent and once the hook
	// answered (History.Unstep).
	JournalMarks [2]int `json:"journal_marks,omitzero"`

	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"` // zero: lasted to the end of the history
	Err   string    `json:"error,omitempty"`
}

// String describes the op in one line.
func (o Op) String() string {
	var what string
	switch o.Kind {
	case OpKill:
		what = "kill -9 " + o.Member
		if o.For == 0 {
			what += " (not restarted)"
		}
	case OpStop:
		what = "SIGSTOP " + o.Member
	case OpLinkDown:
		what = "link down " + o.Host
	case OpPartition:
		what = fmt.Sprintf("partition %s | %s", strings.Join(o.Groups[0], ","), strings.Join(o.Groups[1], ","))
	case OpBrokerCut:
		what = o.Member + " cut off from the broker"
	case OpCandidateCut:
		what = o.Member + " cut off from the other candidates"
	case OpSwitcherRestart:
		what = "switcher " + o.Driver + " restarted"
	case OpSwitcherRefuse:
		what = fmt.Sprintf("switcher %s refuses the next %d command(s)", o.Driver, o.Count)
	case OpSwitcherDrop:
		what = fmt.Sprintf("switcher %s drops the connection of the next %d command(s)", o.Driver, o.Count)
	case OpLANDown:
		what = "the whole LAN down"
	case OpBrokerKill:
		what = "kill -9 the broker (mosquitto)"
	case OpBrokerStop:
		what = "SIGSTOP the broker (mosquitto)"
	case OpConfigEdit:
		what = "configuration bundle of " + o.Member + " edited on its host"
	case OpOperator:
		what = "operator: understudy reassert, through " + o.Member
		if o.Verb == VerbMode {
			what = "operator: understudy mode manual, then auto, through " + o.Member
		}
		if o.Reply != "" {
			what += " [" + o.Reply + "]"
		}
	case OpStateFull:
		what = "the state folder of " + o.Member + " full"
	case OpClockStep:
		what = o.Member + "'s clock stepped by " + signed(o.Offset)
	case OpStoreStall:
		what = o.Member + "'s state store stalled (every commit waits)"
	}
	when := "at +" + o.At.Round(time.Millisecond).String()
	if o.Aim != "" {
		when = "when a " + o.Aim + " begins after +" + o.At.Round(time.Millisecond).String()
		if !o.AimedAt.IsZero() && !o.Start.IsZero() {
			when += fmt.Sprintf(" (landed %s after it)", o.Start.Sub(o.AimedAt).Round(100*time.Microsecond))
		}
	}
	if o.Planted {
		what += " (the planted outage)"
	}
	if o.Leader {
		what += " (the leader)"
	}
	s := fmt.Sprintf("#%d %s for %s: %s", o.ID, when, o.For.Round(time.Millisecond), what)
	if o.Missed {
		s += " (missed: the phase never came where it could land)"
	}
	if o.Err != "" {
		s += " (failed: " + o.Err + ")"
	}
	return s
}

// resource is what an op holds for its whole span: two ops on one resource
// never overlap (a stopped process is not killed; one partition at a time).
func (o Op) resource() string {
	switch o.Kind {
	case OpKill, OpStop:
		return "proc:" + o.Member
	case OpLinkDown:
		return "link:" + o.Host
	case OpPartition, OpBrokerCut, OpLANDown, OpCandidateCut:
		return "net"
	case OpBrokerKill, OpBrokerStop:
		return "broker"
	case OpConfigEdit:
		return "config:" + o.Member
	case OpOperator:
		return "operator"
	case OpStateFull:
		return "state:" + o.Member
	case OpClockStep, OpStoreStall:
		return "proc:" + o.Member // through the process's hook: never while it is killed or stopped
	default:
		return "switcher:" + o.Driver
	}
}

// signed is d with its sign, + included.
func signed(d time.Duration) string {
	if d > 0 {
		return "+" + d.String()
	}
	return d.String()
}

// conflicts reports whether o and x hold something in common: the same
// resource, or the whole LAN and one host's link.
func (o Op) conflicts(x Op) bool {
	lanAndLink := func(a, b Op) bool { return a.Kind == OpLANDown && b.Kind == OpLinkDown }
	return o.resource() == x.resource() || lanAndLink(o, x) || lanAndLink(x, o)
}

// Schedule is a seeded set of faults over Duration.
type Schedule struct {
	Seed     uint64        `json:"seed"`
	Duration time.Duration `json:"duration"`
	// Aim and DeviceFaults are the target's (they change what a seed draws).
	Aim          []string `json:"aim,omitempty"`
	DeviceFaults bool     `json:"device_faults,omitempty"`
	LANDown      bool     `json:"lan_down,omitempty"`
	Outage       bool     `json:"outage,omitempty"`
	ConfigEdits  bool     `json:"config_edits,omitempty"`
	BrokerStop   bool     `json:"broker_stop,omitempty"`
	Operator     bool     `json:"operator,omitempty"`
	StateFaults  bool     `json:"state_full,omitempty"`
	HostFaults   bool     `json:"host_faults,omitempty"`
	LeaderFaults bool     `json:"leader_faults,omitempty"`
	// Broker is the external broker the schedule was drawn for ("": the
	// embedded one): it adds a broker kill and puts the broker's host in
	// the partitions.
	Broker string `json:"broker,omitempty"`
	MaxOps int    `json:"max_ops,omitempty"`
	// Elected is set when the schedule was drawn for a site whose
	// coordinator is elected (Target.Candidates).
	Elected bool `json:"elected,omitempty"`
	Ops     []Op `json:"ops"`
}

// Flags are the options of understudy faults that draw this schedule again
// from its seed.
func (s Schedule) Flags() string {
	f := fmt.Sprintf("--seed %d --duration %s --max-faults %d --aim '%s' --device-faults=%t --lan-down=%t --outage=%t --state-full=%t", s.Seed, s.Duration, s.MaxOps, strings.Join(s.Aim, ","), s.DeviceFaults, s.LANDown, s.Outage, s.StateFaults)
	f += fmt.Sprintf(" --config-edits=%t --operator=%t --host-faults=%t", s.ConfigEdits, s.Operator, s.HostFaults)
	if s.Elected {
		f += fmt.Sprintf(" --leader-faults=%t", s.LeaderFaults)
	}
	if s.Broker != "" {
		f += fmt.Sprintf(" --broker %s --broker-stop=%t", s.Broker, s.BrokerStop)
	}
	return f
}

// String lists the ops, one a line.
func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %s, %d faults:\n", s.Seed, s.Duration, len(s.Ops))
	for _, o := range s.Ops {
		b.WriteString("  " + o.String() + "\n")
	}
	return b.String()
}

// Target is what a schedule may hit.
type Target struct {
	Members     []string      // members that run an instance
	Coordinator string        // the member that coordinates (and embeds the broker unless Broker is set)
	Switchers   []string      // switcher driver names (simulated)
	LostAfter   time.Duration // the longest lost_after of the members
	MaxOps      int           // at most this many faults (default 8)
	// Standbys are the members that may cover others (aimed faults hit
	// them or the coordinator).
	Standbys []string
	// Aim, when not empty, adds one fault aimed at one of these phases
	// (AimPhases): a kill or stop of the coordinator or a standby, or a
	// switcher refusing or dropping commands.
	Aim []string
	// DeviceFaults adds switchers refusing or dropping commands
	// (switcher_refuse, switcher_drop) at random times.
	DeviceFaults bool
	// LANDown adds, to one schedule in two, the whole LAN down at a random
	// time.
	LANDown bool
	// Protected are the members that are covered when lost (not a
	// standby, failover on, not the coordinator). With Outage each
	// schedule gets one outage of one of them longer than lost_after (a
	// kill, a stop or its cable pulled) in the first half of the
	// schedule: random faults alone seldom make a takeover, and a fault
	// aimed at one waits for one in vain.
	Protected []string
	Outage    bool
	// Broker, when set, is the external broker that runs on a host of its
	// own (BrokerHost; BrokerMosquitto): each schedule gets a broker kill,
	// and each partition puts the broker's host on one side. "": the
	// broker is embedded in the coordinator.
	Broker string
	// Bundled are the members with a configuration bundle (duties.config)
	// that run an instance; with ConfigEdits each schedule gets one to
	// three edits of their bundle files at random times.
	Bundled     []string
	ConfigEdits bool
	// Operator adds, to two schedules in three, an operator's command
	// through a random member's API: manual mode for a while, or a
	// reassert (OpOperator).
	Operator bool
	// BrokerStop adds, with an external broker, a broker_stop to one
	// schedule in two.
	BrokerStop bool
	// StateFaults gives each schedule one state folder full (state_full)
	// on a member's host, the coordinator's included, at a random time, a
	// blip or an outage.
	StateFaults bool
	// HostFaults adds one or two faults of a member's host through the
	// instance's fault hook: its clock stepped (clock_step), its state
	// store's commits stalled (store_stall).
	HostFaults bool
	// Candidates are, on a site whose coordinator is elected, the
	// candidates (Witnesses among them); Coordinator is then "": the
	// leader is found when a fault aimed at it lands (TheLeader).
	Candidates, Witnesses []string
	// LeaderFaults adds, on an elected site, one or two faults aimed at
	// the leader or the election: the leader's process killed, stopped
	// for longer than its lease, its host cut off from the other
	// candidates (candidate_cut); the witness killed or stopped; a
	// candidate's clock stepped.
	LeaderFaults bool
}

// elected reports whether the target's coordinator is elected.
func (t Target) elected() bool { return len(t.Candidates) > 0 }

// NewSchedule draws a schedule from seed: between 2 and MaxOps faults with a
// random phase in the first three quarters of d (after a sixth of it), each
// lasting either less than lost_after (a blip that must not cause a loss) or
// well beyond it. Faults on different processes, links and switchers
// overlap freely; one partition or broker cut at a time. The same seed and
// target give the same schedule.
func NewSchedule(seed uint64, t Target, d time.Duration) Schedule {
	r := rand.New(rand.NewPCG(seed, 0x756e646572737475)) // "understu"
	maxOps := t.MaxOps
	if maxOps <= 0 {
		maxOps = 8
	}
	lost := max(t.LostAfter, 300*time.Millisecond)
	s := Schedule{Seed: seed, Duration: d, Aim: t.Aim, DeviceFaults: t.DeviceFaults, LANDown: t.LANDown, Outage: t.Outage, StateFaults: t.StateFaults,
		ConfigEdits: t.ConfigEdits && len(t.Bundled) > 0, Operator: t.Operator, HostFaults: t.HostFaults, MaxOps: maxOps,
		Elected: t.elected(), LeaderFaults: t.elected() && t.LeaderFaults}
	if externalBroker(t.Broker) {
		s.Broker, s.BrokerStop = t.Broker, t.BrokerStop
	}
	hosts := append(slices.Clone(t.Members), DevicesHost)
	// Cut off from the broker: the members but the coordinator (which
	// embeds it), on an elected site those that are no candidate (a
	// candidate cut off from the others is candidate_cut).
	others := slices.DeleteFunc(slices.Clone(t.Members), func(m string) bool { return m == t.Coordinator || slices.Contains(t.Candidates, m) })
	kinds := []OpKind{OpKill, OpKill, OpStop, OpLinkDown, OpPartition}
	if len(others) > 0 {
		kinds = append(kinds, OpBrokerCut)
	}
	if len(t.Switchers) > 0 {
		kinds = append(kinds, OpSwitcherRestart)
	}
	n := 2 + r.IntN(maxOps-1)
	from, until := d/6, d*3/4
	if until <= from {
		return s
	}
	for attempt := 0; len(s.Ops) < n && attempt < 20*maxOps; attempt++ {
		o := Op{Kind: kinds[r.IntN(len(kinds))]}
		switch o.Kind {
		case OpKill, OpStop:
			o.Member = t.Members[r.IntN(len(t.Members))]
		case OpLinkDown:
			o.Host = hosts[r.IntN(len(hosts))]
		case OpBrokerCut:
			o.Member = others[r.IntN(len(others))]
		case OpPartition:
			o.Groups = split(r, hosts)
		case OpSwitcherRestart:
			o.Driver = t.Switchers[r.IntN(len(t.Switchers))]
		}
		o.At = from + time.Duration(r.Int64N(int64(until-from)))
		switch {
		case o.Kind == OpSwitcherRestart:
			o.For = 0
		case r.IntN(3) == 0: // a blip: shorter than lost_after
			o.For = lost/5 + time.Duration(r.Int64N(int64(lost/2)))
		default: // an outage
			o.For = lost + time.Second + time.Duration(r.Int64N(int64(d/4)))
		}
		if o.Kind == OpKill && r.IntN(4) == 0 {
			o.For = 0 // not restarted
		}
		o.For = min(o.For, d-o.At) // healed within the schedule
		if overlaps(s.Ops, o, d) {
			continue
		}
		s.Ops = append(s.Ops, o)
	}
	// The extra faults come from a stream of their own: without them a seed
	// draws the same schedule as before they existed.
	x := rand.New(rand.NewPCG(seed, 0x6661756c74733278)) // "faults2x"
	if t.DeviceFaults && len(t.Switchers) > 0 {
		for range 1 + x.IntN(2) {
			o := Op{Kind: []OpKind{OpSwitcherRefuse, OpSwitcherDrop}[x.IntN(2)], Driver: t.Switchers[x.IntN(len(t.Switchers))], Count: 1 + x.IntN(3)}
			o.At = from + time.Duration(x.Int64N(int64(until-from)))
			o.For = min(lost+time.Duration(x.Int64N(int64(d/4))), d-o.At)
			if !overlaps(s.Ops, o, d) {
				s.Ops = append(s.Ops, o)
			}
		}
	}
	if len(t.Aim) > 0 {
		o := Op{Aim: t.Aim[x.IntN(len(t.Aim))], At: from}
		coord := t.Coordinator
		if t.elected() {
			coord = TheLeader // the candidate whose journal shows the phase
		}
		who := slices.Compact(slices.Sorted(slices.Values(append([]string{coord}, t.Standbys...))))
		kinds := []OpKind{OpKill, OpKill, OpStop}
		if len(t.Switchers) > 0 {
			kinds = append(kinds, OpSwitcherRefuse, OpSwitcherDrop)
		}
		o.Kind = kinds[x.IntN(len(kinds))]
		switch o.Kind {
		case OpKill, OpStop:
			o.Member = who[x.IntN(len(who))]
			o.Leader = o.Member == TheLeader
		default:
			o.Driver, o.Count = t.Switchers[x.IntN(len(t.Switchers))], 1+x.IntN(3)
		}
		if x.IntN(3) == 0 {
			o.For = lost/5 + time.Duration(x.Int64N(int64(lost/2)))
		} else {
			o.For = lost + time.Second + time.Duration(x.Int64N(int64(d/6)))
		}
		s.Ops = append(s.Ops, o)
	}
	// Drawn last, so that a seed's other faults are the same with or
	// without it.
	if t.LANDown && x.IntN(2) == 0 {
		if o := extraOp(x, OpLANDown, from, until, lost, d); !overlaps(s.Ops, o, d) {
			s.Ops = append(s.Ops, o)
		}
	}
	// The planted outage after the other extras (a seed's other faults stay
	// what they were), before the broker's: a few tries for a time when
	// its member and the coordinator are free of other faults (about four
	// schedules in five have one).
	if t.Outage && len(t.Protected) > 0 {
		for range 20 {
			o := Op{Kind: []OpKind{OpKill, OpStop, OpLinkDown}[x.IntN(3)], Planted: true}
			who := t.Protected[x.IntN(len(t.Protected))]
			if o.Kind == OpLinkDown {
				o.Host = who
			} else {
				o.Member = who
			}
			o.At = from + time.Duration(x.Int64N(int64(d/2-from)))
			o.For = min(lost+time.Second+time.Duration(x.Int64N(int64(d/4))), d-o.At)
			// While the coordinator itself is down or cut off the outage
			// would be judged late or not at all: not then either (on an
			// elected site, whichever candidate leads then is not known
			// in advance).
			coordProc := Op{Kind: OpKill, Member: t.Coordinator, At: o.At, For: o.For}
			coordLink := Op{Kind: OpLinkDown, Host: t.Coordinator, At: o.At, For: o.For}
			if !overlaps(s.Ops, o, d) && (t.elected() || !overlaps(s.Ops, coordProc, d) && !overlaps(s.Ops, coordLink, d)) {
				s.Ops = append(s.Ops, o)
				break
			}
		}
	}
	// The external broker's faults last of all: with the embedded broker
	// nothing more is drawn, and with an external one the faults above are
	// the same (but for the broker's side of a partition).
	if s.Broker != "" {
		if o := extraOp(x, OpBrokerKill, from, until, lost, d); !overlaps(s.Ops, o, d) {
			s.Ops = append(s.Ops, o)
		}
		// A partition drawn among the members and the devices puts the
		// broker's host on one side: left out, it would reach both, and
		// the members on either side would still hear each other through it.
		for i := range s.Ops {
			if s.Ops[i].Kind == OpPartition {
				side := x.IntN(2)
				s.Ops[i].Groups[side] = append(slices.Clone(s.Ops[i].Groups[side]), BrokerHost)
				slices.Sort(s.Ops[i].Groups[side])
			}
		}
	}
	// Each later kind of fault from a stream of its own, so that adding one
	// changes no seed's other faults.
	if s.ConfigEdits {
		e := rand.New(rand.NewPCG(seed, 0x636f6e6669676564)) // "configed"
		for range 1 + e.IntN(3) {
			o := Op{Kind: OpConfigEdit, Member: t.Bundled[e.IntN(len(t.Bundled))], At: from + time.Duration(e.Int64N(int64(until-from)))}
			if !overlaps(s.Ops, o, d) {
				s.Ops = append(s.Ops, o)
			}
		}
	}
	if s.BrokerStop {
		e := rand.New(rand.NewPCG(seed, 0x62726f6b73746f70)) // "brokstop"
		if e.IntN(2) == 0 {
			for range 5 { // a few tries for a time clear of the broker kill
				if o := extraOp(e, OpBrokerStop, from, until, lost, d); !overlaps(s.Ops, o, d) {
					s.Ops = append(s.Ops, o)
					break
				}
			}
		}
	}
	if s.Operator {
		e := rand.New(rand.NewPCG(seed, 0x6f70657261746f72)) // "operator"
		if e.IntN(3) > 0 {
			o := Op{Kind: OpOperator, Member: t.Members[e.IntN(len(t.Members))], At: from + time.Duration(e.Int64N(int64(until-from)))}
			// A reassert needs a switcher: on a site without one, manual
			// mode.
			if e.IntN(2) == 0 || len(t.Switchers) == 0 {
				o.Verb = VerbMode
				o.For = min(lost+time.Second+time.Duration(e.Int64N(int64(d/4))), d-o.At)
			} else {
				o.Verb = VerbReassert
			}
			s.Ops = append(s.Ops, o)
		}
	}
	// The state folder full from a stream of its own, after everything
	// else: every other fault of a seed is the same with or without it.
	if t.StateFaults && len(t.Members) > 0 {
		sf := rand.New(rand.NewPCG(seed, 0x737461746566756c)) // "stateful"
		o := extraOp(sf, OpStateFull, from, until, lost, d)
		o.Member = t.Members[sf.IntN(len(t.Members))]
		if !overlaps(s.Ops, o, d) {
			s.Ops = append(s.Ops, o)
		}
	}
	// The host faults from a stream of their own, after everything else: a
	// seed draws the same other faults with or without them.
	if t.HostFaults && len(t.Members) > 0 {
		hx := rand.New(rand.NewPCG(seed, 0x686f7374666c7473)) // "hostflts"
		for range 1 + hx.IntN(2) {
			kind := []OpKind{OpClockStep, OpStoreStall}[hx.IntN(2)]
			member := t.Members[hx.IntN(len(t.Members))]
			o := extraOp(hx, kind, from, until, lost, d)
			o.Member = member
			if kind == OpClockStep {
				// From half a lost_after to 2 minutes (or twice lost_after),
				// either way: against lost_after, the startup grace, a
				// failback delay, the named timers.
				top := max(2*time.Minute, 2*lost)
				o.Offset = (lost/2 + time.Duration(hx.Int64N(int64(top-lost/2)))).Round(time.Millisecond)
				if hx.IntN(2) == 0 {
					o.Offset = -o.Offset
				}
				o.For = 0
			}
			if !overlaps(s.Ops, o, d) {
				s.Ops = append(s.Ops, o)
			}
		}
	}
	// The faults aimed at the leader and the election from a stream of
	// their own, after everything else: a seed draws the same other
	// faults with or without them.
	if s.LeaderFaults {
		s.Ops = append(s.Ops, leaderOps(seed, t, s.Ops, from, until, lost, d)...)
	}
	slices.SortStableFunc(s.Ops, func(a, b Op) int { return int(a.At - b.At) })
	for i := range s.Ops {
		s.Ops[i].ID = i + 1
	}
	return s
}

// leaderOps draws one or two faults aimed at an elected coordinator: its
// process killed (restarted after a while, or not before the end) or
// stopped for longer than its lease, its host cut off from the other
// candidates; the witness killed or stopped; a candidate's clock stepped
// (by half a lost_after to 2 minutes, either way). None overlaps what
// ops already hold.
func leaderOps(seed uint64, t Target, ops []Op, from, until, lost, d time.Duration) []Op {
	lx := rand.New(rand.NewPCG(seed, 0x6c65616465726f70)) // "leaderop"
	var out []Op
	for range 1 + lx.IntN(2) {
		o := extraOp(lx, OpKill, from, until, lost, d)
		switch k := lx.IntN(5); {
		case k == 0:
			o.Member, o.Leader = TheLeader, true
			if lx.IntN(4) == 0 {
				o.For = 0 // not restarted
			}
		case k == 1:
			// Longer than its lease (raft's heartbeat timeout, under a
			// lost_after): a new leader acts meanwhile.
			o.Kind, o.Member, o.Leader = OpStop, TheLeader, true
			o.For = min(lost+time.Second+time.Duration(lx.Int64N(int64(d/6))), d-o.At)
		case k == 2:
			o.Kind, o.Member, o.Leader = OpCandidateCut, TheLeader, true
		case k == 3 && len(t.Witnesses) > 0:
			o.Kind = []OpKind{OpKill, OpStop}[lx.IntN(2)]
			o.Member = t.Witnesses[lx.IntN(len(t.Witnesses))]
		default:
			o.Kind, o.Member, o.For = OpClockStep, t.Candidates[lx.IntN(len(t.Candidates))], 0
			top := max(2*time.Minute, 2*lost)
			o.Offset = (lost/2 + time.Duration(lx.Int64N(int64(top-lost/2)))).Round(time.Millisecond)
			if lx.IntN(2) == 0 {
				o.Offset = -o.Offset
			}
		}
		if !overlaps(append(slices.Clone(ops), out...), o, d) {
			out = append(out, o)
		}
	}
	return out
}

// extraOp draws an op of kind from the extra stream x: at a random time
// between from and until, a blip (shorter than lost_after) one time in
// three, else an outage, healed within the schedule of length d.
func extraOp(x *rand.Rand, kind OpKind, from, until, lost, d time.Duration) Op {
	o := Op{Kind: kind, At: from + time.Duration(x.Int64N(int64(until-from)))}
	if x.IntN(3) == 0 {
		o.For = lost/5 + time.Duration(x.Int64N(int64(lost/2)))
	} else {
		o.For = lost + time.Second + time.Duration(x.Int64N(int64(d/6)))
	}
	o.For = min(o.For, d-o.At)
	return o
}

// split parts hosts into two non-empty groups at random.
func split(r *rand.Rand, hosts []string) [2][]string {
	var g [2][]string
	perm := r.Perm(len(hosts))
	cut := 1 + r.IntN(len(hosts)-1)
	for i, p := range perm {
		side := 0
		if i >= cut {
			side = 1
		}
		g[side] = append(g[side], hosts[p])
	}
	slices.Sort(g[0])
	slices.Sort(g[1])
	return g
}

// CanLand reports whether the aimed op o may land at offset at of the
// schedule as planned: lasting For from there, it ends before d and no
// other op holding what it holds is planned to be in force then (or to
// begin within a second after it). Whether an earlier op really ended is
// for the runner to know (it lands only on what nothing holds).
func (s Schedule) CanLand(o Op, at time.Duration) bool {
	if at+o.For > s.Duration {
		return false
	}
	for _, x := range s.Ops {
		if x.ID == o.ID || x.Aim != "" || !x.conflicts(o) {
			continue
		}
		end := x.At + x.For
		if x.For == 0 && !x.instant() {
			end = s.Duration
		}
		if x.At-time.Second < at+o.For && at < end {
			return false
		}
	}
	return true
}

// overlaps reports whether o holds a resource another op holds at the
// same time (a margin of a second between them). Aimed ops (their time is
// not known in advance) are left out: they check CanLand when they land.
func overlaps(ops []Op, o Op, d time.Duration) bool {
	span := func(x Op) (time.Duration, time.Duration) {
		end := x.At + x.For
		if x.For == 0 && !x.instant() {
			end = d
		}
		return x.At - time.Second, end + time.Second
	}
	a0, a1 := span(o)
	for _, x := range ops {
		if x.Aim != "" || !x.conflicts(o) {
			continue
		}
		b0, b1 := span(x)
		if a0 < b1 && b0 < a1 {
			return true
		}
	}
	return false
}
