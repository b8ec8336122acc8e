// Package engine is an instance's event loop. One goroutine owns the member
// table, the Lua policy and the bookkeeping of actions; bus callbacks, driver
// events, timers and API requests only post work to it. On the coordinator
// the loop runs the policy and carries its decisions to the drivers; on every
// instance it keeps the member table.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/drivers"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/policy"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// Publisher sends messages on the bus.
type Publisher interface {
	Publish(topic string, qos byte, retained bool, payload []byte) error
}

// Options configure an Engine.
type Options struct {
	Site   *config.Site
	Self   string // this instance's member id
	Clock  clock.Clock
	Logger *slog.Logger
	// Publisher, when set, receives the coordinator's member states (retained)
	// and its record stream; nil publishes nothing.
	Publisher Publisher
	Drops     *bus.Drops // counts payloads from unknown members; may be nil
	// Coordinator makes this instance run the policy and the drivers.
	Coordinator bool
	Drivers     map[string]drivers.Driver
	// Online starts the member table as connected to the bus; a daemon
	// starts offline and reports the bus with BusConnected.
	Online bool
	// ActionTimeout bounds how long an action keeps retrying while its
	// device is unreachable (default 30s).
	ActionTimeout time.Duration
	// Observe, when set, sees every record on the loop goroutine (tests, the
	// simulator, a journal).
	Observe func(Record)
	// Store keeps the coordinator's epoch, actions, takeover state and named
	// timers across restarts, and an agent's received commands. Nil: a
	// throw-away store in a temporary folder (tests, checks).
	Store *store.Store
}

// Record is one entry of the coordinator's stream: a member event, a driver
// event, an action and its result, or a policy problem.
type Record struct {
	At     time.Time      `json:"at"`
	Type   string         `json:"type"`
	Member string         `json:"member,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`

	cause uint64 // the operator command it follows from (Engine.cause), 0 for none
}

// Engine is the loop.
type Engine struct {
	opts Options
	// heartbeats counts the heartbeats of other known members taken in.
	heartbeats atomic.Uint64
	site       *config.Site
	log        *slog.Logger
	clock      clock.Clock
	topics     bus.Topics
	queue      *queue
	table      *members.Table
	policy     *policy.Policy
	actions    *actions
	ctx        context.Context
	started    bool

	store    *store.Store
	ownStore string // temporary folder of a throw-away store
	takeover *takeover.Manager
	timers   *namedTimers
	broken   map[string]bool       // members whose material disks have all failed
	copies   map[string]CopyStatus // material copies in progress, by action id
	drills   map[string]*drill     // running fire drills, by member
	alarms   alarms                // raised alarms (coordinator)
	routing  routing               // the desired switcher routing (coordinator)
	captures []*capture            // CommandWait's collectors of records
	// cause is the operator command whose consequences the loop works on
	// now (0: none): set while a command is carried out, and carried to the
	// work it queues for itself (deliverOnce, dispatchLater), so that each
	// command's reply holds what followed from it and nothing else.
	cause     uint64
	causes    uint64 // the last cause given out
	published string // last takeover state published
	probeStop context.CancelFunc
	probeWG   *sync.WaitGroup

	policyLoaded time.Time
	policyError  string
	reloads      uint64
}

// New builds an engine; Start (or Run) brings it up.
func New(opts Options) (*Engine, error) {
	if opts.Site == nil {
		return nil, errors.New("engine: no site")
	}
	if _, ok := opts.Site.Member(opts.Self); !ok {
		return nil, fmt.Errorf("engine: %q is not a member of site %s (members: %v)", opts.Self, opts.Site.Name, opts.Site.MemberIDs())
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ActionTimeout <= 0 {
		opts.ActionTimeout = 30 * time.Second
	}
	e := &Engine{
		opts:   opts,
		site:   opts.Site,
		log:    opts.Logger,
		clock:  opts.Clock,
		topics: bus.Topics{Site: opts.Site.Name},
		queue:  newQueue(),
	}
	e.table = members.New(e.clock, e.Post, e.onMemberEvent, members.Options{
		StartupGrace: opts.Site.Heartbeat.StartupGrace.D(),
		Offline:      !opts.Online,
		Self:         opts.Self,
	})
	for _, m := range opts.Site.Members {
		if m.Probe != nil && !opts.Coordinator {
			continue // only the coordinator probes it; others would only see silence
		}
		e.table.Add(m.ID, m.Heartbeat.D(), m.LostAfter.D())
	}
	e.actions = newActions(e)
	e.timers = newNamedTimers(e)
	e.broken = map[string]bool{}
	e.copies = map[string]CopyStatus{}
	e.drills = map[string]*drill{}
	e.store = opts.Store
	if e.store == nil {
		dir, err := os.MkdirTemp("", "understudy-state-")
		if err != nil {
			return nil, fmt.Errorf("engine: temporary state: %w", err)
		}
		if e.store, err = store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true}); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		e.ownStore = dir
	}
	return e, nil
}

// Store returns the engine's state store.
func (e *Engine) Store() *store.Store { return e.store }

// Post queues f to run on the loop. Safe from any goroutine; never blocks.
func (e *Engine) Post(f func()) { e.queue.push(f) }

// Do runs f on the loop and waits for it, or for ctx.
func (e *Engine) Do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	e.Post(func() { f(); close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start brings the engine up on the calling goroutine, which from then on owns
// it (Run calls Start). It starts the member table, and on the coordinator
// the drivers and the policy; a policy that does not load is an error.
func (e *Engine) Start(ctx context.Context) error {
	if e.started {
		return errors.New("engine already started")
	}
	e.started = true
	e.ctx = ctx
	e.table.Start()
	if !e.opts.Coordinator {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(e.opts.Drivers)) {
		d := e.opts.Drivers[name]
		d.Start(ctx, func(ev drivers.Event) { e.Post(func() { e.onDriverEvent(name, ev) }) })
	}
	if err := e.startTakeover(); err != nil {
		return err
	}
	if err := e.restoreRouting(); err != nil {
		return fmt.Errorf("desired routing: %w", err)
	}
	if err := e.restoreDrills(); err != nil {
		return err
	}
	if err := e.restoreAlarms(); err != nil {
		return fmt.Errorf("alarms: %w", err)
	}
	e.actions.start(ctx)
	e.startProbes(ctx)
	if err := e.resumeActions(); err != nil {
		return err
	}
	if err := e.timers.restore(); err != nil {
		return err
	}
	defer e.redeliverInbox()
	if e.site.PolicyPath() == "" {
		e.log.Warn("site has no policy: events are recorded, nothing decides")
		return nil
	}
	p, err := e.loadPolicy()
	if err != nil {
		return err
	}
	e.installPolicy(p, false)
	return nil
}

// Run starts the engine and runs the loop until ctx ends, then stops the
// policy and the drivers.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	e.Loop(ctx)
	return nil
}

// Loop runs queued work until ctx ends, then stops the policy and the
// drivers. Call it on the goroutine that called Start.
func (e *Engine) Loop(ctx context.Context) {
	defer e.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.queue.ready:
			for _, f := range e.queue.take() {
				e.runSafely(f)
			}
		}
	}
}

// Wake is signalled when work is queued; a goroutine that drives the engine
// with RunPending waits on it.
func (e *Engine) Wake() <-chan struct{} { return e.queue.ready }

// RunPending runs the work queued so far (and work it queues) on the calling
// goroutine, which must own the engine. The simulator and tests use it with a
// virtual clock instead of Run.
func (e *Engine) RunPending() int {
	n := 0
	for e.queue.len() > 0 {
		for _, f := range e.queue.take() {
			e.runSafely(f)
			n++
		}
	}
	return n
}

// Stop closes the policy and the drivers. Call it on the owning goroutine.
func (e *Engine) Stop() {
	if e.policy != nil {
		e.policy.Close()
		e.policy = nil
	}
	e.stopProbes()
	e.actions.stop()
	e.timers.stop()
	e.stopRouting()
	if e.takeover != nil {
		e.takeover.Stop()
	}
	for _, name := range slices.Sorted(maps.Keys(e.opts.Drivers)) {
		if err := e.opts.Drivers[name].Close(); err != nil {
			e.log.Warn("closing driver", "driver", name, "error", err)
		}
	}
	e.closeOwnStore()
}

// closeOwnStore removes a throw-away store.
func (e *Engine) closeOwnStore() {
	if e.ownStore != "" {
		e.store.Close()
		os.RemoveAll(e.ownStore)
		e.ownStore = ""
	}
}

func (e *Engine) runSafely(f func()) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("internal error in the event loop (recovered; please report it)", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// Heartbeat feeds a decoded heartbeat to the member table. Any goroutine.
func (e *Engine) Heartbeat(hb bus.Heartbeat) {
	e.Post(func() {
		err := e.table.Heartbeat(members.Heartbeat{ID: hb.Member, Boot: hb.Boot, Conn: hb.Conn, Interval: hb.Interval()})
		if err == nil && hb.Member != e.opts.Self {
			e.heartbeats.Add(1)
		}
		if err != nil && e.opts.Drops != nil {
			e.opts.Drops.Drop(hb.Member, e.topics.Heartbeat(hb.Member), 0, fmt.Errorf("%w: %v", bus.ErrUnknownMember, err))
		}
	})
}

// HeartbeatsReceived is how many heartbeats of other members the loop has
// taken in since the start (not those dropped). Any goroutine.
func (e *Engine) HeartbeatsReceived() uint64 { return e.heartbeats.Load() }

// Presence feeds a decoded presence message to the member table; retained
// says the broker delivered it from storage. Any goroutine.
func (e *Engine) Presence(p bus.Presence, retained bool) {
	e.Post(func() {
		err := e.table.Presence(members.Presence{ID: p.Member, State: p.State, Boot: p.Boot, Conn: p.Conn, Retained: retained})
		e.log.Debug("presence", "member", p.Member, "state", p.State, "boot", p.Boot, "conn", p.Conn, "retained", retained, "result", err)
		switch {
		case err == nil:
		case !e.table.Known(p.Member):
			if e.opts.Drops != nil {
				e.opts.Drops.Drop(p.Member, e.topics.Presence(p.Member), 0, fmt.Errorf("%w: %v", bus.ErrUnknownMember, err))
			}
		default:
			e.log.Debug("presence ignored", "reason", err)
		}
	})
}

// Note adds a record made outside the loop (a dry-run drill's findings) to
// the stream: the observer, the journal, the events topic. It returns the
// record as stamped. Any goroutine.
func (e *Engine) Note(ctx context.Context, r Record) (Record, error) {
	err := e.Do(ctx, func() {
		r.At = e.clock.Now()
		e.record(r)
	})
	return r, err
}

// SiteCopy returns a copy of the site as the engine knows it (with the
// members that described themselves). Any goroutine.
func (e *Engine) SiteCopy(ctx context.Context) (*config.Site, error) {
	var s *config.Site
	err := e.Do(ctx, func() { s = e.site.Clone() })
	return s, err
}

// Emit hands an event of the given name to the policy (on the loop). Any
// goroutine.
func (e *Engine) Emit(name string, fields map[string]any) {
	e.Post(func() { e.dispatch(policy.Event{Name: name, At: e.clock.Now(), Fields: fields}) })
}

// BusConnected reports this instance's bus connection. Any goroutine. On
// (re)connect the coordinator publishes every member's state again, so that
// the retained topics are right whatever happened while it was away.
func (e *Engine) BusConnected(up bool) {
	e.Post(func() {
		e.table.SetConnected(up)
		if up && e.opts.Coordinator && e.opts.Publisher != nil {
			for _, m := range e.table.All() {
				e.publishState(m)
			}
			e.publishDrills()
			e.publishCopies()
			e.publishAlarms()
		}
	})
}

// Reload loads the policy files again; if they fail to load, the running
// policy stays and the error is reported with file:line. Any goroutine.
func (e *Engine) Reload() {
	e.Post(func() {
		if !e.opts.Coordinator || e.site.PolicyPath() == "" {
			return
		}
		p, err := e.loadPolicy()
		if err != nil {
			e.policyError = err.Error()
			e.log.Error("policy reload failed; the previous policy keeps running", "error", err)
			e.record(Record{Type: "policy_error", Fields: map[string]any{"error": err.Error(), "kept": "previous policy"}})
			return
		}
		e.installPolicy(p, true)
	})
}

func (e *Engine) loadPolicy() (*policy.Policy, error) {
	return policy.Load(policyEnv{e}, policy.Options{
		File:     e.site.PolicyPath(),
		Timeout:  e.site.Policy.HandlerTimeout.D(),
		Settings: e.site.Policy.Settings,
		Site:     e.site.Name,
		Self:     e.opts.Self,
		Logger:   e.log.With("component", "policy"),
	})
}

func (e *Engine) installPolicy(p *policy.Policy, reload bool) {
	if e.policy != nil {
		e.policy.Close()
		e.reloads++
	}
	e.policy = p
	e.policyLoaded = e.clock.Now()
	e.policyError = ""
	var handlers []string
	for _, h := range p.Handlers() {
		handlers = append(handlers, h.Event)
	}
	verb := "policy loaded"
	if reload {
		verb = "policy reloaded"
	}
	e.log.Info(verb, "file", e.site.PolicyPath(), "handlers", handlers)
	e.record(Record{Type: "policy_loaded", Fields: map[string]any{"file": e.site.PolicyPath(), "reload": reload}})
	e.dispatch(policy.Event{Name: "coordinator", At: e.clock.Now(), Fields: map[string]any{"reload": reload}})
}

// dispatchLater hands an event to the policy once the current work is done,
// so an event raised while a handler runs does not re-enter the policy.
func (e *Engine) dispatchLater(ev policy.Event) { e.postCaused(func() { e.dispatch(ev) }) }

// postCaused queues f for the loop as Post does, carrying the current cause
// to it. Call it on the loop.
func (e *Engine) postCaused(f func()) {
	cause := e.cause
	if cause == 0 {
		e.Post(f)
		return
	}
	e.Post(func() {
		prev := e.cause
		e.cause = cause
		defer func() { e.cause = prev }()
		f()
	})
}

// dispatch hands an event to the policy and reports handler failures.
func (e *Engine) dispatch(ev policy.Event) { e.dispatchWith(ev, nil) }

// dispatchWith hands an event to the policy; the actions its handlers ask
// for are recorded together with done (if any) when they return.
func (e *Engine) dispatchWith(ev policy.Event, done func(*store.Tx) error) {
	if e.policy == nil {
		if done != nil {
			if err := e.store.Update(done); err != nil {
				e.log.Error("state not written", "event", ev.Name, "error", err)
			}
		}
		return
	}
	e.actions.beginBatch()
	errs := e.policy.Dispatch(ev)
	e.actions.commitBatch(done)
	for _, err := range errs {
		e.log.Error("policy handler failed", "event", ev.Name, "error", err)
		e.record(Record{Type: "policy_error", Fields: map[string]any{"event": ev.Name, "error": err.Error()}})
	}
	if err := e.policy.Broken(); err != nil {
		e.log.Error("policy state is no longer trusted; loading it afresh", "error", err)
		e.policy.Close()
		e.policy = nil
		if p, lerr := e.loadPolicy(); lerr == nil {
			e.installPolicy(p, true)
		} else {
			e.log.Error("policy reload after a fault failed: no policy is running", "error", lerr)
		}
	}
}

func (e *Engine) onMemberEvent(ev members.Event) {
	switch ev.Kind {
	case members.EventBusSilent:
		e.log.Warn("this instance cannot hear its own heartbeats: the bus is silent, so nobody is judged lost meanwhile", "silence", ev.Silence)
		e.record(Record{At: ev.At, Type: ev.Kind, Member: ev.Member.ID, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
		e.dispatch(policy.Event{Name: ev.Kind, At: ev.At, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
		return
	case members.EventBusHeard:
		e.log.Info("this instance hears itself on the bus again", "after", ev.Silence)
		e.record(Record{At: ev.At, Type: ev.Kind, Member: ev.Member.ID, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
		e.dispatch(policy.Event{Name: ev.Kind, At: ev.At, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
		return
	}
	level := slog.LevelInfo
	if ev.Kind == members.EventLost {
		level = slog.LevelWarn
	}
	e.log.Log(context.Background(), level, "member "+string(ev.Member.State), "member", ev.Member.ID, "event", ev.Kind, "reason", ev.Member.Reason)
	fields := map[string]any{"state": string(ev.Member.State), "previous": string(ev.Previous), "reason": ev.Member.Reason}
	if ev.Silence > 0 {
		fields["silence_ms"] = ev.Silence.Milliseconds()
	}
	e.record(Record{At: ev.At, Type: ev.Kind, Member: ev.Member.ID, Fields: e.drillFields(ev.Member.ID, fields)})
	if e.opts.Coordinator && e.opts.Publisher != nil {
		e.publishState(ev.Member)
	}
	if e.takeover != nil {
		e.takeover.MemberChanged(ev.Member.ID)
		e.publishTakeover()
	}
	m := e.policyMember(ev.Member.ID)
	e.dispatch(policy.Event{Name: ev.Kind, At: ev.At, Member: &m, Fields: e.drillFields(m.ID, map[string]any{"reason": ev.Member.Reason, "previous": string(ev.Previous)})})
	if e.opts.Coordinator && (ev.Kind == members.EventSeen || ev.Kind == members.EventRestored) && ev.Member.State == members.Alive {
		e.assertMember(ev.Member.ID) // outputs with no desired route yet: its own inputs, or its standby's
	}
}

func (e *Engine) publishState(m members.Member) {
	cm, _ := e.site.Member(m.ID)
	state := map[string]any{
		"member": m.ID, "state": e.stateOf(m.ID), "since": m.Since, "reason": m.Reason,
		"roles": cm.Roles, "usage": cm.Usage, "standby": cm.Standby,
	}
	if e.takeover != nil {
		if c, ok := e.takeover.Covered(m.ID); ok {
			state["covered_by"] = c.Standby
			state["coverage_phase"] = c.Phase
			if left, ok := e.takeover.GraceRemaining(m.ID); ok {
				state["grace_remaining_s"] = left.Seconds()
				state["grace_until"] = c.GraceUntil
			}
		}
		if covers := e.takeover.Covering(m.ID); len(covers) > 0 {
			state["covering"] = covers
		}
	}
	if d, ok := e.drills[m.ID]; ok {
		state["drill"] = d.Fault
		state["drill_until"] = d.Until
	}
	payload, _ := json.Marshal(state)
	if err := e.opts.Publisher.Publish(e.topics.State(m.ID), 1, true, payload); err != nil {
		e.log.Debug("state not published", "member", m.ID, "error", err)
	}
}

func (e *Engine) onDriverEvent(name string, ev drivers.Event) {
	fields := map[string]any{"driver": name}
	for k, v := range ev.Fields {
		fields[k] = v
	}
	switch ev.Name {
	case drivers.EventDisconnected:
		e.log.Warn("driver disconnected", "driver", name, "error", ev.Fields["error"])
	case drivers.EventConnected:
		e.log.Info("driver connected", "driver", name, "address", ev.Fields["address"])
	}
	e.record(Record{Type: ev.Name, Fields: fields})
	e.dispatch(policy.Event{Name: ev.Name, At: e.clock.Now(), Fields: fields})
	// Then the routing read back is compared with the desired routing.
	switch ev.Name {
	case drivers.EventConnected:
		e.routingConnected(name)
	case drivers.EventRouteChanged:
		out, ok1 := ev.Fields["output"].(int)
		in, ok2 := ev.Fields["input"].(int)
		if ok1 && ok2 {
			e.routingChanged(name, out, in)
		}
	}
}

// record stamps a record, shows it to the observer and publishes it.
func (e *Engine) record(r Record) {
	if r.At.IsZero() {
		r.At = e.clock.Now()
	}
	if e.opts.Observe != nil {
		e.opts.Observe(r)
	}
	if r.cause == 0 {
		r.cause = e.cause
	}
	for _, c := range e.captures {
		if r.cause != 0 && c.cause == r.cause {
			c.records = append(c.records, r)
		}
	}
	if e.opts.Coordinator && e.opts.Publisher != nil {
		payload, err := json.Marshal(r)
		if err == nil {
			if err := e.opts.Publisher.Publish(e.topics.Events(), 1, false, payload); err != nil {
				e.log.Debug("record not published", "type", r.Type, "error", err)
			}
		}
	}
}

func (e *Engine) policyMember(id string) policy.Member {
	cm, _ := e.site.Member(id)
	lm, _ := e.table.Get(id)
	m := policy.Member{
		ID: id, State: e.stateOf(id), Since: lm.Since, Reason: lm.Reason,
		Roles: cm.Roles, Usage: cm.Usage, Priority: cm.Priority, Standby: cm.Standby,
		Self: id == e.opts.Self, Duties: dutiesOf(cm),
		Pool: cm.Pool, Capacity: cm.Capacity, DiskLayout: cm.DiskLayout,
		Capabilities: cm.Capabilities, Requires: cm.Requires, Failover: settingsOf(cm.Settings),
	}
	if e.broken[id] {
		m.Reason = "all material disks failed"
	}
	if e.takeover != nil {
		if c, ok := e.takeover.Covered(id); ok {
			m.CoveredBy = c.Standby
		}
	}
	return m
}

// memberEvent is a policy event about member (none when it is "" or not a
// member the table knows): the member as it is now goes with it.
func (e *Engine) memberEvent(name string, at time.Time, member string, fields map[string]any) policy.Event {
	ev := policy.Event{Name: name, At: at, Fields: fields}
	if member != "" && e.table.Known(member) {
		m := e.policyMember(member)
		ev.Member = &m
	}
	return ev
}

// stateOf is a member's state as the policy sees it: the member table's,
// except that an alive member whose material disks all failed is broken.
func (e *Engine) stateOf(id string) string {
	lm, _ := e.table.Get(id)
	if e.broken[id] && (lm.State == members.Alive || lm.State == members.Suspect) {
		return "broken"
	}
	return string(lm.State)
}

// CheckPolicy loads the site's policy the way the coordinator would, on a
// virtual clock and with the drivers built but not connected, and returns its
// handlers. Errors name file:line.
func CheckPolicy(site *config.Site, drvs map[string]drivers.Driver) ([]policy.HandlerCount, error) {
	if site.PolicyPath() == "" {
		return nil, nil
	}
	e, err := New(Options{Site: site, Self: site.Coordinator, Clock: clock.NewVirtual(time.Now()), Coordinator: true, Drivers: drvs, Online: true})
	if err != nil {
		return nil, err
	}
	defer e.closeOwnStore()
	p, err := e.loadPolicy()
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Handlers(), nil
}

// Action is an action record in words: what it does, without why. A
// driver's action names the driver (route router output 1 ← input 3); a
// hook an instance runs names the hook and the member whose instance runs
// it, and the member it is for (takeover on backup for main, run reroute on
// backup).
func (r Record) Action() string {
	f := r.Fields
	switch {
	case f["driver"] != nil && f["verb"] == "route":
		return fmt.Sprintf("route %v output %v ← input %v", f["driver"], f["output"], f["input"])
	case f["driver"] != nil:
		return fmt.Sprintf("%v send %v", f["driver"], f["args"])
	case f["member"] != nil:
		return fmt.Sprintf("%v on %v for %v", f["verb"], f["target"], f["member"])
	}
	return fmt.Sprintf("run %v on %v", f["verb"], f["target"])
}

// Summary is the fields that tell a record's story briefly, in parentheses
// ("" when it has none of them).
func (r Record) Summary() string {
	var parts []string
	for _, k := range []string{"kind", "message", "standby", "from", "reason", "cause", "error", "step"} {
		if v, ok := r.Fields[k]; ok && fmt.Sprint(v) != "" {
			parts = append(parts, fmt.Sprintf("%s: %v", k, v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}
