//go:build linux

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"understudy/drivers"
	"understudy/events"
	"understudy/fixtures/testhost"
	"understudy/runtime/faulthook"
)

// readyTimeout bounds the wait, beyond startup_grace, for every instance to
// be seen by the coordinator and every switcher connected.
const readyTimeout = 30 * time.Second

// routingPoll is how often the switchers' routing is read.
const routingPoll = 20 * time.Millisecond

// RunSchedule runs one schedule (seed) of the site on fresh test hosts and
// checks its history. It needs root and the ip program. Every namespace and
// process it starts is gone when it returns, also on error.
func RunSchedule(ctx context.Context, opts Options, seed uint64) (_ *Outcome, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the fault suite needs root: it makes network namespaces (run it with sudo)")
	}
	if opts.Duration <= 0 {
		opts.Duration = time.Minute
	}
	dir := filepath.Join(opts.Dir, "seed-"+strconv.FormatUint(seed, 10))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	var mosquitto string
	switch opts.Broker {
	case "", BrokerEmbedded:
	case BrokerMosquitto:
		if mosquitto, err = testhost.LookPath("mosquitto"); err != nil {
			return nil, fmt.Errorf("the broker %s: %w (Debian: apt-get install mosquitto)", opts.Broker, err)
		}
	default:
		return nil, fmt.Errorf("unknown broker %q (%s or %s)", opts.Broker, BrokerEmbedded, BrokerMosquitto)
	}
	plan, err := NewPlan(opts.Site, dir, opts.Registry)
	if err != nil {
		return nil, err
	}
	plan.Broker = opts.Broker
	plan.Shorten(opts.FailoverDelay, opts.FailbackDelay, opts.CopySettle)
	nf, err := newNetFaults()
	if err != nil {
		return nil, err
	}
	r := &runner{opts: opts, plan: plan, nf: nf, seed: seed, mosquitto: mosquitto, hosts: map[string]*testhost.Host{}, procs: map[string]*instance{}, sims: map[string]drivers.SwitcherSim{}}
	defer func() { err = errors.Join(err, r.close()) }()
	// A panic (a bug of the suite's own) ends this schedule as an error,
	// after which the deferred close still cleans every host, process and
	// mount up: a long run goes on with the next schedule.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the fault suite failed on this schedule (a bug of its own): %v\n%s", p, debug.Stack())
		}
	}()
	if err := r.setUp(); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// runner is one schedule's run.
type runner struct {
	opts  Options
	plan  *Plan
	nf    *netFaults
	seed  uint64
	net   *testhost.Network
	hosts map[string]*testhost.Host // by label: member id or DevicesHost
	procs map[string]*instance
	sims  map[string]drivers.SwitcherSim
	// mosquitto is the external broker's program and broker its process on
	// the broker host (nil: the broker is embedded in the coordinator).
	mosquitto string
	broker    *instance
	rec       *recorder // the recorder emulation (nil: no material folders)
	// mounts are the state folders mounted as a tmpfs of their own (for
	// state_full), unmounted by close.
	mounts []string

	mu      sync.Mutex
	routing []RouteSeen
	stores  []StoreRead
	held    map[string]int // what the ops in force hold (Op.resource)
	// steps is each member's clock step in force (clock_step).
	steps map[string]time.Duration
}

// stepClock notes a step of member's clock (clock_step applied).
func (r *runner) stepClock(member string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.steps == nil {
		r.steps = map[string]time.Duration{}
	}
	r.steps[member] += d
}

// clockStep is the step of member's clock in force.
func (r *runner) clockStep(member string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.steps[member]
}

// hold counts what o holds while it is in force (n: +1 or -1).
func (r *runner) hold(o Op, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = map[string]int{}
	}
	r.held[o.resource()] += n
}

func (r *runner) isHeld(o Op) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held[o.resource()] > 0
}

// statePath is member's state store.
func (r *runner) statePath(member string) string {
	h, _ := r.plan.Host(member)
	return filepath.Join(h.StateDir, r.plan.Site.Name+"-"+member+".db")
}

// readStore reads member's command records (its instance must be stopped)
// and adds the read to the history.
func (r *runner) readStore(member, after string) {
	sr := StoreRead{Member: member, At: time.Now(), After: after}
	recs, err := ReadStored(member, r.statePath(member))
	if err != nil {
		sr.Err = err.Error()
	}
	sr.Records = recs
	r.mu.Lock()
	r.stores = append(r.stores, sr)
	r.mu.Unlock()
}

func (r *runner) logf(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "seed %d: "+format+"\n", append([]any{r.seed}, args...)...)
	}
}

// setUp makes the hosts, starts the simulators, writes the sites and
// starts the instances.
func (r *runner) setUp() error {
	nw, err := testhost.New(r.plan.TestHosts())
	if err != nil {
		return fmt.Errorf("test hosts: %w", err)
	}
	r.net = nw
	for i, h := range r.plan.Hosts {
		r.hosts[h.Member] = nw.Hosts[i]
	}
	dev := nw.Hosts[len(r.plan.Hosts)]
	r.hosts[DevicesHost] = dev
	if r.plan.External() {
		r.hosts[BrokerHost] = nw.Hosts[len(r.plan.Hosts)+1]
	}
	addrs := map[string]string{}
	for _, s := range r.plan.Switchers {
		kind, _ := r.opts.Registry.Kind(s.Kind)
		var sim drivers.SwitcherSim
		var addr string
		err := dev.Do(func() error {
			var err error
			sim, addr, err = kind.Simulate(s.Listen, s.Size)
			return err
		})
		if err != nil {
			return fmt.Errorf("simulator of %s (%s): %w", s.Driver, s.Kind, err)
		}
		r.sims[s.Driver] = sim
		addrs[s.Driver] = addr
	}
	if err := r.plan.Write(addrs); err != nil {
		return err
	}
	if r.opts.needsStateFS() {
		if err := r.mountStateDirs(); err != nil {
			return err
		}
	}
	if r.plan.External() {
		in, err := newInstance(BrokerHost, r.hosts[BrokerHost], r.mosquitto, []string{"-c", r.plan.BrokerConf()}, r.plan.BrokerLog(), nil)
		if err != nil {
			return err
		}
		r.broker = in
		if err := r.startBroker(); err != nil {
			return err
		}
	}
	if r.rec = newRecorder(r.plan, r.seed); r.rec != nil {
		if err := r.rec.seedOwn(r.plan, time.Now()); err != nil {
			return err
		}
	}
	// Leader faults step candidates' clocks through the hook too.
	hooks := r.opts.HostFaults || r.opts.LeaderFaults && r.plan.Elected() || r.opts.Schedule != nil && slices.ContainsFunc(r.opts.Schedule.Ops, Op.hostFault)
	for _, h := range r.plan.Hosts {
		args := []string{"run", "-c", h.SiteFile, "--member", h.Member, "--state", h.StateDir, "--log-format", "json", "--log-level", "info"}
		env := r.opts.Env
		if hooks {
			if len(h.Hooks) > maxSocketPath {
				return fmt.Errorf("the fault hook's socket %s is longer than a Unix socket's path may be (%d bytes): use a shorter --out", h.Hooks, maxSocketPath)
			}
			env = append(slices.Clone(env), faulthook.EnvVar+"="+h.Hooks)
		}
		in, err := newInstance(h.Member, r.hosts[h.Member], r.opts.Binary, args, h.Log, env)
		if err != nil {
			return err
		}
		r.procs[h.Member] = in
	}
	// The coordinator (and the broker it embeds) first; on an elected site
	// every candidate (each with its broker) first.
	order := slices.Clone(r.plan.Hosts)
	slices.SortStableFunc(order, func(a, b HostPlan) int {
		return boolInt(r.plan.Site.IsCandidate(b.Member)) - boolInt(r.plan.Site.IsCandidate(a.Member))
	})
	for _, h := range order {
		if err := r.procs[h.Member].start(); err != nil {
			return err
		}
	}
	return nil
}

// brokerStart bounds the wait for an external broker to accept connections.
const brokerStart = 10 * time.Second

// startBroker starts the external broker and waits until it accepts
// connections on its address.
func (r *runner) startBroker() error {
	if err := r.broker.start(); err != nil {
		return err
	}
	addr := net.JoinHostPort(r.plan.BrokerAddr(), strconv.Itoa(BrokerPort))
	ctx, cancel := context.WithTimeout(context.Background(), brokerStart)
	defer cancel()
	for {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		c, err := r.hosts[BrokerHost].Dial(dctx, "tcp", addr)
		dcancel()
		if err == nil {
			return c.Close()
		}
		select {
		case <-r.broker.exited():
			return fmt.Errorf("mosquitto exited before accepting on %s (its log: %s)", addr, r.plan.BrokerLog())
		case <-ctx.Done():
			return fmt.Errorf("mosquitto does not accept on %s within %s: %w (its log: %s)", addr, brokerStart, err, r.plan.BrokerLog())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// journalPath is member's journal (a coordinator candidate's: it holds
// what the candidate recorded while it coordinated).
func (r *runner) journalPath(member string) string {
	h, _ := r.plan.Host(member)
	return filepath.Join(h.StateDir, r.plan.Site.Name+"-"+h.Member+".journal")
}

// readJournals reads every candidate's journal (the coordinator's alone
// on a site with one), each record with its Source, in file order one
// journal after the other.
func (r *runner) readJournals() ([]Record, error) {
	var out []Record
	var errs []error
	for _, c := range r.plan.Candidates() {
		recs, err := ReadJournal(r.journalPath(c))
		if err != nil && (!r.plan.Elected() || !errors.Is(err, os.ErrNotExist)) {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
		}
		for i := range recs {
			recs[i].Source = c
		}
		out = append(out, recs...)
	}
	return out, errors.Join(errs...)
}

// waitReady waits until the coordinator (on an elected site: a candidate
// elected and coordinating) has seen every instance and every switcher is
// connected.
func (r *runner) waitReady(ctx context.Context) error {
	wait := r.plan.Site.Heartbeat.StartupGrace.D() + readyTimeout
	if r.plan.Elected() {
		wait += readyTimeout // the group forms and elects first
	}
	deadline := time.Now().Add(wait)
	var missing []string
	for time.Now().Before(deadline) {
		if missing = r.notReady(); len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("site not up within %s: the coordinator has not seen %v (logs in %s)", wait, missing, filepath.Join(r.plan.Dir, "logs"))
}

// notReady is what the coordinator has not seen yet: members, switchers
// ("switcher NAME"), and on an elected site a coordinator elected.
func (r *runner) notReady() []string {
	var recs []Record
	if r.plan.Elected() {
		// The leader's own records of its last term: since the end of its
		// term before (what it tells its coordinator of the member table
		// comes just before its coordinator_elected).
		all, _ := r.readJournals()
		leader := ""
		for _, rec := range all {
			if rec.Type == events.CoordinatorElected {
				leader = rec.Source
			}
		}
		if leader == "" {
			return []string{"a coordinator elected"}
		}
		for _, rec := range all {
			switch {
			case rec.Source != leader:
			case rec.Type == events.CoordinatorLost:
				recs = recs[:0]
			default:
				recs = append(recs, rec)
			}
		}
	} else {
		recs, _ = ReadJournal(r.journalPath(r.plan.Site.Coordinator))
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		switch rec.Type {
		case events.MemberSeen:
			seen[rec.Member] = true
		case events.DriverConnected:
			seen["driver:"+rec.Str("driver")] = true
		}
	}
	var missing []string
	for _, h := range r.plan.Hosts {
		if !seen[h.Member] {
			missing = append(missing, h.Member)
		}
	}
	for _, s := range r.plan.Switchers {
		if !seen["driver:"+s.Driver] {
			missing = append(missing, "switcher "+s.Driver)
		}
	}
	return missing
}

// pollRouting records each switcher's routing whenever it changes, until
// ctx ends.
func (r *runner) pollRouting(ctx context.Context) {
	last := map[string][]int{}
	t := time.NewTicker(routingPoll)
	defer t.Stop()
	for {
		for _, s := range r.plan.Switchers {
			now := r.sims[s.Driver].Routing()
			if !slices.Equal(now, last[s.Driver]) {
				last[s.Driver] = now
				r.mu.Lock()
				r.routing = append(r.routing, RouteSeen{At: time.Now(), Driver: s.Driver, Routing: now})
				r.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *runner) run(ctx context.Context) (*Outcome, error) {
	pollCtx, stopPoll := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() { defer close(polled); r.pollRouting(pollCtx) }()
	defer func() { stopPoll(); <-polled }()

	r.logf("%d hosts up; waiting for the site", r.plan.TestHosts())
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	target := Target{Coordinator: r.plan.Site.Coordinator, MaxOps: r.opts.MaxOps, Aim: r.opts.Aim, DeviceFaults: r.opts.DeviceFaults, LANDown: r.opts.LANDown}
	if r.plan.Elected() {
		// Whoever leads when a fault lands (TheLeader).
		target.Coordinator = ""
		target.Candidates, target.Witnesses = r.plan.Candidates(), r.plan.Facts().Witnesses
		target.LeaderFaults = r.opts.LeaderFaults
	}
	if r.plan.External() {
		target.Broker = r.plan.Broker
	}
	for _, h := range r.plan.Hosts {
		target.Members = append(target.Members, h.Member)
		m, _ := r.plan.Site.Member(h.Member)
		target.LostAfter = max(target.LostAfter, m.LostAfter.D())
		if m.Standby {
			target.Standbys = append(target.Standbys, m.ID)
		}
	}
	for _, s := range r.plan.Switchers {
		target.Switchers = append(target.Switchers, s.Driver)
	}
	target.Outage, target.StateFaults, target.HostFaults = r.opts.Outage, r.opts.StateFaults, r.opts.HostFaults
	target.ConfigEdits, target.BrokerStop = r.opts.ConfigEdits, r.opts.BrokerStop
	target.Operator = r.opts.Operator
	for _, h := range r.plan.Hosts {
		if h.Config != "" {
			target.Bundled = append(target.Bundled, h.Member)
		}
	}
	facts := r.plan.Facts()
	for _, h := range r.plan.Hosts {
		if m := facts.Members[h.Member]; m.Protected && h.Member != target.Coordinator {
			target.Protected = append(target.Protected, h.Member)
		}
	}
	sched := NewSchedule(r.seed, target, r.opts.Duration)
	if r.opts.Schedule != nil {
		sched = *r.opts.Schedule
		sched.Ops = slices.Clone(sched.Ops)
	}
	r.logf("site up; %d faults over %s", len(sched.Ops), sched.Duration)

	h := &History{Seed: r.seed, Site: r.plan.Facts(), Schedule: sched, Timing: r.opts.timingFlags()}
	switch {
	case r.opts.Quiet > 0:
		h.Quiet = r.opts.Quiet
	case r.opts.Quiet == 0:
		h.Quiet = QuietFor(h.Site, r.opts.Bounds)
	}
	h.Start = time.Now()
	h.End = h.Start.Add(sched.Duration + h.Quiet)
	recorded := make(chan struct{})
	if r.rec != nil {
		go func() { defer close(recorded); r.record(ctx, h.End) }()
	} else {
		close(recorded)
	}
	h.Ops = r.nemesis(ctx, h.Start, h.Start.Add(sched.Duration), sched, h.Quiet > 0)
	if h.Quiet > 0 && ctx.Err() == nil {
		r.logf("every fault healed; %s without faults", h.Quiet)
		sleepUntil(ctx, h.End)
	}
	<-recorded
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("schedule interrupted: %w", err)
	}
	r.logf("schedule done; collecting the history")

	stopPoll()
	<-polled
	var errs []error
	for _, in := range r.procs {
		errs = append(errs, in.kill())
	}
	r.mu.Lock()
	h.Routing = slices.Clone(r.routing)
	r.mu.Unlock()
	var err error
	if h.Journal, err = r.readJournals(); err != nil {
		errs = append(errs, err)
	}
	h.Applied = r.appliedRoutes()
	for _, hp := range r.plan.Hosts {
		lines, err := ReadLogFile(hp.Member, hp.Log)
		errs = append(errs, err)
		h.Logs = append(h.Logs, lines...)
		r.readStore(hp.Member, ReadEnd)
	}
	r.mu.Lock()
	h.Stores = slices.Clone(r.stores)
	r.mu.Unlock()
	if r.rec != nil {
		h.Recorded, err = r.rec.finish()
		errs = append(errs, err)
		h.Material, err = ListMaterial(r.plan)
		errs = append(errs, err)
	}
	h.Configs = ReadConfigs(r.plan)
	h.Unstep() // the journal and the logs still in the order they were written
	h.Sort()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := &Outcome{Dir: r.plan.Dir, Notes: r.plan.Notes, History: h, Result: Check(h, r.opts.Bounds)}
	if err := h.Write(filepath.Join(r.plan.Dir, "history.json")); err != nil {
		return nil, err
	}
	return out, nil
}

// nemesis carries the ops out at their times from start, each on its own
// goroutine, and returns them with their real Start and End. At end every
// fault still in force is healed, killed instances and broker started
// again (End is when), unless the run was interrupted (ctx ended). Without
// a quiet time after (restart false) a killed instance or broker is not
// started again: every process is stopped at once, and the fault lasted to
// the end of the history.
func (r *runner) nemesis(runCtx context.Context, start, end time.Time, sched Schedule, restart bool) []Op {
	ctx, cancel := context.WithDeadline(runCtx, end)
	defer cancel()
	out := slices.Clone(sched.Ops)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func(o *Op) {
			defer wg.Done()
			if !sleepUntil(ctx, start.Add(o.At)) {
				if o.Aim != "" {
					o.Missed = true
				}
				return
			}
			if o.Kind == OpOperator {
				r.operate(ctx, o)
				return
			}
			if o.Aim != "" {
				at, member, ok := r.awaitPhase(ctx, start, sched, *o)
				if !ok {
					o.Missed = true
					return
				}
				o.AimedAt, o.Member = at, member
			} else if o.Leader {
				// The candidate that leads now, once nothing holds it.
				member, ok := r.awaitLeader(ctx, *o)
				if !ok {
					o.Missed = true
					return
				}
				o.Member = member
			}
			// A host fault goes through its process's hook: it waits
			// while an aimed fault holds the process (killed, stopped).
			if o.hostFault() && !r.awaitFree(ctx, *o) {
				return
			}
			// Any other waits while a fault aimed at the leader holds what
			// it holds (the leader was not known when it was drawn).
			if !r.awaitFree(ctx, *o) {
				o.Missed = true
				return
			}
			// A step of the clock of a member that may coordinate (the
			// coordinator, a candidate): where its journal was
			// (History.Unstep).
			coordStep := o.Kind == OpClockStep && slices.Contains(r.plan.Candidates(), o.Member)
			if coordStep {
				recs, _ := ReadJournal(r.journalPath(o.Member))
				o.JournalMarks[0] = len(recs)
			}
			o.Start = time.Now()
			if err := r.apply(ctx, *o); err != nil {
				o.Err = err.Error()
				r.logf("%s: %v", o, err)
				return
			}
			answered := time.Now()
			if o.Kind == OpClockStep {
				r.stepClock(o.Member, o.Offset)
			}
			if coordStep {
				recs, _ := ReadJournal(r.journalPath(o.Member))
				o.JournalMarks[1] = len(recs)
			}
			r.logf("%s", o)
			if !o.instant() {
				r.hold(*o, 1)
				defer r.hold(*o, -1)
			}
			if o.Kind == OpKill {
				r.readStore(o.Member, fmt.Sprintf("kill #%d", o.ID))
			}
			if o.instant() {
				// A clock step took hold between Start and the hook's
				// answer (End); a switcher restart is a moment.
				o.End = o.Start
				if o.Kind == OpClockStep {
					o.End = answered
				}
				return
			}
			healed := false
			if o.For > 0 {
				healed = sleepUntil(ctx, o.Start.Add(o.For))
			} else {
				<-ctx.Done()
			}
			if runCtx.Err() != nil || !healed && !restart && (o.Kind == OpKill || o.Kind == OpBrokerKill) {
				return // every process is stopped anyway
			}
			if err := r.revert(runCtx, *o); err != nil {
				o.Err = "heal: " + err.Error()
				r.logf("%s: heal: %v", o, err)
				return
			}
			o.End = time.Now()
		}(&out[i])
	}
	<-ctx.Done()
	wg.Wait()
	return out
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func (r *runner) groups(o Op) (a, b []*testhost.Host) {
	switch o.Kind {
	case OpBrokerCut:
		// From every broker's host: on an elected site whose candidates
		// embed one each, from every candidate's.
		for _, l := range r.plan.BrokerHosts() {
			if l != o.Member {
				b = append(b, r.hosts[l])
			}
		}
		return []*testhost.Host{r.hosts[o.Member]}, b
	case OpCandidateCut:
		for _, c := range r.plan.Candidates() {
			if c != o.Member {
				b = append(b, r.hosts[c])
			}
		}
		return []*testhost.Host{r.hosts[o.Member]}, b
	default:
		for _, l := range o.Groups[0] {
			a = append(a, r.hosts[l])
		}
		for _, l := range o.Groups[1] {
			b = append(b, r.hosts[l])
		}
		return a, b
	}
}

// hostLabels are the labels of every host, in order.
func (r *runner) hostLabels() []string { return slices.Sorted(maps.Keys(r.hosts)) }

// maxSocketPath is the longest path of a Unix socket (108 bytes with the
// final NUL on Linux, less elsewhere).
const maxSocketPath = 100

// hook sends a command to member's fault hook and waits for its answer.
func (r *runner) hook(ctx context.Context, member, line string) error {
	h, _ := r.plan.Host(member)
	ctx, cancel := context.WithTimeout(ctx, hookWait)
	defer cancel()
	return sendHook(ctx, h.Hooks, line)
}

// awaitFree waits until nothing holds what o holds (an aimed kill or stop
// of its process); false when ctx ended first.
func (r *runner) awaitFree(ctx context.Context, o Op) bool {
	for r.isHeld(o) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// apply starts a fault.
func (r *runner) apply(ctx context.Context, o Op) error {
	switch o.Kind {
	case OpClockStep:
		return r.hook(ctx, o.Member, fmt.Sprintf("%s %s", faulthook.CmdClockStep, o.Offset))
	case OpStoreStall:
		return r.hook(ctx, o.Member, fmt.Sprintf("%s %s", faulthook.CmdStoreStall, o.For))
	case OpKill:
		return r.procs[o.Member].kill()
	case OpStop:
		return r.procs[o.Member].signal(syscall.SIGSTOP)
	case OpLinkDown:
		return r.hosts[o.Host].Unplug()
	case OpLANDown:
		var errs []error
		for _, label := range r.hostLabels() {
			errs = append(errs, r.hosts[label].Unplug())
		}
		return errors.Join(errs...)
	case OpPartition, OpBrokerCut, OpCandidateCut:
		a, b := r.groups(o)
		return r.nf.cut(a, b)
	case OpBrokerKill:
		if r.broker == nil {
			return errors.New("no external broker to kill (--broker mosquitto)")
		}
		return r.broker.kill()
	case OpBrokerStop:
		if r.broker == nil {
			return errors.New("no external broker to stop (--broker mosquitto)")
		}
		return r.broker.signal(syscall.SIGSTOP)
	case OpSwitcherRestart:
		r.sims[o.Driver].Restart()
		return nil
	case OpStateFull:
		h, ok := r.plan.Host(o.Member)
		if !ok || !slices.Contains(r.mounts, h.StateDir) {
			return fmt.Errorf("the state folder of %s is not a tmpfs of its own (Options.StateFaults)", o.Member)
		}
		return fillStateDir(h.StateDir)
	case OpSwitcherRefuse:
		r.sims[o.Driver].RefuseNext(o.Count)
		return nil
	case OpSwitcherDrop:
		r.sims[o.Driver].DropNext(o.Count)
		return nil
	case OpConfigEdit:
		h, _ := r.plan.Host(o.Member)
		return editConfig(h.Config, EditContent(r.plan.Facts().Members[o.Member].Bundle, o))
	case OpOperator:
		return errors.New("operator commands are sent by operate")
	}
	return fmt.Errorf("unknown fault %q", o.Kind)
}

// revert ends a fault.
func (r *runner) revert(ctx context.Context, o Op) error {
	switch o.Kind {
	case OpStoreStall:
		// It ends by itself as For runs out; said now, it ends exactly
		// when the history says.
		return r.hook(ctx, o.Member, faulthook.CmdStoreStall+" 0")
	case OpKill:
		return r.procs[o.Member].start()
	case OpStop:
		return r.procs[o.Member].signal(syscall.SIGCONT)
	case OpLinkDown:
		return r.hosts[o.Host].Plug()
	case OpLANDown:
		var errs []error
		for _, label := range r.hostLabels() {
			errs = append(errs, r.hosts[label].Plug())
		}
		return errors.Join(errs...)
	case OpPartition, OpBrokerCut, OpCandidateCut:
		a, b := r.groups(o)
		return r.nf.heal(a, b)
	case OpBrokerKill:
		if r.broker == nil {
			return errors.New("no external broker to start")
		}
		return r.startBroker()
	case OpBrokerStop:
		if r.broker == nil {
			return errors.New("no external broker to wake")
		}
		return r.broker.signal(syscall.SIGCONT)
	case OpStateFull:
		h, _ := r.plan.Host(o.Member)
		return emptyStateDir(h.StateDir)
	case OpSwitcherRefuse:
		r.sims[o.Driver].RefuseNext(0) // what is left of it disarmed
	case OpSwitcherDrop:
		r.sims[o.Driver].DropNext(0)
	}
	return nil
}

// record runs the recorder emulation until end (or ctx ends): it follows
// the coordinator's journal (every candidate's on an elected site) and
// appends to the recordings every recTick.
func (r *runner) record(ctx context.Context, end time.Time) {
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	tail := r.tailJournals()
	t := time.NewTicker(recTick)
	defer t.Stop()
	for {
		now := time.Now()
		for _, rec := range tail.next() {
			r.rec.observe(rec, now)
		}
		r.rec.tick(now)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// aimPoll is how often an aimed fault reads the coordinator's journal.
const aimPoll = 2 * time.Millisecond

// awaitPhase waits for the coordinator's journal to show o's phase
// beginning (a <phase>_started record) from now on (start + o.At), at a
// moment o can land (Schedule.CanLand); it returns that record's time on
// this machine's clock, or false when ctx ended first. The records already
// in the journal are passed over by their place, not by their time: the
// coordinator's clock may have been stepped.
//
// A fault aimed at the leader (Op.Leader) hits the candidate whose journal
// shows the phase: the one coordinating; the member it hit is returned.
func (r *runner) awaitPhase(ctx context.Context, start time.Time, sched Schedule, o Op) (time.Time, string, bool) {
	tail := r.tailJournals()
	tail.next() // written before o's time
	t := time.NewTicker(aimPoll)
	defer t.Stop()
	for {
		for _, rec := range tail.next() {
			if phaseBegins(rec) != o.Aim {
				continue
			}
			if o.Leader {
				o.Member = rec.Source
			}
			if !r.isHeld(o) && sched.CanLand(o, time.Since(start)) {
				// Read within milliseconds of being written: the step
				// in force now is the one it was stamped with.
				return rec.At.Add(-r.clockStep(rec.Source)), o.Member, true
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, "", false
		case <-t.C:
		}
	}
}

// journalTails follow several journals: every candidate's.
type journalTails []*journalTail

// tailJournals follows the journal of every member that may coordinate.
func (r *runner) tailJournals() journalTails {
	var out journalTails
	for _, c := range r.plan.Candidates() {
		out = append(out, &journalTail{path: r.journalPath(c), source: c})
	}
	return out
}

// next returns the records appended to any of the journals since the last
// call (each with its Source), each journal's in order.
func (js journalTails) next() []Record {
	var out []Record
	for _, j := range js {
		out = append(out, j.next()...)
	}
	return out
}

// appliedRoutes are the routes every switcher simulator applied, each
// with the host its connection came from.
func (r *runner) appliedRoutes() []RouteApplied {
	byAddr := map[string]string{}
	for label, h := range r.hosts {
		byAddr[h.Addr.String()] = label
	}
	var out []RouteApplied
	for _, s := range r.plan.Switchers {
		rl, ok := r.sims[s.Driver].(drivers.RouteLog)
		if !ok {
			continue
		}
		for _, a := range rl.AppliedRoutes() {
			host, _, err := net.SplitHostPort(a.Remote)
			if err != nil {
				host = a.Remote
			}
			out = append(out, RouteApplied{At: a.Time, Driver: s.Driver, Output: a.Output, Input: a.Input, Remote: a.Remote, Host: byAddr[host]})
		}
	}
	return out
}

// journalTail reads the records appended to a journal file since the last
// call (from its start after a rotation).
type journalTail struct {
	path    string
	source  string // the member whose journal it is (Record.Source)
	off     int64
	partial []byte
}

func (j *journalTail) next() []Record {
	f, err := os.Open(j.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() < j.off {
		j.off, j.partial = 0, nil // rotated
	}
	data, err := io.ReadAll(io.NewSectionReader(f, j.off, 1<<40))
	if err != nil || len(data) == 0 {
		return nil
	}
	j.off += int64(len(data))
	data = append(j.partial, data...)
	var out []Record
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		var rec Record
		if json.Unmarshal(data[:i], &rec) == nil {
			rec.Source = j.source
			out = append(out, rec)
		}
		data = data[i+1:]
	}
	j.partial = slices.Clone(data)
	return out
}

// close stops every instance and simulator, unmounts the state folders
// (keeping what they hold) and removes the hosts.
func (r *runner) close() error {
	var errs []error
	for _, in := range r.procs {
		errs = append(errs, in.close())
	}
	if r.broker != nil {
		errs = append(errs, r.broker.close())
	}
	for _, s := range r.sims {
		s.Close()
	}
	errs = append(errs, r.unmountStateDirs())
	if r.net != nil {
		errs = append(errs, r.net.Close())
	}
	return errors.Join(errs...)
}
