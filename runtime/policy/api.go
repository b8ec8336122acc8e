package policy

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"understudy/drivers"
	"understudy/runtime/schedule"
)

// Function is one function of the `understudy` Lua module. The list returned
// by API is the single definition of the module: the loader builds the Lua
// table from it and the documentation and editor definitions are generated
// from it, so they cannot drift apart.
type Function struct {
	Name    string // as called from Lua: "on", "log.info"
	Params  string // LuaLS-style parameter list: "event: string, handler: fun(ev: Event)"
	Returns string // LuaLS-style return type, "" for none
	Doc     string
	fn      func(p *Policy, L *lua.LState) int
}

// API returns the functions of the `understudy` module.
func API() []Function {
	return slices.Concat(coreAPI(), takeoverAPI(), alarmAPI(), stateAPI())
}

func coreAPI() []Function {
	return []Function{
		{Name: "on", Params: "event: EventName|string, handler: fun(ev: Event)", Doc: "Calls handler for every event with this name (\"member_lost\", \"timer:failback\", …; \"*\" for all). Handlers run in the order registered.", fn: (*Policy).luaOn},
		{Name: "after", Params: "delay: string|number, handler_or_name: fun()|string, args?: table", Returns: "Timer", Doc: "Runs handler once after delay (\"5m\", \"300ms\", or seconds). Given a name instead, fires the event \"timer:NAME\" with args as its fields.", fn: (*Policy).luaAfter},
		{Name: "every", Params: "interval: string|number, handler: fun()", Returns: "Timer", Doc: "Runs handler every interval (at least 10ms), first after one interval.", fn: (*Policy).luaEvery},
		{Name: "cron", Params: "expr: string, handler_or_name: fun()|string, args?: table", Returns: "Timer", Doc: "Runs handler at the times of a cron expression (\"30 2 * * *\", \"@hourly\") in the site's time zone. Given a name, fires \"cron:NAME\".", fn: (*Policy).luaCron},
		{Name: "cancel", Params: "name: string, match?: table", Returns: "integer", Doc: "Cancels the pending named timers called name whose args contain every field of match; returns how many.", fn: (*Policy).luaCancel},
		{Name: "timers", Params: "name?: string", Returns: "TimerInfo[]", Doc: "Lists pending named timers (all, or those called name): {name, args, remaining}.", fn: (*Policy).luaTimers},
		{Name: "now", Returns: "number", Doc: "The runtime clock as Unix seconds (with milliseconds). Virtual in the simulator.", fn: (*Policy).luaNow},
		{Name: "member", Params: "id: string", Returns: "Member|nil", Doc: "The member with this id as it is now, or nil.", fn: (*Policy).luaMember},
		{Name: "members", Returns: "Member[]", Doc: "Every member, sorted by id.", fn: (*Policy).luaMembers},
		{Name: "driver", Params: "name: string", Returns: "Router", Doc: "The driver of this name from site.yaml; raises an error if there is none.", fn: (*Policy).luaDriver},
		{Name: "publish", Params: "topic: string, payload: string|table|number|boolean, opts?: {retain?: boolean}", Doc: "Publishes on the MQTT bus; a table is sent as JSON.", fn: (*Policy).luaPublish},
		{Name: "log.debug", Params: "msg: string, fields?: table", Doc: "Logs at debug level with the policy's file:line.", fn: logAt(slog.LevelDebug)},
		{Name: "log.info", Params: "msg: string, fields?: table", Doc: "Logs at info level.", fn: logAt(slog.LevelInfo)},
		{Name: "log.warn", Params: "msg: string, fields?: table", Doc: "Logs at warn level.", fn: logAt(slog.LevelWarn)},
		{Name: "log.error", Params: "msg: string, fields?: table", Doc: "Logs at error level.", fn: logAt(slog.LevelError)},
	}
}

// loader builds the `understudy` module table (Loader(L) in the nakama style:
// a table of snake_case functions that check their arguments, do the work,
// push results and raise errors with L.RaiseError).
func (p *Policy) loader(L *lua.LState) *lua.LTable {
	p.timerMeta = p.newTimerMeta(L)
	p.memberMeta = p.newMemberMeta(L)
	mod := L.NewTable()
	for _, f := range API() {
		fn := f.fn
		lf := L.NewFunction(func(L *lua.LState) int { return fn(p, L) })
		table := mod
		name := f.Name
		if prefix, rest, ok := strings.Cut(f.Name, "."); ok {
			sub, isTable := mod.RawGetString(prefix).(*lua.LTable)
			if !isTable {
				sub = L.NewTable()
				mod.RawSetString(prefix, sub)
			}
			table, name = sub, rest
		}
		table.RawSetString(name, lf)
	}
	mod.RawSetString("site", lua.LString(p.opts.Site))
	mod.RawSetString("self", lua.LString(p.opts.Self))
	mod.RawSetString("settings", toLua(L, p.opts.Settings))
	if p.opts.Settings == nil {
		mod.RawSetString("settings", L.NewTable())
	}
	return mod
}

func (p *Policy) luaOn(L *lua.LState) int {
	name := L.CheckString(1)
	fn := L.CheckFunction(2)
	if name == "" {
		L.ArgError(1, "event name is empty")
	}
	if _, seen := p.handlers[name]; !seen {
		p.order = append(p.order, name)
	}
	p.handlers[name] = append(p.handlers[name], handler{fn: fn, where: where(fn)})
	return 0
}

func (p *Policy) luaAfter(L *lua.LState) int {
	d := checkDuration(L, 1)
	t := &timer{kind: "after", due: p.env.Clock().Now().Add(d)}
	p.timerTarget(L, t, 2)
	if t.name != "" {
		// A named deadline is kept by the runtime: it survives restarts and reloads.
		id, err := p.env.SetTimer(t.name, t.args, t.due, t.where)
		if err != nil {
			L.RaiseError("after %s: %v", t.name, err)
		}
		L.Push(p.storedTimerHandle(L, id))
		return 1
	}
	L.Push(p.timerHandle(L, p.addTimer(L, t)))
	return 1
}

func (p *Policy) luaEvery(L *lua.LState) int {
	d := checkDuration(L, 1)
	if d < MinInterval {
		L.ArgError(1, fmt.Sprintf("interval %v is shorter than %v", d, MinInterval))
	}
	t := &timer{kind: "every", every: d, due: p.env.Clock().Now().Add(d)}
	p.timerTarget(L, t, 2)
	L.Push(p.timerHandle(L, p.addTimer(L, t)))
	return 1
}

func (p *Policy) luaCron(L *lua.LState) int {
	expr := L.CheckString(1)
	s, err := schedule.Parse(expr, p.env.Location())
	if err != nil {
		L.ArgError(1, err.Error())
	}
	due := s.Next(p.env.Clock().Now())
	if due.IsZero() {
		L.ArgError(1, fmt.Sprintf("cron %q never fires", expr))
	}
	t := &timer{kind: "cron", schedule: s, due: due}
	p.timerTarget(L, t, 2)
	L.Push(p.timerHandle(L, p.addTimer(L, t)))
	return 1
}

// timerTarget reads argument n: a function to call, or a name (with args at
// n+1) for an event.
func (p *Policy) timerTarget(L *lua.LState, t *timer, n int) {
	switch v := L.Get(n).(type) {
	case *lua.LFunction:
		t.fn, t.where = v, where(v)
	case lua.LString:
		if v == "" {
			L.ArgError(n, "timer name is empty")
		}
		t.name, t.args, t.where = string(v), timerArgs(L, n+1), callerWhere(L)
	default:
		L.ArgError(n, "want a function to call, or a name for a timer event")
	}
}

func (p *Policy) luaCancel(L *lua.LState) int {
	name := L.CheckString(1)
	match := timerArgs(L, 2)
	n := p.env.CancelTimers(name, match)
	for id, t := range p.timers {
		if t.name == name && argsMatch(t.args, match) {
			t.stop()
			delete(p.timers, id)
			n++
		}
	}
	L.Push(lua.LNumber(n))
	return 1
}

// ArgsMatch reports whether a named timer's args contain every field of match.
func ArgsMatch(args, match map[string]any) bool { return argsMatch(args, match) }

func argsMatch(args, match map[string]any) bool {
	for k, v := range match {
		if fmt.Sprint(args[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

func (p *Policy) luaTimers(L *lua.LState) int {
	name := L.OptString(1, "")
	out := L.NewTable()
	now := p.env.Clock().Now()
	for _, t := range p.env.Timers(name) {
		e := L.NewTable()
		e.RawSetString("name", lua.LString(t.Name))
		e.RawSetString("args", toLua(L, t.Args))
		e.RawSetString("remaining", lua.LNumber(t.Due.Sub(now).Seconds()))
		out.Append(e)
	}
	for _, id := range sortedTimerIDs(p.timers) {
		t := p.timers[id]
		if t.name == "" || (name != "" && t.name != name) {
			continue
		}
		e := L.NewTable()
		e.RawSetString("name", lua.LString(t.name))
		e.RawSetString("args", toLua(L, t.args))
		e.RawSetString("remaining", lua.LNumber(t.due.Sub(now).Seconds()))
		out.Append(e)
	}
	L.Push(out)
	return 1
}

func (p *Policy) luaNow(L *lua.LState) int {
	L.Push(unixSeconds(p.env.Clock().Now()))
	return 1
}

func (p *Policy) luaMember(L *lua.LState) int {
	m, ok := p.env.Member(L.CheckString(1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(p.memberTable(L, m))
	return 1
}

func (p *Policy) luaMembers(L *lua.LState) int {
	out := L.NewTable()
	for _, m := range p.env.Members() {
		out.Append(p.memberTable(L, m))
	}
	L.Push(out)
	return 1
}

func (p *Policy) luaPublish(L *lua.LState) int {
	topic := L.CheckString(1)
	if topic == "" || len(topic) > 512 || strings.ContainsAny(topic, "+#\x00") {
		L.ArgError(1, "topic must be non-empty, at most 512 bytes, without + or #")
	}
	var payload []byte
	switch v := L.Get(2).(type) {
	case lua.LString:
		if len(v) > MaxConverted {
			L.ArgError(2, fmt.Sprintf("payload of %d bytes, more than %d", len(v), MaxConverted))
		}
		payload = []byte(v)
	case *lua.LTable, lua.LNumber, lua.LBool:
		goValue, err := fromLua(v)
		if err != nil {
			L.ArgError(2, err.Error())
		}
		payload, err = json.Marshal(goValue)
		if err != nil {
			L.ArgError(2, err.Error())
		}
	default:
		L.ArgError(2, "payload must be a string, table, number or boolean")
	}
	retain := false
	if opts, ok := L.Get(3).(*lua.LTable); ok {
		retain = lua.LVAsBool(opts.RawGetString("retain"))
	}
	if err := p.env.Publish(topic, payload, retain); err != nil {
		L.RaiseError("publish %s: %v", topic, err)
	}
	return 0
}

// MaxLogMessage is the longest message us.log writes; a longer one is cut
// and says how much was left out. Its fields are bounded by MaxConverted.
const MaxLogMessage = 4096

func logAt(level slog.Level) func(p *Policy, L *lua.LState) int {
	return func(p *Policy, L *lua.LState) int {
		msg := L.CheckString(1)
		if len(msg) > MaxLogMessage {
			msg = fmt.Sprintf("%s… (%d more bytes)", msg[:MaxLogMessage], len(msg)-MaxLogMessage)
		}
		attrs := []any{"policy", callerWhere(L)}
		if fields, ok := L.Get(2).(*lua.LTable); ok {
			v, err := fromLua(fields)
			if err != nil {
				L.ArgError(2, err.Error())
			}
			if m, ok := v.(map[string]any); ok {
				for _, k := range slices.Sorted(maps.Keys(m)) {
					attrs = append(attrs, k, m[k])
				}
			}
		}
		p.log.Log(L.Context(), level, msg, attrs...)
		return 0
	}
}

// memberTable returns a member as a Lua table with methods has_role and has_usage.
func (p *Policy) memberTable(L *lua.LState, m Member) *lua.LTable {
	t := L.CreateTable(0, 12)
	t.RawSetString("id", lua.LString(m.ID))
	t.RawSetString("state", lua.LString(m.State))
	t.RawSetString("since", toLua(L, m.Since))
	t.RawSetString("reason", lua.LString(m.Reason))
	t.RawSetString("roles", toLua(L, m.Roles))
	t.RawSetString("usage", toLua(L, m.Usage))
	t.RawSetString("priority", lua.LNumber(m.Priority))
	t.RawSetString("standby", lua.LBool(m.Standby))
	t.RawSetString("self", lua.LBool(m.Self))
	duties := toLua(L, m.Duties)
	if m.Duties == nil {
		duties = L.NewTable()
	}
	t.RawSetString("duties", duties)
	t.RawSetString("pool", lua.LString(m.Pool))
	t.RawSetString("capacity", lua.LNumber(m.Capacity))
	t.RawSetString("disk_layout", lua.LString(m.DiskLayout))
	t.RawSetString("capabilities", toLua(L, m.Capabilities))
	t.RawSetString("requires", toLua(L, m.Requires))
	if m.Capabilities == nil {
		t.RawSetString("capabilities", L.NewTable())
	}
	if m.Requires == nil {
		t.RawSetString("requires", L.NewTable())
	}
	failover := toLua(L, m.Failover)
	if m.Failover == nil {
		failover = L.NewTable()
	}
	t.RawSetString("failover", failover)
	if m.CoveredBy != "" {
		t.RawSetString("covered_by", lua.LString(m.CoveredBy))
	}
	L.SetMetatable(t, p.memberMeta)
	return t
}

func (p *Policy) newMemberMeta(L *lua.LState) *lua.LTable {
	contains := func(field string) *lua.LFunction {
		return L.NewFunction(func(L *lua.LState) int {
			m := L.CheckTable(1)
			want := L.CheckString(2)
			found := false
			if list, ok := m.RawGetString(field).(*lua.LTable); ok {
				list.ForEach(func(_, v lua.LValue) { found = found || v.String() == want })
			}
			L.Push(lua.LBool(found))
			return 1
		})
	}
	methods := L.NewTable()
	methods.RawSetString("has_role", contains("roles"))
	methods.RawSetString("has_usage", contains("usage"))
	meta := L.NewTable()
	meta.RawSetString("__index", methods)
	meta.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		m := L.CheckTable(1)
		L.Push(lua.LString(fmt.Sprintf("member %s (%s)", m.RawGetString("id"), m.RawGetString("state"))))
		return 1
	}))
	return meta
}

// eventTable builds the handler argument: name, at, member and the fields.
func (p *Policy) eventTable(ev Event) *lua.LTable {
	L := p.L
	t := L.CreateTable(0, len(ev.Fields)+3)
	for _, k := range slices.Sorted(maps.Keys(ev.Fields)) {
		t.RawSetString(k, toLua(L, ev.Fields[k]))
	}
	t.RawSetString("name", lua.LString(ev.Name))
	if !ev.At.IsZero() {
		t.RawSetString("at", unixSeconds(ev.At))
	}
	if ev.Member != nil {
		t.RawSetString("member", p.memberTable(L, *ev.Member))
	}
	return t
}

// luaDriver returns a driver object. Every driver has status() and
// connected(); routers add route, keep, routing, size and labels.
func (p *Policy) luaDriver(L *lua.LState) int {
	name := L.CheckString(1)
	d, ok := p.env.Driver(name)
	if !ok {
		L.RaiseError("no driver %q in site.yaml (drivers: %s)", name, strings.Join(p.env.DriverNames(), ", "))
	}
	obj := L.NewTable()
	obj.RawSetString("name", lua.LString(name))
	methods := L.NewTable()
	self := func(L *lua.LState, method string) {
		if L.Get(1) != obj {
			L.RaiseError("call it as %s:%s(…), with a colon", name, method)
		}
	}
	method := func(m string, fn func(L *lua.LState) int) {
		methods.RawSetString(m, L.NewFunction(func(L *lua.LState) int { self(L, m); return fn(L) }))
	}
	method("status", func(L *lua.LState) int {
		st := d.Status()
		t := L.NewTable()
		t.RawSetString("connected", lua.LBool(st.Connected))
		t.RawSetString("address", lua.LString(st.Address))
		t.RawSetString("since", toLua(L, st.Since))
		if st.LastError != "" {
			t.RawSetString("error", lua.LString(st.LastError))
		}
		L.Push(t)
		return 1
	})
	method("connected", func(L *lua.LState) int {
		L.Push(lua.LBool(d.Status().Connected))
		return 1
	})
	if c, ok := d.(drivers.Controller); ok {
		method("send", func(L *lua.LState) int {
			var args map[string]any
			switch v := L.Get(2).(type) {
			case lua.LString:
				args = map[string]any{"command": string(v)}
			case *lua.LTable:
				goValue, err := fromLua(v)
				if err != nil {
					L.ArgError(2, err.Error())
				}
				m, ok := goValue.(map[string]any)
				if !ok {
					L.ArgError(2, "want a command name or a table of named fields, like {command = \"power_on\"}")
				}
				args = m
			default:
				L.ArgError(2, "want a command name or a table of named fields")
			}
			if err := c.Check(args); err != nil {
				L.ArgError(2, fmt.Sprintf("%s: %v", name, err))
			}
			id, err := p.env.Send(name, args, p.current+" at "+callerWhere(L))
			if err != nil {
				L.RaiseError("send on %s: %v", name, err)
			}
			L.Push(lua.LString(id))
			return 1
		})
	}
	if r, ok := d.(drivers.Router); ok {
		method("route", func(L *lua.LState) int {
			out, in := L.CheckInt(2), L.CheckInt(3)
			inputs, outputs := r.Size()
			if out < 1 || (outputs > 0 && out > outputs) {
				L.ArgError(2, fmt.Sprintf("output %d: %s has outputs 1..%d", out, name, outputs))
			}
			if in < 1 || (inputs > 0 && in > inputs) {
				L.ArgError(3, fmt.Sprintf("input %d: %s has inputs 1..%d", in, name, inputs))
			}
			id, err := p.env.Route(name, out, in, p.current+" at "+callerWhere(L))
			if err != nil {
				L.RaiseError("route %s output %d ← input %d: %v", name, out, in, err)
			}
			L.Push(lua.LString(id))
			return 1
		})
		method("keep", func(L *lua.LState) int {
			out := L.CheckInt(2)
			if _, outputs := r.Size(); out < 1 || (outputs > 0 && out > outputs) {
				L.ArgError(2, fmt.Sprintf("output %d: %s has outputs 1..%d", out, name, outputs))
			}
			in, err := p.env.KeepRoute(name, out, p.current+" at "+callerWhere(L))
			if err != nil {
				L.RaiseError("keep %s output %d: %v", name, out, err)
			}
			L.Push(lua.LNumber(in))
			return 1
		})
		method("routing", func(L *lua.LState) int {
			t := L.NewTable()
			for i, in := range r.Routing() {
				if in > 0 {
					t.RawSetInt(i+1, lua.LNumber(in))
				}
			}
			L.Push(t)
			return 1
		})
		method("size", func(L *lua.LState) int {
			inputs, outputs := r.Size()
			L.Push(lua.LNumber(inputs))
			L.Push(lua.LNumber(outputs))
			return 2
		})
		method("labels", func(L *lua.LState) int {
			t := L.NewTable()
			t.RawSetString("inputs", toLua(L, r.InputLabels()))
			t.RawSetString("outputs", toLua(L, r.OutputLabels()))
			L.Push(t)
			return 1
		})
	}
	meta := L.NewTable()
	meta.RawSetString("__index", methods)
	L.SetMetatable(obj, meta)
	L.Push(obj)
	return 1
}

func sortedTimerIDs(m map[int]*timer) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
