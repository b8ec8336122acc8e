package scripts_test

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
	"understudy/drivers/builtin"
	"understudy/drivers/videohub/videohubsim"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
)

const managerBackupSite = `site: test
coordinator: %s
mdns: false
bus: {url: "tcp://127.0.0.1:1"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 2s}
policy:
  file: %s
  settings: {failback_delay: 30s, closed_is_lost: %v}
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
  router: {kind: videohub, address: "%s", timeout: 2s}
`

type site struct {
	t   *testing.T
	ctx context.Context
	h   *sim.Harness
	hub *videohubsim.Sim
}

// newSite runs the shipped manager-backup policy on a virtual clock against
// a Videohub simulator on loopback, with main and backup up and on air.
func newSite(t *testing.T, closedIsLost bool) *site {
	return newSiteCoordinatedBy(t, closedIsLost, "backup")
}

// newSiteCoordinatedBy is newSite with the policy run by another member.
func newSiteCoordinatedBy(t *testing.T, closedIsLost bool, coordinator string) *site {
	t.Helper()
	s := startManagerSite(t, func(policy, addr string) string {
		return fmt.Sprintf(managerBackupSite, coordinator, policy, closedIsLost, addr)
	}, "backup", "main", "control")
	s.expectRouting(1, 2)
	return s
}

// startManagerSite runs the shipped manager-backup policy on a virtual clock
// against a Videohub simulator (8×8) on loopback, on the site that siteYAML
// returns for the policy's path and the switcher's address, with the members
// up (in that order). Every test fails if the policy reported an error.
func startManagerSite(t *testing.T, siteYAML func(policy, addr string) string, up ...string) *site {
	t.Helper()
	hub, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 8, Outputs: 8})
	return startManagerSiteOn(t, hub, addr, siteYAML, up...)
}

// startManagerSiteOn is startManagerSite on a switcher simulator already running.
func startManagerSiteOn(t *testing.T, hub *videohubsim.Sim, addr string, siteYAML func(policy, addr string) string, up ...string) *site {
	t.Helper()
	policy, err := filepath.Abs("manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, []byte(siteYAML(policy, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	drvs, err := cfg.BuildDrivers(builtin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	h, err := sim.New(cfg, sim.Options{Drivers: drvs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	s := &site{t: t, ctx: ctx, h: h, hub: hub}
	t.Cleanup(func() {
		for _, r := range h.Records() {
			if r.Type == "policy_error" {
				t.Errorf("policy error: %v", r.Fields)
			}
		}
	})
	s.wait(0, sim.Type("driver_connected"))
	for _, id := range up {
		h.Up(id)
	}
	h.Advance(100 * time.Millisecond)
	return s
}

func (s *site) wait(from int, match func(engine.Record) bool) engine.Record {
	s.t.Helper()
	r, err := s.h.WaitRecord(s.ctx, from, match)
	if err != nil {
		s.t.Fatalf("%v; records:\n%s", err, s.describe(from))
	}
	return r
}

// waitActions waits for n switcher route results after mark and fails on any
// failed action. (Hooks the standby and the main run on takeover and failback
// are actions too; they are not counted.)
func (s *site) waitActions(mark, n int) {
	s.t.Helper()
	done := 0
	s.wait(mark, func(r engine.Record) bool {
		if r.Type == "action_failed" {
			s.t.Fatalf("action failed: %v", r.Fields)
		}
		if r.Type == "action_done" && r.Fields["verb"] == "route" {
			done++
		}
		return done == n
	})
}

// routes lists the switcher routes started after from, as "output<-input".
func (s *site) routes(from int) []string {
	var out []string
	for _, r := range s.h.Since(from) {
		if r.Type == "action_started" && r.Fields["verb"] == "route" {
			out = append(out, fmt.Sprintf("%v<-%v", r.Fields["output"], r.Fields["input"]))
		}
	}
	return out
}

func (s *site) expectRouting(out1, out2 int) {
	s.t.Helper()
	r := s.hub.Routing()
	if r[0] != out1 || r[1] != out2 {
		s.t.Fatalf("switcher outputs 1,2 show inputs %d,%d; want %d,%d", r[0], r[1], out1, out2)
	}
}

func (s *site) describe(from int) string {
	var b strings.Builder
	for _, r := range s.h.Since(from) {
		fmt.Fprintf(&b, "  %s %s %s %v\n", r.At.Format("15:04:05.000"), r.Type, r.Member, r.Fields)
	}
	return b.String()
}

func TestManagerBackupCrashTakeoverAndFailback(t *testing.T) {
	s := newSite(t, false)
	mark := len(s.h.Records())
	s.h.Crash("main")
	lost := s.wait(mark, sim.Type("member_lost", "main"))
	if !strings.Contains(lost.Fields["reason"].(string), "Last Will") {
		t.Errorf("lost reason %v", lost.Fields["reason"])
	}
	if got := strings.Join(s.routes(mark), " "); got != "1<-3 2<-4" {
		t.Fatalf("takeover routes %q, want outputs 1,2 from the backup's inputs 3,4", got)
	}
	s.waitActions(mark, 2)
	s.expectRouting(3, 4)
	if n := len(s.hub.Routes()); n != 2 {
		t.Errorf("the switcher applied %d routes, want 2: %+v", n, s.hub.Routes())
	}

	mark = len(s.h.Records())
	s.h.Up("main")
	s.wait(mark, sim.Type("member_restored", "main"))
	s.h.Advance(30*time.Second - time.Millisecond)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("failback before the delay: %v", got)
	}
	s.h.Advance(time.Millisecond)
	if got := strings.Join(s.routes(mark), " "); got != "1<-1 2<-2" {
		t.Fatalf("failback routes %q", got)
	}
	s.waitActions(mark, 2)
	s.expectRouting(1, 2)
}

func TestManagerBackupSilentLossAtLostAfter(t *testing.T) {
	s := newSite(t, false)
	s.h.Silence("main") // last heartbeat was at +100ms of the site's life
	mark := len(s.h.Records())
	s.h.Advance(299 * time.Millisecond)
	for _, r := range s.h.Since(mark) {
		if r.Type == "member_lost" {
			t.Fatalf("lost before lost_after: %+v", r)
		}
	}
	s.h.Advance(time.Millisecond)
	lost := s.wait(mark, sim.Type("member_lost", "main"))
	if lost.Fields["silence_ms"] != int64(300) {
		t.Errorf("silence %v, want 300ms", lost.Fields["silence_ms"])
	}
	s.waitActions(mark, 2)
	s.expectRouting(3, 4)
}

func TestManagerBackupNoFailbackWhenLostAgainDuringTheDelay(t *testing.T) {
	s := newSite(t, false)
	mark := len(s.h.Records())
	s.h.Crash("main")
	s.waitActions(mark, 2)
	s.h.Up("main")
	s.h.Advance(10 * time.Second)
	mark = len(s.h.Records())
	s.h.Crash("main") // flapping: lost again before the failback
	s.wait(mark, sim.Type("member_lost", "main"))
	s.h.Advance(time.Hour)
	if got := s.routes(mark); len(got) != 2 || got[0] != "1<-3" {
		// The takeover is repeated (harmless: same route), but no failback follows.
		t.Fatalf("routes after flapping: %v", got)
	}
	s.waitActions(mark, 2)
	s.expectRouting(3, 4)
}

func TestManagerBackupClosedIsNotLostUnlessConfigured(t *testing.T) {
	for _, closedIsLost := range []bool{false, true} {
		t.Run(fmt.Sprintf("closed_is_lost=%v", closedIsLost), func(t *testing.T) {
			s := newSite(t, closedIsLost)
			mark := len(s.h.Records())
			s.h.Shutdown("main")
			s.wait(mark, sim.Type("member_closed", "main"))
			s.h.Advance(time.Hour)
			routes := s.routes(mark)
			if !closedIsLost {
				if len(routes) != 0 {
					t.Fatalf("graceful shutdown caused routes %v", routes)
				}
				s.expectRouting(1, 2)
				return
			}
			if strings.Join(routes, " ") != "1<-3 2<-4" {
				t.Fatalf("routes %v", routes)
			}
			s.waitActions(mark, 2)
			s.expectRouting(3, 4)
		})
	}
}

func TestManagerBackupNothingToDoWithoutALiveStandby(t *testing.T) {
	// The policy runs on a control machine, so the standby can be lost too.
	s := newSiteCoordinatedBy(t, false, "control")
	s.h.Crash("backup")
	mark := len(s.h.Records())
	s.h.Crash("main")
	s.wait(mark, sim.Type("member_lost", "main"))
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("routes without a standby: %v", got)
	}
	for _, r := range s.h.Since(mark) {
		if r.Type == "policy_error" {
			t.Fatalf("policy error: %v", r.Fields)
		}
	}
}

// mirrorSite is a 1:1 mirror: two mains and two backups paired by usage
// name. backup-right has the higher priority, so only the pairing by usage
// name keeps it from main-left. %s: the policy, the pool's match list, the
// switcher's address.
const mirrorSite = `site: mirror
coordinator: control
mdns: false
bus: {url: "tcp://127.0.0.1:1"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 2s}
policy: {file: %q}
pools:
  mirror: {match: [%s]}
members:
  - id: main-left
    roles: [manager]
    usage: [left]
    pool: mirror
    duties: {switcher: router, usage: {left: {outputs: [1, 2], inputs: [1, 2]}}}
  - id: main-right
    roles: [manager]
    usage: [right]
    pool: mirror
    duties: {switcher: router, usage: {right: {outputs: [3, 4], inputs: [3, 4]}}}
  - id: backup-right
    roles: [manager]
    standby: true
    priority: 10
    usage: [right]
    pool: mirror
    duties: {switcher: router, usage: {right: {inputs: [7, 8]}}}
  - id: backup-left
    roles: [manager]
    standby: true
    usage: [left]
    pool: mirror
    duties: {switcher: router, usage: {left: {inputs: [5, 6]}}}
  - id: control
    roles: [control]
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

func (s *site) expectOutputs(want ...int) {
	s.t.Helper()
	r := s.hub.Routing()
	if got := r[:len(want)]; !slices.Equal(got, want) {
		s.t.Fatalf("switcher outputs 1..%d show inputs %v; want %v", len(want), got, want)
	}
}

func TestManagerBackupUsageMirrorRoutesEachUsageFromItsPartner(t *testing.T) {
	// With the pool matching usage names, and without (the policy pairs them itself).
	for _, match := range []string{"usage", ""} {
		t.Run("match="+match, func(t *testing.T) {
			s := startManagerSite(t, func(policy, addr string) string {
				return fmt.Sprintf(mirrorSite, policy, match, addr)
			}, "backup-left", "backup-right", "main-left", "main-right", "control")
			s.expectOutputs(1, 2, 3, 4)

			mark := len(s.h.Records())
			s.h.Crash("main-left")
			s.h.Crash("main-right")
			s.wait(mark, sim.Type("member_lost", "main-right"))
			if got := strings.Join(s.routes(mark), " "); got != "1<-5 2<-6 3<-7 4<-8" {
				t.Fatalf("takeover routes %q, want left's outputs from backup-left, right's from backup-right\n%s", got, s.describe(mark))
			}
			s.waitActions(mark, 4)
			s.expectOutputs(5, 6, 7, 8)
			cov := s.h.Coordinator.Takeover()
			if c, _ := cov.Covered("main-left"); c.Standby != "backup-left" {
				t.Fatalf("main-left covered by %q", c.Standby)
			}
			if c, _ := cov.Covered("main-right"); c.Standby != "backup-right" {
				t.Fatalf("main-right covered by %q", c.Standby)
			}

			// Both return: after the failback delay each gets its own outputs back
			// and the bookkeeping ends.
			mark = len(s.h.Records())
			s.h.Up("main-left")
			s.h.Up("main-right")
			s.h.Advance(31 * time.Second)
			if got := strings.Join(s.routes(mark), " "); got != "1<-1 2<-2 3<-3 4<-4" {
				t.Fatalf("failback routes %q\n%s", got, s.describe(mark))
			}
			s.waitActions(mark, 4)
			s.expectOutputs(1, 2, 3, 4)
			if c := cov.Coverage(); len(c) != 0 {
				t.Fatalf("coverage after the failback: %+v", c)
			}
		})
	}
}

func TestManagerBackupAMirrorWithoutItsPartnerWaitsForIt(t *testing.T) {
	s := startManagerSite(t, func(policy, addr string) string {
		return fmt.Sprintf(mirrorSite, policy, "usage", addr)
	}, "backup-left", "backup-right", "main-left", "main-right", "control")
	s.h.Crash("backup-left")
	mark := len(s.h.Records())
	s.h.Crash("main-left")
	s.wait(mark, sim.Type("takeover_queued", "main-left"))
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("main-left's outputs went to another standby than its partner: %v", got)
	}
	// Its partner returns: it takes over then.
	s.h.Up("backup-left")
	s.wait(mark, sim.Type("takeover_started", "main-left"))
	if got := strings.Join(s.routes(mark), " "); got != "1<-5 2<-6" {
		t.Fatalf("routes %q", got)
	}
	s.waitActions(mark, 2)
	s.expectOutputs(5, 6, 3, 4)
}

// controlSite is managerBackupSite run by the control machine, with a
// failover: section and main's own failover: options (%s, flow style).
const controlSite = `site: test
coordinator: control
mdns: false
bus: {url: "tcp://127.0.0.1:1"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 2s}
policy: {file: %q}
failover: {%s}
members:
  - id: main
    roles: [manager]
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
    failover: {%s}
  - id: backup
    roles: [manager]
    standby: true
    duties: {switcher: router, inputs: [3, 4]}
    hooks:
      reroute: [{exec: [/usr/local/bin/reroute, "{{.member}}"]}]
  - id: control
    roles: [control]
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

func newControlSite(t *testing.T, failover, mainFailover string) *site {
	t.Helper()
	s := startManagerSite(t, func(policy, addr string) string {
		return fmt.Sprintf(controlSite, policy, failover, mainFailover, addr)
	}, "backup", "main", "control")
	s.expectRouting(1, 2)
	return s
}

func TestManagerBackupManualModeRoutesOnlyWhenTheOperatorConfirms(t *testing.T) {
	s := newControlSite(t, "mode: manual", "")
	mark := len(s.h.Records())
	s.h.Crash("main")
	s.wait(mark, sim.Type("takeover_proposed", "main"))
	s.h.Advance(time.Hour)
	props := s.h.Coordinator.Takeover().Proposals()
	if len(props) != 1 || props[0].Member != "main" || props[0].Standby != "backup" {
		t.Fatalf("proposals = %+v", props)
	}
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("routed before the operator confirmed: %v", got)
	}
	s.expectRouting(1, 2)

	mark = len(s.h.Records())
	s.h.Command("confirm", map[string]any{"proposal": props[0].ID})
	s.wait(mark, sim.Type("takeover_started", "main"))
	if got := strings.Join(s.routes(mark), " "); got != "1<-3 2<-4" {
		t.Fatalf("routes after confirm %q\n%s", got, s.describe(mark))
	}
	s.waitActions(mark, 2)
	s.expectRouting(3, 4)
}

func TestManagerBackupRunsTheControlHookOnTheStandby(t *testing.T) {
	s := newControlSite(t, "", "control: reroute")
	mark := len(s.h.Records())
	s.h.Crash("main")
	s.waitActions(mark, 2)
	s.h.Advance(time.Second)
	var verbs []string
	for _, c := range s.h.Ran("backup") {
		verbs = append(verbs, fmt.Sprintf("%s %v", c.Verb, c.Args["member"]))
	}
	if !slices.Contains(verbs, "reroute main") || !slices.Contains(verbs, "takeover main") {
		t.Fatalf("backup ran %v, want the takeover and the control hook reroute for main", verbs)
	}
	s.expectRouting(3, 4)
}

func TestManagerBackupTakeOutputsOffLeavesTheSwitcherAlone(t *testing.T) {
	s := newControlSite(t, "", "take_outputs: false")
	mark := len(s.h.Records())
	s.h.Crash("main")
	s.wait(mark, sim.Type("takeover_started", "main"))
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 {
		t.Fatalf("routes although take_outputs is off: %v", got)
	}
	if c, ok := s.h.Coordinator.Takeover().Covered("main"); !ok || c.Standby != "backup" {
		t.Fatalf("main not covered by backup: %+v", c)
	}
}

func TestManagerBackupTakeOverAllAndOperatorFailback(t *testing.T) {
	// auto_failback off: the main stays on the backup until the operator says.
	s := newControlSite(t, "auto_failback: false", "")
	mark := len(s.h.Records())
	s.h.Command("takeover_all", map[string]any{"standby": "backup"})
	s.wait(mark, sim.Type("takeover_started", "main"))
	if got := strings.Join(s.routes(mark), " "); got != "1<-3 2<-4" {
		t.Fatalf("routes %q", got)
	}
	s.waitActions(mark, 2)
	s.expectRouting(3, 4)
	s.h.Advance(time.Hour)

	mark = len(s.h.Records())
	s.h.Command("failback", map[string]any{"member": "main"})
	s.h.Advance(time.Second)
	s.wait(mark, sim.Type("failback_done", "main"))
	if got := strings.Join(s.routes(mark), " "); got != "1<-1 2<-2" {
		t.Fatalf("failback routes %q\n%s", got, s.describe(mark))
	}
	s.waitActions(mark, 2)
	s.expectRouting(1, 2)
}

func TestManagerBackupAFreshCoordinatorPutsAnAliveMainOnItsOwnInputs(t *testing.T) {
	// The switcher shows main's outputs on the backup (a takeover decided by a
	// coordinator whose state folder is gone); main is up. The new
	// coordinator's bookkeeping covers nobody and it has no desired routing:
	// it asserts what the site says as soon as main is seen alive — main's
	// own inputs — instead of trusting the switcher, and no failback follows.
	hub, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 8, Outputs: 8})
	if err := hub.SetRoute(1, 3); err != nil {
		t.Fatal(err)
	}
	if err := hub.SetRoute(2, 4); err != nil {
		t.Fatal(err)
	}
	s := startManagerSiteOn(t, hub, addr, func(policy, addr string) string {
		return fmt.Sprintf(controlSite, policy, "failback_delay: 10s", "", addr)
	}, "backup", "main", "control")
	if c := s.h.Coordinator.Takeover().Coverage(); len(c) != 0 {
		t.Fatalf("coverage = %+v", c)
	}
	if got := strings.Join(s.routes(0), " "); got != "1<-1 2<-2" {
		t.Fatalf("start-up routes %q\n%s", got, s.describe(0))
	}
	s.waitActions(0, 2)
	s.expectRouting(1, 2)
	mark := len(s.h.Records())
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 || s.has(mark, "failback_started", "main") {
		t.Fatalf("after the start-up: routes %v\n%s", got, s.describe(mark))
	}
}

func TestManagerBackupASuspectMainIsNotTakenOverAgainWhenItsFailbackEnds(t *testing.T) {
	// The backup takes 200 ms to let go; meanwhile main's heartbeats are late
	// (as when the bus hiccups): main is suspect, not lost, when the failback
	// ends, and stays on air.
	s := newControlSite(t, "", "")
	s.h.Agent("backup", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookRelease {
			return sim.Reply{Delay: 200 * time.Millisecond}
		}
		return sim.Reply{}
	})
	mark := len(s.h.Records())
	s.h.Crash("main")
	s.waitActions(mark, 2)
	s.h.Up("main")
	s.h.Advance(30 * time.Second) // the failback starts; main is ready at once
	s.wait(mark, sim.Type("member_ready", "main"))
	s.waitActions(mark, 4)
	s.expectRouting(1, 2)

	mark = len(s.h.Records())
	s.h.Silence("main")
	s.h.Advance(250 * time.Millisecond)
	if !s.has(mark, "member_suspect", "main") || !s.has(mark, "failback_done", "main") || s.has(mark, "member_lost", "main") {
		t.Fatalf("want main suspect (not lost) when the failback ends:\n%s", s.describe(mark))
	}
	s.h.Up("main")
	s.h.Advance(time.Minute)
	if got := s.routes(mark); len(got) != 0 || s.has(mark, "takeover_started", "main") {
		t.Fatalf("a suspect main was taken over again: routes %v\n%s", got, s.describe(mark))
	}
	s.expectRouting(1, 2)
}

func (s *site) has(mark int, typ, member string) bool {
	return slices.ContainsFunc(s.h.Since(mark), func(r engine.Record) bool { return r.Type == typ && r.Member == member })
}
