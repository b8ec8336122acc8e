package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"understudy/drivers"
	"understudy/runtime/clock"
	"understudy/runtime/takeover"
)

var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// testEnv is the runtime side of a policy under test: a virtual clock and a
// queue that the test drains, like the event loop does.
type testEnv struct {
	clock     *clock.Virtual
	queue     []func()
	members   map[string]Member
	drivers   map[string]drivers.Driver
	routes    []string
	published []string
	loc       *time.Location
	// named timers, kept here as the engine keeps them
	sent   []string
	policy *Policy
	named  map[string]*TimerInfo
	nextT  int
}

func newEnv() *testEnv {
	return &testEnv{clock: clock.NewVirtual(epoch), members: map[string]Member{}, drivers: map[string]drivers.Driver{}, loc: time.UTC}
}

func (e *testEnv) Clock() clock.Clock       { return e.clock }
func (e *testEnv) Post(f func())            { e.queue = append(e.queue, f) }
func (e *testEnv) Location() *time.Location { return e.loc }
func (e *testEnv) Member(id string) (Member, bool) {
	m, ok := e.members[id]
	return m, ok
}
func (e *testEnv) Members() []Member {
	var out []Member
	for _, id := range slices.Sorted(maps.Keys(e.members)) {
		out = append(out, e.members[id])
	}
	return out
}
func (e *testEnv) Driver(name string) (drivers.Driver, bool) { d, ok := e.drivers[name]; return d, ok }
func (e *testEnv) DriverNames() []string                     { return slices.Sorted(maps.Keys(e.drivers)) }
func (e *testEnv) Route(driver string, out, in int, cause string) (string, error) {
	e.routes = append(e.routes, driver+" "+strconv.Itoa(out)+"<-"+strconv.Itoa(in)+" ("+cause+")")
	return "a" + strconv.Itoa(len(e.routes)), nil
}
func (e *testEnv) KeepRoute(driver string, out int, cause string) (int, error) {
	e.routes = append(e.routes, driver+" keep "+strconv.Itoa(out)+" ("+cause+")")
	return 1, nil
}
func (e *testEnv) Publish(topic string, payload []byte, retained bool) error {
	e.published = append(e.published, topic+" "+string(payload))
	return nil
}
func (e *testEnv) SetTimer(name string, args map[string]any, due time.Time, where string) (string, error) {
	if e.named == nil {
		e.named = map[string]*TimerInfo{}
	}
	e.nextT++
	id := "t" + strconv.Itoa(e.nextT)
	e.named[id] = &TimerInfo{ID: id, Name: name, Args: args, Due: due}
	e.clock.AfterFunc(due.Sub(e.clock.Now()), func() {
		e.Post(func() {
			t, ok := e.named[id]
			if !ok || e.policy == nil {
				return
			}
			delete(e.named, id)
			fields := map[string]any{"name": t.Name}
			maps.Copy(fields, t.Args)
			e.policy.Dispatch(Event{Name: "timer:" + t.Name, At: e.clock.Now(), Fields: fields})
		})
	})
	return id, nil
}
func (e *testEnv) CancelTimers(name string, match map[string]any) int {
	n := 0
	for id, t := range e.named {
		if t.Name == name && ArgsMatch(t.Args, match) {
			delete(e.named, id)
			n++
		}
	}
	return n
}
func (e *testEnv) CancelTimer(id string) bool {
	_, ok := e.named[id]
	delete(e.named, id)
	return ok
}
func (e *testEnv) Timers(name string) []TimerInfo {
	var out []TimerInfo
	for _, id := range slices.Sorted(maps.Keys(e.named)) {
		if name == "" || e.named[id].Name == name {
			out = append(out, *e.named[id])
		}
	}
	return out
}
func (e *testEnv) Takeovers() Takeovers { return nil }
func (e *testEnv) Send(driver string, args map[string]any, cause string) (string, error) {
	e.sent = append(e.sent, fmt.Sprintf("%s %v (%s)", driver, args, cause))
	return "s" + strconv.Itoa(len(e.sent)), nil
}
func (e *testEnv) RunHook(target, name string, args map[string]any, cause string) (string, error) {
	return "", errors.New("no instances in this test")
}
func (e *testEnv) CopyMissing(takeover.CopyRequest) (string, error) {
	return "", errors.New("no instances in this test")
}
func (e *testEnv) RaiseAlarm(kind, member, message, severity string, fields map[string]any) (string, error) {
	return "", errors.New("no alarms in this test")
}
func (e *testEnv) ClearAlarm(kind, member string) bool { return false }
func (e *testEnv) Alarms() []AlarmInfo                 { return nil }
func (e *testEnv) StateGet(string) ([]byte, bool, error) {
	return nil, false, errors.New("no state in this test")
}
func (e *testEnv) StateSet(string, []byte) error { return errors.New("no state in this test") }
func (e *testEnv) StateKeys() []string           { return nil }

// advance moves the virtual clock, running queued work after each timer, as
// the simulator does.
func (e *testEnv) advance(d time.Duration) {
	end := e.clock.Now().Add(d)
	e.drain()
	for e.clock.FireNext(end) {
		e.drain()
	}
	e.clock.AdvanceTo(end)
}

func (e *testEnv) drain() {
	for len(e.queue) > 0 {
		f := e.queue[0]
		e.queue = e.queue[1:]
		f()
	}
}

func writePolicy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "policy.lua")
}

func load(t *testing.T, env *testEnv, src string, extra ...string) (*Policy, *bytes.Buffer) {
	t.Helper()
	files := map[string]string{"policy.lua": src}
	for i := 0; i+1 < len(extra); i += 2 {
		files[extra[i]] = extra[i+1]
	}
	var log bytes.Buffer
	p, err := Load(env, Options{File: writePolicy(t, files), Timeout: 200 * time.Millisecond, Site: "demo", Self: "backup",
		Settings: map[string]any{"failback_delay": "5m"}, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	env.policy = p
	t.Cleanup(p.Close)
	return p, &log
}

// results reads the global array `seen` the policy writes to.
func results(p *Policy) string {
	t, ok := p.L.GetGlobal("seen").(*lua.LTable)
	if !ok {
		return ""
	}
	var parts []string
	for i := 1; i <= t.Len(); i++ {
		parts = append(parts, t.RawGetInt(i).String())
	}
	return strings.Join(parts, " ")
}

func TestSandboxHasNoOsIoOrCodeLoading(t *testing.T) {
	env := newEnv()
	p, _ := load(t, env, `
seen = {}
for _, name in ipairs({"os", "io", "dofile", "loadfile", "load", "loadstring", "module", "debug", "package", "collectgarbage", "getfenv", "setfenv", "coroutine", "channel"}) do
  if _G[name] ~= nil then table.insert(seen, name) end
end
if string.dump ~= nil then table.insert(seen, "string.dump") end
for _, name in ipairs({"table", "string", "math", "pairs", "pcall", "tostring"}) do
  if _G[name] == nil then table.insert(seen, "missing:" .. name) end
end
`)
	if got := results(p); got != "" {
		t.Fatalf("sandbox exposes or lacks: %s", got)
	}
}

func TestRequireReachesOnlyTheAPIAndThePolicyFolder(t *testing.T) {
	env := newEnv()
	p, _ := load(t, env, `
local us = require "understudy"
local util = require "lib.util"
seen = { util.double(21), tostring(us == require("understudy")), tostring(util == require("lib.util")) }
for _, name in ipairs({"os", "../secret", "/etc/passwd", "lib/util", "missing"}) do
  local ok, err = pcall(require, name)
  table.insert(seen, tostring(ok))
end
`, "lib/util.lua", "return { double = function(x) return x * 2 end }")
	if got := results(p); got != "42 true true false false false false false" {
		t.Fatalf("results %q", got)
	}
}

func TestBoundedStringRep(t *testing.T) {
	env := newEnv()
	p, _ := load(t, env, `
seen = { #string.rep("ab", 3, ","), tostring(pcall(string.rep, "x", 2^30)), tostring(pcall(function() return ("x"):rep(2^21) end)) }
`)
	if got := results(p); got != "8 false false" {
		t.Fatalf("results %q", got)
	}
}

func TestRunawayHandlerIsStoppedAndOthersGoOn(t *testing.T) {
	env := newEnv()
	p, _ := load(t, env, `
local us = require "understudy"
seen = {}
us.on("member_lost", function(ev) while true do end end)
us.on("member_lost", function(ev) error("boom") end)
us.on("member_lost", function(ev) table.insert(seen, "third:" .. ev.member.id) end)
`)
	start := time.Now()
	errs := p.Dispatch(Event{Name: "member_lost", At: epoch, Member: &Member{ID: "main", State: "lost"}})
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("dispatch took %v", took)
	}
	if len(errs) != 2 {
		t.Fatalf("errors %v, want 2", errs)
	}
	var he *HandlerError
	if !errors.As(errs[0], &he) || he.Timeout == 0 || !strings.Contains(errs[0].Error(), "ran longer than 200ms") || !strings.Contains(errs[0].Error(), "policy.lua:4)") {
		t.Errorf("first error %v", errs[0])
	}
	if !strings.Contains(errs[1].Error(), "policy.lua:5: boom") {
		t.Errorf("second error %v", errs[1])
	}
	if got := results(p); got != "third:main" {
		t.Errorf("third handler: %q", got)
	}
	if st := p.Stats(); st.Calls != 3 || st.Errors != 2 || st.Timeouts != 1 {
		t.Errorf("stats %+v", st)
	}
	// The state is still usable.
	p.Dispatch(Event{Name: "member_lost", Member: &Member{ID: "other"}})
	if got := results(p); got != "third:main third:other" {
		t.Errorf("after timeout: %q", got)
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	env := newEnv()
	for _, tc := range []struct{ src, want string }{
		{"local us = require 'understudy'\nus.on('x', function()\nend end)\n", "policy.lua:3:7: syntax error near 'end'"},
		{"local us = require 'understudy'\n\nus.onn('member_lost', print)\n", "policy.lua:3: attempt to call a non-function object"},
		{"local us = require 'understudy'\nus.driver('rooter')\n", "policy.lua:2: no driver \"rooter\" in site.yaml"},
		{"local us = require 'understudy'\nus.after('5 minutes', print)\n", "bad duration"},
		{"while true do end\n", "loading the policy ran longer than 200ms"},
		{"require 'lib.bad'\n", "lib/bad.lua:1:"},
	} {
		path := writePolicy(t, map[string]string{"policy.lua": tc.src, "lib/bad.lua": "x = = 1\n"})
		_, err := Load(env, Options{File: path, Timeout: 200 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("source %q:\n  error %v\n  want %q", tc.src, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), filepath.Dir(path)) {
			t.Errorf("error %q does not name the file's path", err)
		}
	}
}

func TestTimersRunOnTheVirtualClock(t *testing.T) {
	env := newEnv()
	p, _ := load(t, env, `
local us = require "understudy"
seen = {}
local function at(tag) return function() table.insert(seen, tag .. "@" .. (us.now() - START)) end end
START = us.now()
us.after("1500ms", at("after"))
local t = us.every(1, at("every"))
us.after(3.5, function() t:cancel() end)
local dropped = us.after("1m", at("never"))
dropped:cancel()
us.cron("*/2 * * * *", at("cron"))
us.after("10s", "failback", { member = "main" })
us.after("20s", "failback", { member = "other" })
us.on("timer:failback", function(ev) table.insert(seen, ev.name .. ":" .. ev.member .. "@" .. (us.now() - START)) end)
us.on("member_restored", function(ev) us.cancel("failback", { member = "other" }) end)
`)
	env.advance(5 * time.Second)
	if got := results(p); got != "every@1 after@1.5 every@2 every@3" {
		t.Fatalf("after 5s: %q", got)
	}
	p.Dispatch(Event{Name: "member_restored", Member: &Member{ID: "main"}})
	env.advance(5 * time.Minute)
	want := "every@1 after@1.5 every@2 every@3 timer:failback:main@10 cron@120 cron@240"
	if got := results(p); got != want {
		t.Fatalf("after 5m:\n got %q\nwant %q", got, want)
	}
}

func TestCloseCancelsTimers(t *testing.T) {
	env := newEnv()
	p, _ := load(t, env, `
local us = require "understudy"
seen = {}
us.every("100ms", function() table.insert(seen, "tick") end)
`)
	p.Close()
	env.advance(time.Second)
	if env.clock.Pending() != 0 {
		t.Fatalf("%d timers pending after Close", env.clock.Pending())
	}
}

func TestEventsMembersSettingsAndPublish(t *testing.T) {
	env := newEnv()
	env.members["main"] = Member{ID: "main", State: "lost", Roles: []string{"manager"}, Usage: []string{"stage"}, Duties: map[string]any{"outputs": []int{1, 2}}}
	env.members["backup"] = Member{ID: "backup", State: "alive", Standby: true, Self: true}
	p, _ := load(t, env, `
local us = require "understudy"
seen = {}
us.on("member_lost", function(ev)
  local m = ev.member
  table.insert(seen, m.id)
  table.insert(seen, tostring(m:has_role("manager")))
  table.insert(seen, tostring(m:has_role("recorder")))
  table.insert(seen, tostring(m:has_usage("stage")))
  table.insert(seen, m.duties.outputs[2])
  table.insert(seen, ev.reason)
  table.insert(seen, #us.members())
  table.insert(seen, tostring(us.member("backup").standby))
  table.insert(seen, tostring(us.member("nobody")))
  table.insert(seen, us.settings.failback_delay)
  table.insert(seen, us.site .. "/" .. us.self)
  us.publish("show/alert", { member = m.id, outputs = m.duties.outputs })
  us.publish("show/raw", "text", { retain = true })
  table.insert(seen, tostring(pcall(us.publish, "show/#", "x")))
  table.insert(seen, tostring(pcall(us.publish, "show/fn", print)))
end)
`)
	m := env.members["main"]
	if errs := p.Dispatch(Event{Name: "member_lost", Member: &m, Fields: map[string]any{"reason": "no heartbeat for 300ms"}}); len(errs) > 0 {
		t.Fatal(errs)
	}
	want := "main true false true 2 no heartbeat for 300ms 2 true nil 5m demo/backup false false"
	if got := results(p); got != want {
		t.Errorf("results\n got %q\nwant %q", got, want)
	}
	if len(env.published) != 2 || env.published[0] != `show/alert {"member":"main","outputs":[1,2]}` || env.published[1] != "show/raw text" {
		t.Errorf("published %q", env.published)
	}
}

type staticRouter struct{ routing []int }

func (r *staticRouter) Start(context.Context, drivers.Emitter) {}
func (r *staticRouter) Close() error                           { return nil }
func (r *staticRouter) Status() drivers.Status {
	return drivers.Status{Connected: true, Address: "127.0.0.1:9990"}
}
func (r *staticRouter) Route(context.Context, int, int) error {
	return errors.New("policy must route through Env")
}
func (r *staticRouter) Routing() []int         { return r.routing }
func (r *staticRouter) Size() (int, int)       { return 8, 4 }
func (r *staticRouter) InputLabels() []string  { return []string{"Cam 1", "Cam 2"} }
func (r *staticRouter) OutputLabels() []string { return []string{"Proj L"} }

func TestRouterDriverObject(t *testing.T) {
	env := newEnv()
	env.drivers["router"] = &staticRouter{routing: []int{1, 2, 0, 4}}
	p, _ := load(t, env, `
local us = require "understudy"
local router = us.driver "router"
seen = {}
us.on("member_lost", function(ev)
  local r = router:routing()
  table.insert(seen, r[1] .. "," .. r[2] .. "," .. tostring(r[3]) .. "," .. r[4])
  local inputs, outputs = router:size()
  table.insert(seen, inputs .. "x" .. outputs)
  table.insert(seen, router:labels().inputs[2])
  table.insert(seen, tostring(router:connected()))
  table.insert(seen, router:route(1, 3))
  table.insert(seen, tostring(pcall(router.route, router, 5, 1)))
  table.insert(seen, tostring(pcall(router.route, router, 1, 9)))
  table.insert(seen, tostring(pcall(router.route, 1, 3)))
end)
`)
	if errs := p.Dispatch(Event{Name: "member_lost"}); len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := results(p); got != "1,2,nil,4 8x4 Cam 2 true a1 false false false" {
		t.Errorf("results %q", got)
	}
	if len(env.routes) != 1 || !strings.HasPrefix(env.routes[0], "router 1<-3 (member_lost at ") || !strings.Contains(env.routes[0], "policy.lua:12") {
		t.Errorf("routes %q", env.routes)
	}
}

func TestPrintAndLogGoToTheLogWithFileAndLine(t *testing.T) {
	env := newEnv()
	_, log := load(t, env, `
local us = require "understudy"
print("hello", 42)
us.log.warn("taking over", { member = "main" })
`)
	out := log.String()
	if !strings.Contains(out, `msg="hello\t42"`) || !strings.Contains(out, "policy.lua:3") {
		t.Errorf("print not logged: %s", out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, `msg="taking over"`) || !strings.Contains(out, "member=main") || !strings.Contains(out, "policy.lua:4") {
		t.Errorf("log.warn not logged: %s", out)
	}
}

func TestWatchSeesContentChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.lua")
	os.WriteFile(path, []byte("-- v1"), 0o644)
	before := Fingerprint(dir)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	if Fingerprint(dir) != before {
		t.Error("a non-Lua file changed the fingerprint")
	}
	os.WriteFile(path, []byte("-- v2"), 0o644)
	if Fingerprint(dir) == before {
		t.Error("changed content, same fingerprint")
	}
}
