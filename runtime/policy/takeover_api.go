package policy

import (
	"fmt"
	"slices"
	"time"

	lua "github.com/yuin/gopher-lua"

	"understudy/runtime/takeover"
)

// takeoverAPI lists the takeover functions of the module (see API).
func takeoverAPI() []Function {
	return []Function{
		{Name: "takeover", Params: "member: Member|string, standby?: Member|string, opts?: {pool?: string, reason?: string, confirmed?: boolean}", Returns: "string, string|nil",
			Doc: "Has standby (or the best free one of the member's pool) take over member's duties. Returns the outcome — \"started\", \"queued\" (failover limit reached or no standby free), \"proposed\" (manual mode: an operator confirms) or \"covered\" (already) — and the standby's id (the proposal's id when proposed). Raises an error for a member that is a standby: a standby is never covered.", fn: (*Policy).luaTakeover},
		{Name: "queue", Params: "member: Member|string, opts?: {standby?: string, pool?: string, reason?: string}", Returns: "string",
			Doc: "Puts member in the queue for a standby (by priority, then time); it starts when the limit and a free standby allow. Raises an error for a standby.", fn: (*Policy).luaQueue},
		{Name: "failback", Params: "member: Member|string, opts?: {reason?: string}", Returns: "string",
			Doc: "Gives a covered member its duties back: it resumes them (the standby keeps them until it reports ready when failover.wait_ready), the standby lets go, then the material it recorded is copied back when failover.copy_material; the coverage ends when that is done. A suspect member may be failed back: each step waits while it is suspect. Returns \"failing_back\". Raises an error if the member is not covered, or lost, closed or broken.", fn: (*Policy).luaFailback},
		{Name: "takeover_all", Params: "standby: Member|string", Returns: "{member: string, status: string}[]",
			Doc: "Manual \"take over all\": standby takes over every member of its pool (without pools: every member sharing a role with it), whatever their state (beyond its capacity they queue for it). Not turned into proposals.", fn: (*Policy).luaTakeoverAll},
		{Name: "covered", Params: "member: Member|string", Returns: "Coverage|nil",
			Doc: "Who covers member: {member, standby, since, phase, grace_remaining}, or nil. phase is starting, covering, resuming, releasing or copying (in that order).", fn: (*Policy).luaCovered},
		{Name: "coverage", Returns: "Coverage[]", Doc: "Every coverage, by member id.", fn: (*Policy).luaCoverage},
		{Name: "queued", Returns: "Queued[]", Doc: "The queue in the order it will start: {member, standby, pool, priority, since, position}.", fn: (*Policy).luaQueued},
		{Name: "pool", Params: "name: string", Returns: "Pool", Doc: "A standby pool, with pool:pick{member = m, usage = \"…\", exclude = {…}} (the best free standby for m, or nil), pool:members() and pool:free().", fn: (*Policy).luaPool},
		{Name: "mode", Returns: "string", Doc: "The takeover mode: \"auto\" or \"manual\".", fn: (*Policy).luaMode},
		{Name: "set_mode", Params: "mode: string", Doc: "Switches the takeover mode (\"auto\" or \"manual\"); switching to auto carries out the waiting proposals.", fn: (*Policy).luaSetMode},
		{Name: "proposals", Returns: "Proposal[]", Doc: "Takeovers waiting for an operator: {id, member, standby, created, act_in}.", fn: (*Policy).luaProposals},
		{Name: "confirm", Params: "id: string", Doc: "Carries out a proposal (as the command:confirm event of an operator does).", fn: (*Policy).luaConfirm},
		{Name: "reject", Params: "id: string", Doc: "Drops a proposal.", fn: (*Policy).luaReject},
		{Name: "grace", Params: "member: Member|string", Returns: "number|nil", Doc: "Seconds left of the grace period of member's license-bound duties on its standby, or nil.", fn: (*Policy).luaGrace},
		{Name: "copy_missing", Params: "opts: {member: Member|string, from?: Member|string, paths?: string[], since?: number, until?: number}", Returns: "string",
			Doc: "Copies back to member the material it lacks or has incomplete, recorded between since and until (Unix seconds): from another member's material folders over its material_server, or from paths (folders mounted on member's machine, inside its material_mounts in site.yaml). While member is covered, from and since default to its standby and the takeover; until defaults to now. Verified, resumable, never overwrites a differing file. Returns the copy's action id; copy_started, copy_progress, then copy_done (with the report) or copy_failed follow.", fn: (*Policy).luaCopyMissing},
		{Name: "run", Params: "member: Member|string, hook: string, args?: table", Returns: "string",
			Doc: "Asks member's instance to run its hook of this name (hooks: in site.yaml) with args as template data; returns the action id. The result comes back as action_done or action_failed.", fn: (*Policy).luaRun},
	}
}

func (p *Policy) takeovers(L *lua.LState) Takeovers {
	t := p.env.Takeovers()
	if t == nil {
		L.RaiseError("takeovers are decided by the coordinator only")
	}
	return t
}

// memberArg reads a member table or id.
func memberArg(L *lua.LState, n int) string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		if v == "" {
			L.ArgError(n, "member id is empty")
		}
		return string(v)
	case *lua.LTable:
		if id, ok := v.RawGetString("id").(lua.LString); ok && id != "" {
			return string(id)
		}
	}
	L.ArgError(n, "want a member (a table from us.member or an event) or a member id")
	return ""
}

func optMemberArg(L *lua.LState, n int) string {
	if L.Get(n) == lua.LNil {
		return ""
	}
	return memberArg(L, n)
}

func optString(t *lua.LTable, key string) string {
	if t == nil {
		return ""
	}
	if v, ok := t.RawGetString(key).(lua.LString); ok {
		return string(v)
	}
	return ""
}

func optTable(L *lua.LState, n int) *lua.LTable {
	switch v := L.Get(n).(type) {
	case *lua.LTable:
		return v
	case *lua.LNilType:
		return nil
	}
	L.ArgError(n, "want a table of options")
	return nil
}

func (p *Policy) cause(L *lua.LState) string { return p.current + " at " + callerWhere(L) }

func (p *Policy) luaTakeover(L *lua.LState) int {
	t := p.takeovers(L)
	opts := optTable(L, 3)
	req := takeover.Request{Member: memberArg(L, 1), Standby: optMemberArg(L, 2), Pool: optString(opts, "pool"), Reason: optString(opts, "reason")}
	if req.Reason == "" {
		req.Reason = p.cause(L)
	}
	if opts != nil {
		req.Confirmed = lua.LVAsBool(opts.RawGetString("confirmed"))
	}
	out, err := t.Takeover(req)
	if err != nil {
		L.RaiseError("takeover of %s: %v", req.Member, err)
	}
	L.Push(lua.LString(out.Status))
	switch {
	case out.Proposal != "":
		L.Push(lua.LString(out.Proposal))
	case out.Standby != "":
		L.Push(lua.LString(out.Standby))
	default:
		L.Push(lua.LNil)
	}
	return 2
}

func (p *Policy) luaQueue(L *lua.LState) int {
	t := p.takeovers(L)
	opts := optTable(L, 2)
	req := takeover.Request{Member: memberArg(L, 1), Standby: optString(opts, "standby"), Pool: optString(opts, "pool"), Reason: optString(opts, "reason")}
	if req.Reason == "" {
		req.Reason = p.cause(L)
	}
	out, err := t.Enqueue(req)
	if err != nil {
		L.RaiseError("queue %s: %v", req.Member, err)
	}
	L.Push(lua.LString(out.Status))
	return 1
}

func (p *Policy) luaFailback(L *lua.LState) int {
	t := p.takeovers(L)
	member := memberArg(L, 1)
	reason := optString(optTable(L, 2), "reason")
	if reason == "" {
		reason = p.cause(L)
	}
	out, err := t.Failback(member, reason)
	if err != nil {
		L.RaiseError("failback of %s: %v", member, err)
	}
	L.Push(lua.LString(out.Status))
	return 1
}

func (p *Policy) luaTakeoverAll(L *lua.LState) int {
	t := p.takeovers(L)
	standby := memberArg(L, 1)
	s, ok := p.env.Member(standby)
	if !ok {
		L.ArgError(1, fmt.Sprintf("no member %q", standby))
	}
	if !s.Standby {
		L.ArgError(1, standby+" is not a standby")
	}
	out := L.NewTable()
	for _, m := range p.env.Members() {
		if m.Standby || m.ID == standby || m.Pool != s.Pool || m.Failover["enabled"] == false {
			continue
		}
		// Without pools, a standby covers the members that share a role with it.
		if s.Pool == "" && !slices.ContainsFunc(m.Roles, func(r string) bool { return slices.Contains(s.Roles, r) }) {
			continue
		}
		if _, covered := t.Covered(m.ID); covered {
			continue
		}
		res, err := t.Takeover(takeover.Request{Member: m.ID, Standby: standby, Reason: "take over all (" + p.cause(L) + ")", Confirmed: true})
		status := res.Status
		if err != nil {
			status = "error: " + err.Error()
		}
		e := L.NewTable()
		e.RawSetString("member", lua.LString(m.ID))
		e.RawSetString("status", lua.LString(status))
		out.Append(e)
	}
	L.Push(out)
	return 1
}

func (p *Policy) coverageTable(L *lua.LState, t Takeovers, c takeover.Coverage) *lua.LTable {
	e := L.CreateTable(0, 6)
	e.RawSetString("member", lua.LString(c.Member))
	e.RawSetString("standby", lua.LString(c.Standby))
	e.RawSetString("since", toLua(L, c.Since))
	e.RawSetString("phase", lua.LString(c.Phase))
	if left, ok := t.GraceRemaining(c.Member); ok {
		e.RawSetString("grace_remaining", lua.LNumber(left.Seconds()))
	}
	return e
}

func (p *Policy) luaCovered(L *lua.LState) int {
	t := p.takeovers(L)
	c, ok := t.Covered(memberArg(L, 1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(p.coverageTable(L, t, c))
	return 1
}

func (p *Policy) luaCoverage(L *lua.LState) int {
	t := p.takeovers(L)
	out := L.NewTable()
	for _, c := range t.Coverage() {
		out.Append(p.coverageTable(L, t, c))
	}
	L.Push(out)
	return 1
}

func (p *Policy) luaQueued(L *lua.LState) int {
	t := p.takeovers(L)
	out := L.NewTable()
	for i, q := range t.Queue() {
		e := L.CreateTable(0, 6)
		e.RawSetString("member", lua.LString(q.Member))
		e.RawSetString("standby", lua.LString(q.Standby))
		e.RawSetString("pool", lua.LString(q.Pool))
		e.RawSetString("priority", lua.LNumber(q.Priority))
		e.RawSetString("since", toLua(L, q.Since))
		e.RawSetString("position", lua.LNumber(i+1))
		out.Append(e)
	}
	L.Push(out)
	return 1
}

func (p *Policy) luaPool(L *lua.LState) int {
	t := p.takeovers(L)
	name := L.CheckString(1)
	inPool := func() []Member {
		var out []Member
		for _, m := range p.env.Members() {
			if m.Standby && m.Pool == name {
				out = append(out, m)
			}
		}
		return out
	}
	if len(inPool()) == 0 {
		L.ArgError(1, fmt.Sprintf("no standby is in pool %q", name))
	}
	obj := L.NewTable()
	obj.RawSetString("name", lua.LString(name))
	methods := L.NewTable()
	method := func(m string, fn func(L *lua.LState) int) {
		methods.RawSetString(m, L.NewFunction(func(L *lua.LState) int {
			if L.Get(1) != obj {
				L.RaiseError("call it as pool:%s(…), with a colon", m)
			}
			return fn(L)
		}))
	}
	method("pick", func(L *lua.LState) int {
		opts := optTable(L, 2)
		if opts == nil {
			L.ArgError(2, "say whom the standby is for: pool:pick{member = m}")
		}
		member := ""
		switch v := opts.RawGetString("member").(type) {
		case lua.LString:
			member = string(v)
		case *lua.LTable:
			member = optString(v, "id")
		}
		if member == "" {
			L.ArgError(2, "pick needs member = a member or its id")
		}
		var usage []string
		switch v := opts.RawGetString("usage").(type) {
		case lua.LString:
			usage = []string{string(v)}
		case *lua.LTable:
			v.ForEach(func(_, u lua.LValue) { usage = append(usage, u.String()) })
		}
		var exclude []string
		if ex, ok := opts.RawGetString("exclude").(*lua.LTable); ok {
			ex.ForEach(func(_, v lua.LValue) {
				if t, ok := v.(*lua.LTable); ok {
					exclude = append(exclude, optString(t, "id"))
				} else {
					exclude = append(exclude, v.String())
				}
			})
		}
		// Standbys that share none of the wanted usage names are left out.
		for _, m := range inPool() {
			if len(usage) > 0 && !slices.ContainsFunc(usage, func(u string) bool { return slices.Contains(m.Usage, u) }) {
				exclude = append(exclude, m.ID)
			}
		}
		id, ok := t.Pick(name, member, exclude...)
		if !ok {
			L.Push(lua.LNil)
			return 1
		}
		m, _ := p.env.Member(id)
		L.Push(p.memberTable(L, m))
		return 1
	})
	method("members", func(L *lua.LState) int {
		out := L.NewTable()
		for _, m := range inPool() {
			out.Append(p.memberTable(L, m))
		}
		L.Push(out)
		return 1
	})
	method("free", func(L *lua.LState) int {
		out := L.NewTable()
		for _, m := range inPool() {
			if m.State == "alive" && len(t.Covering(m.ID)) < max(m.Capacity, 1) {
				out.Append(p.memberTable(L, m))
			}
		}
		L.Push(out)
		return 1
	})
	meta := L.NewTable()
	meta.RawSetString("__index", methods)
	L.SetMetatable(obj, meta)
	L.Push(obj)
	return 1
}

func (p *Policy) luaMode(L *lua.LState) int {
	L.Push(lua.LString(p.takeovers(L).Mode()))
	return 1
}

func (p *Policy) luaSetMode(L *lua.LState) int {
	if err := p.takeovers(L).SetMode(L.CheckString(1), "policy "+callerWhere(L)); err != nil {
		L.ArgError(1, err.Error())
	}
	return 0
}

func (p *Policy) luaProposals(L *lua.LState) int {
	t := p.takeovers(L)
	out := L.NewTable()
	now := p.env.Clock().Now()
	for _, pr := range t.Proposals() {
		e := L.CreateTable(0, 5)
		e.RawSetString("id", lua.LString(pr.ID))
		e.RawSetString("member", lua.LString(pr.Member))
		e.RawSetString("standby", lua.LString(pr.Standby))
		e.RawSetString("created", toLua(L, pr.Created))
		if !pr.ActAt.IsZero() {
			e.RawSetString("act_in", lua.LNumber(pr.ActAt.Sub(now).Seconds()))
		}
		out.Append(e)
	}
	L.Push(out)
	return 1
}

func (p *Policy) luaConfirm(L *lua.LState) int {
	if err := p.takeovers(L).Confirm(L.CheckString(1), "policy "+callerWhere(L)); err != nil {
		L.RaiseError("confirm: %v", err)
	}
	return 0
}

func (p *Policy) luaReject(L *lua.LState) int {
	if err := p.takeovers(L).Reject(L.CheckString(1), "policy "+callerWhere(L)); err != nil {
		L.RaiseError("reject: %v", err)
	}
	return 0
}

func (p *Policy) luaGrace(L *lua.LState) int {
	left, ok := p.takeovers(L).GraceRemaining(memberArg(L, 1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(left.Seconds()))
	return 1
}

func (p *Policy) luaRun(L *lua.LState) int {
	member := memberArg(L, 1)
	hook := L.CheckString(2)
	args := timerArgs(L, 3)
	if args == nil {
		args = map[string]any{}
	}
	id, err := p.env.RunHook(member, hook, args, p.cause(L))
	if err != nil {
		L.RaiseError("run %s on %s: %v", hook, member, err)
	}
	L.Push(lua.LString(id))
	return 1
}

func (p *Policy) luaCopyMissing(L *lua.LState) int {
	p.takeovers(L) // the coordinator's only
	opts := L.CheckTable(1)
	req := takeover.CopyRequest{Cause: p.cause(L)}
	L.Push(opts.RawGetString("member"))
	req.Member = memberArg(L, L.GetTop())
	L.Pop(1)
	if v := opts.RawGetString("from"); v != lua.LNil {
		L.Push(v)
		req.From = memberArg(L, L.GetTop())
		L.Pop(1)
	}
	switch v := opts.RawGetString("paths").(type) {
	case *lua.LNilType:
	case *lua.LTable:
		v.ForEach(func(_, p lua.LValue) {
			s, ok := p.(lua.LString)
			if !ok || s == "" {
				L.ArgError(1, "paths: want a list of folder paths")
			}
			req.Paths = append(req.Paths, string(s))
		})
	default:
		L.ArgError(1, "paths: want a list of folder paths")
	}
	if req.From != "" && len(req.Paths) > 0 {
		L.ArgError(1, "give from or paths, not both")
	}
	for key, t := range map[string]*time.Time{"since": &req.Since, "until": &req.Until} {
		switch v := opts.RawGetString(key).(type) {
		case *lua.LNilType:
		case lua.LNumber:
			*t = time.Unix(0, int64(float64(v)*1e9))
		default:
			L.ArgError(1, key+": want Unix seconds (a number), like ev.at or us.now()")
		}
	}
	id, err := p.env.CopyMissing(req)
	if err != nil {
		L.RaiseError("copy_missing for %s: %v", req.Member, err)
	}
	L.Push(lua.LString(id))
	return 1
}
