package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"understudy/discovery/bus"
	"understudy/runtime/coordinator"

	"understudy/drivers/builtin"
	"understudy/drivers/videohub/videohubsim"
	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

// switchSiteYAML: main feeds outputs 1 and 2 from inputs 1 and 2; backup
// stands by on inputs 3 and 4; control runs the policy. %s: the failover
// mode, the switcher's address.
const switchSiteYAML = `site: test
coordinator: control
mdns: false
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 1s}
policy: {file: policy.lua}
failover: {mode: %s}
members:
  - id: main
    roles: [manager]
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    roles: [manager]
    standby: true
    duties: {switcher: router, inputs: [3, 4]}
  - id: control
    roles: [control]
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s, backoff_min: 10ms, backoff_max: 50ms}
`

// switchPolicy takes main over by backup when it is lost and routes its
// outputs to backup's inputs; the command "route" routes what it is told.
const switchPolicy = `
local us = require "understudy"
local router = us.driver("router")
us.on("member_lost", function(ev)
  if ev.member.id == "main" then us.takeover(ev.member, "backup") end
end)
us.on("takeover_started", function(ev)
  router:route(1, 3)
  router:route(2, 4)
end)
us.on("command:route", function(c) router:route(c.output, c.input) end)
us.on("routing_differs", function(ev)
  us.log.info("policy saw routing_differs", { output = ev.output, cause = ev.cause, default = ev.default })
end)
`

type switchSite struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	site  *config.Site
	store *store.Store
	hub   *videohubsim.Sim
	addr  string
	h     *sim.Harness
	// failuresExpected: the test makes actions fail (the switcher refuses).
	failuresExpected bool
}

// newSwitchSite runs policy on switchSiteYAML (in mode) against a Videohub
// simulator (8×8) on loopback, on the virtual clock, with a state store.
// set, when given, routes the simulator before the coordinator starts.
// The members are not up yet (up brings them).
func newSwitchSite(t *testing.T, mode, policy string, set ...[2]int) *switchSite {
	t.Helper()
	hub, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 8, Outputs: 8})
	for _, r := range set {
		if err := hub.SetRoute(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(policy), 0o644)
	os.WriteFile(filepath.Join(dir, "site.yaml"), fmt.Appendf(nil, switchSiteYAML, mode, addr), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	s := &switchSite{t: t, ctx: ctx, dir: dir, site: site, store: st, hub: hub, addr: addr}
	s.start()
	return s
}

// start starts a coordinator (with new drivers) on the site's store and
// waits for its switcher to connect. After s.h.Stop, it is a restart of the
// coordinator's process.
func (s *switchSite) start() {
	s.t.Helper()
	drvs, err := s.site.BuildDrivers(builtin.Registry())
	if err != nil {
		s.t.Fatal(err)
	}
	h, err := sim.New(s.site, sim.Options{Store: s.store, Drivers: drvs})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := h.Start(s.ctx); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(h.Stop)
	recordsAreRegistered(s.t, h)
	s.t.Cleanup(func() {
		for _, r := range h.Records() {
			if r.Type == "policy_error" || (r.Type == "action_failed" && !s.failuresExpected) {
				s.t.Errorf("%s: %v", r.Type, r.Fields)
			}
		}
	})
	s.h = h
	s.wait(0, "the switcher connected", sim.Type("driver_connected"))
}

func (s *switchSite) up(ids ...string) {
	for _, id := range ids {
		s.h.Up(id)
	}
	s.h.Advance(100 * time.Millisecond)
}

func (s *switchSite) mark() int { return len(s.h.Records()) }

func (s *switchSite) wait(from int, what string, match func(engine.Record) bool) engine.Record {
	s.t.Helper()
	r, err := s.h.WaitRecord(s.ctx, from, match)
	if err != nil {
		s.t.Fatalf("%s: %v; records:\n%s", what, err, s.describe(from))
	}
	return r
}

// waitRoutes waits for n switcher routes done from mark on.
func (s *switchSite) waitRoutes(from, n int) {
	s.t.Helper()
	done := 0
	s.wait(from, fmt.Sprintf("%d routes done", n), func(r engine.Record) bool {
		if r.Type == "action_done" && r.Fields["verb"] == "route" {
			done++
		}
		return done == n
	})
}

// differs waits for the routing_differs record of output from mark on.
func (s *switchSite) differs(from, output int) engine.Record {
	s.t.Helper()
	return s.wait(from, fmt.Sprintf("routing_differs for output %d", output), func(r engine.Record) bool {
		return r.Type == events.RoutingDiffers && r.Fields["output"] == output
	})
}

// panel routes output ← input at the switcher's panel and waits until the
// coordinator has heard of it.
func (s *switchSite) panel(output, input int) int {
	s.t.Helper()
	mark := s.mark()
	if err := s.hub.SetRoute(output, input); err != nil {
		s.t.Fatal(err)
	}
	s.wait(mark, "route_changed", func(r engine.Record) bool {
		return r.Type == "route_changed" && r.Fields["output"] == output && r.Fields["input"] == input
	})
	return mark
}

// routes lists the route actions started from mark on, "output<-input (cause)".
func (s *switchSite) routes(from int) []string {
	var out []string
	for _, r := range s.h.Since(from) {
		if r.Type == "action_started" && r.Fields["verb"] == "route" {
			out = append(out, fmt.Sprintf("%v<-%v (%v)", r.Fields["output"], r.Fields["input"], r.Fields["cause"]))
		}
	}
	return out
}

func (s *switchSite) count(from int, typ string) int {
	n := 0
	for _, r := range s.h.Since(from) {
		if r.Type == typ {
			n++
		}
	}
	return n
}

func (s *switchSite) expectOutputs(want ...int) {
	s.t.Helper()
	if got := s.hub.Routing()[:len(want)]; !slices.Equal(got, want) {
		s.t.Fatalf("the switcher shows %v on outputs 1..%d, want %v\n%s", got, len(want), want, s.describe(0))
	}
}

func (s *switchSite) desired() map[int]int {
	for _, d := range s.h.Engine.Snapshot().Drivers {
		if d.Name == "router" {
			return d.Desired
		}
	}
	return nil
}

func (s *switchSite) describe(from int) string {
	var b strings.Builder
	for _, r := range s.h.Since(from) {
		fmt.Fprintf(&b, "  %s %s %s %v\n", r.At.Format("15:04:05.000"), r.Type, r.Member, r.Fields)
	}
	return b.String()
}

// checkDiffers checks a routing_differs record's fields.
func checkDiffers(t *testing.T, r engine.Record, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got, ok := r.Fields[k]; !ok && v != nil || ok && fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("routing_differs %s = %v, want %v (%v)", k, got, v, r.Fields)
		}
	}
}

func TestASwitcherRestartWhileCoveringPutsTheStandbysInputsBack(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	mark := s.mark()
	s.h.Crash("main")
	s.waitRoutes(mark, 2)
	s.expectOutputs(3, 4)

	// The switcher restarts with its own default routing (output n ← input n).
	mark = s.mark()
	s.hub.Restart()
	s.wait(mark, "reconnected", sim.Type("driver_connected"))
	for _, out := range []int{1, 2} {
		checkDiffers(t, s.differs(mark, out), map[string]any{
			"driver": "router", "expected": out + 2, "actual": out, "cause": coordinator.CauseReconnect,
			"duty": "main", "default": coordinator.DifferReassert,
		})
	}
	s.waitRoutes(mark, 2)
	if got := s.routes(mark); len(got) != 2 || !strings.HasPrefix(got[0], "1<-3 (re-assert after a reconnect") || !strings.HasPrefix(got[1], "2<-4 (re-assert") {
		t.Fatalf("routes after the restart: %q", got)
	}
	s.expectOutputs(3, 4)
	if s.count(mark, events.Alarm) != 0 {
		t.Fatalf("a restart is not a fight:\n%s", s.describe(mark))
	}
}

func TestAPanelChangeOnADutyOutputIsReportedAndPutBack(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	mark := s.panel(2, 7)
	checkDiffers(t, s.differs(mark, 2), map[string]any{
		"expected": 2, "actual": 7, "cause": coordinator.CausePanel, "duty": "main", "default": coordinator.DifferReassert,
	})
	s.waitRoutes(mark, 1)
	if got := s.routes(mark); len(got) != 1 || !strings.HasPrefix(got[0], "2<-2 (re-assert after a panel change: the switcher showed input 7") {
		t.Fatalf("routes %q", got)
	}
	s.expectOutputs(1, 2)
	// The policy saw it (after the record, never from inside a handler).
	if n := s.count(mark, events.RoutingDiffers); n != 1 {
		t.Fatalf("%d routing_differs records, want 1 (our own re-assert is not a difference)\n%s", n, s.describe(mark))
	}
}

func TestAPanelChangeOnAnotherOutputIsAcceptedNotFought(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	mark := s.mark()
	s.h.Command("route", map[string]any{"output": 5, "input": 7})
	s.waitRoutes(mark, 1)

	mark = s.panel(5, 8)
	checkDiffers(t, s.differs(mark, 5), map[string]any{
		"expected": 7, "actual": 8, "cause": coordinator.CausePanel, "duty": nil, "default": coordinator.DifferAccept,
	})
	s.wait(mark, "accepted", sim.Type(events.RoutingAccepted))
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("a panel change on an output no duty names was fought: %q", got)
	}
	if got := s.hub.Routing()[4]; got != 8 {
		t.Fatalf("output 5 shows %d, want the operator's 8", got)
	}
	if d := s.desired(); d[5] != 8 {
		t.Fatalf("desired routing %v, want output 5 ← 8", d)
	}
	// Not reported again: a reconnect finds the device as accepted.
	mark = s.mark()
	s.hub.DropConnections()
	s.wait(mark, "reconnected", sim.Type("driver_connected"))
	s.h.Advance(time.Second)
	if n := s.count(mark, events.RoutingDiffers); n != 0 {
		t.Fatalf("reported again after a reconnect:\n%s", s.describe(mark))
	}
}

func TestReassertsAreRateLimitedPerOutput(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	mark := s.panel(1, 6)
	s.waitRoutes(mark, 1)
	// Changed again at once: reported, but put back only a second after the
	// last re-assert.
	mark = s.panel(1, 6)
	s.differs(mark, 1)
	s.h.Advance(coordinator.ReassertInterval - time.Millisecond)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("re-asserted within the interval: %q", got)
	}
	s.h.Advance(time.Millisecond)
	s.waitRoutes(mark, 1)
	s.expectOutputs(1, 2)
}

func TestAnOutputChangedAwayThreeTimesInAMinuteIsGivenUpWithAnAlarm(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	for i := 1; i < coordinator.FightChanges; i++ {
		mark := s.panel(1, 6)
		checkDiffers(t, s.differs(mark, 1), map[string]any{"default": coordinator.DifferReassert})
		s.waitRoutes(mark, 1)
		s.h.Advance(20 * time.Second)
	}
	// The third change within the minute: no longer fought.
	mark := s.panel(1, 6)
	checkDiffers(t, s.differs(mark, 1), map[string]any{"expected": 1, "actual": 6, "default": coordinator.DifferStop})
	alarm := s.wait(mark, "the alarm", sim.Type(events.Alarm))
	if alarm.Fields["kind"] != coordinator.AlarmRoutingFight || alarm.Fields["key"] != "routing_fight:router:1" ||
		alarm.Member != "main" || alarm.Fields["severity"] != coordinator.SeverityAlarm {
		t.Fatalf("alarm %+v", alarm)
	}
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("still fighting: %q", got)
	}
	if got := s.hub.Routing()[0]; got != 6 {
		t.Fatalf("output 1 shows %d, want 6 as the other controller left it", got)
	}
	if d := s.desired(); d[1] != 6 {
		t.Fatalf("desired routing %v, want output 1 ← 6 (as reported)", d)
	}
	if st := s.h.Engine.Snapshot(); len(st.Alarms) != 1 || st.Alarms[0].Kind != coordinator.AlarmRoutingFight {
		t.Fatalf("status alarms %+v", st.Alarms)
	}
	// While the alarm stands, further changes are neither fought nor reported.
	mark = s.panel(1, 5)
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 || s.count(mark, events.RoutingDiffers) != 0 {
		t.Fatalf("after giving up: routes %q\n%s", got, s.describe(mark))
	}

	// The coordinator routes that output again: the alarm ends, and the
	// output is kept again.
	mark = s.mark()
	s.h.Command("route", map[string]any{"output": 1, "input": 1})
	s.waitRoutes(mark, 1)
	cleared := s.wait(mark, "cleared", sim.Type(events.AlarmCleared))
	if cleared.Fields["key"] != "routing_fight:router:1" {
		t.Fatalf("cleared %+v", cleared)
	}
	if st := s.h.Engine.Snapshot(); len(st.Alarms) != 0 {
		t.Fatalf("still raised: %+v", st.Alarms)
	}
	s.h.Advance(time.Second)
	mark = s.panel(1, 6)
	checkDiffers(t, s.differs(mark, 1), map[string]any{"default": coordinator.DifferReassert})
	s.waitRoutes(mark, 1)
	s.expectOutputs(1, 2)
}

// The operator's way out of a fight: the reassert command routes the
// output as the site says (main on its own inputs), which ends the alarm.
func TestTheOperatorsReassertEndsAFight(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	for i := 1; i < coordinator.FightChanges; i++ {
		mark := s.panel(1, 6)
		s.differs(mark, 1)
		s.waitRoutes(mark, 1)
		s.h.Advance(20 * time.Second)
	}
	s.differs(s.panel(1, 6), 1)
	s.h.Advance(time.Second)
	if st := s.h.Engine.Snapshot(); len(st.Alarms) != 1 || st.Alarms[0].Kind != coordinator.AlarmRoutingFight {
		t.Fatalf("alarms %+v", st.Alarms)
	}
	for _, bad := range []map[string]any{{"driver": "nope"}, {"driver": "router", "output": 0}, {"driver": "router", "output": 7}} {
		mark := s.mark()
		s.h.Command("reassert", bad)
		if c := s.wait(mark, "the command", sim.Type("command")); c.Fields["error"] == nil {
			t.Errorf("reassert %v was not refused: %+v", bad, c)
		}
	}
	mark := s.mark()
	s.h.Command("reassert", map[string]any{"output": 1})
	s.waitRoutes(mark, 1)
	s.wait(mark, "cleared", sim.Type(events.AlarmCleared))
	s.expectOutputs(1, 2)
	if st := s.h.Engine.Snapshot(); len(st.Alarms) != 0 {
		t.Fatalf("still raised: %+v", st.Alarms)
	}
}

func TestInManualModeDifferencesAreOnlyReported(t *testing.T) {
	t.Run("a panel change", func(t *testing.T) {
		s := newSwitchSite(t, "manual", switchPolicy)
		s.up("control", "backup", "main")
		mark := s.panel(1, 6)
		checkDiffers(t, s.differs(mark, 1), map[string]any{"duty": "main", "default": coordinator.DifferReport})
		s.h.Advance(time.Minute)
		if got := s.routes(mark); len(got) != 0 {
			t.Fatalf("routes in manual mode: %q", got)
		}
		if got := s.hub.Routing()[0]; got != 6 {
			t.Fatalf("output 1 shows %d", got)
		}
	})
	t.Run("the start-up routes", func(t *testing.T) {
		// The switcher shows the standby on main's outputs; main is alive.
		s := newSwitchSite(t, "manual", switchPolicy, [2]int{1, 3}, [2]int{2, 4})
		mark := s.mark()
		s.up("control", "backup", "main")
		s.h.Advance(time.Minute)
		if got := s.routes(mark); len(got) != 0 {
			t.Fatalf("routes in manual mode: %q", got)
		}
		var withheld []string
		for _, r := range s.h.Since(mark) {
			if r.Type == events.RouteWithheld {
				withheld = append(withheld, fmt.Sprintf("%v<-%v %v", r.Fields["output"], r.Fields["input"], r.Fields["why"]))
			}
		}
		if want := []string{"1<-1 manual mode", "2<-2 manual mode"}; !slices.Equal(withheld, want) {
			t.Fatalf("withheld %q, want %q", withheld, want)
		}
		s.expectOutputs(3, 4)
		// Switched to auto: what was withheld is sent.
		mark = s.mark()
		s.h.Command("mode", map[string]any{"mode": "auto"})
		s.waitRoutes(mark, 2)
		s.expectOutputs(1, 2)
	})
}

func TestACoordinatorRestartKeepsTheDesiredRouting(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	mark := s.mark()
	s.h.Command("route", map[string]any{"output": 1, "input": 5}) // an operator's choice on main's output
	s.waitRoutes(mark, 1)

	// The coordinator restarts; meanwhile the switcher restarted too.
	s.h.Stop()
	s.hub.Restart()
	s.start()
	mark = 0
	checkDiffers(t, s.differs(mark, 1), map[string]any{"expected": 5, "actual": 1, "cause": coordinator.CauseReconnect})
	s.waitRoutes(mark, 1)
	s.up("control", "backup", "main") // seen alive: its own inputs would be 1, 2; what was decided wins
	s.h.Advance(time.Second)
	if got := s.routes(mark); len(got) != 1 || !strings.HasPrefix(got[0], "1<-5 (re-assert") {
		t.Fatalf("routes after the restart %q", got)
	}
	s.expectOutputs(5, 2)
}

func TestAFreshCoordinatorPutsAnAliveMainOnItsOwnInputs(t *testing.T) {
	// The switcher shows the standby on main's outputs (a takeover decided
	// by a coordinator whose state folder is gone); main is alive.
	s := newSwitchSite(t, "auto", switchPolicy, [2]int{1, 3}, [2]int{2, 4})
	mark := s.mark()
	s.up("control", "backup")
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("routed before main was seen: %q", got)
	}
	s.up("main")
	s.waitRoutes(mark, 2)
	if got := strings.Join(s.routes(mark), " "); got != "1<-1 (start-up: main's own inputs) 2<-2 (start-up: main's own inputs)" {
		t.Fatalf("routes %q", got)
	}
	s.expectOutputs(1, 2)
	// Only what differed was sent: the standby's own outputs were not.
	if d := s.desired(); len(d) != 2 || d[1] != 1 || d[2] != 2 {
		t.Fatalf("desired routing %v", d)
	}
}

func TestAFreshDesiredRoutingPutsACoveredMainOnItsStandby(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	mark := s.mark()
	s.h.Crash("main")
	s.waitRoutes(mark, 2)
	// A state file from before the desired routing was kept: the coverage
	// is there, the desired routing is not; the switcher restarted too.
	s.h.Stop()
	if err := s.store.Update(func(tx *store.Tx) error { return tx.Clear("routing") }); err != nil {
		t.Fatal(err)
	}
	s.hub.Restart()
	s.start()
	s.waitRoutes(0, 2)
	if got := strings.Join(s.routes(0), " "); got != "1<-3 (start-up: main covered by backup) 2<-4 (start-up: main covered by backup)" {
		t.Fatalf("routes %q\n%s", got, s.describe(0))
	}
	s.expectOutputs(3, 4)
}

func TestTheEchoOfOurOwnRouteIsNotADifference(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy+`
us.on("command:twice", function()
  router:route(1, 3) -- its echo arrives while the next route is queued
  router:route(1, 5)
end)
`)
	s.up("control", "backup", "main")
	mark := s.mark()
	s.h.Command("twice", nil)
	s.waitRoutes(mark, 2)
	s.h.Advance(time.Second)
	if n := s.count(mark, events.RoutingDiffers); n != 0 {
		t.Fatalf("our own routes were taken for differences:\n%s", s.describe(mark))
	}
	if n := s.count(mark, "route_changed"); n != 2 {
		t.Fatalf("%d route_changed, want the 2 echoes\n%s", n, s.describe(mark))
	}
	s.expectOutputs(5, 2)
	// A change that is not ours is one.
	mark = s.panel(1, 6)
	s.differs(mark, 1)
	s.waitRoutes(mark, 1)
	s.expectOutputs(5, 2)
}

func TestAPolicyDecidesInsteadOfTheDefault(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy+`
us.on("routing_differs", function(ev)
  if ev.output == 2 then router:keep(ev.output) end            -- a duty output left as changed
  if ev.output == 5 then router:route(ev.output, ev.expected) end -- another output put back
end)
`)
	s.up("control", "backup", "main")
	mark := s.mark()
	s.h.Command("route", map[string]any{"output": 5, "input": 7})
	s.waitRoutes(mark, 1)

	mark = s.panel(2, 8)
	s.differs(mark, 2)
	accepted := s.wait(mark, "kept", sim.Type(events.RoutingAccepted))
	if !strings.Contains(fmt.Sprint(accepted.Fields["why"]), "kept by the policy (routing_differs at ") {
		t.Fatalf("accepted %v", accepted.Fields)
	}
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("a kept output was put back: %q", got)
	}
	if d := s.desired(); d[2] != 8 {
		t.Fatalf("desired %v, want output 2 ← 8", d)
	}

	mark = s.panel(5, 1)
	s.differs(mark, 5)
	s.waitRoutes(mark, 1)
	if got := s.routes(mark); len(got) != 1 || !strings.HasPrefix(got[0], "5<-7 (routing_differs at ") {
		t.Fatalf("routes %q", got)
	}
	if n := s.count(mark, events.RoutingAccepted); n != 0 {
		t.Fatalf("the runtime's default ran too:\n%s", s.describe(mark))
	}
	if got := s.hub.Routing()[4]; got != 7 {
		t.Fatalf("output 5 shows %d, want 7", got)
	}
}

// A takeover's routes the switcher refuses (a NAK) are sent again, after
// ReassertInterval and then twice as long each time, until it takes them:
// nothing else would look at those outputs again, and the picture would stay
// on the lost main's inputs.
func TestARefusedRouteIsSentAgainWithABackoffUntilTheSwitcherTakesIt(t *testing.T) {
	s := newSwitchSite(t, "auto", switchPolicy)
	s.up("control", "backup", "main")
	s.failuresExpected = true
	s.hub.RefuseNext(4) // both takeover routes, then both first retries
	mark := s.mark()
	s.h.Crash("main")
	failed := 0
	s.wait(mark, "both takeover routes refused", func(r engine.Record) bool {
		if r.Type == events.ActionFailed && r.Fields["verb"] == "route" {
			failed++
		}
		return failed == 2
	})
	s.expectOutputs(1, 2)

	// The first retry, a ReassertInterval later: refused again.
	retry := s.mark()
	s.h.Advance(coordinator.ReassertInterval - time.Millisecond)
	if got := s.routes(retry); len(got) != 0 {
		t.Fatalf("sent again before the interval: %q", got)
	}
	s.h.Advance(time.Millisecond)
	failed = 0
	s.wait(retry, "both first retries refused", func(r engine.Record) bool {
		if r.Type == events.ActionFailed && r.Fields["verb"] == "route" {
			failed++
		}
		return failed == 2
	})
	if got := s.routes(retry); len(got) != 2 || !strings.HasPrefix(got[0], "1<-3 (re-assert after a failed route (") {
		t.Fatalf("retries %q", got)
	}

	// The second, twice as long after: taken.
	retry = s.mark()
	s.h.Advance(2*coordinator.ReassertInterval - time.Millisecond)
	if got := s.routes(retry); len(got) != 0 {
		t.Fatalf("sent again before twice the interval: %q", got)
	}
	s.h.Advance(time.Millisecond)
	s.waitRoutes(retry, 2)
	s.expectOutputs(3, 4)

	// Nothing more is sent once the switcher shows them.
	done := s.mark()
	s.h.Advance(time.Minute)
	if got := s.routes(done); len(got) != 0 {
		t.Fatalf("routes after the switcher took them: %q\n%s", got, s.describe(retry))
	}
}

// A failback that has given main its duties back (member_ready: the policy
// routed its outputs back) while the backup is still letting go: the
// operator's reassert routes main's outputs as the site says now — main's
// own inputs — not back to the standby it no longer needs (which nothing
// would have undone once the failback was done).
func TestAReassertDuringAFailbackRoutesTheMembersOwnInputs(t *testing.T) {
	const policy = switchPolicy + `
us.on("member_restored", function(ev) if ev.member.id == "main" then us.failback(ev.member) end end)
us.on("member_ready", function(ev) router:route(1, 1) router:route(2, 2) end)
`
	s := newSwitchSite(t, "auto", policy)
	s.h.Agent("backup", func(c bus.Command) sim.Reply {
		if c.Verb == "release" {
			return sim.Reply{Delay: time.Minute} // it takes its time letting go
		}
		return sim.Reply{}
	})
	s.up("control", "backup", "main")
	mark := s.mark()
	s.h.Crash("main")
	s.waitRoutes(mark, 2)
	s.h.Advance(100 * time.Millisecond)
	s.wait(mark, "takeover done", sim.Type(events.TakeoverDone, "main"))
	s.expectOutputs(3, 4)

	mark = s.mark()
	s.h.Up("main")
	s.h.Advance(time.Second)
	s.wait(mark, "member ready", sim.Type(events.MemberReady, "main"))
	s.waitRoutes(mark, 2)
	s.expectOutputs(1, 2)

	mark = s.mark()
	s.h.Command("reassert", map[string]any{})
	s.waitRoutes(mark, 2)
	s.expectOutputs(1, 2)
	s.h.Advance(2 * time.Minute)
	s.wait(mark, "failback done", sim.Type(events.FailbackDone, "main"))
	s.expectOutputs(1, 2)
}
