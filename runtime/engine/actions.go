package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"understudy/drivers"
	"understudy/runtime/policy"
)

// actionQueue is how many actions may wait for one driver.
const actionQueue = 256

// action is one command the policy asked a driver to carry out. Its result
// comes back to the loop as an action_done or action_failed event.
type action struct {
	ID      string
	Driver  string
	Verb    string
	Output  int
	Input   int
	Cause   string
	Created time.Time
}

func (a *action) fields() map[string]any {
	return map[string]any{"id": a.ID, "driver": a.Driver, "verb": a.Verb, "output": a.Output, "input": a.Input, "cause": a.Cause}
}

func (a *action) String() string {
	return fmt.Sprintf("%s %s output %d ← input %d", a.Driver, a.Verb, a.Output, a.Input)
}

// actions runs each driver's commands in order on a worker of its own, so a
// slow switcher never holds up the loop or another device.
type actions struct {
	e       *Engine
	next    uint64
	workers map[string]chan *action
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

func newActions(e *Engine) *actions { return &actions{e: e, workers: map[string]chan *action{}} }

func (as *actions) start(ctx context.Context) {
	ctx, as.cancel = context.WithCancel(ctx)
	for _, name := range slices.Sorted(maps.Keys(as.e.opts.Drivers)) {
		ch := make(chan *action, actionQueue)
		as.workers[name] = ch
		as.wg.Add(1)
		go func() {
			defer as.wg.Done()
			as.work(ctx, as.e.opts.Drivers[name], ch)
		}()
	}
}

func (as *actions) stop() {
	if as.cancel != nil {
		as.cancel()
	}
	as.wg.Wait()
}

// route creates and queues a route action (on the loop).
func (as *actions) route(driver string, out, in int, cause string) (string, error) {
	ch, ok := as.workers[driver]
	if !ok {
		return "", fmt.Errorf("driver %q is not running on this instance", driver)
	}
	as.next++
	a := &action{ID: as.e.opts.Self + "-" + strconv.FormatUint(as.next, 10), Driver: driver, Verb: "route", Output: out, Input: in, Cause: cause, Created: as.e.clock.Now()}
	select {
	case ch <- a:
	default:
		return "", fmt.Errorf("driver %q has %d actions waiting", driver, actionQueue)
	}
	as.e.log.Info("action", "id", a.ID, "do", a.String(), "cause", cause)
	as.e.record(Record{Type: "action_started", Fields: a.fields()})
	return a.ID, nil
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
			attempts, err := as.execute(ctx, d, a)
			took := time.Since(start)
			as.e.Post(func() { as.finished(a, attempts, took, err) })
		}
	}
}

func (as *actions) execute(ctx context.Context, d drivers.Driver, a *action) (int, error) {
	router, ok := d.(drivers.Router)
	if !ok {
		return 0, fmt.Errorf("driver %s is not a switcher", a.Driver)
	}
	deadline := time.Now().Add(as.e.opts.ActionTimeout)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithDeadline(ctx, deadline)
		err := router.Route(actx, a.Output, a.Input)
		cancel()
		if err == nil || errors.Is(err, drivers.ErrRefused) || ctx.Err() != nil {
			return attempt, err
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 {
			return attempt, fmt.Errorf("gave up after %d attempts in %v: %w", attempt, as.e.opts.ActionTimeout, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, err
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// finished reports an action's result on the loop.
func (as *actions) finished(a *action, attempts int, took time.Duration, err error) {
	fields := a.fields()
	fields["attempts"] = attempts
	fields["took_ms"] = float64(took.Microseconds()) / 1000
	name := "action_done"
	if err != nil {
		name = "action_failed"
		fields["error"] = err.Error()
		as.e.log.Error("action failed", "id", a.ID, "do", a.String(), "error", err)
	} else {
		as.e.log.Info("action done", "id", a.ID, "do", a.String(), "took", took.Round(time.Microsecond))
	}
	as.e.record(Record{Type: name, Fields: fields})
	as.e.dispatch(policy.Event{Name: name, At: as.e.clock.Now(), Fields: fields})
}
