//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"understudy/bench/proc"
	"understudy/bench/report"
	"understudy/discovery/bus"
	"understudy/events"
	"understudy/fixtures/testhost"
	"understudy/runtime/engine"
)

// silentSiteTemplate is the silent-loss site: the coordinator (with the
// embedded broker) on the first test host, one member per other host, no
// policy (the figure is detection), heartbeat 100 ms, lost_after 300 ms and
// the default MQTT keep-alive (2 s).
const silentSiteTemplate = `site: silent
coordinator: coord
mdns: false
bus: {%s}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
members:
  - {id: coord, roles: [manager], standby: true, api: "127.0.0.1:0"}
%s`

// silentPlan is how much of each phase a run does.
type silentPlan struct {
	watchers int           // members that are never unplugged
	quiet    time.Duration // normal traffic, nothing unplugged
	trials   int           // unplugs of the trial member, plugged back once it is lost
	refs     int           // unplugs kept until the broker publishes its Last Will
	budget   time.Duration // bound of the trials and references together
}

// silentLossRun is what the silent-loss figure found.
type silentLossRun struct {
	lost     []float64 // ms from just before the unplug to member_lost received
	lostAt   []float64 // the same to the coordinator's own time stamp
	wills    []float64 // ms from just before the unplug to the broker's Last Will
	quietFor time.Duration
	watched  time.Duration // member time watched for false losts (all phases)
	false    []string      // member_lost of a member that was not unplugged
	failures []string
	stopped  string
}

func measureSilentLoss(e *env, r *report.Result) {
	plan := silentPlan{watchers: 10, quiet: time.Minute, trials: 30, refs: 6, budget: 100 * time.Second}
	if e.quick {
		plan = silentPlan{watchers: 4, quiet: 10 * time.Second, trials: 5, refs: 1, budget: 25 * time.Second}
	}
	run, err := runSilentLoss(e, plan)
	if err != nil {
		fail(r, err)
	}
	if run == nil || len(run.lost) == 0 {
		if err == nil {
			fail(r, errors.New("no trial ran"))
		}
		return
	}
	r.Stats = report.Summarize(run.lost)
	if len(run.wills) > 0 {
		ws := report.Summarize(run.wills)
		r.Reference = &report.Reference{What: "MQTT Last Will, keep-alive 2 s", Unit: "ms", Stats: ws, Value: ws.P99, Stat: "p99"}
	}
	memberMinutes := run.watched.Minutes()
	r.Checks = []report.Check{{
		What:  fmt.Sprintf("false losts in %.1f member-minutes of traffic", memberMinutes),
		Found: fmt.Sprint(len(run.false)), Want: "0", Met: len(run.false) == 0,
	}, {
		What:  "member-minutes of traffic watched",
		Found: fmt.Sprintf("%.1f", memberMinutes), Want: "≥ 10", Met: memberMinutes >= 10,
	}}
	at := report.Summarize(run.lostAt)
	r.Notes = append(r.Notes,
		fmt.Sprintf("%d unplugs (%d of them held until the broker's Last Will); %d members watched for false losts: %v of quiet traffic with nothing unplugged, then the trials.",
			len(run.lost), len(run.wills), plan.watchers, run.quietFor.Round(time.Second)),
		fmt.Sprintf("The coordinator's own time stamp of the loss (the record's `at`) is p50 %s, p99 %s after the unplug; expected: lost_after (300 ms) minus the phase of the last heartbeat (0–100 ms), plus the check's delay.",
			report.Format(at.P50, "ms"), report.Format(at.P99, "ms")),
		"Times are from just before `ip link set … down` of the host's switch port is started, so they include starting that command (a few ms).")
	if len(run.false) > 0 {
		r.Notes = append(r.Notes, "False losts: "+strings.Join(run.false, "; ")+".")
	}
	if run.stopped != "" {
		r.Notes = append(r.Notes, run.stopped+".")
	}
	if len(run.failures) > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d trials went wrong and are not counted: %v.", len(run.failures), run.failures))
	}
}

// silentSite is the silent-loss site running in network namespaces.
type silentSite struct {
	*siteWatch
	nw      *testhost.Network
	coord   *proc.Process
	members map[string]*proc.Process
	obs     *bus.Observer

	mu        sync.Mutex
	unplugged map[string]bool
	false     []string
}

func runSilentLoss(e *env, plan silentPlan) (*silentLossRun, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: the members run on test hosts in network namespaces")
	}
	bin, err := e.understudy()
	if err != nil {
		return nil, err
	}
	dir, err := e.dir("silent")
	if err != nil {
		return nil, err
	}
	nw, err := testhost.New(2 + plan.watchers)
	if err != nil {
		return nil, err
	}
	s := &silentSite{siteWatch: newSiteWatch(), nw: nw, members: map[string]*proc.Process{}, unplugged: map[string]bool{}}
	defer s.close()
	s.onRecord = s.checkLost

	ids := []string{"trial"}
	for i := 1; i <= plan.watchers; i++ {
		ids = append(ids, fmt.Sprintf("w%02d", i))
	}
	var members strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&members, "  - {id: %s, roles: [manager], api: \"127.0.0.1:0\"}\n", id)
	}
	broker := nw.Hosts[0].Addr.String() + ":1883"
	coordSite, memberSite := filepath.Join(dir, "site-coord.yaml"), filepath.Join(dir, "site-member.yaml")
	for path, busLine := range map[string]string{coordSite: `listen: "` + broker + `"`, memberSite: `url: "tcp://` + broker + `"`} {
		if err := os.WriteFile(path, fmt.Appendf(nil, silentSiteTemplate, busLine, members.String()), 0o644); err != nil {
			return nil, fmt.Errorf("write the site: %w", err)
		}
	}
	start := func(h *testhost.Host, site, id string) (*proc.Process, error) {
		return proc.Start(h.Command(e.ctx, bin, "run", "-c", site, "--member", id, "--state", filepath.Join(dir, "state-"+id),
			"--log-format", "json", "--log-level", "info"))
	}

	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if s.coord, err = start(nw.Hosts[0], coordSite, "coord"); err != nil {
		return nil, err
	}
	if err := s.coord.WaitOutput(ctx, "embedded broker started"); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	if s.obs, err = bus.ObserveVia(ctx, nw.Hosts[0].Dial, "tcp://"+broker, "understudy-bench", s.filters("silent"), s.onMessage); err != nil {
		return nil, fmt.Errorf("subscribe to the site: %w", err)
	}
	for i, id := range ids {
		if s.members[id], err = start(nw.Hosts[i+1], memberSite, id); err != nil {
			return nil, err
		}
	}
	for _, id := range ids {
		if err := s.waitState(ctx, id, "alive"); err != nil {
			return nil, fmt.Errorf("%w\nits log ends:\n%s", err, proc.Tail(s.members[id].Output(), 15))
		}
	}
	run := &silentLossRun{}
	defer func() { run.false = s.falseLosts() }()

	// Normal traffic: every member heartbeating, nothing unplugged.
	e.logf("silent loss: %d members on test hosts; %v of normal traffic", len(ids), plan.quiet)
	quietStart := time.Now()
	select {
	case <-time.After(plan.quiet):
	case <-e.ctx.Done():
	}
	run.quietFor = time.Since(quietStart)
	run.watched = time.Duration(len(ids)) * run.quietFor

	// The trials: the trial member's cable pulled; the watchers go on.
	e.logf("silent loss: %d unplugs, %d held until the Last Will (at most %v)", plan.trials+plan.refs, plan.refs, plan.budget)
	trialsStart := time.Now()
	for i := 0; i < plan.trials+plan.refs; i++ {
		if e.ctx.Err() != nil {
			run.stopped = fmt.Sprintf("stopped after %d unplugs: %v", i, context.Cause(e.ctx))
			break
		}
		if time.Since(trialsStart) > plan.budget {
			run.stopped = fmt.Sprintf("stopped after %d unplugs: the time bound of %v", i, plan.budget)
			break
		}
		held := i >= plan.trials
		lost, lostAt, will, err := s.unplugTrial(e.ctx, nw.Hosts[1], "trial", held)
		if err != nil {
			run.failures = append(run.failures, fmt.Sprintf("unplug %d: %v", i+1, err))
			if len(run.failures) >= maxFailures {
				return run, fmt.Errorf("%d unplugs went wrong, the last: %w\ncoordinator's log ends:\n%s", len(run.failures), err, logTail(s.coord))
			}
			continue
		}
		run.lost = append(run.lost, ms(lost))
		run.lostAt = append(run.lostAt, ms(lostAt))
		if held {
			run.wills = append(run.wills, ms(will))
		}
	}
	run.watched += time.Duration(plan.watchers) * time.Since(trialsStart)
	return run, nil
}

// unplugTrial pulls host's cable and measures, from just before, when member
// is lost at the coordinator and (held) when the broker publishes its Last
// Will; then it plugs the cable back and waits until the member is restored.
func (s *silentSite) unplugTrial(parent context.Context, h *testhost.Host, member string, held bool) (lost, lostAt, will time.Duration, err error) {
	s.drain()
	// A random phase against the heartbeats (100 ms).
	time.Sleep(time.Duration(rand.Int64N(int64(100 * time.Millisecond))))
	ctx, cancel := context.WithTimeout(parent, 10*time.Second)
	defer cancel()
	s.setUnplugged(member, true)
	t0 := time.Now()
	if err := h.Unplug(); err != nil {
		return 0, 0, 0, err
	}
	// Plugged back and restored before the next trial, whatever happened.
	defer func() {
		ctx, cancel := context.WithTimeout(parent, 15*time.Second)
		defer cancel()
		if perr := h.Plug(); perr != nil {
			err = errors.Join(err, perr)
			return
		}
		if _, rerr := s.waitRecord(ctx, events.MemberRestored, member); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if serr := s.waitState(ctx, member, "alive"); serr != nil {
			err = errors.Join(err, serr)
		}
		s.setUnplugged(member, false)
	}()
	rec, err := s.waitRecord(ctx, events.MemberLost, member)
	if err != nil {
		return 0, 0, 0, err
	}
	lost, lostAt = rec.at.Sub(t0), rec.v.At.Sub(t0)
	if held {
		at, err := s.waitWill(ctx, member)
		if err != nil {
			return 0, 0, 0, err
		}
		will = at.Sub(t0)
	}
	return lost, lostAt, will, nil
}

func (s *silentSite) setUnplugged(member string, v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unplugged[member] = v
}

// checkLost counts a member_lost of a member whose cable is in (on the
// subscriber's goroutine).
func (s *silentSite) checkLost(r stamped[engine.Record]) {
	if r.v.Type != events.MemberLost {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.unplugged[r.v.Member] {
		s.false = append(s.false, fmt.Sprintf("%s at %s (%v)", r.v.Member, r.v.At.Format("15:04:05.000"), r.v.Fields))
	}
}

func (s *silentSite) falseLosts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.false...)
}

// close stops the subscriber, kills every process and removes the hosts.
func (s *silentSite) close() {
	if s.obs != nil {
		s.obs.Close()
	}
	for _, p := range s.members {
		p.Kill()
	}
	if s.coord != nil {
		s.coord.Kill()
	}
	s.nw.Close()
}
