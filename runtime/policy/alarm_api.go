package policy

import (
	"regexp"

	lua "github.com/yuin/gopher-lua"
)

// AlarmInfo is a raised alarm as the policy sees it.
type AlarmInfo struct {
	Key      string
	Kind     string
	Severity string
	Member   string
	Message  string
	Since    float64 // Unix seconds
	Count    int
}

// alarmAPI lists the alarm functions of the module (see API).
func alarmAPI() []Function {
	return []Function{
		{Name: "alarm", Params: "kind: string, message: string, opts?: {member?: Member|string, severity?: \"alarm\"|\"warning\", fields?: table}", Returns: "string",
			Doc: "Raises an alarm for people: shown in the log, the dashboard's alarm list, `understudy status`, /status, the retained topic understudy/<site>/alarms and the metric understudy_alarms_active until us.clear_alarm (kept across restarts). kind is lower_snake_case. Raising it again while raised only counts. Returns its key.", fn: (*Policy).luaAlarm},
		{Name: "clear_alarm", Params: "kind: string, member?: Member|string", Returns: "boolean",
			Doc: "Ends an alarm the policy raised (of this kind, for this member); returns whether it was raised.", fn: (*Policy).luaClearAlarm},
		{Name: "alarms", Returns: "Alarm[]", Doc: "Every raised alarm, the runtime's and the policy's, oldest first.", fn: (*Policy).luaAlarms},
	}
}

var alarmKindRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

func (p *Policy) luaAlarm(L *lua.LState) int {
	kind := L.CheckString(1)
	if !alarmKindRe.MatchString(kind) {
		L.ArgError(1, "kind: lower_snake_case, at most 48 characters")
	}
	msg := L.CheckString(2)
	if msg == "" || len(msg) > 1024 {
		L.ArgError(2, "message: 1 to 1024 bytes")
	}
	var member, severity string
	var fields map[string]any
	if opts, ok := L.Get(3).(*lua.LTable); ok {
		switch v := opts.RawGetString("member").(type) {
		case lua.LString:
			member = string(v)
		case *lua.LTable:
			if id, ok := v.RawGetString("id").(lua.LString); ok {
				member = string(id)
			}
		}
		severity = optString(opts, "severity")
		if f, ok := opts.RawGetString("fields").(*lua.LTable); ok {
			v, err := fromLua(f)
			if err != nil {
				L.ArgError(3, "fields: "+err.Error())
			}
			fields, _ = v.(map[string]any)
		}
	} else if L.Get(3) != lua.LNil {
		L.ArgError(3, "opts: a table {member, severity, fields}")
	}
	if severity != "" && severity != "alarm" && severity != "warning" {
		L.ArgError(3, "severity: \"alarm\" or \"warning\"")
	}
	key, err := p.env.RaiseAlarm(kind, member, msg, severity, fields)
	if err != nil {
		L.RaiseError("alarm %s: %v", kind, err)
	}
	L.Push(lua.LString(key))
	return 1
}

func (p *Policy) luaClearAlarm(L *lua.LState) int {
	kind := L.CheckString(1)
	L.Push(lua.LBool(p.env.ClearAlarm(kind, optMemberArg(L, 2))))
	return 1
}

func (p *Policy) luaAlarms(L *lua.LState) int {
	list := L.NewTable()
	for _, a := range p.env.Alarms() {
		t := L.NewTable()
		t.RawSetString("key", lua.LString(a.Key))
		t.RawSetString("kind", lua.LString(a.Kind))
		t.RawSetString("severity", lua.LString(a.Severity))
		if a.Member != "" {
			t.RawSetString("member", lua.LString(a.Member))
		}
		t.RawSetString("message", lua.LString(a.Message))
		t.RawSetString("since", lua.LNumber(a.Since))
		t.RawSetString("count", lua.LNumber(a.Count))
		list.Append(t)
	}
	L.Push(list)
	return 1
}
