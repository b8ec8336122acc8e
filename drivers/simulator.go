package drivers

import "time"

// Faults is the fault-injection vocabulary every device simulator shares,
// so that a scenario, a test or an operator trying a site makes any device
// misbehave with the same words. Each simulator asserts at compile time
// that it has them (var _ drivers.Faults = (*Sim)(nil)).
type Faults interface {
	// RefuseNext makes the device refuse each of the next n commands as it
	// refuses one (a NAK, an error code, an HTTP 403, its error reply),
	// acting on none of them.
	RefuseNext(n int)
	// DropNext makes the device close the connection of each of the next n
	// commands on receipt, without answering or acting on it (over UDP,
	// which has no connection, the command goes unanswered).
	DropNext(n int)
	// Restart restarts the device as a power cycle would: every connection
	// drops, its state goes back to its power-on default (a switcher's
	// routing: output n shows input n) and injected faults are gone.
	Restart()
}

// Size is a switcher's number of inputs and outputs; 0 takes its
// simulator's default.
type Size struct{ Inputs, Outputs int }

// SwitcherSim is a running simulator of a video switcher kind, speaking
// the device's real protocol on a real socket. Ports are numbered from 1.
type SwitcherSim interface {
	Faults
	// Routing returns the input shown on each output (element i is output
	// i+1).
	Routing() []int
	// SetRoute routes output to input as someone at the device's front
	// panel would: the driver learns of it as it would from the device.
	SetRoute(output, input int) error
	// Close stops the simulator and closes its connections.
	Close() error
}

// ConnDropper is a simulator with connections that can all drop at once
// (a cable pulled and plugged back in), which a device asked by separate
// requests (HTTP) cannot.
type ConnDropper interface {
	DropConnections()
}

// AppliedRoute is a route a switcher simulator applied: when, the output
// and the input it shows from then on, and the connection the command came
// over.
type AppliedRoute struct {
	Time          time.Time
	Output, Input int    // from 1
	Remote        string // the client's address (host:port), or "panel"
}

// RouteLog is a switcher simulator that keeps every route it applied with
// the connection it came over (the fault suite reads from it which
// coordinator routed what, and when).
type RouteLog interface {
	// AppliedRoutes returns the routes applied so far on the video plane
	// (the one Routing shows), oldest first.
	AppliedRoutes() []AppliedRoute
}
