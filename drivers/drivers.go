// Package drivers is the registry of device driver kinds and the small
// interfaces through which the runtime carries policy decisions to hardware.
//
// A driver kind lives in its own package under drivers/ (code, tests, README.md
// with a sample config) and exports a Kind value, which carries what else the
// kind offers (a liveness check for probes, a simulator); drivers/builtin
// lists them. Device simulators share one fault vocabulary (Faults).
// Lifecycle: Kind.New decodes and validates the configuration without touching
// the network (config errors are found at load, with file:line); Start begins the
// connection, which the driver keeps up by itself (connection errors are retried
// at run time and reported as events); Close ends it.
package drivers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"understudy/events"
)

// Event is something a driver reports: its connection going up or down, or a
// change the device announced (a route set from a panel, by another client,
// or by this driver). A switcher reports driver_connected only once it has
// read the device's routing back, so Routing() then shows what the device
// shows; comparing that with the routing the coordinator decided is the
// runtime's business, not the driver's. Fields hold
// plain values only (string, bool, int, float64) so they map straight to Lua.
type Event struct {
	Name   string
	Fields map[string]any
}

// Driver event names shared by all kinds: the names of the events registry.
const (
	EventConnected    = events.DriverConnected    // Fields: address
	EventDisconnected = events.DriverDisconnected // Fields: address, error
	EventRouteChanged = events.RouteChanged       // Fields: output, input (1-based)
)

// Errors a driver wraps (with %w) so the runtime knows whether to retry.
var (
	// ErrNotConnected: the device is not reachable now; the runtime retries
	// the command until the action's deadline.
	ErrNotConnected = errors.New("not connected")
	// ErrRefused: the device understood the command and refused it (a NAK, a
	// lock held by someone else); retrying will not help.
	ErrRefused = errors.New("refused by the device")
)

// Refusal returns an error with message msg that is an ErrRefused (for
// errors.Is) without saying so in its text: a driver's own sentinel for "the
// device said no" (a NAK, a lock, an error code).
func Refusal(msg string) error { return refusal{msg} }

type refusal struct{ msg string }

func (r refusal) Error() string { return r.msg }
func (r refusal) Unwrap() error { return ErrRefused }

// Emitter receives a driver's events. It is called from the driver's own
// goroutines and must not block (the runtime only enqueues).
type Emitter func(Event)

// Driver is a configured device connection.
type Driver interface {
	// Start begins connecting in the background and returns at once. The driver
	// reconnects with backoff until Close is called or ctx ends.
	Start(ctx context.Context, emit Emitter)
	// Close ends the connection and waits for the driver's goroutines.
	Close() error
	// Status reports the connection as the driver sees it now.
	Status() Status
}

// Status is a driver's connection state.
type Status struct {
	Connected bool
	Address   string
	Since     time.Time // when Connected last changed
	LastError string    // the last connection or protocol error, in the device's words where it gave any
}

// Router is a video matrix switcher. Ports are numbered from 1, as on the
// device's panel, whatever the wire protocol uses. Every switcher kind offers
// exactly this surface, so a policy changes switcher model by config alone.
type Router interface {
	Driver
	// Route sets output to show input and returns once the device confirmed
	// the new route, or with an error in the device's words.
	Route(ctx context.Context, output, input int) error
	// Routing returns the routing last read from the device: element i is the
	// input shown on output i+1, 0 when unknown. Nil before the first read.
	Routing() []int
	// Size returns the port counts read from the device (0, 0 before).
	Size() (inputs, outputs int)
	// InputLabels and OutputLabels return the device's labels, index i for port i+1.
	InputLabels() []string
	OutputLabels() []string
}

// Config is what a Kind's New receives: the driver's name in site.yaml and a
// function that strictly decodes its settings into a struct, reporting errors
// as "file:line:col: message".
type Config struct {
	Name   string
	Decode func(v any) error
}

// Kind is a driver type that can be named in site.yaml (`kind: videohub`).
// A kind registers everything about itself here, so that adding one is a
// folder of its own under drivers/ and one line in drivers/builtin: the
// runtime, the scenarios, the tests and the CLI take what they need of it
// from the registry.
type Kind struct {
	Name    string
	Summary string
	New     func(cfg Config) (Driver, error)
	// Alive, when set, checks once that a device of this kind answers at
	// address (host, or host:port when it is not on the kind's default
	// port) and says why not in its error. It needs no driver of the site:
	// a device that is a member of the site, such as a switcher watched
	// for its own sake, is probed with it (probe: {<kind>: address}).
	Alive func(ctx context.Context, address string) error
	// Simulate, set for a video switcher kind (and only for one), starts a
	// simulator of the device that speaks its real protocol, listening on
	// addr (port 0: any free one) with size ports, and returns it with the
	// address it listens on. Scenarios (understudy simulate), the tests and
	// understudy switcher-sim use it.
	Simulate func(addr string, size Size) (sim SwitcherSim, listening string, err error)
}

// Registry maps kind names to kinds.
type Registry struct {
	kinds map[string]Kind
}

// NewRegistry returns a registry holding the given kinds.
func NewRegistry(kinds ...Kind) *Registry {
	r := &Registry{kinds: make(map[string]Kind, len(kinds))}
	for _, k := range kinds {
		r.kinds[k.Name] = k
	}
	return r
}

// Kinds returns the registered kind names, sorted.
func (r *Registry) Kinds() []string { return slices.Sorted(maps.Keys(r.kinds)) }

// Kind returns the kind of that name.
func (r *Registry) Kind(name string) (Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Switchers returns the names of the video switcher kinds (those with a
// simulator), sorted.
func (r *Registry) Switchers() []string {
	return r.names(func(k Kind) bool { return k.Simulate != nil })
}

// Probes returns the names of the kinds that can check a device's
// liveness (Alive), sorted.
func (r *Registry) Probes() []string {
	return r.names(func(k Kind) bool { return k.Alive != nil })
}

func (r *Registry) names(keep func(Kind) bool) []string {
	var out []string
	for _, name := range r.Kinds() {
		if keep(r.kinds[name]) {
			out = append(out, name)
		}
	}
	return out
}

// New builds a driver of the named kind from its configuration.
func (r *Registry) New(kind string, cfg Config) (Driver, error) {
	k, ok := r.kinds[kind]
	if !ok {
		return nil, fmt.Errorf("unknown driver kind %q (known: %v)", kind, r.Kinds())
	}
	d, err := k.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("driver %s (%s): %w", cfg.Name, kind, err)
	}
	return d, nil
}

// Controller is a driver that carries out control actions on a device or
// service that is not a switcher: a projector's power command over a line
// protocol, an HTTP request, an OSC message, a Wake-on-LAN packet, a program
// on this machine. The policy calls driver:send(args) (a command name or a
// table); the runtime checks the args at once (errors raise in Lua at the
// call site) and carries the action out on the driver's worker.
type Controller interface {
	Driver
	// Check validates args without acting (called on the policy's goroutine).
	Check(args map[string]any) error
	// Do carries out one action and returns its result as plain values
	// (strings, numbers, bools, maps, slices), or an error in the device's
	// words: wrap ErrNotConnected to be retried, ErrRefused (Refusal) not.
	Do(ctx context.Context, args map[string]any) (any, error)
}
