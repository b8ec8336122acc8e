// Package coordinator decides for the site. It is the engine's Coordinator:
// the Lua policy host, the drivers and the actions carried out on them and
// by members' instances, the takeover bookkeeping (coverage, queue,
// failback), named timers and the inbox of events the policy must see
// exactly once, the quarantine of poison events, fire drills, material
// copies, configuration versions, the desired switcher routing, probes and
// alarms. The instance that coordinates builds one and hands it to its loop
// (engine.Options.Coordinator); the loop calls it on its own goroutine only,
// and it reaches the member table, the site and the record stream through
// the loop.
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
	"understudy/events"
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
	// Registry is where a probe by driver kind (probe: {videohub: host})
	// finds the kind's liveness check; nil: such probes are not started.
	Registry *drivers.Registry
	// ActionTimeout bounds how long an action keeps retrying while its
	// device is unreachable (default 30s).
	ActionTimeout time.Duration
	// Store keeps the epoch, actions, takeover state, named timers, the
	// inbox, drills, alarms and the desired routing across restarts. Nil: a
	// throw-away store in a temporary folder (tests, checks).
	Store *store.Store
	// MayAct, when set, is asked before every write to a device — every
	// attempt and every retry — and before every command to a member: an
	// error holds the write (the elected coordinator's lease: a leader that
	// cannot be sure it still leads writes nothing). Nil: always.
	MayAct func() error
	// Term is the election term this coordinator was elected in (0: the
	// coordinator site.yaml names), published with its word of itself.
	Term uint64

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
	since    time.Time // when it started
	actions  *actions
	store    *store.Store
	ownStore string // temporary folder of a throw-away store
	takeover *takeover.Manager
	timers   *namedTimers
	broken   map[string]bool              // members whose material disks have all failed
	copies   map[string]engine.CopyStatus // material copies in progress, by action id
	drills   map[string]*drill            // running fire drills, by member
	claims   map[string][]string          // what each standby reports covering, by standby (rebuild.go)
	// claimedSince is since when each standby says it covers each member,
	// on its own clock (the clock of the files it records), the earliest
	// of the coverage: by standby, then member (rebuild.go, copies.go).
	claimedSince map[string]map[string]time.Time
	held         map[string]*heldPair // quarantined member events, by name and member (memberdeliveries.go)
	alarms       alarms               // raised alarms
	routing      routing              // the desired switcher routing
	captures     []*capture           // CommandWait's collectors of records
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
	e.claims = map[string][]string{}
	e.claimedSince = map[string]map[string]time.Time{}
	e.held = map[string]*heldPair{}
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
func (c *Coordinator) Attach(loop *engine.Engine) {
	c.loop = loop
	c.site = loop.Site()
	c.log = loop.Logger()
	c.clock = loop.Clock()
	c.topics = bus.Topics{Site: c.site.Name}
	c.table = loop.Table()
	c.opts.Self = loop.Self()
	c.opts.Drops = loop.Drops()
	for _, m := range c.site.Members {
		if m.Probe != nil && !c.table.Known(m.ID) { // known: probed by a coordinator before this one
			c.table.Add(m.ID, m.Heartbeat.D(), m.LostAfter.D())
		}
	}
}

// Store returns the coordinator's state store.
func (c *Coordinator) Store() *store.Store { return c.store }

// Post queues f to run on the loop. Safe from any goroutine.
func (c *Coordinator) Post(f func()) { c.loop.Post(f) }

// Do runs f on the loop and waits for it, or for ctx.
func (c *Coordinator) Do(ctx context.Context, f func()) error { return c.loop.Do(ctx, f) }

// record adds a record to the loop's stream (on the loop).
func (c *Coordinator) record(r engine.Record) { c.loop.Record(r) }

// Start brings the coordinator up on the loop: the drivers connect, the
// state is restored, the policy loads; a policy that does not load is an
// error.
func (c *Coordinator) Start(ctx context.Context) error {
	c.ctx = ctx
	c.since = c.clock.Now()
	if c.opts.Term > 0 {
		// Elected: the term's first record, before anything it does.
		c.record(engine.Record{Type: events.CoordinatorElected, Member: c.opts.Self, Fields: map[string]any{"term": c.opts.Term, "candidates": c.site.Candidates}})
	}
	for _, name := range slices.Sorted(maps.Keys(c.opts.Drivers)) {
		d := c.opts.Drivers[name]
		d.Start(ctx, func(ev drivers.Event) { c.Post(func() { c.onDriverEvent(name, ev) }) })
	}
	if err := c.startTakeover(); err != nil {
		return err
	}
	if err := c.restoreRouting(); err != nil {
		return fmt.Errorf("desired routing: %w", err)
	}
	if err := c.restoreDrills(); err != nil {
		return err
	}
	if err := c.restoreAlarms(); err != nil {
		return fmt.Errorf("alarms: %w", err)
	}
	c.actions.start(ctx)
	c.startProbes(ctx)
	if err := c.resumeActions(); err != nil {
		return err
	}
	if err := c.timers.restore(); err != nil {
		return err
	}
	poison, err := c.restoreMemberDeliveries()
	if err != nil {
		return err
	}
	// The inbox is read before the quarantine's alarms put their events in it.
	defer func() {
		c.redeliverInbox()
		c.quarantineMembers(poison)
	}()
	if c.site.PolicyPath() == "" {
		c.log.Warn("site has no policy: events are recorded, nothing decides")
		return nil
	}
	p, err := c.loadPolicy()
	if err != nil {
		return err
	}
	c.installPolicy(p, false)
	return nil
}

// Stop closes the policy and the drivers. Call it on the loop.
func (c *Coordinator) Stop() {
	if c.policy != nil {
		c.policy.Close()
		c.policy = nil
	}
	c.stopProbes()
	c.actions.stop()
	c.timers.stop()
	c.stopRouting()
	if c.takeover != nil {
		c.takeover.Stop()
	}
	for _, name := range slices.Sorted(maps.Keys(c.opts.Drivers)) {
		if err := c.opts.Drivers[name].Close(); err != nil {
			c.log.Warn("closing driver", "driver", name, "error", err)
		}
	}
	c.closeOwnStore()
}

// closeOwnStore removes a throw-away store.
func (c *Coordinator) closeOwnStore() {
	if c.ownStore != "" {
		c.store.Close()
		os.RemoveAll(c.ownStore)
		c.ownStore = ""
	}
}

// Emit hands an event of the given name to the policy (on the loop). Any
// goroutine.
func (c *Coordinator) Emit(name string, fields map[string]any) {
	c.Post(func() { c.dispatch(policy.Event{Name: name, At: c.clock.Now(), Fields: fields}) })
}

// BusConnected follows the bus connection (on the loop): on (re)connect it
// publishes every member's state and its retained topics again, so that
// they are right whatever happened while it was away.
func (c *Coordinator) BusConnected(up bool) {
	c.actions.busConnected(up)
	if !up || c.opts.Publisher == nil {
		return
	}
	c.RepublishRetained()
}

// RepublishRetained publishes every retained state of the coordinator
// again: each member's state, the drills, the copies, the alarms, its word
// of itself, and the takeover state if its last publish did not go out
// (on the loop).
func (c *Coordinator) RepublishRetained() {
	if c.opts.Publisher == nil {
		return
	}
	for _, m := range c.table.All() {
		c.publishState(m)
	}
	c.publishDrills()
	c.publishCopies()
	c.publishAlarms()
	c.publishSelf()
	c.publishTakeover()
}

// publishSelf publishes the coordinator's retained word of itself: which
// member, which term and epoch, since when (on the loop).
func (c *Coordinator) publishSelf() {
	payload, _ := json.Marshal(bus.CoordinatorInfo{Member: c.opts.Self, Term: c.opts.Term, Epoch: c.actions.epoch, Since: c.since})
	if err := c.opts.Publisher.Publish(c.topics.CoordinatorInfo(), 1, true, payload); err != nil {
		c.log.Debug("the coordinator's word of itself not published", "error", err)
	}
}

// Described follows a member that described itself (on the loop).
func (c *Coordinator) Described(id string) {
	if c.opts.Publisher == nil {
		return
	}
	if lm, ok := c.table.Get(id); ok {
		c.publishState(lm)
	}
}

// Reload loads the policy files again; if they fail to load, the running
// policy stays and the error is reported with file:line. Any goroutine.
func (c *Coordinator) Reload() {
	c.Post(func() {
		if c.site.PolicyPath() == "" {
			return
		}
		p, err := c.loadPolicy()
		if err != nil {
			c.policyError = err.Error()
			c.log.Error("policy reload failed; the previous policy keeps running", "error", err)
			c.record(engine.Record{Type: events.PolicyError, Fields: map[string]any{"error": err.Error(), "kept": "previous policy"}})
			return
		}
		c.installPolicy(p, true)
	})
}

func (c *Coordinator) loadPolicy() (*policy.Policy, error) {
	return policy.Load(policyEnv{c}, policy.Options{
		File:        c.site.PolicyPath(),
		Timeout:     c.site.Policy.HandlerTimeout.D(),
		MemoryLimit: int64(c.site.Policy.MemoryLimitMB) << 20,
		Settings:    c.site.Policy.Settings,
		Site:        c.site.Name,
		Self:        c.opts.Self,
		Logger:      c.log.With("component", "policy"),
	})
}

func (c *Coordinator) installPolicy(p *policy.Policy, reload bool) {
	if c.policy != nil {
		c.policy.Close()
		c.reloads++
	}
	c.policy = p
	c.policyLoaded = c.clock.Now()
	c.policyError = ""
	var handlers []string
	for _, h := range p.Handlers() {
		handlers = append(handlers, h.Event)
	}
	verb := "policy loaded"
	if reload {
		verb = "policy reloaded"
	}
	c.log.Info(verb, "file", c.site.PolicyPath(), "handlers", handlers)
	c.record(engine.Record{Type: events.PolicyLoaded, Fields: map[string]any{"file": c.site.PolicyPath(), "reload": reload}})
	c.dispatch(policy.Event{Name: events.Coordinator, At: c.clock.Now(), Fields: map[string]any{"reload": reload}})
	if c.opts.Term > 0 && !reload {
		// Elected: a new Lua state, told first whose term it is.
		c.dispatch(policy.Event{Name: events.CoordinatorElected, At: c.clock.Now(), Fields: map[string]any{"member": c.opts.Self, "term": c.opts.Term, "candidates": c.site.Candidates}})
	}
}

// dispatchLater hands an event to the policy once the current work is done,
// so an event raised while a handler runs does not re-enter the policy.
func (c *Coordinator) dispatchLater(ev policy.Event) { c.postCaused(func() { c.dispatch(ev) }) }

// postCaused queues f for the loop as Post does, carrying the current cause
// to it. Call it on the loop.
func (c *Coordinator) postCaused(f func()) {
	cause := c.cause
	if cause == 0 {
		c.Post(f)
		return
	}
	c.Post(func() {
		prev := c.cause
		c.cause = cause
		defer func() { c.cause = prev }()
		f()
	})
}

// dispatch hands an event to the policy and reports handler failures.
func (c *Coordinator) dispatch(ev policy.Event) { c.dispatchWith(ev, nil) }

// dispatchWith hands an event to the policy; the actions its handlers ask
// for are recorded together with done (if any) when they return.
func (c *Coordinator) dispatchWith(ev policy.Event, done func(*store.Tx) error) {
	if c.policy == nil {
		if done != nil {
			if err := c.store.Update(done); err != nil {
				c.log.Error("state not written", "event", ev.Name, "error", err)
			}
		}
		return
	}
	c.actions.beginBatch()
	errs := c.policy.Dispatch(ev)
	c.actions.commitBatch(done)
	for _, err := range errs {
		// Every failure is recorded (a command's reply carries it); the log
		// line is rate-limited per handler.
		c.record(engine.Record{Type: events.PolicyError, Fields: map[string]any{"event": ev.Name, "error": err.Error()}})
		if ok, suppressed := c.policy.ShouldLog(err); ok && suppressed > 0 {
			c.log.Error("policy handler failed", "event", ev.Name, "error", err, "suppressed", suppressed)
		} else if ok {
			c.log.Error("policy handler failed", "event", ev.Name, "error", err)
		}
	}
	c.checkPolicy()
}

// checkPolicy loads the policy afresh from its file when its state is no
// longer trusted: Go code it called panicked, or it went over its memory
// limit. Named timers, coverage and actions live in the coordinator and
// are kept. Call it on the loop.
func (c *Coordinator) checkPolicy() {
	if c.policy == nil {
		return
	}
	err := c.policy.Broken()
	if err == nil {
		return
	}
	c.log.Error("policy state is no longer trusted; loading it afresh", "error", err)
	c.record(engine.Record{Type: events.PolicyError, Fields: map[string]any{"error": err.Error(), "reloaded": true}})
	c.policy.Close()
	c.policy = nil
	p, lerr := c.loadPolicy()
	if lerr != nil {
		c.policyError = lerr.Error()
		c.log.Error("policy reload after a fault failed: no policy is running", "error", lerr)
		return
	}
	c.reloads++
	c.installPolicy(p, true)
	c.policyError = err.Error()
}

// MemberEvent follows a change in the member table (on the loop): the
// record, the retained state, the takeover bookkeeping, the policy (each
// delivery counted, a poison one quarantined: memberdeliveries.go), and
// the site's routing for a member seen alive.
func (c *Coordinator) MemberEvent(ev members.Event) {
	switch ev.Kind {
	case members.EventBusSilent, members.EventBusHeard:
		c.dispatch(policy.Event{Name: ev.Kind, At: ev.At, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
		return
	case members.EventLoopStalled:
		c.dispatch(policy.Event{Name: ev.Kind, At: ev.At, Fields: map[string]any{"stalled_ms": ev.Silence.Milliseconds()}})
		return
	}
	fields := map[string]any{"state": string(ev.Member.State), "previous": string(ev.Previous), "reason": ev.Member.Reason}
	if ev.Silence > 0 {
		fields["silence_ms"] = ev.Silence.Milliseconds()
	}
	c.record(engine.Record{At: ev.At, Type: ev.Kind, Member: ev.Member.ID, Fields: c.drillFields(ev.Member.ID, fields)})
	if c.opts.Publisher != nil {
		c.publishState(ev.Member)
	}
	if ev.Member.State == members.Alive && ev.Previous != members.Alive {
		c.actions.targetHeard(ev.Member.ID)
	}
	if c.takeover != nil {
		c.takeover.MemberChanged(ev.Member.ID)
		c.publishTakeover()
	}
	m := c.policyMember(ev.Member.ID)
	c.dispatchMember(policy.Event{Name: ev.Kind, At: ev.At, Member: &m, Fields: c.drillFields(m.ID, map[string]any{"reason": ev.Member.Reason, "previous": string(ev.Previous)})}, m.ID)
	if (ev.Kind == members.EventSeen || ev.Kind == members.EventRestored) && ev.Member.State == members.Alive {
		c.assertMember(ev.Member.ID) // outputs with no desired route yet: its own inputs, or its standby's
	}
}

func (c *Coordinator) publishState(m members.Member) {
	cm, _ := c.site.Member(m.ID)
	state := map[string]any{
		"member": m.ID, "state": c.stateOf(m.ID), "since": m.Since, "reason": m.Reason,
		"roles": cm.Roles, "usage": cm.Usage, "standby": cm.Standby,
	}
	if c.takeover != nil {
		if cv, ok := c.takeover.Covered(m.ID); ok {
			state["covered_by"] = cv.Standby
			state["coverage_phase"] = cv.Phase
			if left, ok := c.takeover.GraceRemaining(m.ID); ok {
				state["grace_remaining_s"] = left.Seconds()
				state["grace_until"] = cv.GraceUntil
			}
		}
		if covers := c.takeover.Covering(m.ID); len(covers) > 0 {
			state["covering"] = covers
		}
	}
	if d, ok := c.drills[m.ID]; ok {
		state["drill"] = d.Fault
		state["drill_until"] = d.Until
	}
	payload, _ := json.Marshal(state)
	if err := c.opts.Publisher.Publish(c.topics.State(m.ID), 1, true, payload); err != nil {
		c.log.Debug("state not published", "member", m.ID, "error", err)
	}
}

func (c *Coordinator) onDriverEvent(name string, ev drivers.Event) {
	fields := map[string]any{"driver": name}
	for k, v := range ev.Fields {
		fields[k] = v
	}
	switch ev.Name {
	case drivers.EventDisconnected:
		c.log.Warn("driver disconnected", "driver", name, "error", ev.Fields["error"])
	case drivers.EventConnected:
		c.log.Info("driver connected", "driver", name, "address", ev.Fields["address"])
	}
	c.record(engine.Record{Type: ev.Name, Fields: fields})
	c.dispatch(policy.Event{Name: ev.Name, At: c.clock.Now(), Fields: fields})
	// Then the routing read back is compared with the desired routing.
	switch ev.Name {
	case drivers.EventConnected:
		c.routingConnected(name)
	case drivers.EventRouteChanged:
		out, ok1 := ev.Fields["output"].(int)
		in, ok2 := ev.Fields["input"].(int)
		if ok1 && ok2 {
			c.routingChanged(name, out, in)
		}
	}
}

// Record sees every record of the loop (engine.Coordinator): it stamps the
// command it follows from, hands it to the commands waiting for theirs, and
// publishes it on the events topic.
func (c *Coordinator) Record(r *engine.Record) {
	if r.Cause == 0 {
		r.Cause = c.cause
	}
	for _, cv := range c.captures {
		if r.Cause != 0 && cv.cause == r.Cause {
			cv.records = append(cv.records, *r)
		}
	}
	if c.opts.Publisher != nil {
		payload, err := json.Marshal(r)
		if err == nil {
			if err := c.opts.Publisher.Publish(c.topics.Events(), 1, false, payload); err != nil {
				c.log.Debug("record not published", "type", r.Type, "error", err)
			}
		}
	}
}

func (c *Coordinator) policyMember(id string) policy.Member {
	cm, _ := c.site.Member(id)
	lm, _ := c.table.Get(id)
	m := policy.Member{
		ID: id, State: c.stateOf(id), Since: lm.Since, Reason: lm.Reason,
		Roles: cm.Roles, Usage: cm.Usage, Priority: cm.Priority, Standby: cm.Standby,
		Self: id == c.opts.Self, Duties: dutiesOf(cm),
		Pool: cm.Pool, Capacity: cm.Capacity, DiskLayout: cm.DiskLayout,
		Capabilities: cm.Capabilities, Requires: cm.Requires, Failover: settingsOf(cm.Settings),
	}
	if c.broken[id] {
		m.Reason = "all material disks failed"
	}
	if c.takeover != nil {
		if cv, ok := c.takeover.Covered(id); ok {
			m.CoveredBy = cv.Standby
		}
	}
	return m
}

// memberEvent is a policy event about member (none when it is "" or not a
// member the table knows): the member as it is now goes with it.
func (c *Coordinator) memberEvent(name string, at time.Time, member string, fields map[string]any) policy.Event {
	ev := policy.Event{Name: name, At: at, Fields: fields}
	if member != "" && c.table.Known(member) {
		m := c.policyMember(member)
		ev.Member = &m
	}
	return ev
}

// MemberState is a member's state as the site sees it (engine.Coordinator):
// the member table's, except that an alive member whose material disks all
// failed is broken.
func (c *Coordinator) MemberState(id string, state members.State) string {
	if c.broken[id] && (state == members.Alive || state == members.Suspect) {
		return "broken"
	}
	return string(state)
}

// stateOf is a member's state as the policy sees it.
func (c *Coordinator) stateOf(id string) string {
	lm, _ := c.table.Get(id)
	return c.MemberState(id, lm.State)
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
