package policy

import (
	"encoding/json"
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// A policy's Lua globals and the closures it hands to us.after live in its
// Lua state, which a reload, a restart or a new elected coordinator starts
// afresh. What a policy must remember across them goes in us.state: a small
// key-value store in the coordinator's state (replicated to every candidate
// of a site that elects its coordinator), written before set returns.

// Limits of us.state.
const (
	MaxStateKey   = 200      // bytes of a key
	MaxStateValue = 64 << 10 // bytes of a value as JSON
	MaxStateKeys  = 1000     // keys at once
)

func stateAPI() []Function {
	return []Function{
		{Name: "state.get", Params: "key: string", Returns: "any", Doc: "What the policy stored under key with us.state.set, or nil. Survives reloads, restarts and a change of the elected coordinator, unlike Lua globals.", fn: (*Policy).luaStateGet},
		{Name: "state.set", Params: "key: string, value: string|number|boolean|table|nil", Doc: fmt.Sprintf("Stores value under key (nil removes it), durably before it returns (on a majority of the candidates when the coordinator is elected). At most %d keys of %d bytes, each value at most %d bytes as JSON.", MaxStateKeys, MaxStateKey, MaxStateValue), fn: (*Policy).luaStateSet},
		{Name: "state.keys", Returns: "string[]", Doc: "The keys stored with us.state.set, sorted.", fn: (*Policy).luaStateKeys},
	}
}

func checkStateKey(L *lua.LState) string {
	key := L.CheckString(1)
	if key == "" || len(key) > MaxStateKey {
		L.ArgError(1, fmt.Sprintf("a key of 1 to %d bytes", MaxStateKey))
	}
	return key
}

func (p *Policy) luaStateGet(L *lua.LState) int {
	key := checkStateKey(L)
	raw, ok, err := p.env.StateGet(key)
	if err != nil {
		L.RaiseError("us.state.get %q: %v", key, err)
	}
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		L.RaiseError("us.state.get %q: unreadable: %v", key, err)
	}
	L.Push(toLua(L, v))
	return 1
}

func (p *Policy) luaStateSet(L *lua.LState) int {
	key := checkStateKey(L)
	var raw []byte
	if v := L.Get(2); v != lua.LNil {
		switch v.(type) {
		case lua.LString, lua.LNumber, lua.LBool, *lua.LTable:
		default:
			L.ArgError(2, "a string, number, boolean, table or nil")
		}
		goValue, err := fromLua(v)
		if err != nil {
			L.ArgError(2, err.Error())
		}
		if raw, err = json.Marshal(goValue); err != nil {
			L.ArgError(2, err.Error())
		}
		if len(raw) > MaxStateValue {
			L.ArgError(2, fmt.Sprintf("%d bytes as JSON, more than %d", len(raw), MaxStateValue))
		}
	}
	if err := p.env.StateSet(key, raw); err != nil {
		L.RaiseError("us.state.set %q: %v", key, err)
	}
	return 0
}

func (p *Policy) luaStateKeys(L *lua.LState) int {
	t := L.NewTable()
	for _, k := range p.env.StateKeys() {
		t.Append(lua.LString(k))
	}
	L.Push(t)
	return 1
}
