package scenario_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/runtime/scenario"
)

const site = `site: sc
coordinator: backup
mdns: false
heartbeat: {interval: 250ms, lost_after: 1s, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: main
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    standby: true
    duties: {switcher: router, inputs: [3, 4]}
drivers:
  router: {kind: %s, address: 192.0.2.1, timeout: 1s}
`

// rightPolicy routes main's outputs to the backup when main is lost.
const rightPolicy = `local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id ~= "main" then return end
  local r = us.driver("router")
  for i, out in ipairs(ev.member.duties.outputs) do r:route(out, us.member("backup").duties.inputs[i]) end
end)
`

// wrongPolicy routes only the first output, and to the wrong input.
const wrongPolicy = `local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id ~= "main" then return end
  us.driver("router"):route(1, 4)
end)
`

const lostScenario = `name: main lost
steps:
  - {at: 10s, crash: main}
expect:
  - {nothing: true, before: 10s}
  - {event: member_lost, member: main, after: 10s, within: 2s}
  - {routed: {driver: router, output: 1, input: 3}, by: 11s}
  - {routed: {driver: router, output: 2, input: 4}, by: 11s}
`

// writeSite writes a site with policy and one scenario; it returns the
// scenario's path.
func writeSite(t *testing.T, kind, policy, sc string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"site.yaml":               strings.Replace(site, "%s", kind, 1),
		"policy.lua":              policy,
		"scenarios/scenario.yaml": sc,
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "scenarios/scenario.yaml")
}

// mustPass fails the test with the checks and the decision log when an
// expectation failed.
func mustPass(t *testing.T, res *scenario.Result) {
	t.Helper()
	if !res.Failed() {
		return
	}
	var out, log bytes.Buffer
	res.WriteChecks(&out)
	res.WriteLog(&log)
	t.Fatalf("%s\n%s", out.String(), log.String())
}

func run(t testing.TB, path string) *scenario.Result {
	t.Helper()
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := scenario.Run(ctx, sc, scenario.Options{Registry: builtin.Registry(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestARightPolicyPassesAndAWrongOneIsCaught(t *testing.T) {
	for _, kind := range []string{"videohub", "extron", "kramer", "kumo"} {
		t.Run(kind, func(t *testing.T) {
			res := run(t, writeSite(t, kind, rightPolicy, lostScenario))
			var out bytes.Buffer
			res.WriteChecks(&out)
			if res.Failed() {
				t.Fatalf("the right policy failed:\n%s", out.String())
			}

			res = run(t, writeSite(t, kind, wrongPolicy, lostScenario))
			out.Reset()
			res.WriteChecks(&out)
			if !res.Failed() {
				t.Fatalf("the wrong policy passed:\n%s", out.String())
			}
			text := out.String()
			for _, want := range []string{
				"scenario.yaml:7: router output 1 shows input 3 at 11s\n       instead: at 11s it shows input 4; routes of that output: input 4 at 10s (member_lost at ",
				"scenario.yaml:8: router output 2 shows input 4 at 11s\n       instead: at 11s it shows input 2; no route action for that output",
				"FAILED (2 of 4 expectations)",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("report lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestEventExpectationsSayWhatHappenedInstead(t *testing.T) {
	res := run(t, writeSite(t, "videohub", rightPolicy, `name: windows
steps:
  - {at: 10s, silence: main}
expect:
  - {event: member_lost, member: main, within: 5s}
  - {event: member_closed, member: main}
  - {no: member_lost, member: main}
  - {nothing: true}
`))
	var out bytes.Buffer
	res.WriteChecks(&out)
	text := out.String()
	for _, want := range []string{
		"FAIL " + res.Scenario.File + ":5: member_lost of main by 5s\n       instead: it happened at 11s, not by 5s",
		":6: member_closed of main\n       instead: it never happened; for main: member_seen at 0s, member_suspect at 10.375s, member_lost at 11s",
		":7: no member_lost of main\n       instead: it happened at 11s",
		":8: no action at all\n       instead: at 11s: route router output 1 ← input 3   ← member_lost at ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestARestartedSwitcherIsPutBackOnEveryKind(t *testing.T) {
	for _, kind := range []string{"videohub", "extron", "kramer", "kumo"} {
		t.Run(kind, func(t *testing.T) {
			res := run(t, writeSite(t, kind, rightPolicy, `name: the switcher restarts with its default routing
steps:
  - {at: 10s, crash: main}
  - {at: 30s, device: router, fault: restart}
expect:
  - {routed: {driver: router, output: 1, input: 3}, by: 11s}
  - {event: routing_differs, fields: {output: 1, expected: 3, actual: 1, duty: main, default: reassert}, after: 30s, within: 1s}
  - {event: routing_differs, fields: {output: 2, expected: 4, actual: 2, duty: main, default: reassert}, after: 30s, within: 1s}
  - {routed: {driver: router, output: 1, input: 3}, by: 31s}
  - {routed: {driver: router, output: 2, input: 4}, by: 31s}
`))
			mustPass(t, res)
			var log bytes.Buffer
			res.WriteLog(&log)
			if !strings.Contains(log.String(), "routing_differs router output 1 shows input 1, not 3 (") {
				t.Errorf("the decision log does not show the difference:\n%s", log.String())
			}
		})
	}
}

func TestDeviceFaultsReachThePolicyAsFailedActions(t *testing.T) {
	res := run(t, writeSite(t, "videohub", rightPolicy, `name: the switcher refuses
steps:
  - {at: 5s, device: router, fault: refuse}
  - {at: 10s, crash: main}
  - {at: 20s, device: router, panel: {output: 2, input: 9}}
expect:
  - {event: action_failed, fields: {output: 1}, after: 10s, within: 1s}
  - {routed: {driver: router, output: 2, input: 4}, by: 11s}
  - {event: route_changed, fields: {output: 2, input: 9}, after: 20s, within: 1s}
`))
	mustPass(t, res)
	var log bytes.Buffer
	res.WriteLog(&log)
	if !strings.Contains(log.String(), "✗ route router output 1 ← input 3: ") {
		t.Errorf("the decision log does not show the refused route:\n%s", log.String())
	}
}

func TestScenarioErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"name: x\nsteps:\n  - {at: 1s, crash: main, up: main}\nexpect:\n  - {nothing: true}\n", "s.yaml:3:1: a step does one thing"},
		{"name: x\nsteps:\n  - {at: 1s, device: router, fault: melt}\nexpect:\n  - {nothing: true}\n", `s.yaml:3:1: fault "melt": refuse, drop, disconnect or restart`},
		{"name: x\nexpect:\n  - {event: member_lost, no: member_lost}\n", "s.yaml:3:1: an expectation checks one thing"},
		{"name: x\nexpect:\n  - {event: member_lost, by: 5s, within: 2s}\n", "s.yaml:3:1: give one of by, within and before"},
		{"name: x\nexpect:\n  - {event: member_lost, colour: red}\n", `s.yaml:3:26: unknown field "colour"`},
		{"name: x\nsteps: []\n", "s.yaml: expect: a scenario needs at least one expectation"},
		// An event the registry lacks, or one that is never recorded: a
		// check that could never fail (no) or never be met (event).
		{"name: x\nexpect:\n  - {nothing: true}\n  - {no: takeover_startd}\n", "s.yaml:4:1: no: no event is called takeover_startd, so this expectation can never fail (did you mean takeover_started?)"},
		{"name: x\nexpect:\n  - {event: member_lsot, member: main}\n", "s.yaml:3:1: event: no event is called member_lsot, so this expectation can never be met (did you mean member_lost?)"},
		{"name: x\nexpect:\n  - {event: timr:failback}\n", "s.yaml:3:1: event: no event is called timr:failback, so this expectation can never be met (did you mean timer:failback?)"},
		{"name: x\nexpect:\n  - {event: coordinator}\n", "s.yaml:3:1: event: coordinator reaches the policy but is not recorded, so this expectation can never be met"},
		{"name: x\nexpect:\n  - {no: command:failback}\n", "s.yaml:3:1: no: command:failback reaches the policy but is not recorded, so this expectation can never fail: an operator command is the record command (fields: {verb: failback})"},
	} {
		_, err := scenario.Parse("s.yaml", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.text, err, tc.want)
		}
	}
	// Every name the registry has as a record may be expected, patterns
	// too.
	for _, name := range []string{"member_lost", "action_started", "timer:failback", "command", "alarm"} {
		if _, err := scenario.Parse("s.yaml", []byte("name: x\nexpect:\n  - {event: "+name+"}\n  - {no: "+name+"}\n")); err != nil {
			t.Errorf("expecting %s: %v", name, err)
		}
	}
	// Names the site does not have are found when it runs.
	path := writeSite(t, "videohub", rightPolicy, "name: x\nsteps:\n  - {at: 1s, crash: mian}\nexpect:\n  - {nothing: true}\n")
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = scenario.Run(context.Background(), sc, scenario.Options{Registry: builtin.Registry(), StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `scenario.yaml:3:1: "mian" is not a member of site sc (members: main, backup)`) {
		t.Fatalf("Run = %v", err)
	}
}

// A day of site time with a fault every hour: the figure is in make bench.
func BenchmarkADayOfSiteTime(b *testing.B) {
	var steps strings.Builder
	for h := 1; h < 24; h++ {
		step := "crash"
		if h%2 == 0 {
			step = "up"
		}
		steps.WriteString("  - {at: " + time.Duration(h*int(time.Hour)).String() + ", " + step + ": main}\n")
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "scenarios", "day.yaml")
	os.MkdirAll(filepath.Dir(path), 0o755)
	text := strings.Replace(site, "%s", "videohub", 1)
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(text), 0o644)
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(rightPolicy), 0o644)
	os.WriteFile(path, []byte("name: a day\nrun: 24h\nsteps:\n"+steps.String()+"expect:\n  - {event: member_lost, member: main}\n"), 0o644)
	b.ResetTimer()
	for b.Loop() {
		res := run(b, path)
		if res.Failed() {
			b.Fatal("the day's scenario failed")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/day")
}

// The broker going down is not every member lost; members silent meanwhile
// are judged when it is back.
func TestBrokerDownLosesNobody(t *testing.T) {
	res := run(t, writeSite(t, "videohub", rightPolicy, `name: broker down
steps:
  - {at: 10s, broker: down}
  - {at: 1m, broker: up}
  - {at: 2m, crash: main}
expect:
  - {no: member_lost, before: 2m}
  - {nothing: true, before: 2m}
  - {event: member_lost, member: main, after: 2m, within: 1s}
`))
	mustPass(t, res)
}

// How instances answer and a coordinator restart are part of a timeline.
func TestAgentsAndCoordinatorRestart(t *testing.T) {
	const takeoverPolicy = `local us = require "understudy"
us.on("member_lost", function(ev) if ev.member.id == "main" then us.takeover(ev.member, "backup") end end)
`
	res := run(t, writeSite(t, "videohub", takeoverPolicy, `name: the standby cannot take over; the coordinator restarts
agents: {backup: {takeover: {delay: 3s, fail: "no licence"}}}
steps:
  - {at: 10s, crash: main}
  - {at: 11s, restart_coordinator: true}
expect:
  - {event: takeover_started, member: main, after: 10s, within: 1s}
  - {event: takeover_failed, member: main, fields: {error: no licence}, after: 13s, within: 1s}
  - {event: action_resumed, fields: {verb: takeover}, after: 11s, within: 1s}
`))
	mustPass(t, res)
}

// A switcher that drops its connections is reconnected to, and the next
// route goes through.
func TestADisconnectedSwitcherIsReconnected(t *testing.T) {
	res := run(t, writeSite(t, "videohub", rightPolicy, `name: the switcher drops its connections
steps:
  - {at: 5s, device: router, fault: disconnect}
  - {at: 10s, crash: main}
expect:
  - {event: driver_disconnected, after: 5s, within: 1s}
  - {event: driver_connected, after: 5s, within: 1s}
  - {routed: {driver: router, output: 1, input: 3}, by: 11s}
`))
	mustPass(t, res)
}
