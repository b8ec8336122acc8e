package coordinator

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	"understudy/runtime/engine"

	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/policy"
	"understudy/runtime/store"
)

const bucketTimers = "timers"

// namedTimer is a pending us.after(delay, "NAME", args): a deadline kept in
// the store, so failback delays, failover delays and "act after T" survive a
// restart of the coordinator and a reload of the policy.
type namedTimer struct {
	ID   string         `json:"id"`
	Name string         `json:"name"`
	Args map[string]any `json:"args,omitempty"`
	Due  time.Time      `json:"due"`
	// Set is when it was set: a coordinator started again on a host whose
	// clock went back since (stepped back) waits at most Due - Set, the
	// delay it was set for, not the step on top of it.
	Set   time.Time `json:"set,omitzero"`
	Where string    `json:"where,omitempty"` // policy file:line that set it
	ct    clock.Timer
}

type namedTimers struct {
	c   *Coordinator
	all map[string]*namedTimer
}

func newNamedTimers(c *Coordinator) *namedTimers {
	return &namedTimers{c: c, all: map[string]*namedTimer{}}
}

// restore arms the timers the store holds; those whose deadline passed while
// the coordinator was down fire at once.
func (ts *namedTimers) restore() error {
	all, err := store.Load[*namedTimer](ts.c.store, bucketTimers)
	if err != nil {
		return fmt.Errorf("named timers: %w", err)
	}
	for _, id := range slices.Sorted(maps.Keys(all)) {
		t := all[id]
		ts.all[id] = t
		ts.arm(t)
		ts.c.log.Info("named timer restored", "timer", t.Name, "args", t.Args, "due", t.Due, "in", ts.wait(t).Round(time.Millisecond))
		if now := ts.c.clock.Now(); !t.Set.IsZero() && now.Before(t.Set) {
			ts.c.log.Warn("the clock is earlier than when a named timer was set (stepped back?): it waits at most the delay it was set for",
				"timer", t.Name, "set", t.Set, "now", now, "delay", t.Due.Sub(t.Set))
		}
	}
	return nil
}

func (ts *namedTimers) stop() {
	for _, t := range ts.all {
		if t.ct != nil {
			t.ct.Stop()
		}
	}
}

func (ts *namedTimers) arm(t *namedTimer) {
	id := t.ID
	t.ct = ts.c.clock.AfterFunc(ts.wait(t), func() { ts.c.Post(func() { ts.fire(id) }) })
}

// wait is how long t has to run from now: to its deadline, but never more
// than the delay it was set for (a clock stepped back since it was set
// would add the step; one stepped forward fires it early, as downtime
// would).
func (ts *namedTimers) wait(t *namedTimer) time.Duration {
	now := ts.c.clock.Now()
	d := t.Due.Sub(now)
	if !t.Set.IsZero() && now.Before(t.Set) {
		d = min(d, t.Due.Sub(t.Set))
	}
	return d
}

// set records and arms a named timer and returns its id.
func (ts *namedTimers) set(name string, args map[string]any, due time.Time, where string) (string, error) {
	if len(ts.all) >= policy.MaxTimers {
		return "", fmt.Errorf("too many named timers (%d): cancel the ones you no longer need", policy.MaxTimers)
	}
	var t *namedTimer
	err := ts.c.store.Update(func(tx *store.Tx) error {
		n, err := tx.Increment("meta", "timer_seq")
		if err != nil {
			return err
		}
		t = &namedTimer{ID: "t" + strconv.FormatUint(n, 10), Name: name, Args: args, Due: due, Set: ts.c.clock.Now(), Where: where}
		return tx.Put(bucketTimers, t.ID, t)
	})
	if err != nil {
		return "", fmt.Errorf("timer not recorded: %w", err)
	}
	ts.all[t.ID] = t
	ts.arm(t)
	return t.ID, nil
}

func (ts *namedTimers) remove(id string) bool {
	t, ok := ts.all[id]
	if !ok {
		return false
	}
	if err := ts.c.store.Delete(bucketTimers, id); err != nil {
		ts.c.log.Error("timer not removed from the store", "timer", t.Name, "error", err)
		return false
	}
	if t.ct != nil {
		t.ct.Stop()
	}
	delete(ts.all, id)
	return true
}

func (ts *namedTimers) fire(id string) {
	t, ok := ts.all[id]
	if !ok {
		return
	}
	if t.ct != nil {
		t.ct.Stop()
	}
	delete(ts.all, id)
	fields := map[string]any{"name": t.Name}
	for k, v := range t.Args {
		fields[k] = v
	}
	if late := ts.c.clock.Now().Sub(t.Due); late > time.Second {
		fields["late_s"] = late.Seconds() // the coordinator was down at the deadline
	}
	member, _ := t.Args["member"].(string)
	ts.c.record(engine.Record{Type: events.TimerEvent(t.Name), Member: member, Fields: fields})
	// The timer leaves the store in the same transaction as its event enters
	// the inbox: a restart neither loses nor repeats it.
	ts.c.deliverOnce(policy.Event{Name: events.TimerEvent(t.Name), At: ts.c.clock.Now(), Fields: fields}, func(tx *store.Tx) error {
		return tx.Delete(bucketTimers, id)
	})
}

// cancel removes the named timers called name whose args contain match.
func (ts *namedTimers) cancel(name string, match map[string]any) int {
	n := 0
	for _, id := range slices.Sorted(maps.Keys(ts.all)) {
		t := ts.all[id]
		if t.Name == name && policy.ArgsMatch(t.Args, match) && ts.remove(id) {
			n++
		}
	}
	return n
}

func (ts *namedTimers) list(name string) []policy.TimerInfo {
	var out []policy.TimerInfo
	for _, t := range ts.all {
		if name == "" || t.Name == name {
			out = append(out, policy.TimerInfo{ID: t.ID, Name: t.Name, Args: t.Args, Due: t.Due})
		}
	}
	slices.SortFunc(out, func(a, b policy.TimerInfo) int {
		if c := a.Due.Compare(b.Due); c != 0 {
			return c
		}
		return compareIDs(a.ID, b.ID)
	})
	return out
}

func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}
