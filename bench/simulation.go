//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"understudy/bench/report"
	"understudy/drivers/builtin"
	"understudy/runtime/scenario"
	"understudy/scripts"
)

// simulationSite is the shipped manager-backup example site with a
// failback delay that fits an hourly cycle.
const simulationSite = `site: manager-backup
coordinator: backup
mdns: false
heartbeat: {interval: 250ms, lost_after: 1s, startup_grace: 5s}
policy: {file: policy.lua}
failover: {failback_delay: 30s}
members:
  - id: main
    roles: [manager]
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    roles: [manager]
    standby: true
    duties: {switcher: router, inputs: [3, 4]}
drivers:
  router: {kind: videohub, address: 192.168.10.50, timeout: 2s}
`

// dayScenario is 24 h of site time: main crashes every odd hour and comes
// back every even one; the last crash must still be covered.
func dayScenario() string {
	var b strings.Builder
	b.WriteString("name: a day of site time\nrun: 24h\ndevices: {router: {inputs: 16, outputs: 16}}\nsteps:\n")
	for h := 1; h < 24; h++ {
		step := "crash"
		if h%2 == 0 {
			step = "up"
		}
		fmt.Fprintf(&b, "  - {at: %dh, %s: main}\n", h, step)
	}
	b.WriteString(`expect:
  - {event: takeover_started, member: main, after: 1h, within: 1s}
  - {event: failback_done, member: main, after: 2h, within: 1m}
  - {event: takeover_started, member: main, after: 23h, within: 1s}
  - {routed: {driver: router, output: 1, input: 3}, by: 23h0m1s}
`)
	return b.String()
}

func measureSimulation(e *env, r *report.Result) {
	dir, err := e.dir("simulation")
	if err != nil {
		fail(r, err)
		return
	}
	policy, err := scripts.FS.ReadFile("manager-backup/policy.lua")
	if err != nil {
		fail(r, fmt.Errorf("the shipped policy: %w", err))
		return
	}
	path := filepath.Join(dir, "scenarios", "day.yaml")
	for name, text := range map[string][]byte{"site.yaml": []byte(simulationSite), "policy.lua": policy, "scenarios/day.yaml": []byte(dayScenario())} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fail(r, fmt.Errorf("write the scenario: %w", err))
			return
		}
		if err := os.WriteFile(p, text, 0o644); err != nil {
			fail(r, fmt.Errorf("write the scenario: %w", err))
			return
		}
	}
	runs := e.pick(1, 5)
	var walls []float64
	var simulated time.Duration
	records := 0
	// One run more than counted: the first warms up (page cache, Go's heap).
	for i := range runs + 1 {
		if err := e.ctx.Err(); err != nil {
			fail(r, fmt.Errorf("simulation: %w", err))
			return
		}
		state, err := e.dir("simulation-state")
		if err != nil {
			fail(r, err)
			return
		}
		t0 := time.Now()
		sc, err := scenario.Load(path)
		if err != nil {
			fail(r, fmt.Errorf("load the scenario: %w", err))
			return
		}
		res, err := scenario.Run(e.ctx, sc, scenario.Options{Registry: builtin.Registry(), StateDir: state})
		wall := time.Since(t0)
		if err != nil {
			fail(r, fmt.Errorf("run the scenario: %w", err))
			return
		}
		if res.Failed() {
			var out strings.Builder
			res.WriteChecks(&out)
			fail(r, fmt.Errorf("the day's scenario failed its expectations:\n%s", out.String()))
			return
		}
		if i > 0 {
			walls = append(walls, wall.Seconds())
		}
		simulated, records = res.Length, len(res.Records)
	}
	r.Stats = report.Summarize(walls)
	r.Reference = &report.Reference{What: "site time simulated", Unit: "s", Value: simulated.Seconds()}
	r.Ratio = simulated.Seconds() / r.Stats.P50
	r.RatioIs = "site time / p50 wall time: the speed-up over real time"
	r.Notes = append(r.Notes, fmt.Sprintf("%s after one warm-up; each simulates %v with 2 members heartbeating every 250 ms (%s heartbeats) and records %d events; its expectations (takeover, failback, routes) pass.",
		plural(runs, "run"), simulated, report.Format(float64(2*simulated/(250*time.Millisecond)), ""), records))
}

// plural is "1 run", "5 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
