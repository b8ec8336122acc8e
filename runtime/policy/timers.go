package policy

import (
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/schedule"
)

// Timer limits: a policy cannot flood the loop.
const (
	MaxTimers   = 10000
	MinInterval = 10 * time.Millisecond
)

// timer is a pending after, every or cron. A timer with a name fires the event
// "timer:NAME" (or "cron:NAME") with its args instead of calling a function.
type timer struct {
	id       int
	fn       *lua.LFunction
	where    string
	name     string
	args     map[string]any
	kind     string // "after", "every", "cron"
	every    time.Duration
	schedule *schedule.Schedule
	due      time.Time
	ct       clock.Timer
}

func (t *timer) stop() {
	if t.ct != nil {
		t.ct.Stop()
	}
}

func (p *Policy) addTimer(L *lua.LState, t *timer) int {
	if len(p.timers) >= MaxTimers {
		L.RaiseError("too many timers (%d): cancel the ones you no longer need", MaxTimers)
	}
	p.nextID++
	t.id = p.nextID
	p.timers[t.id] = t
	p.arm(t)
	return t.id
}

// arm schedules the timer's next firing at t.due (set by the caller) and
// brings the firing back to the owning goroutine.
func (p *Policy) arm(t *timer) {
	c := p.env.Clock()
	id := t.id
	t.ct = c.AfterFunc(t.due.Sub(c.Now()), func() {
		p.env.Post(func() { p.fire(id) })
	})
}

func (p *Policy) fire(id int) {
	t, ok := p.timers[id]
	if p.closed || !ok {
		return
	}
	switch t.kind {
	case "after":
		delete(p.timers, id)
	case "every":
		t.due = t.due.Add(t.every)
		if now := p.env.Clock().Now(); t.due.Before(now) {
			t.due = now // fell behind (a long handler): skip, don't burst
		}
		p.arm(t)
	case "cron":
		t.due = t.schedule.Next(p.env.Clock().Now())
		if t.due.IsZero() {
			delete(p.timers, id)
		} else {
			p.arm(t)
		}
	}
	if t.name != "" {
		prefix := events.TimerPrefix
		if t.kind == "cron" {
			prefix = events.CronPrefix
		}
		fields := map[string]any{"name": t.name}
		for k, v := range t.args {
			fields[k] = v
		}
		for _, err := range p.Dispatch(Event{Name: prefix + t.name, At: p.env.Clock().Now(), Fields: fields}) {
			p.logError("policy handler failed", err)
		}
		return
	}
	prev := p.current
	p.current = t.kind + " timer (" + t.where + ")"
	err := p.call(t.fn, t.kind+" timer", t.where)
	p.current = prev
	if err != nil {
		p.logError("policy timer failed", err)
	}
}

// checkDuration reads a duration argument: a string with units ("5m",
// "300ms", "2h", "1d") or a number of seconds.
func checkDuration(L *lua.LState, n int) time.Duration {
	switch v := L.Get(n).(type) {
	case lua.LNumber:
		if v < 0 || float64(v) > float64(3650*24*time.Hour/time.Second) {
			L.ArgError(n, fmt.Sprintf("duration %v s out of range", float64(v)))
		}
		return time.Duration(float64(v) * float64(time.Second))
	case lua.LString:
		d, err := config.ParseDuration(string(v))
		if err != nil {
			L.ArgError(n, err.Error())
		}
		return d
	default:
		L.ArgError(n, "want a duration: a string like \"5m\" or \"300ms\", or a number of seconds")
	}
	return 0
}

// timerArgs reads the optional name and args of a named timer (args at n+1).
func timerArgs(L *lua.LState, n int) map[string]any {
	if L.GetTop() < n || L.Get(n) == lua.LNil {
		return nil
	}
	t := L.CheckTable(n)
	v, err := fromLua(t)
	if err != nil {
		L.ArgError(n, err.Error())
	}
	m, ok := v.(map[string]any)
	if !ok {
		L.ArgError(n, "timer args must be a table with named fields, like {member = \"main\"}")
	}
	return m
}

func (p *Policy) timerHandle(L *lua.LState, id int) *lua.LTable {
	h := L.CreateTable(0, 1)
	h.RawSetString("id", lua.LNumber(id))
	L.SetMetatable(h, p.timerMeta)
	return h
}

// storedTimerHandle is the handle of a named after-timer the runtime keeps.
func (p *Policy) storedTimerHandle(L *lua.LState, id string) *lua.LTable {
	h := L.CreateTable(0, 1)
	h.RawSetString("id", lua.LString(id))
	L.SetMetatable(h, p.timerMeta)
	return h
}

func (p *Policy) newTimerMeta(L *lua.LState) *lua.LTable {
	methods := L.NewTable()
	// A handle's id is a number for the policy's own timers and a string
	// for named timers the runtime keeps.
	idOf := func(L *lua.LState) (int, string) {
		h := L.CheckTable(1)
		switch id := h.RawGetString("id").(type) {
		case lua.LNumber:
			return int(id), ""
		case lua.LString:
			return 0, string(id)
		}
		L.ArgError(1, "not a timer (call it as t:cancel())")
		return 0, ""
	}
	methods.RawSetString("cancel", L.NewFunction(func(L *lua.LState) int {
		id, stored := idOf(L)
		if stored != "" {
			L.Push(lua.LBool(p.env.CancelTimer(stored)))
			return 1
		}
		t, ok := p.timers[id]
		if ok {
			t.stop()
			delete(p.timers, id)
		}
		L.Push(lua.LBool(ok))
		return 1
	}))
	methods.RawSetString("remaining", L.NewFunction(func(L *lua.LState) int {
		id, stored := idOf(L)
		due, ok := time.Time{}, false
		if stored != "" {
			for _, t := range p.env.Timers("") {
				if t.ID == stored {
					due, ok = t.Due, true
				}
			}
		} else if t, found := p.timers[id]; found {
			due, ok = t.due, true
		}
		if !ok {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(lua.LNumber(due.Sub(p.env.Clock().Now()).Seconds()))
		return 1
	}))
	meta := L.NewTable()
	meta.RawSetString("__index", methods)
	return meta
}
