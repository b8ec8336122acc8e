package scenario

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"understudy/discovery/bus"
	"understudy/drivers"
	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

// Options configure Run.
type Options struct {
	// Site overrides the scenario's site file (simulate -c).
	Site string
	// Policy, when set, replaces the site's policy file.
	Policy string
	// Registry builds the site's drivers.
	Registry *drivers.Registry
	// StateDir is where the simulated coordinator keeps its state (a
	// temporary folder of the caller's).
	StateDir string
	// Logger receives the policy's log lines and the engine's (nil: none).
	Logger *slog.Logger
	// SiteConfig, when set, is the site to run (a copy is run), instead of
	// a site file.
	SiteConfig *config.Site
}

// site is the site to run: SiteConfig, or the file of Site or the scenario.
func (o Options) site(sc *Scenario) (*config.Site, error) {
	if o.SiteConfig != nil {
		return o.SiteConfig.Clone(), nil
	}
	path := o.Site
	if path == "" {
		path = sc.SitePath()
	}
	return config.Load(path)
}

// Result is what a scenario run found.
type Result struct {
	Scenario *Scenario
	Site     *config.Site
	Start    time.Time       // virtual
	Length   time.Duration   // simulated
	Wall     time.Duration   // real time it took
	Records  []engine.Record // everything the coordinator recorded
	Checks   []Check
	Handlers []string // the events the policy handles
}

// Check is the outcome of one expectation.
type Check struct {
	Line   int
	Want   string // the expectation in words
	OK     bool
	Detail string // what happened (when it was met, or what happened instead)
}

// Failed reports whether an expectation failed.
func (r *Result) Failed() bool {
	return slices.ContainsFunc(r.Checks, func(c Check) bool { return !c.OK })
}

// Run runs the scenario on its site and checks its expectations. It returns
// an error when the scenario cannot run at all (its site does not load, its
// policy does not compile, a step names a member the site lacks).
func Run(ctx context.Context, sc *Scenario, opts Options) (*Result, error) {
	wall := time.Now()
	site, err := opts.site(sc)
	if err != nil {
		return nil, err
	}
	if opts.Policy != "" {
		site.Policy.File = opts.Policy
	}
	if err := sc.checkNames(site); err != nil {
		return nil, err
	}
	var start time.Time // zero: the simulation's own start
	if sc.Start != "" {
		start, _ = time.Parse(time.RFC3339, sc.Start)
	}
	drvs, rebuild, devs, cleanup, err := buildDrivers(site, opts.Registry, sc.Devices)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	st, err := store.Open(filepath.Join(opts.StateDir, site.Name+"-simulation.db"), store.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	h, err := sim.New(site, sim.Options{Start: start, Drivers: drvs, NewDrivers: rebuild, Registry: opts.Registry, Store: st, Logger: opts.Logger, Settle: true})
	if err != nil {
		return nil, err
	}
	start = h.Clock.Now()
	for member, verbs := range sc.Agents {
		h.Agent(member, func(c bus.Command) sim.Reply {
			p, ok := verbs[c.Verb]
			if !ok {
				return sim.Reply{}
			}
			return sim.Reply{Delay: p.Delay.D(), Fail: p.Fail, Silent: p.Silent}
		})
	}
	if err := h.Start(ctx); err != nil {
		return nil, err
	}
	defer func() { h.Stop() }()
	if err := waitConnected(ctx, h, len(devs)); err != nil {
		return nil, err
	}
	if len(h.Records()) > 0 && h.Records()[0].Type == events.PolicyError {
		return nil, fmt.Errorf("the policy does not load: %v", h.Records()[0].Fields["error"])
	}
	for _, id := range site.MemberIDs() {
		if m, _ := site.Member(id); m.Probe == nil && (!sc.NoneUp || id == site.Coordinator) {
			h.Up(id)
		}
	}

	r := &Result{Scenario: sc, Site: site, Start: start}
	if ps := h.Engine.Snapshot().Policy; ps != nil {
		r.Handlers = ps.Handlers
	}
	length := sc.length()
	// The timeline: steps and routing checks, in time order; at one time,
	// checks first (they look at what happened before it), then steps.
	type point struct {
		at    time.Duration
		check int // index of a routing check, or -1
		step  *Step
	}
	var points []point
	for i, x := range sc.Expect {
		if x.Routed != nil {
			at := x.end()
			if at == 0 {
				at = length
			}
			points = append(points, point{at: at, check: i})
		}
	}
	for i := range sc.Steps {
		points = append(points, point{at: sc.Steps[i].At.D(), check: -1, step: &sc.Steps[i]})
	}
	slices.SortStableFunc(points, func(a, b point) int {
		switch {
		case a.at != b.at:
			return int(a.at - b.at)
		case (a.check >= 0) == (b.check >= 0):
			return 0
		case a.check >= 0:
			return -1
		}
		return 1
	})
	routed := map[int]Check{}
	for _, p := range points {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h.Advance(start.Add(p.at).Sub(h.Clock.Now()))
		if p.check >= 0 {
			routed[p.check] = checkRouted(sc.Expect[p.check], devs, h.Records(), start, p.at)
			continue
		}
		if err := apply(ctx, h, devs, *p.step); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", sc.File, p.step.Line, err)
		}
	}
	h.Advance(start.Add(length).Sub(h.Clock.Now()))

	r.Records = h.Records()
	r.Length = length
	for i, x := range sc.Expect {
		var c Check
		if x.Routed != nil {
			c = routed[i]
		} else {
			c = checkEvents(x, r.Records, start, length)
		}
		c.Line = x.Line
		r.Checks = append(r.Checks, c)
	}
	r.Wall = time.Since(wall)
	return r, nil
}

// length is how long the scenario runs: Run, or the last step or check plus
// a minute.
func (sc *Scenario) length() time.Duration {
	if sc.Run != 0 {
		return sc.Run.D()
	}
	var last time.Duration
	for _, s := range sc.Steps {
		last = max(last, s.At.D())
	}
	for _, x := range sc.Expect {
		last = max(last, x.end(), x.After.D())
	}
	return last + time.Minute
}

// checkNames reports steps and expectations that name a member or driver
// the site does not have.
func (sc *Scenario) checkNames(site *config.Site) error {
	var errs config.Errors
	member := func(line int, id string) {
		if id == "" {
			return
		}
		if _, ok := site.Member(id); !ok {
			errs = append(errs, &config.Error{File: sc.File, Line: line, Col: 1, Msg: fmt.Sprintf("%q is not a member of site %s (members: %s)", id, site.Name, strings.Join(site.MemberIDs(), ", "))})
		}
	}
	driver := func(line int, name string) {
		if _, ok := site.Drivers[name]; name != "" && !ok {
			errs = append(errs, &config.Error{File: sc.File, Line: line, Col: 1, Msg: fmt.Sprintf("%q is not a driver of site %s (drivers: %s)", name, site.Name, strings.Join(site.DriverNames(), ", "))})
		}
	}
	for _, s := range sc.Steps {
		for _, id := range []string{s.Up, s.Crash, s.Silence, s.Blip, s.Partition, s.Shutdown, s.Broken, s.Repaired} {
			member(s.Line, id)
		}
		if s.Partition != "" && !(site.Elected() && slices.Contains(site.Candidates, s.Partition)) {
			errs = append(errs, &config.Error{File: sc.File, Line: s.Line, Col: 1, Msg: fmt.Sprintf("partition %s: only a candidate of an elected coordinator can be cut off from the other candidates (candidates: %s)", s.Partition, strings.Join(site.Candidates, ", "))})
		}
		driver(s.Line, s.Device)
	}
	for _, x := range sc.Expect {
		member(x.Line, x.Member)
		if x.Routed != nil {
			driver(x.Line, x.Routed.Driver)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(sc.Agents)) {
		member(0, id)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// waitConnected runs the engine's work until every switcher driver is
// connected to its simulator.
func waitConnected(ctx context.Context, h *sim.Harness, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n == 0 {
		return nil
	}
	seen := 0
	_, err := h.WaitRecord(ctx, 0, func(r engine.Record) bool {
		if r.Type == drivers.EventConnected {
			seen++
		}
		return seen >= n
	})
	if err != nil {
		return fmt.Errorf("the switcher simulators did not connect: %w", err)
	}
	return nil
}

// apply carries out one step.
func apply(ctx context.Context, h *sim.Harness, devs map[string]*device, s Step) error {
	switch {
	case s.Up != "":
		h.Up(s.Up)
	case s.Crash != "":
		h.Crash(s.Crash)
	case s.Silence != "":
		h.Silence(s.Silence)
	case s.Blip != "":
		d := s.For.D()
		if d == 0 {
			d = 2 * time.Second
		}
		h.Blip(s.Blip, d)
	case s.Partition != "":
		if err := h.Partition(ctx, s.Partition, s.For.D()); err != nil {
			return err
		}
	case s.Shutdown != "":
		h.Shutdown(s.Shutdown)
	case s.Broken != "":
		h.Broken(s.Broken, true)
	case s.Repaired != "":
		h.Broken(s.Repaired, false)
	case s.Restart:
		if err := h.Restart(ctx); err != nil {
			return fmt.Errorf("restarting the coordinator: %w", err)
		}
	case s.Broker != "":
		h.Broker(s.Broker == "up")
	case s.Command != "":
		args := s.Args
		if args == nil {
			args = map[string]any{}
		}
		h.Command(s.Command, args)
	case s.Device != "":
		d, ok := devs[s.Device]
		if !ok {
			return fmt.Errorf("driver %s is not a switcher: it has no simulator to misbehave", s.Device)
		}
		// What the device then tells its driver comes in real time: wait
		// for it (bounded), so that it happens at this step's virtual time.
		mark := len(h.Records())
		switch {
		case s.Panel != nil:
			if err := d.setRoute(s.Panel.Output, s.Panel.Input); err != nil {
				return fmt.Errorf("panel route on %s: %w", s.Device, err)
			}
			waitFor(ctx, h, mark, 2*time.Second, func(r engine.Record) bool {
				return r.Type == drivers.EventRouteChanged && r.Fields["driver"] == s.Device &&
					fmt.Sprint(r.Fields["output"]) == fmt.Sprint(s.Panel.Output)
			})
		case s.Fault == FaultRefuse:
			d.refuse()
		case s.Fault == FaultDrop:
			d.drop()
		case s.Fault == FaultDisconnect:
			if d.disconnect == nil {
				return fmt.Errorf("the %s simulator cannot drop connections (HTTP): use refuse", d.kind)
			}
			d.disconnect()
			waitFor(ctx, h, mark, 2*time.Second, sim.Type(drivers.EventDisconnected))
			waitFor(ctx, h, mark, 5*time.Second, sim.Type(drivers.EventConnected))
		case s.Fault == FaultRestart:
			before := d.routing()
			d.restart()
			if d.disconnect != nil {
				// The connection drops; the driver reconnects and reads the
				// default routing back.
				waitFor(ctx, h, mark, 2*time.Second, sim.Type(drivers.EventDisconnected))
				waitFor(ctx, h, mark, 5*time.Second, sim.Type(drivers.EventConnected))
				break
			}
			// A device asked by polls (HTTP): its driver sees the outputs the
			// restart changed on its next poll.
			after := d.routing()
			pending := map[string]bool{}
			for i := range min(len(before), len(after)) {
				if before[i] != after[i] {
					pending[fmt.Sprint(i+1)] = true
				}
			}
			if len(pending) > 0 {
				waitFor(ctx, h, mark, 5*time.Second, func(r engine.Record) bool {
					if r.Type == drivers.EventRouteChanged && r.Fields["driver"] == s.Device {
						delete(pending, fmt.Sprint(r.Fields["output"]))
					}
					return len(pending) == 0
				})
			}
		}
	}
	h.Advance(0)
	return nil
}

// waitFor runs the engine's work until a record from mark on matches, for
// at most limit of real time.
func waitFor(ctx context.Context, h *sim.Harness, mark int, limit time.Duration, match func(engine.Record) bool) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	h.WaitRecord(ctx, mark, match)
}
