//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"understudy/runtime/config"
	"understudy/sitekey"

	"understudy/bench/proc"
	"understudy/bench/report"
	"understudy/discovery/bus"
	"understudy/events"
	"understudy/fixtures/testhost"
	"understudy/runtime/engine"
	"understudy/runtime/instance"
)

// scaleSiteTemplate is the scale site: the coordinator and N members that
// the bench simulates (each a real bus client, publishing real heartbeats),
// no policy.
const scaleSiteTemplate = `site: scale
coordinator: coord
mdns: false
bus: {%s}
heartbeat: {interval: %s, lost_after: %s, startup_grace: 2m}
members:
  - {id: coord, roles: [manager], standby: true, api: "127.0.0.1:0"}
%s`

// scaleStep is one arrangement (broker, rate, members) and what it measured.
type scaleStep struct {
	broker string // "embedded" or "mosquitto"
	hz     int
	n      int
	// noAuth runs the step without a site key (the authentication cost's
	// reference); every other step signs and checks every message.
	noAuth bool
	// authPair numbers the steps of the authentication cost's pairs (one
	// without a key, one with) from 1; 0 is a step of the series.
	authPair int

	window     time.Duration
	coordCPU   []float64 // % of one core, per second of the window
	brokerCPU  []float64 // mosquitto's, likewise
	coordRSS   float64   // MB (10⁶ bytes), the largest seen in the window
	brokerRSS  float64
	published  uint64  // heartbeats the simulated members published
	received   uint64  // heartbeats the coordinator took in
	rate       float64 // heartbeats published per second in the window, of n × hz
	falseLosts int
	connect    time.Duration // until every simulated member was connected
	memory     string        // the coordinator's Go memory at the end of the window
	// brokerDropped is what the embedded broker dropped for slow readers.
	brokerDropped int64
	err           error
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// cpu is the understudy side's CPU: the coordinator, with mosquitto's when
// it is the broker.
func (s *scaleStep) cpu() float64 { return mean(s.coordCPU) + mean(s.brokerCPU) }

// lost is the heartbeats published but never taken in.
func (s *scaleStep) lost() int64 { return int64(s.published) - int64(s.received) }

// within says whether the step ran well within one core: every member
// alive, the generator keeping pace, no false lost, under 100 % of a core.
func (s *scaleStep) within() bool {
	return s.err == nil && s.falseLosts == 0 && s.rate >= 0.95 && s.cpu() < 100
}

func (s *scaleStep) String() string {
	if s.err != nil {
		return fmt.Sprintf("%s %d Hz × %d: %v", s.broker, s.hz, s.n, s.err)
	}
	cpu := fmt.Sprintf("coordinator %.1f %%", mean(s.coordCPU))
	if s.broker == "mosquitto" {
		cpu += fmt.Sprintf(" + mosquitto %.1f %%", mean(s.brokerCPU))
	}
	rss := fmt.Sprintf("RSS %.0f MB", s.coordRSS)
	if s.broker == "mosquitto" {
		rss += fmt.Sprintf(" + %.0f MB", s.brokerRSS)
	}
	return fmt.Sprintf("%s, %d Hz × %d members: %s of one core, %s (%s), %d of %d heartbeats lost (%d dropped by the embedded broker), %d false losts, generator at %.0f %% of its rate, all connected in %v",
		s.broker, s.hz, s.n, cpu, rss, s.memory, s.lost(), s.published, s.brokerDropped, s.falseLosts, 100*s.rate, s.connect.Round(10*time.Millisecond))
}

// scaleRun is every step of the scale figures (run once for all three).
type scaleRun struct {
	steps []*scaleStep
	notes []string
}

// find returns the step of broker, hz and n, if it ran.
func (run *scaleRun) find(broker string, hz, n int) *scaleStep {
	for _, s := range run.steps {
		if s.broker == broker && s.hz == hz && s.n == n && s.authPair == 0 {
			return s
		}
	}
	return nil
}

// authPairs returns the CPU means of the authentication cost's pairs that
// ran without an error: the step without a key and the one with it, in
// their order.
func (run *scaleRun) authPairs() (without, with []float64) {
	var pending *scaleStep
	for _, s := range run.steps {
		switch {
		case s.authPair == 0:
		case s.noAuth:
			pending = s
		case pending != nil:
			if pending.err == nil && s.err == nil {
				without, with = append(without, mean(pending.coordCPU)), append(with, mean(s.coordCPU))
			}
			pending = nil
		}
	}
	return without, with
}

// largest is the largest n of broker at hz that ran within one core, and
// the step after it (the one that did not), if any.
func (run *scaleRun) largest(broker string, hz int) (best, next *scaleStep) {
	for _, s := range run.steps {
		if s.broker != broker || s.hz != hz {
			continue
		}
		if s.within() {
			if best == nil || s.n > best.n {
				best = s
			}
		} else if next == nil || s.n < next.n {
			next = s
		}
	}
	return best, next
}

// scalePlan is the steps of a run: for each rate, member counts doubling
// from the first, until a step is not within one core or the series' time
// runs out.
type scalePlan struct {
	series []scaleSeries
	budget time.Duration // per broker and rate
}

// scaleSeries is the steps at one rate.
type scaleSeries struct {
	hz     int
	counts []int
	window time.Duration
}

func (e *env) scaleRun() (*scaleRun, error) {
	if !e.scaleRan {
		e.scaleRan = true
		e.scale, e.scaleErr = runScale(e)
	}
	return e.scale, e.scaleErr
}

func runScale(e *env) (*scaleRun, error) {
	bin, err := e.understudy()
	if err != nil {
		return nil, err
	}
	raiseFileLimit()
	plan := scalePlan{budget: 40 * time.Second, series: []scaleSeries{
		{hz: 1, counts: []int{2000, 4000, 8000, 16000}, window: 10 * time.Second},
		{hz: 10, counts: []int{500, 1000, 2000, 4000, 8000}, window: 5 * time.Second},
	}}
	if e.quick {
		plan.budget = 10 * time.Second
		plan.series[0].counts, plan.series[0].window = []int{200}, 3*time.Second
		plan.series[1].counts, plan.series[1].window = []int{100}, 2*time.Second
	}
	mq, mqErr := testhost.LookPath("mosquitto")
	run := &scaleRun{}
	if mqErr != nil {
		run.notes = append(run.notes, "No mosquitto reference: mosquitto is not installed (make bench installs it).")
	}
	// The authentication cost first: the first 1 Hz step without a site
	// key and with one, in pairs that run at the same time. Steps run one
	// after the other differed by more than the cost (18 to 30 % of a core
	// for the same step on a shared machine); measured over one window,
	// whatever else the machine does weighs on both alike. Over 30 s, not
	// the series' 10: a garbage collection of the coordinator's heap (some
	// 300 MB at this size) is a second at 50 % of a core, and whether a
	// 10 s window took one in made two sites without a key differ by up
	// to 30 % (two such sites over 30 s, three pairs: within 1 %).
	pairs, authWindow := 4, 30*time.Second
	if e.quick {
		pairs, authWindow = 1, plan.series[0].window
	}
	for i := range pairs {
		if e.ctx.Err() != nil {
			return run, nil
		}
		// The two of a pair run at the same time (see runScaleSteps); which
		// starts first alternates.
		first := plan.series[0]
		without := &scaleStep{broker: "embedded", hz: 1, n: first.counts[0], noAuth: true, authPair: i + 1, window: authWindow}
		with := &scaleStep{broker: "embedded", hz: 1, n: first.counts[0], authPair: i + 1, window: authWindow}
		e.logf("scale: authentication cost, pair %d of %d: embedded broker, %d members at 1 Hz without a site key and %d with one, at the same time", i+1, pairs, without.n, with.n)
		order := []*scaleStep{without, with}
		if i%2 == 1 {
			order = []*scaleStep{with, without}
		}
		for j, err := range runScaleSteps(e, bin, mq, order...) {
			order[j].err = err
		}
		run.steps = append(run.steps, without, with)
	}
	for _, broker := range []string{"embedded", "mosquitto"} {
		if broker == "mosquitto" && mqErr != nil {
			continue
		}
		for _, series := range plan.series {
			start := time.Now()
			for _, n := range series.counts {
				if e.ctx.Err() != nil {
					return run, nil
				}
				if time.Since(start) > plan.budget {
					run.notes = append(run.notes, fmt.Sprintf("%s at %d Hz: no step past %d members within the series' time bound of %v.", broker, series.hz, n/2, plan.budget))
					break
				}
				e.logf("scale: %s broker, %d members at %d Hz", broker, n, series.hz)
				s := &scaleStep{broker: broker, hz: series.hz, n: n, window: series.window}
				s.err = runScaleStep(e, bin, mq, s)
				run.steps = append(run.steps, s)
				if !s.within() {
					break
				}
			}
		}
	}
	return run, nil
}

// raiseFileLimit lets this process (N simulated members) and the processes
// it starts (a broker with N connections) open as many files as allowed.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// runScaleStep starts a coordinator (and mosquitto), connects s.n simulated
// members heartbeating at s.hz, waits until the coordinator has them all
// alive, measures for s.window, stops the heartbeats and counts.
func runScaleStep(e *env, bin, mosquittoBin string, s *scaleStep) error {
	return runScaleSteps(e, bin, mosquittoBin, s)[0]
}

// runScaleSteps runs steps at the same time: each its own site, started one
// after the other, measured over the same window (so that whatever else the
// machine does in that window weighs on each alike), then stopped and
// counted. It returns each step's error.
func runScaleSteps(e *env, bin, mosquittoBin string, steps ...*scaleStep) []error {
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Minute)
	defer cancel()
	errs := make([]error, len(steps))
	sites := make([]*scaleSite, len(steps))
	defer func() {
		for _, site := range sites {
			if site != nil {
				site.close()
			}
		}
	}()
	for i, s := range steps {
		site, err := startScaleSite(ctx, e, bin, mosquittoBin, s)
		if err != nil {
			for j := range errs {
				errs[j] = fmt.Errorf("not measured: a site running beside it did not start: %w", err)
			}
			errs[i] = err
			return errs
		}
		sites[i] = site
	}
	if err := measureWindow(ctx, sites, steps[0].window); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, site := range sites {
		errs[i] = site.finish(ctx)
	}
	return errs
}

// scaleSite is a running step: its coordinator (and mosquitto), the
// simulated members heartbeating, and what undoes them.
type scaleSite struct {
	s              *scaleStep
	coord          *proc.Process
	broker         *mosquitto
	status         string // the coordinator's /status URL
	clients        []*bus.Client
	stopping       *atomic.Bool
	falseLosts     *atomic.Int64
	stopHeartbeats context.CancelFunc
	beating        *sync.WaitGroup
	beatsBefore    uint64
	cleanups       []func() // run last first
}

func (site *scaleSite) close() {
	for i := len(site.cleanups) - 1; i >= 0; i-- {
		site.cleanups[i]()
	}
	site.cleanups = nil
}

// startScaleSite starts step s's site and returns it once the coordinator
// has every simulated member alive.
func startScaleSite(ctx context.Context, e *env, bin, mosquittoBin string, s *scaleStep) (_ *scaleSite, err error) {
	site := &scaleSite{s: s, stopping: new(atomic.Bool), falseLosts: new(atomic.Int64), beating: new(sync.WaitGroup)}
	defer func() {
		if err != nil {
			site.close()
		}
	}()
	dir, err := e.dir("scale")
	if err != nil {
		return nil, err
	}
	site.cleanups = append(site.cleanups, func() { os.RemoveAll(dir) })

	var busLine, url string
	if s.broker == "mosquitto" {
		if site.broker, err = startMosquitto(e, mosquittoBin); err != nil {
			return nil, err
		}
		site.cleanups = append(site.cleanups, func() { site.broker.p.Kill() })
		url = "tcp://" + site.broker.addr
		busLine = fmt.Sprintf("url: %q", url)
	} else {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		url = fmt.Sprintf("tcp://127.0.0.1:%d", port)
		busLine = fmt.Sprintf("listen: \"127.0.0.1:%d\"", port)
	}
	interval := time.Second / time.Duration(s.hz)
	ids := make([]string, s.n)
	var members strings.Builder
	for i := range ids {
		ids[i] = fmt.Sprintf("m%05d", i+1)
		fmt.Fprintf(&members, "  - {id: %s, roles: [manager]}\n", ids[i])
	}
	var ring *sitekey.Ring
	if !s.noAuth {
		if ring, err = writeSiteKey(dir); err != nil {
			return nil, err
		}
		if s.broker != "mosquitto" {
			busLine += ", anonymous: read" // the bench's observer
		}
	} else {
		_ = os.Remove(filepath.Join(dir, config.DefaultKeyFile))
	}
	siteFile := filepath.Join(dir, "site.yaml")
	text := fmt.Sprintf(scaleSiteTemplate, busLine, interval, 3*interval, members.String())
	if err := os.WriteFile(siteFile, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("write the site: %w", err)
	}
	state := filepath.Join(dir, "state")
	args := []string{"run", "-c", siteFile, "--member", "coord", "--state", state, "--log-format", "json"}
	var logFile string
	if e.profiles != "" {
		name := filepath.Join(e.profiles, fmt.Sprintf("scale-%s-%dhz-%d", s.broker, s.hz, s.n))
		if s.authPair > 0 {
			name = filepath.Join(e.profiles, fmt.Sprintf("scale-authpair%d-%dhz-%d", s.authPair, s.hz, s.n))
		}
		if s.noAuth {
			name += "-nokey"
		}
		args = append(args, "--cpuprofile", name+".cpu.pprof", "--memprofile", name+".heap.pprof")
		logFile = name + ".log"
	}
	if site.coord, err = proc.Start(exec.Command(bin, args...)); err != nil {
		return nil, err
	}
	coord := site.coord
	site.cleanups = append(site.cleanups, func() { coord.Kill() })
	if e.profiles != "" {
		// A graceful stop writes the profile; the log is kept beside it.
		site.cleanups = append(site.cleanups, func() {
			syscall.Kill(coord.Pid(), syscall.SIGTERM)
			select {
			case <-coord.Exited():
			case <-time.After(10 * time.Second):
			}
			_ = os.WriteFile(logFile, []byte(coord.Output()), 0o644)
		})
	}
	if err := coord.WaitOutput(ctx, `"msg":"bus connected"`); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	api, err := os.ReadFile(instance.AddressPath(state, "scale", "coord"))
	if err != nil {
		return nil, fmt.Errorf("the coordinator's status API: %w", err)
	}
	site.status = strings.TrimSpace(string(api)) + "/status"

	// False losts: a member_lost before the heartbeats are stopped.
	w := newSiteWatch()
	w.onRecord = func(r stamped[engine.Record]) {
		if r.v.Type == events.MemberLost && !site.stopping.Load() {
			site.falseLosts.Add(1)
		}
	}
	obs, err := bus.Observe(ctx, url, "understudy-bench", []string{bus.Topics{Site: "scale"}.Events()}, w.onMessage)
	if err != nil {
		return nil, fmt.Errorf("subscribe to the site: %w", err)
	}
	site.cleanups = append(site.cleanups, func() { obs.Close() })

	// The simulated members: real bus clients (Last Will, presence,
	// heartbeats), connected all at once.
	topics := bus.Topics{Site: "scale"}
	site.clients = make([]*bus.Client, s.n)
	parsed := &config.Site{Name: "scale"} // for the members' broker passwords
	t0 := time.Now()
	for i, id := range ids {
		o := bus.Options{URL: url, Topics: topics, Member: id, Interval: interval, Version: "bench"}
		if ring != nil {
			o.Ring, o.BootCount = ring, 1
			o.Username = config.InstanceUsername(id)
			o.Password, _ = parsed.InstancePassword(ring, id)
		}
		site.clients[i] = bus.New(o)
		site.clients[i].Connect()
	}
	clients := site.clients
	site.cleanups = append(site.cleanups, func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() { c.Close(false) })
		}
		wg.Wait()
	})
	for _, c := range clients {
		if err := c.WaitConnected(ctx); err != nil {
			return nil, err
		}
	}
	s.connect = time.Since(t0)
	hbCtx, stopHeartbeats := context.WithCancel(ctx)
	site.stopHeartbeats = stopHeartbeats
	site.cleanups = append(site.cleanups, func() { stopHeartbeats(); site.beating.Wait() })
	for _, c := range clients {
		site.beating.Go(func() {
			// Each at its own phase, as members started at different times.
			select {
			case <-time.After(rand.N(interval)):
				c.RunHeartbeats(hbCtx)
			case <-hbCtx.Done():
			}
		})
	}
	if err := waitAllAlive(ctx, site.status, s.n); err != nil {
		return nil, fmt.Errorf("%w; the coordinator's log ends:\n%s", err, logTail(coord))
	}
	return site, nil
}

// pids are the processes whose CPU the step measures: the coordinator, and
// mosquitto when it is the broker.
func (site *scaleSite) pids() []int {
	if site.broker != nil {
		return []int{site.coord.Pid(), site.broker.p.Pid()}
	}
	return []int{site.coord.Pid()}
}

// measureWindow samples every site's CPU and RSS every second for window.
func measureWindow(ctx context.Context, sites []*scaleSite, window time.Duration) error {
	var pids []int
	for _, site := range sites {
		pids = append(pids, site.pids()...)
		site.beatsBefore = sumBeats(site.clients)
	}
	before, err := cpuTimes(pids)
	if err != nil {
		return err
	}
	last := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for end := last.Add(window); last.Before(end); {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		now, err := cpuTimes(pids)
		if err != nil {
			return err
		}
		wall := time.Since(last)
		last = time.Now()
		i := 0
		for _, site := range sites {
			s := site.s
			for j, pid := range site.pids() {
				cpu := 100 * float64(now[i]-before[i]) / float64(wall)
				rss, _, err := proc.RSS(pid)
				if err != nil {
					return err
				}
				mb := float64(rss) * 1024 / 1e6
				if j == 0 {
					s.coordCPU = append(s.coordCPU, cpu)
					s.coordRSS = max(s.coordRSS, mb)
				} else {
					s.brokerCPU = append(s.brokerCPU, cpu)
					s.brokerRSS = max(s.brokerRSS, mb)
				}
				i++
			}
		}
		before = now
	}
	return nil
}

// finish reads the coordinator's memory, stops the heartbeats and counts
// what arrived.
func (site *scaleSite) finish(ctx context.Context) error {
	s := site.s
	s.memory = coordMemory(ctx, strings.TrimSuffix(site.status, "/status")+"/metrics")
	s.rate = float64(sumBeats(site.clients)-site.beatsBefore) / s.window.Seconds() / float64(s.n*s.hz)

	// Stop, then count what arrived.
	site.stopping.Store(true)
	site.stopHeartbeats()
	site.beating.Wait()
	s.published = sumBeats(site.clients)
	s.falseLosts = int(site.falseLosts.Load())
	var err error
	s.received, err = settledReceived(ctx, site.status, s.published)
	if err != nil {
		return err
	}
	st, err := getStatus(ctx, site.status)
	s.brokerDropped = st.Bus.EmbeddedDropped
	return err
}

func cpuTimes(pids []int) ([]time.Duration, error) {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		d, err := proc.CPUTime(pid)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

func sumBeats(clients []*bus.Client) uint64 {
	var n uint64
	for _, c := range clients {
		n += c.Beats()
	}
	return n
}

// coordMemory summarises the coordinator's Go memory from its /metrics:
// heap in use, goroutine stacks, goroutines.
func coordMemory(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "no metrics: " + err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "no metrics: " + err.Error()
	}
	v := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if f, err := strconv.ParseFloat(value, 64); err == nil {
			v[name] = f
		}
	}
	return fmt.Sprintf("Go heap in use %.0f MB, stacks %.0f MB, %.0f goroutines",
		v["go_memstats_heap_inuse_bytes"]/1e6, v["go_memstats_stack_inuse_bytes"]/1e6, v["go_goroutines"])
}

// scaleStatus is the part of the coordinator's status the scale figure reads.
type scaleStatus struct {
	Members []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"members"`
	Bus struct {
		Heartbeats      uint64 `json:"heartbeats_received"`
		EmbeddedDropped int64  `json:"embedded_broker_dropped"`
	} `json:"bus"`
}

func getStatus(ctx context.Context, url string) (scaleStatus, error) {
	var st scaleStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("the coordinator's status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("the coordinator's status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("the coordinator's status: %w", err)
	}
	return st, nil
}

// waitAllAlive polls the coordinator's status until n members other than
// itself are alive.
func waitAllAlive(ctx context.Context, url string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	alive := 0
	for {
		st, err := getStatus(ctx, url)
		if err == nil {
			alive = 0
			for _, m := range st.Members {
				if m.ID != "coord" && m.State == "alive" {
					alive++
				}
			}
			if alive == n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d simulated members alive at the coordinator: %w", alive, n, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// settledReceived polls the heartbeats the coordinator took in until they
// reach published or stop growing for a second.
func settledReceived(ctx context.Context, url string, published uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last uint64
	lastChange := time.Now()
	for {
		st, err := getStatus(ctx, url)
		if err != nil {
			return last, err
		}
		got := st.Bus.Heartbeats
		if got >= published {
			return got, nil
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > time.Second {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// The three scale figures read one run.

func measureScaleCPU(e *env, r *report.Result) {
	run, err := e.scaleRun()
	if err != nil {
		fail(r, err)
		return
	}
	s := run.find("embedded", 1, 2000)
	if s == nil && e.quick {
		s = run.find("embedded", 1, 200)
	}
	if s == nil {
		fail(r, errors.New("the step of 2,000 members at 1 Hz did not run"))
		return
	}
	if s.err != nil {
		fail(r, fmt.Errorf("%d members at 1 Hz: %w", s.n, s.err))
		return
	}
	if s.n != 2000 {
		r.Figure = fmt.Sprintf("CPU at %d members, 1 Hz (quick)", s.n)
	}
	r.Stats = report.Summarize(s.coordCPU)
	if ref := run.find("mosquitto", 1, s.n); ref != nil && ref.err == nil {
		total := make([]float64, len(ref.coordCPU))
		for i := range total {
			total[i] = ref.coordCPU[i] + ref.brokerCPU[i]
		}
		ts := report.Summarize(total)
		r.Reference = &report.Reference{What: "coordinator + Debian mosquitto", Unit: "% core", Stats: ts, Value: ts.Mean, Stat: "mean"}
	}
	r.Checks = []report.Check{
		{What: "RSS of the coordinator", Found: fmt.Sprintf("%.0f MB", s.coordRSS), Want: "< 150 MB", Met: s.coordRSS < 150},
		{What: "false losts", Found: fmt.Sprint(s.falseLosts), Want: "0", Met: s.falseLosts == 0},
	}
	if without, with := run.authPairs(); len(with) > 0 {
		a, b := mean(with), mean(without)
		r.Checks = append(r.Checks, report.Check{What: fmt.Sprintf("authentication cost (signed and checked messages against none, %d pairs of the first step, each run at the same time)", len(with)),
			Found: fmt.Sprintf("%.1f against %.1f %% core (%+.1f %%)", a, b, 100*(a/b-1)), Want: "at most +5 %", Met: a <= 1.05*b})
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d members (the bench's simulated members: real bus clients with Last Will, presence and heartbeats), %v window; per-second samples of the coordinator's CPU (user + system, /proc/PID/stat).", s.n, s.window))
	r.Notes = append(r.Notes, run.describe()...)
}

func measureScaleLargest(hz int) func(e *env, r *report.Result) {
	return func(e *env, r *report.Result) {
		run, err := e.scaleRun()
		if err != nil {
			fail(r, err)
			return
		}
		best, next := run.largest("embedded", hz)
		if best == nil {
			if next != nil {
				fail(r, fmt.Errorf("not even the first step was within one core: %s", next))
			} else {
				fail(r, errors.New("no step ran"))
			}
			return
		}
		r.Stats = report.Summarize([]float64{float64(best.n)})
		if ref, _ := run.largest("mosquitto", hz); ref != nil {
			r.Reference = &report.Reference{What: "with Debian mosquitto", Unit: "members", Value: float64(ref.n), Stat: "largest"}
		}
		r.Notes = append(r.Notes, fmt.Sprintf("The largest step within one core: %s.", best))
		if next != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("The next step was not: %s.", next))
		} else {
			r.Notes = append(r.Notes, "No step was beyond one core: the largest is a lower bound, set by the steps planned and their time bound.")
		}
	}
}

// describe lists every step, for the notes.
func (run *scaleRun) describe() []string {
	out := append([]string(nil), run.notes...)
	for _, s := range run.steps {
		out = append(out, "Step: "+s.String()+".")
	}
	return out
}
