package scenario_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"understudy/runtime/coordinator"

	"understudy/drivers/builtin"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/scenario"
	"understudy/runtime/takeover"
)

// A dry-run drill shows what the shipped manager-backup policy would do if
// main were lost now: the routes to the backup, and after the revert the
// failback and the routes back; the other members' state is taken from the
// status given (here: the mode).
func TestDryRunDrillShowsTheDecisions(t *testing.T) {
	site, err := config.Load(filepath.Join("..", "..", "scripts", "manager-backup", "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	now := engine.Status{Members: []engine.MemberStatus{{ID: "main", State: "alive"}, {ID: "backup", State: "alive"}}}
	req := coordinator.DrillRequest{Member: "main", Fault: coordinator.DrillLost, DryRun: true, Revert: 2 * time.Minute}
	res, err := scenario.DryRun(context.Background(), site, now, req, scenario.Options{Registry: builtin.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	var what []string
	for _, d := range res.Decisions {
		what = append(what, d.At.String()+" "+d.What)
	}
	t.Logf("decisions:\n%s", strings.Join(what, "\n"))
	if len(res.Errors) > 0 {
		t.Fatalf("policy errors: %v", res.Errors)
	}
	first := slices.IndexFunc(res.Decisions, func(d scenario.Decision) bool { return d.What == "route router output 1 ← input 3" })
	back := slices.IndexFunc(res.Decisions, func(d scenario.Decision) bool { return d.What == "route router output 1 ← input 1" })
	if first < 0 || back < 0 || res.Decisions[first].At > 2*time.Second || res.Decisions[back].At < 2*time.Minute {
		t.Fatalf("want the route to the backup at once and back after the revert; got:\n%s", strings.Join(what, "\n"))
	}
	if !slices.ContainsFunc(res.Events, func(d scenario.Decision) bool { return strings.HasPrefix(d.What, "failback_done main") }) {
		t.Fatalf("no failback in the dry run: %+v", res.Events)
	}

	// In manual mode now, the drill shows a proposal and no route.
	now.Takeover = &engine.TakeoverStatus{Snapshot: takeover.Snapshot{Mode: config.ModeManual}}
	res, err = scenario.DryRun(context.Background(), site, now, req, scenario.Options{Registry: builtin.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(res.Decisions, func(d scenario.Decision) bool { return strings.Contains(d.What, "← input 3") }) {
		t.Fatalf("routed without a confirmation in manual mode: %+v", res.Decisions)
	}
	if !slices.ContainsFunc(res.Events, func(d scenario.Decision) bool { return strings.HasPrefix(d.What, "takeover_proposed main") }) {
		t.Fatalf("no proposal in manual mode: %+v", res.Events)
	}
}
