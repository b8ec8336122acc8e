package scripts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/drivers/builtin"
	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
)

// switcherSite is the manager-backup site with the switcher's kind and
// address left open: the policy is the same for every model.
const switcherSite = `site: test
coordinator: backup
mdns: false
bus: {url: "tcp://127.0.0.1:1"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 2s}
policy:
  file: %s
  settings: {failback_delay: 30s}
members:
  - id: main
    roles: [manager]
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    roles: [manager]
    standby: true
    duties: {switcher: router, inputs: [3, 4]}
drivers:
  router: {kind: %s, address: "%s", timeout: 2s}
`

// startSimulator starts the simulator a switcher kind registers, at its
// default size, on loopback for a test.
func startSimulator(t *testing.T, kind string) (drivers.SwitcherSim, string) {
	t.Helper()
	k, ok := builtin.Registry().Kind(kind)
	if !ok || k.Simulate == nil {
		t.Fatalf("%s is not a switcher kind", kind)
	}
	s, addr, err := k.Simulate("127.0.0.1:0", drivers.Size{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, addr
}

// A policy switches switcher model by changing only site.yaml (Videohub to
// Extron, Kramer or KUMO): the same
// manager-backup policy fails over and back on every kind's simulator.
func TestThePolicyDrivesEverySwitcherKindByConfigAlone(t *testing.T) {
	policy, err := filepath.Abs("manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range builtin.Registry().Switchers() {
		t.Run(kind, func(t *testing.T) {
			dev, h, routesDone := startSwitcherSite(t, policy, kind)
			mark := len(h.Records())
			h.Crash("main")
			routesDone(mark, 2)
			if r := dev.Routing(); r[0] != 3 || r[1] != 4 {
				t.Fatalf("%s after the loss shows outputs 1,2 ← %d,%d; want 3,4", kind, r[0], r[1])
			}
			mark = len(h.Records())
			h.Up("main")
			h.Advance(31 * time.Second)
			routesDone(mark, 2)
			if r := dev.Routing(); r[0] != 1 || r[1] != 2 {
				t.Fatalf("%s after the failback shows outputs 1,2 ← %d,%d; want 1,2", kind, r[0], r[1])
			}
		})
	}
}

// startSwitcherSite runs the manager-backup policy on switcherSite with a
// simulator of the kind, on the virtual clock, with main and backup up and
// on air. routesDone waits for n route actions done from a mark on.
func startSwitcherSite(t *testing.T, policy, kind string) (dev drivers.SwitcherSim, h *sim.Harness, routesDone func(from, n int)) {
	t.Helper()
	dev, addr := startSimulator(t, kind)
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, switcherSite, policy, kind, addr), 0o644); err != nil {
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
	h, err = sim.New(cfg, sim.Options{Drivers: drvs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	wait := func(from int, what string, match func(engine.Record) bool) {
		t.Helper()
		if _, err := h.WaitRecord(ctx, from, match); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wait(0, "driver connected", sim.Type("driver_connected"))
	h.Up("backup")
	h.Up("main")
	h.Advance(100 * time.Millisecond)
	routesDone = func(from int, n int) {
		t.Helper()
		done := 0
		wait(from, fmt.Sprintf("%d routes done", n), func(r engine.Record) bool {
			if r.Type == "action_failed" {
				t.Fatalf("action failed: %v", r.Fields)
			}
			if r.Type == "action_done" && r.Fields["verb"] == "route" {
				done++
			}
			return done == n
		})
	}
	return dev, h, routesDone
}

// The router contract, end to end: a switcher that restarts while a standby
// covers (power cycle, firmware reboot) comes back with its own default
// routing; the coordinator puts the standby's inputs back, on every kind —
// read back on reconnecting (Videohub, Extron, Kramer) or found by the next
// poll (KUMO).
func TestEverySwitcherKindGetsTheStandbyBackAfterItRestartsWhileCovering(t *testing.T) {
	policy, err := filepath.Abs("manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range builtin.Registry().Switchers() {
		t.Run(kind, func(t *testing.T) {
			dev, h, routesDone := startSwitcherSite(t, policy, kind)
			mark := len(h.Records())
			h.Crash("main")
			routesDone(mark, 2)
			if r := dev.Routing(); r[0] != 3 || r[1] != 4 {
				t.Fatalf("%s covering shows outputs 1,2 ← %d,%d; want 3,4", kind, r[0], r[1])
			}

			mark = len(h.Records())
			dev.Restart()
			if r := dev.Routing(); r[0] != 1 || r[1] != 2 {
				t.Fatalf("%s restarted shows outputs 1,2 ← %d,%d; want its default 1,2", kind, r[0], r[1])
			}
			routesDone(mark, 2)
			if r := dev.Routing(); r[0] != 3 || r[1] != 4 {
				t.Fatalf("%s after the restart shows outputs 1,2 ← %d,%d; want the standby's 3,4", kind, r[0], r[1])
			}
			var differs []string
			for _, r := range h.Since(mark) {
				if r.Type == events.RoutingDiffers {
					differs = append(differs, fmt.Sprintf("%v:%v->%v %v", r.Fields["output"], r.Fields["actual"], r.Fields["expected"], r.Fields["default"]))
				}
			}
			if want := []string{"1:1->3 reassert", "2:2->4 reassert"}; !slices.Equal(differs, want) {
				t.Errorf("routing_differs %q, want %q", differs, want)
			}
		})
	}
}
