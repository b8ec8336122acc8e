package scripts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/fixtures/videohubsim"
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
	hub, addr := videohubsim.StartLoopback(t, videohubsim.Options{Inputs: 8, Outputs: 8})
	policy, err := filepath.Abs("manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(managerBackupSite, coordinator, policy, closedIsLost, addr)), 0o644); err != nil {
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
	s := &site{t: t, ctx: ctx, h: h, hub: hub}
	s.wait(0, sim.Type("driver_connected"))
	h.Up("backup")
	h.Up("main")
	h.Up("control")
	h.Advance(100 * time.Millisecond)
	s.expectRouting(1, 2)
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

// waitActions waits for n action results after mark and fails on any failure.
func (s *site) waitActions(mark, n int) {
	s.t.Helper()
	done := 0
	s.wait(mark, func(r engine.Record) bool {
		if r.Type == "action_failed" {
			s.t.Fatalf("action failed: %v", r.Fields)
		}
		if r.Type == "action_done" {
			done++
		}
		return done == n
	})
}

func (s *site) routes(from int) []string {
	var out []string
	for _, r := range s.h.Since(from) {
		if r.Type == "action_started" {
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
