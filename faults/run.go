package faults

import (
	"fmt"
	"io"
	"strings"
	"time"

	"understudy/drivers"
)

// Options configure a run of schedules.
type Options struct {
	// Binary is the understudy binary the instances run.
	Binary string
	// Site is the site.yaml to run.
	Site string
	// Dir is the folder each schedule's run goes into (seed-S under it).
	Dir string
	// Seed is the first schedule's seed; schedule i has Seed+i.
	Seed uint64
	// Schedules is how many schedules to run (default 1).
	Schedules int
	// Duration is each schedule's length, from the moment every instance is
	// up (default 60 s).
	Duration time.Duration
	// Quiet is how long the site runs after the schedule, every fault
	// healed and every killed instance started again, before its history
	// is read: the time the site needs to settle, fail back what came back
	// and push configurations (0: long enough for the slowest failback,
	// QuietFor; negative: none).
	Quiet time.Duration
	// MaxOps bounds the faults of a schedule (default 8).
	MaxOps int
	// Aim, when not empty, adds to each schedule a fault aimed at one of
	// these phases (AimPhases): it lands within milliseconds of the
	// coordinator's journal showing the phase begin.
	Aim []string
	// DeviceFaults adds switchers refusing or dropping commands.
	DeviceFaults bool
	// LANDown adds the whole LAN down to one schedule in two.
	LANDown bool
	// Outage gives each schedule one outage of a protected member longer
	// than lost_after (Target.Outage).
	Outage bool
	// ConfigEdits gives each schedule one to three edits of the members'
	// configuration bundle files (Target.ConfigEdits), on sites that have
	// them.
	ConfigEdits bool
	// Operator adds an operator's command to two schedules in three
	// (Target.Operator).
	Operator bool
	// BrokerStop adds, with an external broker, a SIGSTOP of it to one
	// schedule in two (Target.BrokerStop).
	BrokerStop bool
	// StateFaults gives each schedule one member's state folder full
	// (state_full): each host's state folder is a small tmpfs of its own,
	// filled by the nemesis.
	StateFaults bool
	// HostFaults adds faults of a member's host through the instances'
	// fault hook (runtime/faulthook): its clock stepped, its state store
	// stalled (Target.HostFaults). With it, or with a Schedule that has
	// such faults, every instance runs with the hook enabled.
	HostFaults bool
	// LeaderFaults adds, on a site whose coordinator is elected, faults
	// aimed at the leader (found when they land) and the election: the
	// leader killed, stopped past its lease, cut off from the other
	// candidates; the witness killed or stopped; a candidate's clock
	// stepped (Target.LeaderFaults). Every instance then runs with the
	// fault hook enabled.
	LeaderFaults bool
	// Broker is the bus's broker: BrokerEmbedded ("" too), in the
	// coordinator's process, or BrokerMosquitto, Debian's mosquitto on a
	// test host of its own configured with the files of understudy
	// broker-config (and killed by the nemesis: broker_kill).
	Broker string
	// Schedule, when set, is run instead of one drawn from the seed (a
	// schedule written by hand; its Duration replaces Duration).
	Schedule *Schedule
	// Env is added to the instances' environment.
	Env []string
	// FailoverDelay, FailbackDelay and CopySettle, when not zero, replace
	// the site's failover delay (where one is set), failback delay and
	// copy.settle for the run (Plan.Shorten): a schedule of a minute can
	// then see a delayed failover, a failback with its material copy.
	FailoverDelay, FailbackDelay, CopySettle time.Duration
	// Bounds are the checker's slack (zero: the defaults).
	Bounds Bounds
	// Registry names the driver kinds.
	Registry *drivers.Registry
	// Progress, when set, receives a line per step.
	Progress io.Writer
}

// The brokers a run can use (Options.Broker).
const (
	BrokerEmbedded  = "embedded"  // in the coordinator's process (the default)
	BrokerMosquitto = "mosquitto" // Debian's mosquitto on a host of its own
)

// externalBroker reports whether broker (an Options.Broker) runs on a host
// of its own.
func externalBroker(broker string) bool { return broker != "" && broker != BrokerEmbedded }

// QuietFor is the default quiet time after a schedule (Options.Quiet): a
// coordinator started again at the end waits out its startup grace, an
// instance reconnects, the slowest automatic failback waits its delay (and
// copy.settle where it copies material back), and the failback's own steps
// run, as the checker bounds them.
func QuietFor(f SiteFacts, b Bounds) time.Duration {
	b = b.withDefaults(f)
	var wait time.Duration // the slowest failback's own wait
	for _, m := range f.Members {
		if !m.Protected || !m.AutoFailback {
			continue
		}
		w := m.FailbackDelay
		if m.CopyMaterial {
			w += f.CopySettle
		}
		wait = max(wait, w)
	}
	return f.StartupGrace + b.Reconnect + wait + b.Failback + 2*time.Second
}

// Outcome is one schedule's run.
type Outcome struct {
	Dir     string
	Notes   []string
	History *History
	Result  Result
}

// timingFlags are the flags of understudy faults that set o's timing
// overrides ("" without any).
func (o Options) timingFlags() string {
	var f []string
	if o.FailoverDelay > 0 {
		f = append(f, fmt.Sprintf("--failover-delay %s", o.FailoverDelay))
	}
	if o.FailbackDelay > 0 {
		f = append(f, fmt.Sprintf("--failback-delay %s", o.FailbackDelay))
	}
	if o.CopySettle > 0 {
		f = append(f, fmt.Sprintf("--copy-settle %s", o.CopySettle))
	}
	if o.Quiet > 0 {
		f = append(f, fmt.Sprintf("--quiet %s", o.Quiet))
	}
	return strings.Join(f, " ")
}
