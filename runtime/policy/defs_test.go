package policy

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"understudy/drivers"
	"understudy/events"
	"understudy/runtime/takeover"
)

// controlRouter is a switcher that also takes control actions, so the
// driver object has every method.
type controlRouter struct{ staticRouter }

func (c *controlRouter) Status() drivers.Status {
	return drivers.Status{Connected: true, Address: "192.0.2.1:9990", Since: epoch}
}
func (c *controlRouter) Check(map[string]any) error                      { return nil }
func (c *controlRouter) Do(context.Context, map[string]any) (any, error) { return nil, nil }

// graceOnly answers GraceRemaining; coverage tables need nothing else.
type graceOnly struct{ Takeovers }

func (graceOnly) GraceRemaining(string) (time.Duration, bool) { return time.Hour, true }

// keys lists a table's keys and, when it has a metatable with __index, the
// keys of that (its methods).
func keys(L *lua.LState, t *lua.LTable) (fields, methods []string) {
	t.ForEach(func(k, _ lua.LValue) { fields = append(fields, k.String()) })
	if mt, ok := L.GetMetatable(t).(*lua.LTable); ok {
		if idx, ok := mt.RawGetString("__index").(*lua.LTable); ok {
			idx.ForEach(func(k, _ lua.LValue) { methods = append(methods, k.String()) })
		}
	}
	slices.Sort(fields)
	slices.Sort(methods)
	return fields, methods
}

// The classes of the editor definitions are the tables the code builds:
// every key it sets, every method it offers, and nothing else.
func TestClassesMatchTheTablesTheCodeBuilds(t *testing.T) {
	env := newEnv()
	env.drivers["router"] = &controlRouter{staticRouter{routing: []int{1, 2}}}
	p, _ := load(t, env, `local us = require "understudy"
router = us.driver("router")
status = router:status()
timer = us.after("5m", function() end)
`)
	L := p.L
	member := Member{ID: "m", State: "alive", Since: epoch, CoveredBy: "s"}
	now := epoch
	tables := map[string]*lua.LTable{
		"Member":       p.memberTable(L, member),
		"Router":       L.GetGlobal("router").(*lua.LTable),
		"Timer":        L.GetGlobal("timer").(*lua.LTable),
		"Coverage":     p.coverageTable(L, graceOnly{}, takeover.Coverage{Member: "m", Standby: "s", Since: now}),
		"DriverStatus": L.GetGlobal("status").(*lua.LTable),
	}
	classes := map[string]Class{}
	for _, c := range Classes() {
		classes[c.Name] = c
	}
	for name, tbl := range tables {
		c, ok := classes[name]
		if !ok {
			t.Errorf("no class %s", name)
			continue
		}
		var wantFields, wantMethods []string
		for _, f := range c.Fields {
			wantFields = append(wantFields, f.Name)
		}
		for _, m := range c.Methods {
			wantMethods = append(wantMethods, m.Name)
		}
		slices.Sort(wantFields)
		slices.Sort(wantMethods)
		fields, methods := keys(L, tbl)
		if name == "DriverStatus" {
			fields = append(fields, "error") // set only when there is one
			slices.Sort(fields)
		}
		if !slices.Equal(fields, wantFields) || !slices.Equal(methods, wantMethods) {
			t.Errorf("class %s: the code builds fields %v and methods %v; the class lists %v and %v", name, fields, methods, wantFields, wantMethods)
		}
	}
}

// editor/understudy.lua is generated: run with -update after changing the
// API or its classes.
func TestEditorDefinitionsAreUpToDate(t *testing.T) {
	const path = "../../editor/understudy.lua"
	want := Definitions()
	got, err := os.ReadFile(path)
	if string(got) == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s is out of date (%v): run go test ./runtime/policy -update", path, err)
}

// Every function of the module and every class appears in the definitions,
// with each parameter annotated.
func TestDefinitionsCoverTheAPI(t *testing.T) {
	defs := Definitions()
	for _, f := range API() {
		if !strings.Contains(defs, "function us."+f.Name+"(") {
			t.Errorf("us.%s is missing", f.Name)
		}
		for _, p := range splitTop(f.Params) {
			name, typ, _ := strings.Cut(p, ":")
			if !strings.Contains(defs, "---@param "+strings.TrimSpace(name)+" "+strings.TrimSpace(typ)+"\n") {
				t.Errorf("us.%s: parameter %q is not annotated", f.Name, p)
			}
		}
	}
	for _, c := range Classes() {
		if !strings.Contains(defs, "---@class "+c.Name+"\n") {
			t.Errorf("class %s is missing", c.Name)
		}
	}
	// It is Lua: an editor (and Lua itself) reads it.
	L := lua.NewState()
	defer L.Close()
	if fn, err := L.LoadString(defs); err != nil || fn == nil {
		t.Errorf("the definitions do not compile as Lua: %v", err)
	}
	if got := splitTop("a: fun(x: T, y: U), b?: {k?: string, v: integer}"); len(got) != 2 {
		t.Errorf("splitTop = %q", got)
	}
}

// EventName offers exactly the exact names of the events handlers receive,
// from the events registry, and "*": not a record only (action_started),
// not a pattern (timer:NAME, which us.on's string takes).
func TestEventNameListsTheEventsHandlersReceive(t *testing.T) {
	var got []string
	for _, line := range strings.Split(Definitions(), "\n") {
		if v, ok := strings.CutPrefix(line, "---| "); ok {
			quoted, _, _ := strings.Cut(v, " # ")
			name, err := strconv.Unquote(quoted)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			got = append(got, name)
		}
	}
	var want []string
	for _, e := range events.List() {
		if e.Policy && e.Prefix() == "" {
			want = append(want, e.Name)
		}
	}
	want = append(want, events.CatchAll)
	if !slices.Equal(got, want) {
		t.Errorf("EventName lists %v, want %v", got, want)
	}
	if !slices.Contains(got, events.MemberLost) || slices.Contains(got, events.ActionStarted) || slices.Contains(got, events.TimerEvent("NAME")) {
		t.Errorf("EventName lists %v: member_lost must be there, action_started and timer:NAME not", got)
	}
}
