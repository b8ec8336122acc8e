// Package coordinator decides for the site. It is the engine's Coordinator:
// the Lua policy host, the drivers and the actions carried out on them and
// by members' instances, the takeover bookkeeping (coverage, queue,
// failback), named timers and the inbox of events the policy must see
// exactly once, fire drills, material copies, configuration versions, the
// desired switcher routing, probes and alarms. The instance that coordinates
// builds one and hands it to its loop (engine.Options.Coordinator); the loop
// calls it on its own goroutine only, and it reaches the member table, the
// site and the record stream through the loop.
package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/drivers"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/policy"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// Publisher sends messages on the bus.
type Publisher interface {
	Publish(topic string, qos byte, retained bool, payload []byte) error
}

// Options configure a Coordinator.
type Options struct {
	// Publisher receives the member states (retained), the record stream,
	// the commands to members and the retained takeover, copies, drill and
	// alarms topics; nil publishes nothing.
	Publisher Publisher
	Drivers   map[string]drivers.Driver
	// ActionTimeout bounds how long an action keeps retrying while its
	// device is unreachable (default 30s).
	ActionTimeout time.Duration
	// Store keeps the epoch, actions, takeover state, named timers, the
	// inbox, drills, alarms and the desired routing across restarts. Nil: a
	// throw-away store in a temporary folder (tests, checks).
	Store *store.Store

	// Filled in by Start from the loop.
	Self  string
	Drops *bus.Drops
}

// Coordinator is what decides for the site (see the package doc). Build it
// with New; the loop starts it.
type Coordinator struct {
	opts   Options
	loop   *engine.Engine
	site   *config.Site
	log    *slog.Logger
	clock  clock.Clock
	topics bus.Topics
	table  *members.Table
	ctx    context.Context

	policy   *policy.Policy
	actions  *actions
	store    *store.Store
	ownStore string // temporary folder of a throw-away store
	takeover *takeover.Manager
	timers   *namedTimers
	broken   map[string]bool              // members whose material disks have all failed
	copies   map[string]engine.CopyStatus // material copies in progress, by action id
	drills   map[string]*drill            // running fire drills, by member
	alarms   alarms                       // raised alarms
	routing  routing                      // the desired switcher routing
	captures []*capture                   // CommandWait's collectors of records
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

var _ engine.Coordinator = (*Coordinator)(nil)

// New builds a coordinator; the loop it is handed to starts it.
func New(opts Options) (*Coordinator, error) {
	if opts.ActionTimeout <= 0 {
		opts.ActionTimeout = 30 * time.Second
	}
	e := &Coordinator{opts: opts}
	e.actions = newActions(e)
	e.timers = newNamedTimers(e)
	e.broken = map[string]bool{}
	e.copies = map[string]engine.CopyStatus{}
	e.drills = map[string]*drill{}
	e.store = opts.Store
	if e.store == nil {
		dir, err := os.MkdirTemp("", "understudy-state-")
		if err != nil {
			return nil, fmt.Errorf("coordinator: temporary state: %w", err)
		}
		if e.store, err = store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true}); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		e.ownStore = dir
	}
	return e, nil
}

// Attach takes what it needs of the loop it belongs to (engine.Coordinator;
// engine.New calls it). The members it probes join the table.
func (e *Coordinator) Attach(loop *engine.Engine) {
	e.loop = loop
	e.site = loop.Site()
	e.log = loop.Logger()
	e.clock = loop.Clock()
	e.topics = bus.Topics{Site: e.site.Name}
	e.table = loop.Table()
	e.opts.Self = loop.Self()
	e.opts.Drops = loop.Drops()
	for _, m := range e.site.Members {
		if m.Probe != nil {
			e.table.Add(m.ID, m.Heartbeat.D(), m.LostAfter.D())
		}
	}
}

// Store returns the coordinator's state store.
func (e *Coordinator) Store() *store.Store { return e.store }

// Post queues f to run on the loop. Safe from any goroutine.
func (e *Coordinator) Post(f func()) { e.loop.Post(f) }

// Do runs f on the loop and waits for it, or for ctx.
func (e *Coordinator) Do(ctx context.Context, f func()) error { return e.loop.Do(ctx, f) }

// record adds a record to the loop's stream (on the loop).
func (e *Coordinator) record(r engine.Record) { e.loop.Record(r) }

// Start brings the coordinator up on the loop: the drivers connect, the
// state is restored, the policy loads; a policy that does not load is an
// error.
func (e *Coordinator) Start(ctx context.Context) error {
	e.ctx = ctx
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

// Stop closes the policy and the drivers. Call it on the loop.
func (e *Coordinator) Stop() {
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
func (e *Coordinator) closeOwnStore() {
	if e.ownStore != "" {
		e.store.Close()
		os.RemoveAll(e.ownStore)
		e.ownStore = ""
	}
}

// Emit hands an event of the given name to the policy (on the loop). Any
// goroutine.
func (e *Coordinator) Emit(name string, fields map[string]any) {
	e.Post(func() { e.dispatch(policy.Event{Name: name, At: e.clock.Now(), Fields: fields}) })
}

// BusConnected follows the bus connection (on the loop): on (re)connect it
// publishes every member's state and its retained topics again, so that
// they are right whatever happened while it was away.
func (e *Coordinator) BusConnected(up bool) {
	if !up || e.opts.Publisher == nil {
		return
	}
	for _, m := range e.table.All() {
		e.publishState(m)
	}
	e.publishDrills()
	e.publishCopies()
	e.publishAlarms()
}

// Described follows a member that described itself (on the loop).
func (e *Coordinator) Described(id string) {
	if e.opts.Publisher == nil {
		return
	}
	if lm, ok := e.table.Get(id); ok {
		e.publishState(lm)
	}
}

// Reload loads the policy files again; if they fail to load, the running
// policy stays and the error is reported with file:line. Any goroutine.
func (e *Coordinator) Reload() {
	e.Post(func() {
		if e.site.PolicyPath() == "" {
			return
		}
		p, err := e.loadPolicy()
		if err != nil {
			e.policyError = err.Error()
			e.log.Error("policy reload failed; the previous policy keeps running", "error", err)
			e.record(engine.Record{Type: "policy_error", Fields: map[string]any{"error": err.Error(), "kept": "previous policy"}})
			return
		}
		e.installPolicy(p, true)
	})
}

func (e *Coordinator) loadPolicy() (*policy.Policy, error) {
	return policy.Load(policyEnv{e}, policy.Options{
		File:     e.site.PolicyPath(),
		Timeout:  e.site.Policy.HandlerTimeout.D(),
		Settings: e.site.Policy.Settings,
		Site:     e.site.Name,
		Self:     e.opts.Self,
		Logger:   e.log.With("component", "policy"),
	})
}

func (e *Coordinator) installPolicy(p *policy.Policy, reload bool) {
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
	e.record(engine.Record{Type: "policy_loaded", Fields: map[string]any{"file": e.site.PolicyPath(), "reload": reload}})
	e.dispatch(policy.Event{Name: "coordinator", At: e.clock.Now(), Fields: map[string]any{"reload": reload}})
}

// dispatchLater hands an event to the policy once the current work is done,
// so an event raised while a handler runs does not re-enter the policy.
func (e *Coordinator) dispatchLater(ev policy.Event) { e.postCaused(func() { e.dispatch(ev) }) }

// postCaused queues f for the loop as Post does, carrying the current cause
// to it. Call it on the loop.
func (e *Coordinator) postCaused(f func()) {
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
func (e *Coordinator) dispatch(ev policy.Event) { e.dispatchWith(ev, nil) }

// dispatchWith hands an event to the policy; the actions its handlers ask
// for are recorded together with done (if any) when they return.
func (e *Coordinator) dispatchWith(ev policy.Event, done func(*store.Tx) error) {
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
		e.record(engine.Record{Type: "policy_error", Fields: map[string]any{"event": ev.Name, "error": err.Error()}})
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

// MemberEvent follows a change in the member table (on the loop): the
// record, the retained state, the takeover bookkeeping, the policy, and
// the site's routing for a member seen alive.
func (e *Coordinator) MemberEvent(ev members.Event) {
	switch ev.Kind {
	case members.EventBusSilent, members.EventBusHeard:
		e.dispatch(policy.Event{Name: ev.Kind, At: ev.At, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
		return
	}
	fields := map[string]any{"state": string(ev.Member.State), "previous": string(ev.Previous), "reason": ev.Member.Reason}
	if ev.Silence > 0 {
		fields["silence_ms"] = ev.Silence.Milliseconds()
	}
	e.record(engine.Record{At: ev.At, Type: ev.Kind, Member: ev.Member.ID, Fields: e.drillFields(ev.Member.ID, fields)})
	if e.opts.Publisher != nil {
		e.publishState(ev.Member)
	}
	if e.takeover != nil {
		e.takeover.MemberChanged(ev.Member.ID)
		e.publishTakeover()
	}
	m := e.policyMember(ev.Member.ID)
	e.dispatch(policy.Event{Name: ev.Kind, At: ev.At, Member: &m, Fields: e.drillFields(m.ID, map[string]any{"reason": ev.Member.Reason, "previous": string(ev.Previous)})})
	if (ev.Kind == members.EventSeen || ev.Kind == members.EventRestored) && ev.Member.State == members.Alive {
		e.assertMember(ev.Member.ID) // outputs with no desired route yet: its own inputs, or its standby's
	}
}

func (e *Coordinator) publishState(m members.Member) {
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

func (e *Coordinator) onDriverEvent(name string, ev drivers.Event) {
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
	e.record(engine.Record{Type: ev.Name, Fields: fields})
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

// Record sees every record of the loop (engine.Coordinator): it stamps the
// command it follows from, hands it to the commands waiting for theirs, and
// publishes it on the events topic.
func (e *Coordinator) Record(r *engine.Record) {
	if r.Cause == 0 {
		r.Cause = e.cause
	}
	for _, c := range e.captures {
		if r.Cause != 0 && c.cause == r.Cause {
			c.records = append(c.records, *r)
		}
	}
	if e.opts.Publisher != nil {
		payload, err := json.Marshal(r)
		if err == nil {
			if err := e.opts.Publisher.Publish(e.topics.Events(), 1, false, payload); err != nil {
				e.log.Debug("record not published", "type", r.Type, "error", err)
			}
		}
	}
}

func (e *Coordinator) policyMember(id string) policy.Member {
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
func (e *Coordinator) memberEvent(name string, at time.Time, member string, fields map[string]any) policy.Event {
	ev := policy.Event{Name: name, At: at, Fields: fields}
	if member != "" && e.table.Known(member) {
		m := e.policyMember(member)
		ev.Member = &m
	}
	return ev
}

// MemberState is a member's state as the site sees it (engine.Coordinator):
// the member table's, except that an alive member whose material disks all
// failed is broken.
func (e *Coordinator) MemberState(id string, state members.State) string {
	if e.broken[id] && (state == members.Alive || state == members.Suspect) {
		return "broken"
	}
	return string(state)
}

// stateOf is a member's state as the policy sees it.
func (e *Coordinator) stateOf(id string) string {
	lm, _ := e.table.Get(id)
	return e.MemberState(id, lm.State)
}

// CheckPolicy loads the site's policy the way the coordinator would, on a
// virtual clock and with the drivers built but not connected, and returns its
// handlers. Errors name file:line.
func CheckPolicy(site *config.Site, drvs map[string]drivers.Driver) ([]policy.HandlerCount, error) {
	if site.PolicyPath() == "" {
		return nil, nil
	}
	c, err := New(Options{Drivers: drvs})
	if err != nil {
		return nil, err
	}
	defer c.closeOwnStore()
	if _, err := engine.New(engine.Options{Site: site, Self: site.Coordinator, Clock: clock.NewVirtual(time.Now()), Online: true, Coordinator: c}); err != nil {
		return nil, err
	}
	p, err := c.loadPolicy()
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Handlers(), nil
}
