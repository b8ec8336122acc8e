package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"understudy/fixtures/eventually"
	"understudy/fixtures/testhost"
)

// The coordinator is killed (kill -9) in the middle of a takeover and in the
// middle of a failback, while a standby's or the returned member's duty hook
// runs, and restarted from the same site file and state folder. The site must
// converge: the takeover or failback finishes, no route is sent twice to the
// switcher, and no hook runs twice.
//
// Everything is real and on loopback: three `understudy run` processes, the
// MQTT broker embedded in the coordinator (so it dies with it and comes back
// with it), a Videohub simulator over TCP in the test process, and duty hooks
// that are shell scripts taking about two seconds, like a device would.

// takeoverPolicy is the test's own policy: take over main with backup when it
// is lost (routing its outputs to the backup's inputs), give the duties back
// two seconds after it returns, and route back when the failback is done.
const takeoverPolicy = `local us = require "understudy"
local r = us.driver("router")
local function route(m, from) for i, out in ipairs(m.duties.outputs) do r:route(out, from.duties.inputs[i]) end end
us.on("member_lost", function(ev) if ev.member.id == "main" then us.takeover(ev.member, "backup") end end)
us.on("takeover_started", function(ev) route(ev.member, us.member(ev.standby)) end)
us.on("member_restored", function(ev) if us.covered(ev.member) then us.after("2s", "failback", {member = ev.member.id}) end end)
us.on("member_seen", function(ev) local c = us.covered(ev.member) if c and c.phase == "covering" and #us.timers("failback") == 0 then us.after("2s", "failback", {member = ev.member.id}) end end)
us.on("timer:failback", function(t) local c = us.covered(t.member) if c and c.phase == "covering" then us.failback(t.member) end end)
us.on("failback_done", function(ev) route(ev.member, ev.member) end)
`

// takeoverSiteTemplate: %[1]s site name, %[2]s bus section, %[3]s Videohub
// address, %[4]s/%[5]s/%[6]s the takeover, release and resume hook scripts,
// %[7]s the Videohub driver's timeout.
const takeoverSiteTemplate = `site: %[1]s
coordinator: manager
mdns: false
bus: {%[2]s}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
policy: {file: policy.lua}
members:
  - id: manager
    roles: [manager]
    api: 127.0.0.1:0
  - id: main
    roles: [manager]
    api: 127.0.0.1:0
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
    hooks:
      resume: [{exec: [%[6]q, "{{.member}}"]}]
  - id: backup
    roles: [manager]
    standby: true
    api: 127.0.0.1:0
    duties: {switcher: router, inputs: [3, 4]}
    hooks:
      takeover: [{exec: [%[4]q, "{{.member}}"]}]
      release: [{exec: [%[5]q, "{{.member}}"]}]
drivers:
  router: {kind: videohub, address: "%[3]s", timeout: %[7]s}
`

// takeoverSite is a site of three members on loopback: manager (the
// coordinator, which embeds the broker), main and backup (a standby).
type takeoverSite struct {
	t *testing.T
	// coordSite is the coordinator's site file: no bus.url, so it embeds the
	// broker on a fixed loopback port (the same one after a restart).
	coordSite string
	// peerSite is the same site for main and backup, with bus.url pointing at
	// that broker (mDNS is off on loopback). It differs only in the bus line
	// and lives in the same folder, so every instance shares the state folder
	// (.understudy beside the files) and the policy.
	peerSite string
	stateDir string
	hookLog  string // what the hooks did: "takeover main", "release main", "resume main"
	started  string // what the slow hooks began: written before they sleep
	sw       *switcher
	proxy    *muteProxy // between the coordinator and the switcher, when asked for
}

// newTakeoverSite writes the site; viaProxy puts a muteProxy between the
// coordinator and the switcher.
func newTakeoverSite(t *testing.T, name string, viaProxy bool) *takeoverSite {
	t.Helper()
	root := t.TempDir()
	siteDir := filepath.Join(root, "site")
	hookDir := filepath.Join(root, "hooks") // outside the policy folder the coordinator watches
	for _, d := range []string{siteDir, hookDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ts := &takeoverSite{
		t:         t,
		coordSite: filepath.Join(siteDir, "site.yaml"),
		peerSite:  filepath.Join(siteDir, "site-peers.yaml"),
		stateDir:  filepath.Join(siteDir, ".understudy"),
		hookLog:   filepath.Join(hookDir, "hooks.log"),
		started:   filepath.Join(hookDir, "started.log"),
	}
	slow := func(verb string) string {
		return fmt.Sprintf("#!/bin/sh\necho \"%s $1\" >> %q\nsleep 2\necho \"%s $1\" >> %q\n", verb, ts.started, verb, ts.hookLog)
	}
	scripts := map[string]string{
		"takeover": slow("takeover"),
		"resume":   slow("resume"),
		"release":  fmt.Sprintf("#!/bin/sh\necho \"release $1\" >> %q\n", ts.hookLog),
	}
	paths := map[string]string{}
	for verb, body := range scripts {
		paths[verb] = filepath.Join(hookDir, verb+".sh")
		if err := os.WriteFile(paths[verb], []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(siteDir, "policy.lua"), []byte(takeoverPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	// Hook programs lead process groups of their own, so they outlive the
	// instances killed at the end of a test: let a slow one that began finish
	// before the temporary folder is removed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		eventually.Poll(ctx, func() (bool, string) {
			return len(ts.lines(ts.started)) <= len(ts.lines(ts.hookLog))-countLine(ts.lines(ts.hookLog), "release main"), ""
		})
	})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.sw = startSwitcher(t, l)
	router, timeout := l.Addr().String(), "2s"
	if viaProxy {
		ts.proxy = startMuteProxy(t, router)
		router = ts.proxy.Addr()
		// Long enough that a muted switcher never makes the driver give up
		// (and route again) before the test kills the coordinator.
		timeout = "15s"
	}
	broker := freeLoopbackPort(t)
	write := func(path, bus string) {
		site := fmt.Sprintf(takeoverSiteTemplate, name, bus, router, paths["takeover"], paths["release"], paths["resume"], timeout)
		if err := os.WriteFile(path, []byte(site), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(ts.coordSite, fmt.Sprintf("listen: \"127.0.0.1:%d\", broker_on: manager", broker))
	write(ts.peerSite, fmt.Sprintf("url: \"tcp://127.0.0.1:%d\", broker_on: manager", broker))
	return ts
}

// freeLoopbackPort returns a TCP port that was free a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	port, err := testhost.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// run starts member id's instance.
func (ts *takeoverSite) run(id string) *daemon {
	ts.t.Helper()
	site := ts.peerSite
	if id == "manager" {
		site = ts.coordSite
	}
	return runIn(ts.t, nil, site, id)
}

// startAll starts the coordinator, then main and backup, and waits until the
// coordinator hears both, drives the switcher, and main is on air (1←1, 2←2).
func (ts *takeoverSite) startAll() (mgr, main, backup *daemon) {
	t := ts.t
	t.Helper()
	mgr = ts.run("manager")
	mgr.wait(20*time.Second, "msg", "embedded broker started")
	main = ts.run("main")
	backup = ts.run("backup")
	mgr.wait(20*time.Second, "msg", "member alive", "member", "main")
	mgr.wait(20*time.Second, "msg", "member alive", "member", "backup")
	mgr.wait(20*time.Second, "msg", "driver connected", "driver", "router")
	ts.waitRouting(20*time.Second, map[int]int{1: 1, 2: 2})
	if n := len(ts.routeCommands()); n != 0 {
		t.Fatalf("the switcher was sent %d routes before anything happened: %v", n, ts.routeCommands())
	}
	return mgr, main, backup
}

// waitRouting waits until the switcher shows each output ← input given.
func (ts *takeoverSite) waitRouting(timeout time.Duration, want map[int]int) {
	ts.t.Helper()
	eventually.True(ts.t, timeout, fmt.Sprintf("the switcher shows output←input %v", want), func() (bool, string) {
		routing := ts.sw.Routing()
		for out, in := range want {
			if routing[out-1] != in {
				return false, fmt.Sprintf("%v on outputs 1..4; routes it was sent:%s", routing[:4], ts.commandLog())
			}
		}
		return true, ""
	})
}

// routeCommands is the switcher's command log reduced to the routes it was
// sent, as [output, input] from 1, in order (status requests left out).
func (ts *takeoverSite) routeCommands() [][2]int {
	var out [][2]int
	for _, c := range ts.sw.Commands() {
		if c.Header != "VIDEO OUTPUT ROUTING" {
			continue
		}
		for _, line := range c.Lines {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			o, err1 := strconv.Atoi(f[0])
			i, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil {
				out = append(out, [2]int{o + 1, i + 1})
			}
		}
	}
	return out
}

// expectRouteCommands fails unless cmds are exactly the routes want, each
// once, in any order.
func (ts *takeoverSite) expectRouteCommands(what string, cmds [][2]int, want ...[2]int) {
	ts.t.Helper()
	got := slices.Clone(cmds)
	want = slices.Clone(want)
	less := func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	}
	slices.SortFunc(got, less)
	slices.SortFunc(want, less)
	if !slices.Equal(got, want) {
		ts.t.Errorf("%s: the switcher was sent the routes (output, input) %v, want each of %v exactly once\nfull command log: %v", what, cmds, want, ts.commandLog())
	}
}

func (ts *takeoverSite) commandLog() string {
	var b strings.Builder
	for _, c := range ts.sw.Commands() {
		if len(c.Lines) > 0 {
			fmt.Fprintf(&b, "\n  %s %s: %s → %s", c.Time.Format("15:04:05.000"), c.Remote, c.Header, strings.Join(c.Lines, "; ")+" "+c.Reply)
		}
	}
	return b.String()
}

// lines returns the lines of a hook log (none if it does not exist yet).
func (ts *takeoverSite) lines(path string) []string {
	ts.t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		ts.t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

func countLine(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if l == s {
			n++
		}
	}
	return n
}

// waitHookStarted waits until a slow hook script has begun (and is sleeping).
func (ts *takeoverSite) waitHookStarted(timeout time.Duration, line string) {
	ts.t.Helper()
	eventually.True(ts.t, timeout, fmt.Sprintf("hook %q started", line), func() (bool, string) {
		return countLine(ts.lines(ts.started), line) > 0, fmt.Sprintf("started: %q", ts.lines(ts.started))
	})
}

// expectHooks fails unless each hook line appears exactly n times.
func (ts *takeoverSite) expectHooks(want map[string]int) {
	ts.t.Helper()
	got := ts.lines(ts.hookLog)
	for line, n := range want {
		if c := countLine(got, line); c != n {
			ts.t.Errorf("hook log has %q %d times, want %d; hook log: %q; started: %q", line, c, n, got, ts.lines(ts.started))
		}
	}
	for _, line := range got {
		if _, ok := want[line]; !ok {
			ts.t.Errorf("hook log has an unexpected %q; hook log: %q", line, got)
		}
	}
}

// waitResumedActionsDone waits until every action d resumed after its start
// has finished, and fails if one failed: after that, nothing of the old
// coordinator's work is left to be sent again.
func waitResumedActionsDone(t *testing.T, d *daemon, timeout time.Duration) []string {
	t.Helper()
	var ids, what []string
	for _, line := range strings.Split(d.p.Output(), "\n") {
		if strings.Contains(line, `"msg":"resuming an unanswered action"`) {
			e := parseLogLine(line)
			ids = append(ids, e.str("id"))
			what = append(what, e.str("id")+" "+e.str("do"))
		}
	}
	for _, id := range ids {
		eventually.True(t, timeout, "resumed action "+id+" done", func() (bool, string) {
			if d.has("msg", "action failed", "id", id) {
				t.Fatalf("resumed action %s failed after the restart", id)
			}
			return d.has("msg", "action done", "id", id), "not in the log"
		})
	}
	return what
}

func parseLogLine(line string) logEntry {
	var e logEntry
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return logEntry{}
	}
	return e
}

// coverMain kills main and waits until backup has taken over: the policy
// routed 1←3 and 2←4 and the takeover hook finished.
func (ts *takeoverSite) coverMain(mgr, main *daemon) {
	ts.t.Helper()
	mgr.mark()
	if err := main.p.Kill(); err != nil {
		ts.t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "member lost", "member", "main")
	mgr.wait(20*time.Second, "msg", "takeover_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 3, 2: 4})
}

// kill -9 of the coordinator while the standby's takeover hook runs.
func TestTakeoverSurvivesCoordinatorKill(t *testing.T) {
	ts := newTakeoverSite(t, "takeover-kill", false)
	mgr, main, backup := ts.startAll()

	mgr.mark()
	backup.mark()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "member lost", "member", "main", "reason", "Last Will")
	mgr.wait(10*time.Second, "msg", "takeover_started", "member", "main")
	// The policy's takeover_started handler has recorded both routes (sent
	// or not); a kill inside the handler is TestAHandlerKilledHalfway….
	mgr.wait(10*time.Second, "msg", "action", "do", "router route output 1 ← input 3")
	mgr.wait(10*time.Second, "msg", "action", "do", "router route output 2 ← input 4")
	backup.wait(20*time.Second, "msg", "command received", "verb", "takeover")
	ts.waitHookStarted(20*time.Second, "takeover main")
	if got := ts.lines(ts.hookLog); len(got) > 0 {
		t.Fatalf("the takeover hook finished before the coordinator could be killed mid-hook: %q", got)
	}
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}
	// Once it is reaped, all it logged has been read.
	routedBeforeKill := mgr.has("msg", "action done", "do", "output 1 ← input 3") && mgr.has("msg", "action done", "do", "output 2 ← input 4")
	t.Logf("coordinator killed mid-hook; routes done before the kill: %v; switcher routes sent so far: %v", routedBeforeKill, ts.routeCommands())

	mgr2 := ts.run("manager")
	mgr2.wait(20*time.Second, "msg", "coordinating")
	mgr2.wait(20*time.Second, "msg", "resuming an unanswered action", "do", "takeover on backup for main")
	mgr2.wait(30*time.Second, "msg", "takeover_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 3, 2: 4})
	resumed := waitResumedActionsDone(t, mgr2, 30*time.Second)
	t.Logf("resumed after the restart: %q", resumed)
	// The takeover hook answered once, from the backup's record: it did not run again.
	if mgr2.has("msg", "takeover_started") {
		t.Error("the restarted coordinator started the takeover again")
	}
	ts.expectRouteCommands("takeover with a coordinator restart", ts.routeCommands(), [2]int{1, 3}, [2]int{2, 4})
	if routes := ts.sw.Routes(); len(routes) != 2 {
		t.Errorf("the switcher applied %d routes, want 2: %v", len(routes), routes)
	}
	ts.expectHooks(map[string]int{"takeover main": 1})
	if n := countLine(ts.lines(ts.started), "takeover main"); n != 1 {
		t.Errorf("the takeover hook started %d times, want once", n)
	}
	if _, err := os.Stat(filepath.Join(ts.stateDir, "takeover-kill-manager.db")); err != nil {
		t.Errorf("the coordinator's state file: %v", err)
	}
}

// kill -9 of the coordinator while the returned member's resume hook runs.
func TestFailbackSurvivesCoordinatorKill(t *testing.T) {
	ts := newTakeoverSite(t, "failback-kill", false)
	mgr, main, _ := ts.startAll()
	ts.coverMain(mgr, main)
	before := len(ts.routeCommands())
	ts.expectRouteCommands("takeover", ts.routeCommands(), [2]int{1, 3}, [2]int{2, 4})

	mgr.mark()
	main = ts.run("main")
	mgr.wait(20*time.Second, "msg", "failback_started", "member", "main")
	main.wait(20*time.Second, "msg", "command received", "verb", "resume")
	ts.waitHookStarted(20*time.Second, "resume main")
	if countLine(ts.lines(ts.hookLog), "resume main") > 0 {
		t.Fatal("the resume hook finished before the coordinator could be killed mid-hook")
	}
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}

	mgr2 := ts.run("manager")
	mgr2.wait(20*time.Second, "msg", "coordinating")
	mgr2.wait(20*time.Second, "msg", "resuming an unanswered action", "do", "resume on main for main")
	mgr2.wait(30*time.Second, "msg", "member_ready", "member", "main")
	mgr2.wait(30*time.Second, "msg", "failback_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 1, 2: 2})
	mgr2.wait(20*time.Second, "msg", "action done", "do", "output 1 ← input 1")
	mgr2.wait(20*time.Second, "msg", "action done", "do", "output 2 ← input 2")
	resumed := waitResumedActionsDone(t, mgr2, 30*time.Second)
	t.Logf("resumed after the restart: %q", resumed)
	if mgr2.has("msg", "failback_started") {
		t.Error("the restarted coordinator started the failback again")
	}
	if mgr2.has("msg", "failback_failed") {
		t.Error("the failback failed after the restart")
	}

	cmds := ts.routeCommands()
	ts.expectRouteCommands("failback with a coordinator restart", cmds[before:], [2]int{1, 1}, [2]int{2, 2})
	if routes := ts.sw.Routes(); len(routes) != 4 {
		t.Errorf("the switcher applied %d routes, want 4 (2 for the takeover, 2 for the failback): %v", len(routes), routes)
	}
	ts.expectHooks(map[string]int{"takeover main": 1, "resume main": 1, "release main": 1})
	if n := countLine(ts.lines(ts.started), "resume main"); n != 1 {
		t.Errorf("the resume hook started %d times, want once", n)
	}
}

// muteProxy is a TCP proxy in front of a device. Muted, it still passes
// everything the clients send, so the device acts on it, but drops what the
// device answers: a command that was carried out but never acknowledged, as
// when the controller dies between the two.
type muteProxy struct {
	l      net.Listener
	target string
	muted  atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startMuteProxy(t *testing.T, target string) *muteProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &muteProxy{l: l, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *muteProxy) Addr() string { return p.l.Addr().String() }

// Mute drops the device's answers from now on (true) or passes them again.
func (p *muteProxy) Mute(on bool) { p.muted.Store(on) }

func (p *muteProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		d, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, d)
		p.mu.Unlock()
		p.wg.Go(func() {
			io.Copy(d, c)
			d.Close()
			c.Close()
		})
		p.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := d.Read(buf)
				if n > 0 && !p.muted.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						err = werr
					}
				}
				if err != nil { // either side closed: end both
					c.Close()
					d.Close()
					return
				}
			}
		})
	}
}

// kill -9 of the coordinator after the switcher carried out a takeover route
// but before its acknowledgement reached the coordinator, with the second
// route still waiting behind it (the driver routes one output at a time), and
// while the standby's takeover hook runs. The restarted coordinator resumes
// both route actions: it must find the first on the switcher and not send it
// again, and send the second once.
func TestTakeoverRouteAppliedButUnacknowledgedIsNotResent(t *testing.T) {
	ts := newTakeoverSite(t, "takeover-unacked", true)
	mgr, main, backup := ts.startAll()

	mgr.mark()
	backup.mark()
	ts.proxy.Mute(true) // the switcher acts, the coordinator hears nothing back
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "takeover_started", "member", "main")
	mgr.wait(10*time.Second, "msg", "action", "do", "router route output 2 ← input 4") // both routes recorded
	ts.waitRouting(20*time.Second, map[int]int{1: 3})                                  // carried out by the device, unacknowledged
	backup.wait(20*time.Second, "msg", "command received", "verb", "takeover")
	ts.waitHookStarted(20*time.Second, "takeover main")
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}
	ts.proxy.Mute(false)
	switch {
	case mgr.has("msg", "action done", "do", "route output"), mgr.has("msg", "action failed"):
		t.Fatal("a route action finished although the switcher's answers were dropped")
	case mgr.has("msg", "driver disconnected"):
		t.Fatal("the driver gave up on the muted switcher before the coordinator was killed (too slow a machine for this test)")
	case countLine(ts.lines(ts.hookLog), "takeover main") > 0:
		t.Fatal("the takeover hook finished before the coordinator could be killed mid-hook")
	}
	ts.expectRouteCommands("before the restart", ts.routeCommands(), [2]int{1, 3})

	mgr2 := ts.run("manager")
	mgr2.wait(20*time.Second, "msg", "resuming an unanswered action", "do", "takeover on backup for main")
	mgr2.wait(20*time.Second, "msg", "resuming an unanswered action", "do", "router route output 1 ← input 3")
	mgr2.wait(20*time.Second, "msg", "resuming an unanswered action", "do", "router route output 2 ← input 4")
	mgr2.wait(30*time.Second, "msg", "takeover_done", "member", "main")
	resumed := waitResumedActionsDone(t, mgr2, 30*time.Second)
	t.Logf("resumed after the restart: %q", resumed)
	ts.waitRouting(5*time.Second, map[int]int{1: 3, 2: 4})
	ts.expectRouteCommands("takeover with a route unacknowledged at the restart", ts.routeCommands(), [2]int{1, 3}, [2]int{2, 4})
	ts.expectHooks(map[string]int{"takeover main": 1})
}

// kill -9 of the coordinator in the middle of a policy handler: the handler
// asked for the first route, then was still busy when the process died. None
// of its actions was recorded, its event stays in the inbox, and the restarted
// coordinator runs the handler again: both routes arrive, each once.
func TestAHandlerKilledHalfwayRunsAgainAfterTheRestart(t *testing.T) {
	ts := newTakeoverSite(t, "handler-kill", false)
	slowPolicy := strings.Replace(takeoverPolicy,
		`us.on("takeover_started", function(ev) route(ev.member, us.member(ev.standby)) end)`,
		`us.on("takeover_started", function(ev)
  local standby = us.member(ev.standby)
  r:route(ev.member.duties.outputs[1], standby.duties.inputs[1])
  if not ev.redelivered then
    us.log.info("first route asked; busy")
    local t0 = us.now()
    while us.now() - t0 < 0.8 do end
  end
  r:route(ev.member.duties.outputs[2], standby.duties.inputs[2])
end)`, 1)
	if slowPolicy == takeoverPolicy {
		t.Fatal("the test policy was not changed")
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(ts.coordSite), "policy.lua"), []byte(slowPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	mgr, main, _ := ts.startAll()
	mgr.mark()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "first route asked; busy")
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}
	if mgr.has("msg", "action", "do", "router route output 1 ← input 3") {
		t.Fatal("the first route was recorded before its handler finished")
	}
	mgr2 := ts.run("manager")
	mgr2.wait(20*time.Second, "msg", "handing the policy an event it had not finished with before the restart", "event", "takeover_started")
	mgr2.wait(30*time.Second, "msg", "takeover_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 3, 2: 4})
	waitResumedActionsDone(t, mgr2, 30*time.Second)
	ts.expectRouteCommands("a handler killed halfway", ts.routeCommands(), [2]int{1, 3}, [2]int{2, 4})
	ts.expectHooks(map[string]int{"takeover main": 1})
}
