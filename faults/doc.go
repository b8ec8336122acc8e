// Package faults is the seeded fault-schedule suite: it runs a site's real
// instances as separate `understudy run` processes on network-namespace
// hosts, its video switchers as their simulators speaking the real protocol
// on a "devices" host (the bus on the broker embedded in the coordinator, or
// on Debian's mosquitto on a "broker" host of its own), lets a seeded random
// nemesis inject several faults at once (kill -9, SIGSTOP/SIGCONT, a host's
// link down, partitions, a member cut off from the broker, a switcher
// restarted to its power-on routing, mosquitto killed, and through the
// instances' test hook, runtime/faulthook: a member's clock stepped, its
// state store's commits stalled), collects a history
// of what really happened (the coordinator's journal, every
// instance's JSON log, the switchers' routing over time, the nemesis'
// operations, on one wall-clock time base) and checks properties on that
// history: coverage within a bound, no false loss, actions at most once,
// failback.
//
// One concern per file: plan (the site rewritten for the run), nemesis (the
// seeded schedule), run and netfault (carrying it out on test hosts; Linux
// only; hooks: a host's faults through the instance's test hook), history
// (what happened; unstep puts a stepped host's records back on one time
// base), checker (the properties) and report
// (figures as text and JSON). The same seed gives the same schedule, so a
// violation is reproduced with `understudy faults -c site.yaml --seed S`.
package faults
