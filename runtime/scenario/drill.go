package scenario

import (
	"context"
	"fmt"
	"os"
	"time"
	"understudy/runtime/coordinator"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/engine"
)

// DrillResult is what a dry-run fire drill found: what the policy would
// decide, from the fault on, if the drill were real. Nothing was sent.
type DrillResult struct {
	Member    string
	Fault     string
	Revert    time.Duration
	Decisions []Decision // At: from the fault
	Events    []Decision // takeover and failback events (What: the event in words)
	Errors    []string   // policy errors while it ran
	Simulated time.Duration
	Wall      time.Duration
}

// DryRun runs a fire drill on a simulation of the site as it is now (now:
// the coordinator's status): the members that are up now come up, the
// broken ones are broken, the mode is the same; once the simulation has
// settled, the member gets the fault, and after req.Revert the drill
// reverts as a real one would (the member back, an operator's failback).
// The policy and the drivers' argument checks are the real ones; the
// switchers are simulators and no member is told anything.
func DryRun(ctx context.Context, site *config.Site, now engine.Status, req coordinator.DrillRequest, opts Options) (*DrillResult, error) {
	if _, ok := site.Member(req.Member); !ok {
		return nil, fmt.Errorf("drill: no member %q", req.Member)
	}
	if opts.StateDir == "" {
		dir, err := os.MkdirTemp("", "understudy-drill-")
		if err != nil {
			return nil, fmt.Errorf("drill: %w", err)
		}
		defer os.RemoveAll(dir)
		opts.StateDir = dir
	}
	opts.SiteConfig = site
	sc := &Scenario{Name: "dry-run drill of " + req.Member, NoneUp: true, File: "drill"}
	var settle time.Duration
	for _, m := range site.Members {
		settle = max(settle, m.LostAfter.D())
	}
	settle += site.Heartbeat.StartupGrace.D() + 30*time.Second
	at := func(d time.Duration) config.Duration { return config.Duration(d) }
	for _, m := range now.Members {
		cm, ok := site.Member(m.ID)
		if !ok || cm.Probe != nil || m.ID == site.Coordinator {
			continue
		}
		switch m.State {
		case "alive", "suspect", "broken":
			sc.Steps = append(sc.Steps, Step{Up: m.ID})
			if m.State == "broken" {
				sc.Steps = append(sc.Steps, Step{Broken: m.ID})
			}
		}
	}
	if now.Takeover != nil && now.Takeover.Mode != "" {
		sc.Steps = append(sc.Steps, Step{Command: "mode", Args: map[string]any{"mode": now.Takeover.Mode}})
	}
	fault, revert := Step{At: at(settle)}, Step{At: at(settle + req.Revert)}
	switch req.Fault {
	case coordinator.DrillBroken:
		fault.Broken, revert.Repaired = req.Member, req.Member
	default:
		fault.Crash, revert.Up = req.Member, req.Member
	}
	failback := Step{At: at(settle + req.Revert + time.Second), Command: "failback", Args: map[string]any{"member": req.Member}}
	sc.Steps = append(sc.Steps, fault, revert, failback)
	sc.Run = at(settle + req.Revert + 2*time.Minute)

	res, err := Run(ctx, sc, opts)
	if err != nil {
		return nil, err
	}
	start := res.Start.Add(settle)
	out := &DrillResult{Member: req.Member, Fault: req.Fault, Revert: req.Revert, Simulated: res.Length - settle, Wall: res.Wall}
	var after []engine.Record
	for _, r := range res.Records {
		if !r.At.Before(start) {
			after = append(after, r)
		}
	}
	out.Decisions = decisions(after, start)
	for _, r := range after {
		switch r.Type {
		case events.PolicyError:
			out.Errors = append(out.Errors, fmt.Sprint(r.Fields["error"]))
		case events.MemberLost, events.MemberBroken, events.MemberRestored, events.TakeoverStarted, events.TakeoverDone, events.TakeoverFailed, events.TakeoverQueued, events.TakeoverProposed,
			events.FailbackStarted, events.FailbackDone, events.FailbackFailed, events.GraceExpired:
			out.Events = append(out.Events, Decision{At: r.At.Sub(start), What: r.Type + " " + r.Member + r.Summary()})
		}
	}
	return out, nil
}
