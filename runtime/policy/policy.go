// Package policy hosts an installer's Lua policy: a sandboxed gopher-lua state
// that registers handlers for site events (us.on), sets timers on the
// runtime's Clock (us.after, us.every, us.cron) and acts through drivers
// (us.driver). See api.go for the `understudy` module.
//
// A Policy is owned by one goroutine (the runtime's event loop): Load,
// Dispatch and Close are called only there, and timer callbacks return there
// through Env.Post. Every call into Lua runs with a deadline and under
// recover(); a handler that errors or runs too long is reported and counted,
// and the other handlers and the daemon go on.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/metrics"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"understudy/drivers"
	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/takeover"
)

// Member is a site member as the policy sees it: liveness from the member
// table, the rest from site.yaml.
type Member struct {
	ID       string
	State    string
	Since    time.Time
	Reason   string
	Roles    []string
	Usage    []string
	Priority int
	Standby  bool
	Self     bool
	Duties   map[string]any

	Pool         string
	Capacity     int
	DiskLayout   string
	Capabilities []string
	Requires     []string
	Failover     map[string]any // the member's failover settings
	CoveredBy    string         // the standby covering it, if any
}

// Event is what a handler receives as its argument.
type Event struct {
	Name   string
	At     time.Time
	Member *Member
	Fields map[string]any
}

// Env connects a policy to the runtime. Its methods are called only on the
// goroutine that owns the policy.
type Env interface {
	Clock() clock.Clock
	// Post runs f later on the goroutine that owns the policy.
	Post(f func())
	Location() *time.Location
	Member(id string) (Member, bool)
	Members() []Member
	Driver(name string) (drivers.Driver, bool)
	DriverNames() []string
	// Route asks the runtime to route output from input on a router driver and
	// returns the action's id; the result comes back as an action_done or
	// action_failed event. cause says which event and policy line asked.
	Route(driver string, output, input int, cause string) (string, error)
	// KeepRoute accepts the input the device shows on output of a router
	// driver as the route the coordinator wants there, so that the runtime
	// does not put its own back, and returns that input.
	KeepRoute(driver string, output int, cause string) (int, error)
	// Send asks the runtime to carry out a control action on a controller
	// driver and returns the action's id (result: action_done/action_failed).
	Send(driver string, args map[string]any, cause string) (string, error)
	Publish(topic string, payload []byte, retained bool) error

	// SetTimer records a named timer that fires the event "timer:NAME" with
	// args at due, surviving restarts and reloads; it returns the timer's id.
	SetTimer(name string, args map[string]any, due time.Time, where string) (string, error)
	// CancelTimers cancels the named timers called name whose args contain match.
	CancelTimers(name string, match map[string]any) int
	// CancelTimer cancels one named timer by id.
	CancelTimer(id string) bool
	// Timers lists the named timers (all, or those called name), by deadline.
	Timers(name string) []TimerInfo
	// Takeovers is the coordinator's takeover bookkeeping.
	Takeovers() Takeovers
	// RunHook asks a member's instance to run one of its named hooks and
	// returns the action's id.
	RunHook(target, name string, args map[string]any, cause string) (string, error)
	// CopyMissing starts a material copy and returns the copy action's id.
	CopyMissing(takeover.CopyRequest) (string, error)
	// RaiseAlarm raises the policy's alarm of kind (for member, if any) and
	// returns its key; ClearAlarm ends it; Alarms lists every raised alarm.
	RaiseAlarm(kind, member, message, severity string, fields map[string]any) (string, error)
	ClearAlarm(kind, member string) bool
	Alarms() []AlarmInfo
	// StateGet, StateSet and StateKeys are us.state: JSON values by key in
	// the coordinator's state; StateSet with a nil value removes the key.
	StateGet(key string) ([]byte, bool, error)
	StateSet(key string, value []byte) error
	StateKeys() []string
}

// TimerInfo is a pending named timer.
type TimerInfo struct {
	ID   string
	Name string
	Args map[string]any
	Due  time.Time
}

// Takeovers is what the policy can ask of the takeover bookkeeping
// (runtime/takeover.Manager).
type Takeovers interface {
	Takeover(takeover.Request) (takeover.Outcome, error)
	Enqueue(takeover.Request) (takeover.Outcome, error)
	Failback(member, reason string) (takeover.Outcome, error)
	Pick(pool, member string, exclude ...string) (string, bool)
	Covered(member string) (takeover.Coverage, bool)
	Coverage() []takeover.Coverage
	Covering(standby string) []string
	Queue() []takeover.Queued
	Proposals() []takeover.Proposal
	Confirm(id, by string) error
	Reject(id, by string) error
	Mode() string
	SetMode(mode, by string) error
	GraceRemaining(member string) (time.Duration, bool)
}

// Options configure a policy.
type Options struct {
	File    string        // the policy's main file; require looks in its folder
	Timeout time.Duration // deadline of every call into Lua (default 1s)
	// MemoryLimit bounds what the Lua state may hold between calls and how
	// much one call may grow the heap (default DefaultMemoryLimit).
	MemoryLimit int64
	Settings    map[string]any
	Site        string
	Self        string
	Logger      *slog.Logger
}

// Stats counts what happened in the policy.
type Stats struct {
	Calls    uint64 // handler and timer calls
	Errors   uint64 // calls that raised an error
	Timeouts uint64 // calls stopped at the deadline
	// MemoryStops counts calls stopped over the memory limit (the runtime
	// then loads the policy afresh, with new counters).
	MemoryStops uint64
	// Suppressed counts error lines not logged because the same handler
	// failed less than ErrorLogEvery before.
	Suppressed uint64
}

// Policy is a loaded policy.
type Policy struct {
	opts       Options
	env        Env
	log        *slog.Logger
	L          *lua.LState
	dir        string
	module     *lua.LTable
	timerMeta  *lua.LTable
	memberMeta *lua.LTable
	handlers   map[string][]handler
	order      []string // event names in order of first registration
	timers     map[int]*timer
	nextID     int
	loaded     map[string]lua.LValue
	loading    map[string]bool
	current    string // the event being handled, for action causes
	stats      Stats
	closed     bool
	broken     error  // set when Go code called from Lua panicked or the policy went over its memory limit; the state is not trusted after that
	main       string // the main file, cleaned: require refuses it

	heldAt     time.Time // when checkHeld last looked
	heapFloor  int64     // the heap when the policy was last found in order
	heapSample []metrics.Sample
	errLog     map[string]*errorLog // per handler: when its error was last logged
	watch      *watchdog
}

type handler struct {
	fn    *lua.LFunction
	where string // file:line where the handler function is defined
}

// HandlerError is a failed call into the policy.
type HandlerError struct {
	Event   string // event name, or "timer" / "load"
	Where   string // file:line of the handler that failed
	Timeout time.Duration
	Err     error
}

func (e *HandlerError) Error() string {
	if e.Timeout > 0 {
		return fmt.Sprintf("handler for %s (%s) ran longer than %v and was stopped", e.Event, e.Where, e.Timeout)
	}
	return fmt.Sprintf("handler for %s (%s): %v", e.Event, e.Where, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

// Load compiles and runs the policy's main file in a fresh sandbox. The file's
// top level registers handlers and timers. Errors name file:line.
func Load(env Env, opts Options) (*Policy, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.MemoryLimit <= 0 {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Policy{
		opts:     opts,
		env:      env,
		log:      opts.Logger,
		dir:      filepath.Dir(opts.File),
		handlers: map[string][]handler{},
		timers:   map[int]*timer{},
		loaded:   map[string]lua.LValue{},
		loading:  map[string]bool{},
		main:     mainPath(opts.File),
		errLog:   map[string]*errorLog{},
		watch:    newWatchdog(opts.MemoryLimit),
	}
	p.L = newSandbox(p)
	p.module = p.loader(p.L)

	src, err := os.ReadFile(opts.File)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("policy: %w", err)
	}
	fn, err := p.L.Load(strings.NewReader(string(src)), opts.File)
	if err != nil {
		p.Close()
		return nil, errors.New(luaErrorText(err))
	}
	p.current = "load"
	err = p.call(fn, "load", opts.File)
	p.current = ""
	if err != nil {
		p.Close()
		var he *HandlerError
		if errors.As(err, &he) && he.Timeout > 0 {
			return nil, fmt.Errorf("%s: loading the policy ran longer than %v and was stopped", opts.File, he.Timeout)
		}
		return nil, errors.Unwrap(err)
	}
	return p, nil
}

// Handlers returns the number of handlers per event name, in registration order.
func (p *Policy) Handlers() []HandlerCount {
	out := make([]HandlerCount, 0, len(p.order))
	for _, name := range p.order {
		out = append(out, HandlerCount{Event: name, Count: len(p.handlers[name])})
	}
	return out
}

// Handles reports whether Dispatch would run any handler for an event of
// this name (its own or a catch-all "*").
func (p *Policy) Handles(name string) bool {
	return !p.closed && len(p.handlers[name])+len(p.handlers[events.CatchAll]) > 0
}

// HandlerCount is how many handlers an event has.
type HandlerCount struct {
	Event string
	Count int
}

// Stats returns the counters.
func (p *Policy) Stats() Stats { return p.stats }

// Broken reports whether Go code called from the policy panicked, or the
// policy went over its memory limit (a *MemoryError), after which the
// runtime should load the policy afresh.
func (p *Policy) Broken() error { return p.broken }

// Dispatch runs the handlers registered for ev.Name, then those for "*", each
// in its own protected call. It returns the errors of those that failed.
func (p *Policy) Dispatch(ev Event) []error {
	if p.closed {
		return nil
	}
	hs := append(append([]handler(nil), p.handlers[ev.Name]...), p.handlers[events.CatchAll]...)
	if len(hs) == 0 {
		return nil
	}
	arg := p.eventTable(ev)
	var errs []error
	prev := p.current
	p.current = ev.Name
	defer func() { p.current = prev }()
	for _, h := range hs {
		if p.closed || p.broken != nil {
			break
		}
		if err := p.call(h.fn, ev.Name, h.where, arg); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Close cancels the policy's timers and closes its Lua state.
func (p *Policy) Close() {
	if p.closed {
		return
	}
	p.closed = true
	p.watch.close()
	for id, t := range p.timers {
		t.stop()
		delete(p.timers, id)
	}
	p.L.Close()
}

// call runs fn with the deadline and the memory watchdog, recovering from
// panics in Go code it calls.
func (p *Policy) call(fn *lua.LFunction, event, where string, args ...lua.LValue) (err error) {
	if p.broken != nil {
		return &HandlerError{Event: event, Where: where, Err: p.broken}
	}
	start := time.Now()
	ctx := p.watch.begin(start, p.opts.Timeout)
	p.L.SetContext(ctx)
	defer func() {
		p.watch.end()
		p.L.RemoveContext()
		p.L.SetTop(0)
		if r := recover(); r != nil {
			p.broken = fmt.Errorf("panic in Go code called from the policy: %v", r)
			err = &HandlerError{Event: event, Where: where, Err: p.broken}
		}
		if err != nil && event != "load" {
			p.stats.Errors++
		}
		if p.broken == nil {
			p.checkHeld(start)
		}
	}()
	if event != "load" {
		p.stats.Calls++
	}
	callErr := p.L.CallByParam(lua.P{Fn: fn, NRet: 0, Protect: true}, args...)
	if callErr == nil {
		return nil
	}
	if ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), ErrMemoryLimit) {
			p.stats.MemoryStops++
			p.broken = &MemoryError{Where: where, Limit: p.opts.MemoryLimit, Size: p.watch.end(), InCall: true}
			return &HandlerError{Event: event, Where: where, Err: p.broken}
		}
		if event != "load" {
			p.stats.Timeouts++
		}
		return &HandlerError{Event: event, Where: where, Timeout: p.opts.Timeout, Err: ctx.Err()}
	}
	return &HandlerError{Event: event, Where: where, Err: errors.New(luaErrorText(callErr))}
}

var syntaxRe = regexp.MustCompile(`^(.*) line:(\d+)\(column:(\d+)\) near '(.*)':\s+(.*?)\s*$`)

// luaErrorText turns a gopher-lua error into "file:line: message" without the
// stack trace.
func luaErrorText(err error) string {
	var ae *lua.ApiError
	msg := err.Error()
	if errors.As(err, &ae) {
		if ae.Object != nil {
			msg = ae.Object.String()
			if t, ok := ae.Object.(*lua.LTable); ok {
				msg = "error object " + tableString(t)
			}
		}
		if ae.Type == lua.ApiErrorSyntax {
			first, _, _ := strings.Cut(msg, "\n")
			if m := syntaxRe.FindStringSubmatch(first); m != nil {
				return fmt.Sprintf("%s:%s:%s: %s near '%s'", m[1], m[2], m[3], m[5], m[4])
			}
		}
	}
	msg, _, _ = strings.Cut(msg, "\nstack traceback:")
	return strings.TrimSpace(msg)
}

func tableString(t *lua.LTable) string {
	var parts []string
	t.ForEach(func(k, v lua.LValue) {
		if len(parts) < 8 {
			parts = append(parts, k.String()+"="+v.String())
		}
	})
	return "{" + strings.Join(parts, ", ") + "}"
}

// mainPath is the policy's main file as require compares it.
func mainPath(file string) string {
	if abs, err := filepath.Abs(file); err == nil {
		return abs
	}
	return filepath.Clean(file)
}

// where returns "file:line" of a Lua function's definition.
func where(fn *lua.LFunction) string {
	if fn.Proto == nil {
		return "Go function"
	}
	return fmt.Sprintf("%s:%d", fn.Proto.SourceName, fn.Proto.LineDefined)
}
