package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
	"understudy/guards"
	"understudy/runtime/engine"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/drivers"
	"understudy/events"
	"understudy/runtime/policy"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// actionQueue is how many actions may wait for one driver.
const actionQueue = 256

// Action states in the store.
const (
	statePending = "pending" // recorded, not yet answered
	stateRunning = "running" // the instance said it is carrying it out
	stateDone    = "done"
	stateFailed  = "failed"
)

const bucketActions = "actions"

// action is one command: a route on one of the coordinator's drivers, or a
// hook run by a member's instance over the bus. It is written to the store
// before it is sent and marked done or failed when its answer comes; its
// result reaches the policy as an action_done or action_failed event.
type action struct {
	ID       string         `json:"id"`
	Epoch    uint64         `json:"epoch"`
	Driver   string         `json:"driver,omitempty"` // local: the driver that carries it out
	Target   string         `json:"target,omitempty"` // remote: the member whose instance runs it
	Verb     string         `json:"verb"`
	Output   int            `json:"output,omitempty"`
	Input    int            `json:"input,omitempty"`
	Args     map[string]any `json:"args,omitempty"`
	Cause    string         `json:"cause,omitempty"`
	Created  time.Time      `json:"created"`
	State    string         `json:"state"`
	Error    string         `json:"error,omitempty"`
	Result   any            `json:"result,omitempty"`
	Finished time.Time      `json:"finished,omitzero"`

	recovered bool // resumed after a restart: check the device before acting
	keeper    bool // a re-assert of the desired routing, not a new decision
}

func (a *action) fields() map[string]any {
	f := map[string]any{"id": a.ID, "verb": a.Verb, "cause": a.Cause}
	switch {
	case a.Driver != "" && a.Verb == "send":
		f["driver"], f["args"] = a.Driver, a.Args
	case a.Driver != "":
		f["driver"], f["output"], f["input"] = a.Driver, a.Output, a.Input
	}
	if a.Target != "" {
		f["target"] = a.Target
		if m, ok := a.Args["member"]; ok {
			f["member"] = m
		}
	}
	return f
}

func (a *action) String() string {
	if a.Driver != "" && a.Verb == "send" {
		return fmt.Sprintf("%s send %v", a.Driver, a.Args)
	}
	if a.Driver != "" {
		return fmt.Sprintf("%s %s output %d ← input %d", a.Driver, a.Verb, a.Output, a.Input)
	}
	if m, ok := a.Args["member"]; ok {
		return fmt.Sprintf("%s on %s for %v", a.Verb, a.Target, m)
	}
	return fmt.Sprintf("run %s on %s", a.Verb, a.Target)
}

// inflight is a remote action waiting for its answer.
type inflight struct {
	a       *action
	sent    time.Time // first sent by this process
	next    time.Time // send again then
	backoff time.Duration
	running bool // the instance answered "running"
	// deadline: with no answer by then it fails. It moves while the target
	// is suspect: a member with late heartbeats is running, and an action
	// waits for it as long as it is suspect (and ActionTimeout after).
	deadline time.Time
}

func (as *actions) newInflight(a *action) *inflight {
	now := as.c.clock.Now()
	return &inflight{a: a, sent: now, next: now, backoff: time.Second, deadline: now.Add(as.c.opts.ActionTimeout)}
}

// actions runs each driver's commands in order on a worker of its own, so a
// slow switcher never holds up the loop or another device, and sends remote
// commands until they are answered.
type actions struct {
	c        *Coordinator
	epoch    uint64
	workers  map[string]chan *action
	remote   map[string]*inflight
	tick     interface{ Stop() bool }
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	attempts map[string]int
	// fresh: this coordinator's state file is new (first epoch). If an
	// instance has seen a newer epoch, the state was lost (a replaced disk
	// or machine), and this coordinator moves past it once.
	fresh bool
	// stateID is random per state file: action ids stay unique when a
	// coordinator starts over with a new state file, so agents that still
	// remember the old ids do not take new actions for duplicates.
	stateID string
	seq     uint64 // last action number, written with each action

	batching bool
	batch    []*action

	// local holds the actions on driver workers not finished yet, by id.
	local map[string]*action
	// busDown: this coordinator's bus connection is down; commands cannot
	// leave, so their time to be answered does not run.
	busDown bool

	// unwritten are the action writes that did not reach the state file
	// (the state folder full, a failing disk), oldest first, and the writes
	// that go with them (an event leaving the inbox). They are tried again
	// every second (retry) until they land, each action as it is then, so
	// that a restart neither sends again an action that was answered nor
	// forgets one that was not. Meanwhile every new write of an action
	// queues behind them: nothing older lands over something newer.
	unwritten      []unwrittenAction
	unwrittenExtra []func(*store.Tx) error
	retry          interface{ Stop() bool }
}

// unwrittenAction is an action write waiting in actions.unwritten.
type unwrittenAction struct {
	a *action
	// first: its first write, with the id counter and, for a route, the
	// desired routing of its output.
	first bool
}

// retryUnwritten is how often writes that did not reach the state file
// are tried again.
const retryUnwritten = time.Second

var _ takeover.Actions = (*actions)(nil)

func newActions(c *Coordinator) *actions {
	return &actions{c: c, workers: map[string]chan *action{}, remote: map[string]*inflight{}, attempts: map[string]int{}, local: map[string]*action{}}
}

func (as *actions) start(ctx context.Context) {
	ctx, as.cancel = context.WithCancel(ctx)
	for _, name := range slices.Sorted(maps.Keys(as.c.opts.Drivers)) {
		ch := make(chan *action, actionQueue)
		as.workers[name] = ch
		as.wg.Add(1)
		go func() {
			defer as.wg.Done()
			as.work(ctx, as.c.opts.Drivers[name], ch)
		}()
	}
}

func (as *actions) stop() {
	if as.cancel != nil {
		as.cancel()
	}
	if as.tick != nil {
		as.tick.Stop()
	}
	if as.retry != nil {
		as.retry.Stop()
	}
	as.wg.Wait()
}

// write writes the actions as they are now (first: their first write) and
// extra in one transaction, behind any writes still waiting for the state
// file (on the loop). When the file does not take it, it waits with them
// and is tried again every second: the error says it did not land yet.
func (as *actions) write(extra func(*store.Tx) error, first bool, batch ...*action) error {
	for _, a := range batch {
		as.unwritten = append(as.unwritten, unwrittenAction{a: a, first: first})
	}
	if extra != nil {
		as.unwrittenExtra = append(as.unwrittenExtra, extra)
	}
	return as.flush()
}

// flush writes what waits in unwritten, in one transaction (on the loop).
func (as *actions) flush() error {
	if len(as.unwritten) == 0 && len(as.unwrittenExtra) == 0 {
		return nil
	}
	err := as.c.store.Update(func(tx *store.Tx) error {
		for _, w := range as.unwritten {
			if w.first {
				if err := as.put(tx, w.a); err != nil {
					return err
				}
			} else if err := tx.Put(bucketActions, w.a.ID, w.a); err != nil {
				return err
			}
		}
		for _, f := range as.unwrittenExtra {
			if err := f(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && as.c.store.Failing() != nil {
		if as.retry == nil {
			as.retry = as.c.clock.AfterFunc(retryUnwritten, func() { as.c.Post(as.retryWrites) })
		}
		return err
	}
	n := len(as.unwritten)
	as.unwritten, as.unwrittenExtra = nil, nil
	waited := as.retry != nil
	if waited {
		as.retry.Stop()
		as.retry = nil
	}
	if err != nil {
		// Not the file: the transaction itself failed. Trying it again
		// would fail again and hold every later write back.
		as.c.log.Error("action states not written: the transaction failed", "actions", n, "error", err)
		return err
	}
	if waited {
		as.c.log.Warn("the state file takes writes again: the action states that waited for it are written", "actions", n)
	}
	return nil
}

// retryWrites tries again the writes that did not reach the state file
// (on the loop, every retryUnwritten while they wait).
func (as *actions) retryWrites() {
	if as.flush() != nil && as.retry != nil {
		// Still waiting: the next try a second from now.
		as.retry.Stop()
		as.retry = as.c.clock.AfterFunc(retryUnwritten, func() { as.c.Post(as.retryWrites) })
	}
}

// resume sends again every action the store holds unanswered (on the loop,
// at start), stamped with this coordinator's epoch.
func (as *actions) resume() ([]*action, error) {
	all, err := store.Load[*action](as.c.store, bucketActions)
	if err != nil {
		return nil, err
	}
	var finished []*action
	for _, id := range slices.Sorted(maps.Keys(all)) {
		a := all[id]
		if guards.Off(guards.IntentLog) && a.State != statePending && a.State != stateRunning {
			// A build without the guard: the log forgets what was answered.
			a.State = statePending
			if err := as.c.store.Put(bucketActions, a.ID, a); err != nil {
				return nil, err
			}
		}
		switch a.State {
		case statePending, stateRunning:
			as.c.log.Info("resuming an unanswered action", "id", a.ID, "do", a.String(), "cause", a.Cause)
			as.c.record(engine.Record{Type: events.ActionResumed, Fields: a.fields()})
			as.Deliver(a.ID)
		default:
			if as.c.clock.Now().Sub(a.Finished) > 24*time.Hour {
				if err := as.c.store.Delete(bucketActions, a.ID); err != nil {
					return nil, err
				}
				continue
			}
			finished = append(finished, a)
		}
	}
	return finished, nil
}

// nextID allocates an action id; the counter is written with the action.
func (as *actions) nextID() string {
	as.seq++
	return as.c.opts.Self + "-" + as.stateID + "." + strconv.FormatUint(as.epoch, 10) + "." + strconv.FormatUint(as.seq, 10)
}

// put writes a new action and the id counter in tx; a route also becomes
// the desired routing of its output, in the same transaction.
func (as *actions) put(tx *store.Tx, a *action) error {
	if err := tx.Put(bucketActions, a.ID, a); err != nil {
		return err
	}
	if a.Driver != "" && a.Verb == "route" {
		if err := putDesired(tx, a); err != nil {
			return err
		}
	}
	return tx.SetCounter("meta", "action_seq", as.seq)
}

// engine.Record writes a remote action in tx (takeover.Actions).
func (as *actions) Record(tx *store.Tx, t takeover.Action) (string, error) {
	a := &action{ID: as.nextID(), Epoch: as.epoch, Target: t.Target, Verb: t.Verb, Args: t.Args, Cause: t.Cause, Created: as.c.clock.Now(), State: statePending}
	return a.ID, as.put(tx, a)
}

// beginBatch starts collecting the actions a policy handler asks for: they
// are written together, with the handler's event leaving the inbox, when it
// returns (commitBatch). A coordinator killed in the middle of a handler has
// then sent none of them, and runs the handler again after its restart.
func (as *actions) beginBatch() {
	as.batching = true
	as.batch = as.batch[:0]
}

// commitBatch writes the batch (and extra, e.g. the removal of the event from
// the inbox) in one transaction, then sends the actions.
func (as *actions) commitBatch(extra func(*store.Tx) error) {
	as.batching = false
	batch := append([]*action(nil), as.batch...)
	as.batch = as.batch[:0]
	if len(batch) == 0 && extra == nil {
		return
	}
	if err := as.write(extra, true, batch...); err != nil {
		if len(as.unwritten) == 0 {
			as.c.log.Error("the actions of a handler were not recorded; nothing sent", "actions", len(batch), "error", err)
			for _, a := range batch {
				as.finish(a, 0, 0, nil, fmt.Errorf("not recorded, nothing sent: %w", err))
			}
			return
		}
		// The state file does not take writes: a failover must not wait
		// for it. The actions go out and are written once it does.
		if len(batch) > 0 {
			as.c.log.Error("the actions of a handler could not be written to the state file; sending them all the same, and writing them as soon as it takes writes (until then a restart would forget them)", "actions", len(batch), "error", err)
		}
	}
	for _, a := range batch {
		as.send(a)
	}
}

// send sends a recorded new action and reports it.
func (as *actions) send(a *action) {
	as.c.log.Info("action", "id", a.ID, "do", a.String(), "cause", a.Cause)
	as.c.record(engine.Record{Type: events.ActionStarted, Fields: a.fields()})
	as.c.copyStarted(a)
	if a.Driver != "" {
		if a.Verb == "route" {
			as.c.routeSent(a)
		}
		as.queueLocal(a)
		return
	}
	as.remote[a.ID] = as.newInflight(a)
	as.sendDue()
}

// add records and sends a new action, or adds it to the handler's batch.
func (as *actions) add(a *action) (string, error) {
	a.ID, a.Epoch, a.Created, a.State = as.nextID(), as.epoch, as.c.clock.Now(), statePending
	if as.batching {
		as.batch = append(as.batch, a)
		return a.ID, nil
	}
	if err := as.write(nil, true, a); err != nil {
		if len(as.unwritten) == 0 {
			return "", fmt.Errorf("action not recorded, nothing sent: %w", err)
		}
		as.c.log.Error("an action could not be written to the state file; sending it all the same, and writing it as soon as it takes writes (until then a restart would forget it)", "id", a.ID, "do", a.String(), "error", err)
	}
	as.send(a)
	return a.ID, nil
}

// RecordLater keeps a remote action that could not be written with the
// takeover's state, and writes it with later as soon as the state file
// takes writes (takeover.Actions).
func (as *actions) RecordLater(t *takeover.Action, later func(*store.Tx) error) string {
	var batch []*action
	if t != nil {
		batch = append(batch, &action{ID: as.nextID(), Epoch: as.epoch, Target: t.Target, Verb: t.Verb, Args: t.Args, Cause: t.Cause, Created: as.c.clock.Now(), State: statePending})
	}
	as.write(later, true, batch...)
	if len(batch) == 0 {
		return ""
	}
	return batch[0].ID
}

// waiting returns the action id as it waits to be written (nil: it does not).
func (as *actions) waiting(id string) *action {
	for i := len(as.unwritten) - 1; i >= 0; i-- {
		if as.unwritten[i].a.ID == id {
			return as.unwritten[i].a
		}
	}
	return nil
}

// Deliver sends a recorded action (takeover.Actions): from the store, or
// as it waits to be written.
func (as *actions) Deliver(id string) {
	var a action
	found, err := as.c.store.Get(bucketActions, id, &a)
	if w := as.waiting(id); w != nil {
		a, found, err = *w, true, nil
	}
	if err != nil || !found {
		as.c.log.Error("action to deliver is not in the store", "id", id, "error", err)
		return
	}
	// Sent before: by an earlier coordinator (an older epoch) or by this one.
	a.recovered = a.Epoch < as.epoch || as.attempts[id] > 0
	a.Epoch = as.epoch
	if a.Driver != "" && a.Verb == "send" && a.recovered {
		as.outcomeUnknown(&a)
		return
	}
	if a.Driver != "" {
		as.queueLocal(&a)
		return
	}
	as.remote[id] = as.newInflight(&a)
	if a.State == statePending {
		as.c.log.Info("action", "id", a.ID, "do", a.String(), "cause", a.Cause)
		as.c.record(engine.Record{Type: events.ActionStarted, Fields: a.fields()})
		if !a.recovered {
			as.c.copyStarted(&a)
		}
	}
	as.sendDue()
}

// route records a route action and queues it on its driver (on the loop).
func (as *actions) route(driver string, out, in int, cause string) (string, error) {
	if _, ok := as.workers[driver]; !ok {
		return "", fmt.Errorf("driver %q is not running on this instance", driver)
	}
	return as.add(&action{Driver: driver, Verb: "route", Output: out, Input: in, Cause: cause})
}

func (as *actions) queueLocal(a *action) error {
	ch, ok := as.workers[a.Driver]
	if !ok {
		err := fmt.Errorf("driver %q is not running on this instance", a.Driver)
		as.finish(a, 0, 0, nil, err)
		return err
	}
	select {
	case ch <- a:
		as.local[a.ID] = a
		return nil
	default:
		err := fmt.Errorf("driver %q has %d actions waiting", a.Driver, actionQueue)
		as.finish(a, 0, 0, nil, err)
		return err
	}
}

// work carries out a driver's actions one after the other. A device that is
// not reachable is retried with backoff until the action's deadline; a device
// that refuses is not.
func (as *actions) work(ctx context.Context, d drivers.Driver, ch chan *action) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-ch:
			start := time.Now()
			attempts, note, err := as.execute(ctx, d, a)
			took := time.Since(start)
			if ctx.Err() != nil {
				return // stopping: the action stays pending in the store
			}
			as.c.Post(func() { as.finish(a, attempts, took, note, err) })
		}
	}
}

// outcomeUnknown ends a control send found running, unanswered, by a new
// coordinator (elected, or this one restarted): it may have reached the
// device. A cue GO or a relay pulse sent twice is worse than one missed, so
// it is not sent again: it fails, and an alarm asks a person to look.
func (as *actions) outcomeUnknown(a *action) {
	err := fmt.Errorf("outcome unknown: this control send to %s was begun by a coordinator that stopped before its answer was recorded; it is not sent again by itself (not known to be idempotent): check the device, then send it again if it is needed", a.Driver)
	as.c.raiseAlarm(engine.Alarm{Key: AlarmOutcomeUnknown + ":" + a.ID, Kind: AlarmOutcomeUnknown, Severity: SeverityAlarm,
		Message: fmt.Sprintf("%s: %v — %v", a.ID, a.String(), err), Fields: map[string]any{"action": a.ID, "driver": a.Driver, "args": a.Args}})
	as.finish(a, 0, 0, nil, err)
}

// mayAct waits until the coordinator may write (Options.MayAct) or ctx
// ends; it reports whether it may.
func (as *actions) mayAct(ctx context.Context) bool {
	if as.c.opts.MayAct == nil {
		return true
	}
	for as.c.opts.MayAct() != nil {
		if !sleep(ctx, leaseRecheck) {
			return false
		}
	}
	return ctx.Err() == nil
}

// leaseRecheck is how often a driver worker held by MayAct asks again.
const leaseRecheck = 10 * time.Millisecond

func (as *actions) execute(ctx context.Context, d drivers.Driver, a *action) (int, any, error) {
	if a.Verb == "send" {
		c, ok := d.(drivers.Controller)
		if !ok {
			return 0, nil, fmt.Errorf("driver %s takes no control actions", a.Driver)
		}
		return as.control(ctx, c, a)
	}
	router, ok := d.(drivers.Router)
	if !ok {
		return 0, nil, fmt.Errorf("driver %s is not a switcher", a.Driver)
	}
	deadline := time.Now().Add(as.c.opts.ActionTimeout)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if d.Status().Connected {
			// Routes are idempotent: one the device already shows is not sent
			// again (resumed after a restart, it may have reached the device
			// before we stopped; from a policy reconciling, it may be there).
			if r := router.Routing(); a.Output-1 < len(r) && r[a.Output-1] == a.Input {
				note := "already routed on the device"
				if a.recovered {
					note = "already routed (found on the device after a restart)"
				}
				return attempt, note, nil
			}
		}
		if a.recovered && !d.Status().Connected {
			err := drivers.ErrNotConnected
			if wait := min(backoff, time.Until(deadline)); wait > 0 {
				if !sleep(ctx, wait) {
					return attempt, nil, ctx.Err()
				}
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			return attempt, nil, fmt.Errorf("gave up after %v: %w", as.c.opts.ActionTimeout, err)
		}
		if !as.mayAct(ctx) {
			return attempt, nil, ctx.Err()
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		err := router.Route(actx, a.Output, a.Input)
		cancel()
		if err == nil || errors.Is(err, drivers.ErrRefused) || ctx.Err() != nil {
			return attempt, nil, err
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 {
			return attempt, nil, fmt.Errorf("gave up after %d attempts in %v: %w", attempt, as.c.opts.ActionTimeout, err)
		}
		if !sleep(ctx, wait) {
			return attempt, nil, err
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// control carries out a control action, retrying while the device is not
// reachable (ErrNotConnected) until the action's deadline. A control action
// is not known to be idempotent, so anything else ends it: a refusal, an
// error, or a timeout after the command may have been sent.
func (as *actions) control(ctx context.Context, c drivers.Controller, a *action) (int, any, error) {
	deadline := time.Now().Add(as.c.opts.ActionTimeout)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if !as.mayAct(ctx) {
			return attempt, nil, ctx.Err()
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		result, err := c.Do(actx, a.Args)
		cancel()
		if err == nil || !errors.Is(err, drivers.ErrNotConnected) || ctx.Err() != nil {
			return attempt, result, err
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 || !sleep(ctx, wait) {
			return attempt, nil, fmt.Errorf("gave up after %d attempts in %v: %w", attempt, as.c.opts.ActionTimeout, err)
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// control records a control action for a driver (on the loop).
func (as *actions) controlAction(driver string, args map[string]any, cause string) (string, error) {
	if _, ok := as.workers[driver]; !ok {
		return "", fmt.Errorf("driver %q is not running on this instance", driver)
	}
	return as.add(&action{Driver: driver, Verb: "send", Args: args, Cause: cause})
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sendDue publishes every remote action whose time has come and sets the
// next tick (on the loop).
// busConnected follows this coordinator's bus connection (on the loop).
// While it is down no command leaves, so none runs out of time to be
// answered; when it is back every command still unanswered is sent again
// at once, not after what is left of its backoff (up to 8 s).
func (as *actions) busConnected(up bool) {
	as.busDown = !up
	if !up || len(as.remote) == 0 {
		return
	}
	now := as.c.clock.Now()
	for _, f := range as.remote {
		f.next, f.backoff = now, time.Second
		f.deadline = maxTime(f.deadline, now.Add(as.c.opts.ActionTimeout))
	}
	as.sendDue()
}

// targetHeard sends the unanswered commands to member again now that it is
// heard again (back from lost or suspect, or seen after a restart), instead
// of on their backoff, and gives them a full time to answer from now: the
// time it was away does not count against them, as the coordinator's own
// time without a bus does not (busConnected).
func (as *actions) targetHeard(member string) {
	now := as.c.clock.Now()
	n := 0
	for _, f := range as.remote {
		if f.a.Target != member || f.running {
			continue
		}
		f.next, f.backoff = now, time.Second
		f.deadline = maxTime(f.deadline, now.Add(as.c.opts.ActionTimeout))
		n++
	}
	if n > 0 {
		as.sendDue()
	}
}

func (as *actions) sendDue() {
	now := as.c.clock.Now()
	var next time.Time
	for _, id := range slices.Sorted(maps.Keys(as.remote)) {
		f := as.remote[id]
		target, _ := as.c.table.Get(f.a.Target)
		if target.State == members.Suspect || as.busDown {
			f.deadline = maxTime(f.deadline, now.Add(as.c.opts.ActionTimeout))
		}
		switch {
		case !f.running && !now.Before(f.deadline):
			as.finish(f.a, as.attempts[id], now.Sub(f.sent), nil, fmt.Errorf("no answer from %s within %v", f.a.Target, now.Sub(f.sent).Round(time.Millisecond)))
			continue
		case f.running && target.State == "lost" && now.Sub(target.Since) >= as.c.opts.ActionTimeout:
			as.finish(f.a, as.attempts[id], now.Sub(f.sent), nil, fmt.Errorf("%s was lost while carrying it out", f.a.Target))
			continue
		}
		if !now.Before(f.next) {
			as.publish(f.a)
			as.attempts[id]++
			if f.running {
				f.next = now.Add(5 * time.Second) // ask again: it answers from its store
			} else {
				f.next = now.Add(f.backoff)
				f.backoff = min(f.backoff*2, 8*time.Second)
			}
		}
		if next.IsZero() || f.next.Before(next) {
			next = f.next
		}
	}
	if as.tick != nil {
		as.tick.Stop()
		as.tick = nil
	}
	if len(as.remote) > 0 {
		wait := max(next.Sub(now), 10*time.Millisecond)
		if deadline := as.nearestDeadline(now); deadline > 0 && deadline < wait {
			wait = deadline
		}
		as.tick = as.c.clock.AfterFunc(wait, func() { as.c.Post(as.sendDue) })
	}
}

func (as *actions) nearestDeadline(now time.Time) time.Duration {
	var d time.Duration
	for _, f := range as.remote {
		if !f.running {
			left := f.deadline.Sub(now)
			if d == 0 || left < d {
				d = max(left, time.Millisecond)
			}
		}
	}
	return d
}

func (as *actions) publish(a *action) {
	if as.c.opts.Publisher == nil {
		return
	}
	if as.c.opts.MayAct != nil {
		if err := as.c.opts.MayAct(); err != nil {
			as.c.log.Debug("command held", "id", a.ID, "reason", err)
			return // sent at the next tick
		}
	}
	payload, err := json.Marshal(bus.Command{ID: a.ID, Epoch: a.Epoch, From: as.c.opts.Self, Verb: a.Verb, Args: a.Args})
	if err != nil {
		as.c.log.Error("command cannot be encoded", "id", a.ID, "error", err)
		return
	}
	if err := as.c.opts.Publisher.Publish(as.c.topics.Command(a.Target), 1, false, payload); err != nil {
		as.c.log.Debug("command not published yet", "id", a.ID, "error", err)
		return
	}
	as.c.log.Debug("command sent", "id", a.ID, "to", a.Target, "verb", a.Verb, "attempt", as.attempts[a.ID]+1)
}

// ack takes an instance's answer (on the loop).
func (as *actions) ack(k bus.Ack) {
	f, ok := as.remote[k.ID]
	if !ok || k.Member != f.a.Target {
		return // an answer we no longer wait for, or from the wrong instance
	}
	took := as.c.clock.Now().Sub(f.sent)
	switch k.State {
	case bus.AckRunning:
		if !f.running {
			f.running = true
			f.next = as.c.clock.Now().Add(5 * time.Second)
			f.a.State = stateRunning
			if err := as.write(nil, false, f.a); err != nil {
				as.c.log.Error("action state not written yet; it is written as soon as the state file takes writes", "id", f.a.ID, "error", err)
			}
			as.c.record(engine.Record{Type: events.ActionRunning, Fields: f.a.fields()})
		}
	case bus.AckDone:
		as.finish(f.a, as.attempts[k.ID], took, k.Result, nil)
	case bus.AckFailed:
		as.finish(f.a, as.attempts[k.ID], took, k.Result, errors.New(k.Error))
	case bus.AckStale:
		switch {
		case as.fresh && k.Newest >= as.epoch && k.Newest-as.epoch >= maxAdoptedJump:
			// No coordinator got that far: a member that stored a forged
			// epoch (before members refused them). Moving past it would
			// wrap around to 0 at 2^64-1; the action fails instead.
			as.c.log.Error("an instance reports a coordinator epoch far beyond this one's: not adopted", "member", k.Member, "newest", k.Newest, "epoch", as.epoch)
			as.finish(f.a, as.attempts[k.ID], took, nil, fmt.Errorf("%s refused it: it says it has seen coordinator epoch %d, more than %d past this coordinator's %d: no coordinator got that far (a forged command?); clear that instance's state folder to let it obey again", k.Member, k.Newest, uint64(maxAdoptedJump), as.epoch))
			return
		case as.fresh && k.Newest >= as.epoch:
			as.adoptEpoch(k.Newest + 1)
			return
		}
		as.finish(f.a, as.attempts[k.ID], took, nil, fmt.Errorf("%s refused it: it has seen a newer coordinator epoch than %d (is another coordinator running?)", k.Member, k.Epoch))
	}
}

// maxAdoptedJump bounds how far a fresh coordinator moves its epoch to get
// past one a member has seen: as far as a member accepts above the newest
// it has seen (agent.EpochWindow). It keeps Newest+1 far from wrapping.
const maxAdoptedJump = 1 << 20

// adoptEpoch moves this coordinator past an epoch an instance has seen: its
// own state was lost. It happens once; a second coordinator running at the
// same time would make every later command stale, and that is reported.
func (as *actions) adoptEpoch(epoch uint64) {
	as.fresh = false
	err := as.c.store.Update(func(tx *store.Tx) error { return tx.SetCounter("meta", "epoch", epoch) })
	if err != nil {
		as.c.log.Error("coordinator epoch not moved", "error", err)
		return
	}
	as.c.log.Warn("an instance has seen a newer coordinator epoch: this coordinator's state was lost (new disk or machine?); continuing with a newer epoch. If another coordinator is running, stop it.", "epoch", epoch)
	as.c.record(engine.Record{Type: events.EpochAdopted, Fields: map[string]any{"epoch": epoch}})
	as.epoch = epoch
	for _, f := range as.remote {
		f.a.Epoch = epoch
		f.next = as.c.clock.Now()
	}
	as.sendDue()
}

// finish records an action's result and reports it (on the loop).
func (as *actions) finish(a *action, attempts int, took time.Duration, result any, err error) {
	delete(as.remote, a.ID)
	delete(as.local, a.ID)
	delete(as.attempts, a.ID)
	a.State, a.Result, a.Finished = stateDone, result, as.c.clock.Now()
	if err != nil {
		a.State, a.Error = stateFailed, err.Error()
	}
	if werr := as.write(nil, false, a); werr != nil {
		as.c.log.Error("action result not written yet; it is written as soon as the state file takes writes (until then a restart would send the action again)", "id", a.ID, "error", werr)
	}
	fields := a.fields()
	fields["attempts"] = attempts
	fields["took_ms"] = float64(took.Microseconds()) / 1000
	if result != nil {
		fields["result"] = result
	}
	name := events.ActionDone
	if err != nil {
		name = events.ActionFailed
		fields["error"] = err.Error()
		as.c.log.Error("action failed", "id", a.ID, "do", a.String(), "error", err)
	} else {
		as.c.log.Info("action done", "id", a.ID, "do", a.String(), "took", took.Round(time.Microsecond))
	}
	as.c.record(engine.Record{Type: name, Fields: fields})
	as.c.copyFinished(a, result, err)
	if as.c.takeover != nil {
		as.c.takeover.Result(a.ID, a.Error, a.Result)
	}
	as.c.deliverOnce(policy.Event{Name: name, At: as.c.clock.Now(), Fields: fields}, nil)
	if a.Driver != "" && a.Verb == "route" {
		if err == nil {
			as.c.routeDone(a)
		} else {
			as.c.routeFailed(a, err)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
