package policy

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// hostileTimeout is the handler deadline of the hostile corpus; a case that
// must stop there has to be back well within hostileSlack.
const (
	hostileTimeout = time.Second
	hostileSlack   = 10 * time.Second
	hostileLimit   = 16 << 20
)

// TestHostileLuaCorpus walks a corpus of hostile handlers. Each runs on the
// event "poke" of a policy that also answers "ping"; it must be refused
// with the error given (or stopped at the deadline, or over the memory
// bound, after which the policy is loaded again from its file as the
// coordinator does), within the slack, and "ping" must be handled after it.
func TestHostileLuaCorpus(t *testing.T) {
	const (
		deadline = "deadline" // stopped at the handler's deadline
		memory   = "memory"   // stopped over the memory bound, the state discarded
	)
	for _, tc := range []struct {
		name, handler string
		setup         string // top-level code before the handlers
		want          string // deadline, memory, or text of the error
		pokes         int    // how many pokes (1 unless set)
		timeout       time.Duration
	}{
		// Go built-ins that never looked at the deadline.
		{name: "find backtracks", handler: `string.find(("a"):rep(3000), ".-.-.-.-b")`, want: deadline},
		{name: "match backtracks", handler: `string.match(("a"):rep(3000), ".-.-.-.-b")`, want: deadline},
		{name: "gmatch backtracks", handler: `for w in string.gmatch(("a"):rep(3000), ".-.-.-.-b") do end`, want: deadline},
		{name: "gsub backtracks", handler: `string.gsub(("a"):rep(3000), ".-.-.-.-b", "")`, want: deadline},
		{name: "method call backtracks", handler: `(("a"):rep(3000)):find("(.-)(.-)(.-)(.-)b")`, want: deadline},
		{name: "balance over a long subject", handler: `local s = ("("):rep(2^20) s:find("%b()")`, want: deadline},
		{name: "endless loop", handler: `while true do end`, want: deadline},
		// Memory bombs.
		{name: "rep overflows int64", handler: `local s = ("xx"):rep(2^62)`, want: "string.rep: the result would be"},
		{name: "rep with a separator", handler: `local s = ("x"):rep(2^40, ",")`, want: "string.rep: the result would be"},
		{name: "rep of a huge count", handler: `local s = ("x"):rep(1e300)`, want: "string.rep: the result would be"},
		{name: "gsub replacement blows up", handler: `string.gsub(("x"):rep(4096), "x", ("y"):rep(2^20))`, want: "string.gsub: the result would be more than"},
		{name: "gsub capture blows up", handler: `string.gsub(("xxxxxxxx"):rep(4096), "(xxxxxxxx)", ("%1"):rep(2^10))`, want: "string.gsub: the result would be more than"},
		{name: "gsub function result blows up", handler: `local big = ("y"):rep(2^20) string.gsub(("x"):rep(4096), "x", function() return big end)`, want: "string.gsub: the result would be more than"},
		{name: "format width", handler: `string.format("%999999999d", 1)`, want: "a width has at most two digits"},
		{name: "format precision", handler: `string.format("%.999999f", 1)`, want: "a precision has at most two digits"},
		{name: "format repeated", handler: `local a, args = ("x"):rep(2^10), {} for i = 1, 2048 do args[i] = a end string.format(("%s"):rep(2048), unpack(args))`, want: "string.format: the result would be more than"},
		{name: "format many args", handler: `local big = ("x"):rep(2^19) string.format("%s%s%s", big, big, big)`, want: "string.format: the result would be more than"},
		{name: "concat of a big table", handler: `local t = {} local big = ("x"):rep(2^20) for i = 1, 8 do t[i] = big end table.concat(t)`, want: "table.concat: the result would be more than"},
		{name: "concat over a huge range", handler: `table.concat({}, "", 1, 2^53)`, want: "table.concat: the result would be more than"},
		{name: "DAG to publish", setup: dagSetup, handler: `us.publish("understudy/demo/x", t)`, want: "larger than 1048576 bytes once converted"},
		{name: "DAG to log", setup: dagSetup, handler: `us.log.info("x", {t = t})`, want: "larger than 1048576 bytes once converted"},
		{name: "DAG to a named timer", setup: dagSetup, handler: `us.after("1m", "x", {t = t})`, want: "larger than 1048576 bytes once converted"},
		{name: "big string to publish", handler: `us.publish("understudy/demo/x", ("x"):rep(2^20) .. "y")`, want: "more than 1048576"},
		{name: "string doubling", handler: `local s = "x" while true do s = s .. s end`, want: memory, timeout: time.Minute},
		{name: "table doubling in one call", handler: `local t = {} for i = 1, 1e9 do t[i] = {i} end`, want: memory, timeout: time.Minute},
		{name: "global table grown over calls", setup: `grow = {}`, handler: `for i = 1, 512 do grow[#grow + 1] = ("x"):rep(2^10) .. #grow end`, want: memory, pokes: 100000, timeout: time.Minute},
		{name: "upvalue table grown over calls", setup: `local keep = {} function stash(v) keep[#keep + 1] = v end`, handler: `for i = 1, 256 do stash(("x"):rep(2^11) .. i .. us.now()) end`, want: memory, pokes: 100000, timeout: time.Minute},
		{name: "unpack a huge range", handler: `unpack({}, 1, 1e8)`, want: "unpack: 100000000 results, more than"},
		{name: "bytes of a long string", handler: `string.byte(("x"):rep(2^20), 1, -1)`, want: "string.byte: 1048576 results, more than"},
		// Patterns that are wrong are refused with a clear error.
		{name: "unclosed set", handler: `string.find("a", "[a")`, want: "missing ']'"},
		{name: "trailing escape", handler: `string.find("a", "a%")`, want: "ends with '%'"},
		{name: "too many captures", handler: `string.find("a", ("()"):rep(40))`, want: "more than 32 captures"},
		{name: "deeply nested pattern", handler: `string.find(("a"):rep(400), ("a?"):rep(400))`, want: "too complex"},
		{name: "bad back reference", handler: `string.find("aa", "%1")`, want: "invalid capture index"},
		{name: "deep recursion", handler: `local function f() return f() + 1 end f()`, want: "stack overflow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv()
			src := "local us = require 'understudy'\n" + tc.setup + "\n" +
				"seen = {}\n" +
				"us.on('poke', function(ev)\n" + tc.handler + "\nend)\n" +
				"us.on('ping', function(ev) table.insert(seen, 'pong') end)\n"
			var log bytes.Buffer
			timeout := hostileTimeout
			if tc.timeout > 0 {
				timeout = tc.timeout
			}
			opts := Options{File: writePolicy(t, map[string]string{"policy.lua": src}), Timeout: timeout,
				MemoryLimit: hostileLimit, Logger: slog.New(slog.NewTextHandler(&log, nil))}
			p, err := Load(env, opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer func() { p.Close() }()
			pokes := max(tc.pokes, 1)
			var errs []error
			start := time.Now()
			i := 0
			for ; i < pokes && len(errs) == 0 && p.Broken() == nil; i++ {
				errs = p.Dispatch(Event{Name: "poke", At: env.clock.Now()})
			}
			t.Logf("%d pokes in %v", i, time.Since(start))
			if took := time.Since(start); took > hostileSlack {
				t.Errorf("the hostile handler took %v", took)
			}
			switch tc.want {
			case deadline:
				var he *HandlerError
				if len(errs) != 1 || !errors.As(errs[0], &he) || he.Timeout == 0 {
					t.Fatalf("errors %v, want one stopped at the deadline", errs)
				}
				if p.Broken() != nil {
					t.Errorf("a timeout broke the policy: %v", p.Broken())
				}
			case memory:
				var me *MemoryError
				if !errors.As(p.Broken(), &me) || !errors.Is(p.Broken(), ErrMemoryLimit) {
					t.Fatalf("broken %v (errors %v), want over the memory limit", p.Broken(), errs)
				}
				if !strings.Contains(me.Error(), "policy stopped") || !strings.Contains(me.Error(), "16.0 MiB") {
					t.Errorf("memory error %q", me)
				}
				// What the coordinator does: discard the state, load the file again.
				p.Close()
				if p, err = Load(env, opts); err != nil {
					t.Fatalf("Load again: %v", err)
				}
			default:
				if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
					t.Fatalf("errors %v, want one with %q", errs, tc.want)
				}
				if !strings.Contains(errs[0].Error(), "policy.lua:") {
					t.Errorf("error %q does not name the policy's file:line", errs[0])
				}
				if p.Broken() != nil {
					t.Errorf("a refused call broke the policy: %v", p.Broken())
				}
			}
			if errs := p.Dispatch(Event{Name: "ping", At: env.clock.Now()}); len(errs) != 0 {
				t.Fatalf("ping after the hostile handler: %v", errs)
			}
			if got := results(p); got != "pong" {
				t.Fatalf("ping after the hostile handler: seen %q", got)
			}
		})
	}
}

// dagSetup builds a table of 26 levels, each holding the one below twice:
// 2^26 paths through 27 tables.
const dagSetup = `local t = {} for i = 1, 26 do t = {a = t, b = t} end _G.t = t`

// TestRequireOfTheMainFileIsRefused: before, require "policy" ran the main
// file a second time and every handler then fired twice.
func TestRequireOfTheMainFileIsRefused(t *testing.T) {
	env := newEnv()
	src := `local us = require "understudy"
seen = seen or {}
us.on("ping", function() table.insert(seen, "pong") end)
local ok, err = pcall(require, "policy")
refused = tostring(err)
`
	p, _ := load(t, env, src)
	if got := p.L.GetGlobal("refused").String(); !strings.Contains(got, `require "policy": that is the policy's main file`) || !strings.Contains(got, "policy.lua:4") {
		t.Errorf("require of the main file: %q", got)
	}
	p.Dispatch(Event{Name: "ping"})
	if got := results(p); got != "pong" {
		t.Errorf("the handler fired as %q, want once", got)
	}
	path := writePolicy(t, map[string]string{"policy.lua": "require 'policy'\n"})
	if _, err := Load(env, Options{File: path}); err == nil || !strings.Contains(err.Error(), "policy.lua:1: require \"policy\": that is the policy's main file") {
		t.Errorf("Load: %v", err)
	}
}

// TestFailingTimerLogIsRateLimited: before, us.every("10ms") failing logged
// 100 ERROR lines a second. Now the first error is logged, then one line per
// ErrorLogEvery that counts the ones left out.
func TestFailingTimerLogIsRateLimited(t *testing.T) {
	env := newEnv()
	p, log := load(t, env, `
local us = require "understudy"
us.every("10ms", function() error("boom") end)
us.every("10ms", function() error("bang") end)
`)
	env.advance(time.Second)
	if st := p.Stats(); st.Errors != 200 || st.Suppressed != 198 {
		t.Errorf("after 1s: stats %+v", st)
	}
	if n := strings.Count(log.String(), "level=ERROR"); n != 2 {
		t.Fatalf("after 1s: %d error lines, want 2:\n%s", n, log)
	}
	env.advance(ErrorLogEvery)
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("after %v more: %d lines, want 4:\n%s", ErrorLogEvery, len(lines), log)
	}
	for _, l := range lines[2:] {
		if !strings.Contains(l, "suppressed=999") && !strings.Contains(l, "suppressed=1000") {
			t.Errorf("line without the count left out: %s", l)
		}
	}
}
