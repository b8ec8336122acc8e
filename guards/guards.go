// Package guards lets a test build of understudy switch off one of its
// safety guards, so that the fault suite can prove its checker notices
// what the guard prevents (a checker that never fails proves nothing).
//
// Only a binary built with the tag brokenguards has the switches: there
// Off reads the environment variable EnvVar, a comma-separated list of
// guard names. In every other build Off is a constant false and the
// guarded code is as if the check were not there. No release is built with
// the tag.
package guards

// A Name names a guard.
type Name string

// The guards that can be switched off.
const (
	// StallRule: after a stall of its own loop (a stopped process, a paused
	// VM) the member table gives every member a fresh lost_after before
	// judging it. Off, it judges the silence the stall made.
	StallRule Name = "stall-rule"
	// IntentLog: a coordinator's restart sends again only the actions its
	// store holds unanswered. Off, it sends finished ones again too.
	IntentLog Name = "intent-log"
	// RouteRetry: a route the switcher refused is sent again with a
	// backoff. Off, a refusal is final.
	RouteRetry Name = "route-retry"
	// ConfigBase: the coordinator takes a configuration report as the
	// newest only when it is derived from the newest it knows. Off, the
	// last report heard wins (the flaw of an instance with an older
	// database, started first, overwriting newer settings).
	ConfigBase Name = "config-base"
	// Lease: an elected coordinator writes to a device or sends a command
	// only while its lease holds (a quorum confirmed its lead less than a
	// heartbeat timeout ago). Off, it acts for as long as it believes it
	// leads — a leader paused past a new election wakes and acts.
	Lease Name = "lease"
)

// EnvVar is the variable a brokenguards build reads: the names of the
// guards to switch off, comma-separated.
const EnvVar = "UNDERSTUDY_BROKEN_GUARDS"
