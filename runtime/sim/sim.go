// Package sim runs a site's engine on a virtual clock with simulated member
// instances: they heartbeat at their configured interval, crash (connection
// drops, Last Will), go silent (cable pulled), shut down gracefully and come
// back. Policy tests and the simulator use it; hours of site time take
// microseconds, while drivers stay real (device simulators over TCP).
package sim

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"understudy/discovery/bus"
	"understudy/drivers"
	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/consensus"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
	"understudy/runtime/store"
)

// Harness is a site under simulation. Its methods must be called from one
// goroutine, which owns the engine.
type Harness struct {
	Clock       *clock.Virtual
	Engine      *engine.Engine           // the coordinator's loop
	Coordinator *coordinator.Coordinator // what it runs
	Site        *config.Site
	opts        Options

	records    []engine.Record
	members    map[string]*member
	boots      int
	brokerDown bool // nothing goes over the bus
	// elect models the candidates of a site that elects its coordinator
	// (elect.go); nil on a site with one named coordinator.
	elect  *election
	ctx    context.Context // Start's, for the loops started later
	broken map[string]bool // members whose disks all failed, told to every new coordinator
	// coordinators counts the coordinators built (drivers).
	coordinators int
}

type member struct {
	id       string
	interval time.Duration
	boot     string
	timer    clock.Timer
	up       bool // its instance runs and hears commands
	cut      bool // its network is cut for a moment (Blip): nothing goes in or out
	agent    func(bus.Command) Reply
	received map[string]bus.Ack // final answers by command id, as a real agent keeps them
	ran      []bus.Command      // commands it carried out, in order
}

// Reply is how a simulated instance answers a command: after Delay of
// virtual time, done, or failed with Fail. Silent: it never answers.
type Reply struct {
	Delay  time.Duration
	Fail   string
	Silent bool
	Result any // the command's result (a copy's report, a hook's steps)
}

// Options configure a harness.
type Options struct {
	Start   time.Time // virtual start time (default 2026-01-01 00:00 UTC)
	Drivers map[string]drivers.Driver
	// NewDrivers, when set, builds the drivers of each coordinator after
	// the first (a restart, an election): a coordinator closes its drivers
	// when it stops. Without it every coordinator has Drivers.
	NewDrivers func() (map[string]drivers.Driver, error)
	// Registry lets probes by driver kind check their device (nil: they do not run).
	Registry *drivers.Registry
	Logger   *slog.Logger
	// Store keeps the coordinator's state; reuse it in a new harness to
	// simulate a restart of the coordinator. Nil: a throw-away store.
	Store *store.Store
	// Settle: before virtual time moves on, wait (in real time, up to
	// SettleLimit) for the actions on the drivers to finish, so that a route
	// sent at t is done at t however long the device takes.
	Settle      bool
	SettleLimit time.Duration // default 10s
	// MayAct is the coordinator's lease check (coordinator.Options.MayAct).
	MayAct func() error
}

// New builds a harness for site; the coordinator runs the policy.
func New(site *config.Site, opts Options) (*Harness, error) {
	if opts.Start.IsZero() {
		opts.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	h := &Harness{Clock: clock.NewVirtual(opts.Start), Site: site, members: map[string]*member{}, opts: opts, broken: map[string]bool{}}
	if site.Elected() {
		if opts.Store == nil {
			return nil, fmt.Errorf("sim: a site that elects its coordinator needs Options.Store (the replicated state every leader resumes from)")
		}
		h.elect = &election{timing: consensus.TimingFor(site.Heartbeat.Interval.D()), engines: map[string]*engine.Engine{}, stalled: map[string]bool{}, partitioned: map[string]bool{}}
	} else if err := h.newEngine(); err != nil {
		return nil, err
	}
	for _, m := range site.Members {
		h.members[m.ID] = &member{id: m.ID, interval: m.Heartbeat.D(), received: map[string]bus.Ack{}}
	}
	return h, nil
}

// newEngine builds the coordinator's loop and its coordinator.
func (h *Harness) newEngine() error {
	drvs, err := h.drivers()
	if err != nil {
		return err
	}
	c, err := coordinator.New(coordinator.Options{Drivers: drvs, Registry: h.opts.Registry, Store: h.opts.Store, Publisher: agents{h}, MayAct: h.opts.MayAct})
	if err != nil {
		return err
	}
	e, err := engine.New(engine.Options{
		Site: h.Site, Self: h.Site.Coordinator, Clock: h.Clock, Logger: h.opts.Logger,
		Coordinator: c, Online: true,
		Observe: func(r engine.Record) { h.records = append(h.records, r) },
	})
	if err != nil {
		return err
	}
	h.Engine, h.Coordinator = e, c
	return nil
}

// drivers are the drivers for a new coordinator: Options.Drivers for the
// first, new ones (Options.NewDrivers) for each one after it.
func (h *Harness) drivers() (map[string]drivers.Driver, error) {
	h.coordinators++
	if h.coordinators == 1 || h.opts.NewDrivers == nil {
		return h.opts.Drivers, nil
	}
	return h.opts.NewDrivers()
}

// Restart stops the coordinator and starts a new one on the same store at
// the same virtual time, as a kill and restart of its process would; the
// other members' instances (and what their agents have answered) go on. It
// needs Options.Store, and drivers that can be started again (or none).
func (h *Harness) Restart(ctx context.Context) error {
	if h.elected() {
		// The leader's process killed and started again: the candidates
		// elect a coordinator (it, or another).
		id := h.elect.leader
		if id == "" {
			return fmt.Errorf("sim: no candidate leads now: nothing to restart")
		}
		h.Crash(id)
		h.Up(id)
		return nil
	}
	if h.opts.Store == nil {
		return fmt.Errorf("sim: Restart needs Options.Store")
	}
	h.Engine.Stop()
	if err := h.newEngine(); err != nil {
		return err
	}
	return h.Start(ctx)
}

// Start starts the engine (drivers connect, the policy loads).
func (h *Harness) Start(ctx context.Context) error {
	h.ctx = ctx
	if h.elected() {
		for _, id := range h.Site.Candidates {
			if err := h.newCandidate(ctx, id); err != nil {
				return err
			}
		}
		// The first leader: at once (the site comes up elected).
		for _, id := range h.Site.Candidates {
			if m, _ := h.Site.Member(id); !m.Witness {
				if err := h.lead(ctx, id); err != nil {
					return err
				}
				break
			}
		}
		h.runAll()
		return nil
	}
	if err := h.Engine.Start(ctx); err != nil {
		return err
	}
	h.Engine.RunPending()
	return nil
}

// Stop stops the engines and their drivers.
func (h *Harness) Stop() {
	if h.elected() {
		for _, id := range slices.Sorted(maps.Keys(h.elect.engines)) {
			h.elect.engines[id].Stop()
		}
		return
	}
	h.Engine.Stop()
}

// loops are the member tables that hear the bus now: the coordinator's, or
// on an elected site every running candidate's that is not frozen or cut
// off, in a fixed order.
func (h *Harness) loops() []*engine.Engine {
	if !h.elected() {
		return []*engine.Engine{h.Engine}
	}
	var out []*engine.Engine
	for _, id := range slices.Sorted(maps.Keys(h.elect.engines)) {
		if !h.elect.stalled[id] {
			out = append(out, h.elect.engines[id])
		}
	}
	return out
}

// runAll does every loop's pending work.
func (h *Harness) runAll() {
	for _, e := range h.loops() {
		e.RunPending()
	}
}

// candidate reports whether id is a candidate of an elected coordinator.
func (h *Harness) candidate(id string) bool {
	return h.elected() && slices.Contains(h.Site.Candidates, id)
}

func (h *Harness) member(id string) *member {
	m, ok := h.members[id]
	if !ok {
		panic(fmt.Sprintf("sim: no member %q", id))
	}
	return m
}

// Up starts the member's instance (a new process: a new boot id): it
// heartbeats now and every interval.
func (h *Harness) Up(id string) {
	m := h.member(id)
	h.stopBeating(m)
	h.boots++
	m.boot = fmt.Sprintf("boot%d", h.boots)
	m.up = true
	m.cut = false
	if h.candidate(id) {
		delete(h.elect.stalled, id)
		if _, running := h.elect.engines[id]; !running {
			if err := h.newCandidate(h.ctx, id); err != nil {
				h.records = append(h.records, engine.Record{At: h.Clock.Now(), Type: events.PolicyError, Member: id, Fields: map[string]any{"error": err.Error()}})
			}
		}
	}
	var beat func()
	beat = func() {
		if !h.brokerDown && !m.cut {
			for _, e := range h.loops() {
				e.Heartbeat(bus.Heartbeat{Member: id, Boot: m.boot, Conn: 1, Seq: 1, IntervalMS: m.interval.Milliseconds()})
			}
		}
		m.timer = h.Clock.AfterFunc(m.interval, beat)
	}
	beat()
	if h.candidate(id) {
		h.reconcile(h.ctx, "")
	}
	h.runAll()
}

// stopCandidate ends candidate id's loop (its process died or stopped).
func (h *Harness) stopCandidate(id, why string) {
	if !h.candidate(id) {
		return
	}
	e, running := h.elect.engines[id]
	if !running {
		return
	}
	if h.elect.leader == id {
		h.stepDown(why)
	}
	e.Stop()
	delete(h.elect.engines, id)
	h.reconcile(h.ctx, why)
}

// Crash kills the member's process: heartbeats stop and the broker publishes
// its Last Will at once.
func (h *Harness) Crash(id string) {
	m := h.member(id)
	h.stopBeating(m)
	m.up = false
	h.stopCandidate(id, "its process died")
	for _, e := range h.loops() {
		e.Presence(bus.Presence{Member: id, State: "gone", Boot: m.boot, Conn: 1}, false)
	}
	h.runAll()
}

// Broker takes the broker down (up false) or brings it back: meanwhile no
// heartbeat or command goes over the bus, and the coordinator knows its own
// connection is down (as its MQTT client would tell it).
func (h *Harness) Broker(up bool) {
	h.brokerDown = !up
	for _, e := range h.loops() {
		e.BusConnected(up)
	}
	h.runAll()
}

// Silence cuts the member off without closing anything (cable pulled, power
// lost): its heartbeats stop and nobody is told.
func (h *Harness) Silence(id string) {
	m := h.member(id)
	h.stopBeating(m)
	m.up = false
	h.stopCandidate(id, "silent: its lease lapsed")
	h.runAll()
}

// Blip cuts the member's network for d (a switch port that flaps, a
// loaded machine whose heartbeats are late): its instance goes on running,
// but meanwhile no heartbeat leaves it and no command reaches it; then it is
// heard again, with the same boot.
func (h *Harness) Blip(id string, d time.Duration) {
	m := h.member(id)
	m.cut = true
	if h.candidate(id) {
		h.elect.stalled[id] = true
		h.reconcile(h.ctx, "cut off: its lease lapsed")
	}
	h.Clock.AfterFunc(d, func() {
		m.cut = false
		if h.candidate(id) {
			delete(h.elect.stalled, id)
			h.reconcile(h.ctx, "")
		}
	})
	h.runAll()
}

// Shutdown stops the member gracefully: it says "closed".
func (h *Harness) Shutdown(id string) {
	m := h.member(id)
	h.stopBeating(m)
	m.up = false
	h.stopCandidate(id, "it shut down")
	for _, e := range h.loops() {
		e.Presence(bus.Presence{Member: id, State: "closed", Boot: m.boot, Conn: 1}, false)
	}
	h.runAll()
}

func (h *Harness) stopBeating(m *member) {
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
}

// Broken reports the member's material disks as all failed (true) or working
// again (false), as its instance would.
func (h *Harness) Broken(id string, broken bool) {
	h.broken[id] = broken
	if h.Coordinator != nil {
		h.Coordinator.Health(bus.Health{Member: id, Broken: broken})
	}
	h.runAll()
}

// Agent sets how the member's instance answers commands (default: done at
// once).
func (h *Harness) Agent(id string, reply func(bus.Command) Reply) { h.member(id).agent = reply }

// Ran returns the commands the member's instance carried out, in order;
// duplicates of a command it already answered are not carried out again.
func (h *Harness) Ran(id string) []bus.Command { return h.member(id).ran }

// Command sends an operator command, as the bus, the CLI or the web would.
func (h *Harness) Command(verb string, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	if h.Coordinator == nil {
		return // no coordinator elected now: nobody takes it
	}
	h.Coordinator.Command(verb, fields, "operator")
	h.runAll()
}

// agents plays the members' instances on the bus: commands the coordinator
// publishes reach the simulated agent, which answers like a real one.
type agents struct{ h *Harness }

func (a agents) Publish(topic string, qos byte, retained bool, payload []byte) error {
	h := a.h
	id, leaf, ok := (bus.Topics{Site: h.Site.Name}).MemberOf(topic)
	if !ok || leaf != "command" {
		return nil
	}
	if h.brokerDown {
		return fmt.Errorf("sim: the broker is down")
	}
	m, ok := h.members[id]
	if !ok || !m.up || m.cut {
		return nil // nobody listens, or it does not arrive
	}
	cmd, err := bus.DecodeCommand(payload)
	if err != nil {
		return err
	}
	if ack, done := m.received[cmd.ID]; done {
		h.ack(ack)
		return nil
	}
	reply := Reply{}
	if m.agent != nil {
		reply = m.agent(cmd)
	}
	if reply.Silent {
		return nil
	}
	m.received[cmd.ID] = bus.Ack{ID: cmd.ID, Epoch: cmd.Epoch, Member: id, State: bus.AckRunning}
	h.ack(m.received[cmd.ID])
	m.ran = append(m.ran, cmd)
	h.Clock.AfterFunc(reply.Delay, func() {
		ack := bus.Ack{ID: cmd.ID, Epoch: cmd.Epoch, Member: id, State: bus.AckDone, Result: reply.Result}
		if reply.Fail != "" {
			ack.State, ack.Error = bus.AckFailed, reply.Fail
		}
		if !m.up {
			return // it went away before finishing
		}
		m.received[cmd.ID] = ack
		if !m.cut {
			h.ack(ack) // else the answer is lost; it answers again when asked again
		}
	})
	return nil
}

// ack hands an agent's answer to the coordinator, if one runs now (else it
// is lost, as on the bus: the next one asks again).
func (h *Harness) ack(a bus.Ack) {
	if h.Coordinator != nil {
		h.Coordinator.Ack(a)
	}
}

// Advance moves virtual time forward by d, running the engine's work after
// every timer, as the loop would have.
func (h *Harness) Advance(d time.Duration) {
	end := h.Clock.Now().Add(d)
	h.run()
	for h.Clock.FireNext(end) {
		h.run()
	}
	h.Clock.AdvanceTo(end)
	h.run()
}

// run does the engine's pending work and, with Options.Settle, waits for
// the drivers' actions to finish.
func (h *Harness) run() {
	h.runAll()
	if !h.opts.Settle || h.Coordinator == nil || h.Coordinator.DriverActions() == 0 {
		return
	}
	limit := h.opts.SettleLimit
	if limit <= 0 {
		limit = 10 * time.Second
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for h.Coordinator.DriverActions() > 0 {
		select {
		case <-h.Engine.Wake():
			h.Engine.RunPending()
		case <-deadline.C:
			return // a device that hangs: time goes on, its action finishes later
		}
	}
}

// Records returns every record so far.
func (h *Harness) Records() []engine.Record { return h.records }

// Since returns the records from index i on (use len(Records()) as a mark).
func (h *Harness) Since(i int) []engine.Record { return h.records[i:] }

// WaitRecord runs the engine's work as it arrives (driver events and action
// results come in real time) until a record from index from on matches, or
// ctx ends. Virtual time does not move meanwhile.
func (h *Harness) WaitRecord(ctx context.Context, from int, match func(engine.Record) bool) (engine.Record, error) {
	for {
		h.runAll()
		for _, r := range h.records[from:] {
			if match(r) {
				return r, nil
			}
		}
		from = len(h.records)
		select {
		case <-ctx.Done():
			return engine.Record{}, fmt.Errorf("waiting for a record: %w", ctx.Err())
		case <-h.Engine.Wake():
		}
	}
}

// Type matches records of a type (and, if given, a member).
func Type(typ string, member ...string) func(engine.Record) bool {
	return func(r engine.Record) bool {
		return r.Type == typ && (len(member) == 0 || r.Member == member[0])
	}
}
