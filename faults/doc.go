// Package faults is the seeded fault-schedule suite: it runs a site's real
// instances as separate `understudy run` processes on network-namespace
// hosts, its video switchers as their simulators speaking the real protocol
// on a "devices" host (the bus on the broker embedded in the coordinator, or
// on Debian's mosquitto on a "broker" host of its own), lets a seeded random
// nemesis inject several faults at once (kill -9, SIGSTOP/SIGCONT, a host's
// link down, partitions, a member cut off from the broker, a switcher
// restarted to its power-on routing, mosquitto killed or stopped, a
// member's state folder — a tmpfs of its own — filled to the last byte, a
// configuration bundle edited, an operator's command, and through the
// instances' test hook, runtime/faulthook: a member's clock stepped, its
// state store's commits stalled), collects a history
// of what really happened (the coordinator's journal, every
// instance's JSON log, the switchers' routing over time, the nemesis'
// operations, on one wall-clock time base) and checks properties on that
// history: coverage within a bound, no false loss, actions at most once,
// epochs, failback after the copy, material intact, the newest
// configuration on every host. On a site whose coordinator is elected
// (elect.go) it reads every candidate's journal and the switchers' own
// records of the routes they applied, aims faults at the leader found at
// run time, and checks that no two leaders acted at once.
//
// One concern per file: plan (the site rewritten for the run), nemesis (the
// seeded schedule), run, netfault, statefs, operator and hooks (carrying
// it out on test hosts; Linux only), history (what happened; unstep puts a
// stepped host's records back on one time base), checker, material and
// configs (the properties) and report (figures as text and JSON). The same
// seed gives the same schedule, so a violation is reproduced with
// `understudy faults -c site.yaml --seed S`.
package faults
