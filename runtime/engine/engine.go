// Package engine is the loop every instance runs. One goroutine owns the
// member table, the record stream and, on the instance that coordinates,
// the coordinator: bus callbacks, driver events, timers and API requests
// only hand it inputs. What the site decides — the policy, the drivers'
// actions, the takeover bookkeeping — sits behind the Coordinator
// interface, which the loop runs only when this instance coordinates (today
// by configuration; later by election), and calls only on its goroutine.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/runtime/clock"
	"understudy/runtime/config"
)

// Options configure an Engine.
type Options struct {
	Site   *config.Site
	Self   string // this instance's member id
	Clock  clock.Clock
	Logger *slog.Logger
	Drops  *bus.Drops // counts payloads from unknown members; may be nil
	// Coordinator, when set, decides for the site on this instance: the loop
	// starts it with itself and hands it what it must see. Nil: this
	// instance only keeps the member table and its records.
	Coordinator Coordinator
	// Online starts the member table as connected to the bus; a daemon
	// starts offline and reports the bus with BusConnected.
	Online bool
	// Observe, when set, sees every record on the loop goroutine (tests, the
	// simulator, a journal, the metrics).
	Observe func(Record)
	// Paths is the number of brokers this instance is connected to at once
	// (bus.Paths); a member's Last Will on one of them is taken only when
	// no other path to it is up (members.Paths). 0 or 1: one broker.
	Paths int
}

// Coordinator decides for the site: the policy host, the drivers and their
// actions, the takeover bookkeeping, named timers, the inbox, drills, copies
// and alarms. The loop calls it on its own goroutine only.
type Coordinator interface {
	// Attach hands it the loop it belongs to (New calls it): the member
	// table, the site and the record stream. It may see member events from
	// then on, before Start.
	Attach(loop *Engine)
	// Start brings it up on the loop: drivers connect, the state is
	// restored, the policy loads (an error stops the instance).
	Start(ctx context.Context) error
	// Stop ends it: the policy, its timers, the drivers.
	Stop()
	// MemberEvent follows a change in the member table; the coordinator
	// records it (the loop records only its own bus_silent and bus_heard).
	MemberEvent(ev members.Event)
	// BusConnected follows this instance's connection to the bus.
	BusConnected(up bool)
	// Described follows a member that described itself (About).
	Described(id string)
	// Record sees every record before the observer does; it may stamp it.
	Record(r *Record)
	// MemberState is the state the site sees for a member the table has in
	// state (a coordinator knows more: broken disks).
	MemberState(id string, state members.State) string
	// Status adds the coordinator's part of the status.
	Status(st *Status)
}

// Record is one entry of the site's stream: a member event, a driver event,
// an action and its result, a policy problem.
type Record struct {
	At     time.Time      `json:"at"`
	Type   string         `json:"type"`
	Member string         `json:"member,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`

	// Cause is the operator command the record follows from (set by the
	// coordinator), 0 for none: each command's reply holds its own.
	Cause uint64 `json:"-"`
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
	coord      Coordinator // never nil: a member's instance has noCoordinator
	// coordinating mirrors coord for other goroutines (SetCoordinator
	// changes it on the loop).
	coordinating atomic.Bool
	ctx          context.Context
	started      bool
	wills        wills          // Last Wills waiting for the way through the broker (wills.go)
	paths        *members.Paths // what several brokers say of members' connections (Options.Paths)
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
	e := &Engine{
		opts:   opts,
		site:   opts.Site,
		log:    opts.Logger,
		clock:  opts.Clock,
		topics: bus.Topics{Site: opts.Site.Name},
		queue:  newQueue(),
		coord:  opts.Coordinator,
		wills:  wills{held: map[string]*heldWill{}},
		paths:  members.NewPaths(opts.Paths),
	}
	if e.coord == nil {
		e.coord = noCoordinator{}
	}
	e.coordinating.Store(opts.Coordinator != nil)
	e.table = members.New(e.clock, e.Post, e.onMemberEvent, members.Options{
		StartupGrace: opts.Site.Heartbeat.StartupGrace.D(),
		Offline:      !opts.Online,
		Self:         opts.Self,
	})
	for _, m := range opts.Site.Members {
		if m.Probe != nil {
			continue // the coordinator probes it (and adds it); others would only see silence
		}
		e.table.Add(m.ID, m.Heartbeat.D(), m.LostAfter.D())
	}
	e.coord.Attach(e)
	return e, nil
}

// What the coordinator (and tests) see of the loop. Call them on the loop
// goroutine unless they say otherwise.

// Site is the site as the loop knows it (with the members that described
// themselves).
func (e *Engine) Site() *config.Site { return e.site }

// Self is this instance's member id. Any goroutine.
func (e *Engine) Self() string { return e.opts.Self }

// Clock is the loop's clock. Any goroutine.
func (e *Engine) Clock() clock.Clock { return e.clock }

// Logger is the instance's logger. Any goroutine.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Table is the member table.
func (e *Engine) Table() *members.Table { return e.table }

// Drops counts bad payloads; it may be nil. Any goroutine.
func (e *Engine) Drops() *bus.Drops { return e.opts.Drops }

// Coordinating reports whether this instance decides for the site now. Any
// goroutine after New.
func (e *Engine) Coordinating() bool { return e.coordinating.Load() }

// SetCoordinator makes c this instance's coordinator from now on (nil:
// none), as an election decides: call it on the loop goroutine. The one
// before stops first. Once the engine has started, c is attached, started,
// and told what the member table already knows — each member alive is seen,
// each member lost is lost — as the table of a restarted coordinator would
// tell it, without the startup grace: the members were judged by this
// instance's table all along. A start that fails stops c again, leaves no
// coordinator and returns the error.
func (e *Engine) SetCoordinator(c Coordinator) error {
	e.coord.Stop()
	e.coord = noCoordinator{}
	e.coordinating.Store(false)
	if c == nil {
		return nil
	}
	c.Attach(e)
	e.coord = c
	e.coordinating.Store(true)
	if !e.started {
		return nil
	}
	if err := c.Start(e.ctx); err != nil {
		c.Stop()
		e.coord = noCoordinator{}
		e.coordinating.Store(false)
		return err
	}
	now := e.clock.Now()
	for _, m := range e.table.All() {
		switch m.State {
		case members.Alive, members.Suspect:
			c.MemberEvent(members.Event{Kind: members.EventSeen, Member: m, Previous: members.Unknown, At: now})
		case members.Lost:
			c.MemberEvent(members.Event{Kind: members.EventLost, Member: m, Previous: members.Unknown, At: now})
		}
	}
	c.BusConnected(e.table.Connected())
	return nil
}

// Post queues f to run on the loop: work that is never dropped (the loop's
// own, what decides members' states). Safe from any goroutine; never blocks.
func (e *Engine) Post(f func()) { e.queue.push(f) }

// PostBounded queues f, an input of kind from another instance that may be
// dropped when the loop falls behind (at most maxBounded wait; the sender
// sends it again). It reports whether f was queued. Safe from any
// goroutine; never blocks.
func (e *Engine) PostBounded(kind string, f func()) bool { return e.queue.pushBounded(kind, f) }

// InputsDropped returns the bounded inputs dropped so far because the loop
// fell behind, by kind, and how many heartbeats were merged into a newer
// one of the same member before the loop took them. Any goroutine.
func (e *Engine) InputsDropped() (map[string]uint64, uint64) { return e.queue.counts() }

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
// it (Run calls Start): the member table, then the coordinator if this
// instance coordinates.
func (e *Engine) Start(ctx context.Context) error {
	if e.started {
		return errors.New("engine already started")
	}
	e.started = true
	e.ctx = ctx
	e.table.Start()
	return e.coord.Start(ctx)
}

// Run starts the engine and runs the loop until ctx ends, then stops the
// coordinator.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	e.Loop(ctx)
	return nil
}

// Loop runs queued work until ctx ends, then stops the coordinator. Call it
// on the goroutine that called Start.
func (e *Engine) Loop(ctx context.Context) {
	defer e.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.queue.ready:
			for _, it := range e.queue.take() {
				e.runSafely(it.f)
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
		for _, it := range e.queue.take() {
			e.runSafely(it.f)
			n++
		}
	}
	return n
}

// Stop stops the coordinator. Call it on the owning goroutine.
func (e *Engine) Stop() { e.coord.Stop() }

func (e *Engine) runSafely(f func()) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("internal error in the event loop (recovered; please report it)", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// Heartbeat feeds a decoded heartbeat to the member table: while one of
// the same member's waits, this one replaces it. Any goroutine.
func (e *Engine) Heartbeat(hb bus.Heartbeat) {
	e.queue.pushBeat(hb.Member, func() {
		err := e.table.Heartbeat(members.Heartbeat{ID: hb.Member, Boot: hb.Boot, Conn: hb.Conn, Interval: hb.Interval()})
		if err == nil && hb.Member != e.opts.Self {
			e.heartbeats.Add(1)
		}
		if err != nil && e.opts.Drops != nil {
			e.opts.Drops.Drop(hb.Member, e.topics.Heartbeat(hb.Member), -1, fmt.Errorf("%w: %v", bus.ErrUnknownMember, err))
		}
		if err == nil {
			e.paths.Heard(hb.Member)
		}
		if hb.Member == e.opts.Self && len(e.wills.held) > 0 {
			e.ownHeartbeat(hb)
		}
	})
}

// HeartbeatsReceived is how many heartbeats of other members the loop has
// taken in since the start (not those dropped). Any goroutine.
func (e *Engine) HeartbeatsReceived() uint64 { return e.heartbeats.Load() }

// Presence feeds a decoded presence message to the member table (a Last
// Will over a broker in another process once the broker has carried this
// instance's own heartbeat back after it: see CheckWills); retained says the
// broker delivered it from storage. Any goroutine.
func (e *Engine) Presence(p bus.Presence, retained bool) {
	e.Post(func() {
		e.presence(members.Presence{ID: p.Member, State: p.State, Boot: p.Boot, Conn: p.Conn, Retained: retained, Path: p.Path})
	})
}

// BusPath reports one of several paths to the bus (bus.Paths) going up or
// down: a member's Last Will set aside because it was still connected on
// that path is taken when the path drops. Any goroutine.
func (e *Engine) BusPath(path int, up bool) {
	if up {
		return
	}
	e.Post(func() {
		for _, w := range e.paths.PathDown(path) {
			e.log.Info("a member's path through another broker ended with this instance's own: its Last Will on the path that remained is taken", "member", w.ID, "path", path)
			e.judgePresence(w)
		}
	})
}

// Note adds a record made outside the loop (a dry-run drill's findings) to
// the stream: the observer, the journal, the events topic. It returns the
// record as stamped. Any goroutine.
func (e *Engine) Note(ctx context.Context, r Record) (Record, error) {
	err := e.Do(ctx, func() {
		r.At = e.clock.Now()
		e.Record(r)
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

// BusConnected reports this instance's bus connection. Any goroutine. On
// (re)connect the coordinator publishes what it keeps retained again, so
// that the retained topics are right whatever happened while it was away.
func (e *Engine) BusConnected(up bool) {
	e.Post(func() {
		if !up {
			e.setWillsAside("this instance's own connection to the broker dropped before the broker carried its heartbeat back")
		}
		e.table.SetConnected(up)
		e.coord.BusConnected(up)
	})
}

func (e *Engine) onMemberEvent(ev members.Event) {
	switch ev.Kind {
	case members.EventBusSilent:
		e.log.Warn("this instance cannot hear its own heartbeats: the bus is silent, so nobody is judged lost meanwhile", "silence", ev.Silence)
		e.Record(Record{At: ev.At, Type: ev.Kind, Member: ev.Member.ID, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
	case members.EventLoopStalled:
		e.log.Warn("this instance's loop did not run for a while (process stopped, VM paused, long garbage collection?): every member gets a fresh lost_after before it is judged", "stalled", ev.Silence)
		e.Record(Record{At: ev.At, Type: ev.Kind, Fields: map[string]any{"stalled_ms": ev.Silence.Milliseconds()}})
	case members.EventBusHeard:
		e.log.Info("this instance hears itself on the bus again", "after", ev.Silence)
		e.Record(Record{At: ev.At, Type: ev.Kind, Member: ev.Member.ID, Fields: map[string]any{"silence_ms": ev.Silence.Milliseconds()}})
	default:
		level := slog.LevelInfo
		if ev.Kind == members.EventLost {
			level = slog.LevelWarn
		}
		e.log.Log(context.Background(), level, "member "+string(ev.Member.State), "member", ev.Member.ID, "event", ev.Kind, "reason", ev.Member.Reason)
	}
	e.coord.MemberEvent(ev)
}

// Record stamps a record, shows it to the coordinator (which publishes it)
// and then to the observer.
func (e *Engine) Record(r Record) {
	if r.At.IsZero() {
		r.At = e.clock.Now()
	}
	e.coord.Record(&r)
	if e.opts.Observe != nil {
		e.opts.Observe(r)
	}
}

// StateOf is a member's state as the site sees it: the member table's, or
// the coordinator's where it knows more (broken disks).
func (e *Engine) StateOf(id string) string {
	lm, _ := e.table.Get(id)
	return e.coord.MemberState(id, lm.State)
}

// noCoordinator is the coordinator of an instance that does not coordinate:
// it decides nothing.
type noCoordinator struct{}

func (noCoordinator) Attach(*Engine)                                   {}
func (noCoordinator) Start(context.Context) error                      { return nil }
func (noCoordinator) Stop()                                            {}
func (noCoordinator) MemberEvent(members.Event)                        {}
func (noCoordinator) BusConnected(bool)                                {}
func (noCoordinator) Described(string)                                 {}
func (noCoordinator) Record(*Record)                                   {}
func (noCoordinator) MemberState(_ string, state members.State) string { return string(state) }
func (noCoordinator) Status(*Status)                                   {}

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
