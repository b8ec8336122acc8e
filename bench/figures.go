//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"understudy/bench/report"
)

// figure is one row of the table: what it is, the goal it is held to, and
// the function that measures it (nil: not measured yet).
type figure struct {
	name, group, title string
	how                string
	unit               string
	higher             bool
	goal               report.Goal
	measure            func(e *env, r *report.Result)
	// last runs the figure after all the others: removing its network
	// namespaces keeps the kernel busy for a while after it ends, which
	// would show in the latencies measured next.
	last bool
}

// result is the figure's row before it is measured.
func (f figure) result() report.Result {
	r := report.Result{Name: f.name, Group: f.group, Figure: f.title, How: f.how, Unit: f.unit, Higher: f.higher, Goal: f.goal}
	if f.measure != nil {
		r.Command = "go run ./bench -only " + f.name
	}
	return r
}

// figures is the table, in the order the README shows it.
func figures() []figure {
	return []figure{
		{
			name: "crash", group: "crash", title: "crash detection", unit: "ms",
			how: "A real coordinator (`understudy run`, embedded broker) and a real member process on loopback, heartbeat 100 ms, " +
				"lost_after 300 ms; `kill -9` of the member process → the `member_lost` record received on `understudy/<site>/events` by a " +
				"subscriber in the bench process (receive time minus the time just before kill(2)). The member is restarted between trials " +
				"and the site is back to normal (failed back, member alive) before the next kill. Reference: the same kill of a plain MQTT " +
				"client (`mosquitto_sub` with a Last Will) on the same broker, will received by the same subscriber.",
			goal:    report.Goal{Stat: "p99", Op: "<=", Limit: 50},
			measure: measureCrash,
		},
		{
			name: "silent-loss", group: "silent-loss", title: "silent loss detection", unit: "ms",
			how: "Test hosts in network namespaces on one bridge (198.18.0.0/15): the coordinator (`understudy run`, embedded broker) " +
				"on one, a member on each of eleven others, heartbeat 100 ms, lost_after 300 ms, no policy; a subscriber in the " +
				"coordinator's namespace. First a minute of normal traffic with nothing unplugged, then the trial member's cable pulled " +
				"(its switch port set down: no FIN, no RST, only silence) 36 times at a random phase against its heartbeats, " +
				"→ `member_lost` received on the events topic; plugged back after each, and restored before the next. A false lost is " +
				"a `member_lost` of a member whose cable is in, counted over every phase. Reference: the last 6 unplugs are held until " +
				"the broker publishes the member's Last Will (MQTT keep-alive 2 s, the default), as an MQTT-only design would detect it.",
			goal:    report.Goal{Stat: "p99", Op: "<=", Limit: 400},
			measure: measureSilentLoss,
			last:    true,
		},
		{
			name: "failover", group: "failover", title: "end-to-end failover", unit: "ms",
			how: "The crash trials above (same processes, same kills): `kill -9` of main → both of main's outputs routed to the backup's " +
				"inputs at the Videohub simulator (its route records, stamped as it applies them, in the bench process), by the shipped " +
				"manager-backup policy over real TCP. Failback between trials (failback_delay 100 ms, wait_ready). Reference: crash " +
				"detection of the same trials — the ratio is what routing costs on top.",
			goal:    report.Goal{Stat: "p99", Op: "<=", Limit: 100},
			measure: measureFailover,
		},
		{
			name: "elect-failover", group: "elect", title: "elected coordinator's own host killed → its duties covered", unit: "ms",
			how: "Two machines and a witness on loopback elect the coordinator (`coordinator: [main, backup, w]`, each embedding a " +
				"broker (`broker:`) with every instance connected to all three, heartbeat 100 ms, raft heartbeat timeout 300 ms): main " +
				"leads and has the duties. `kill -9` of main (its broker with it) → both of main's outputs routed to the backup's inputs " +
				"at the Videohub simulator (its route records): the election, the new leader's wait for the old lease, its first action. " +
				"Between kills main is restarted, fails back, and is handed the lead again (`leader_transfer`). The same with Debian " +
				"mosquitto as the site's one broker, in the notes. Reference: Debian's keepalived moving a virtual IP by VRRP between two network-namespace hosts, its " +
				"processes killed → the address on the other host (polled every millisecond in its namespace), at its fastest " +
				"(VRRPv3, advert_int 0.01) and, in the notes, at its default (advert_int 1).",
			goal:    report.Goal{Stat: "p99", Op: "<=", Limit: 1500},
			measure: measureElectFailover,
		},
		{
			name: "witness-footprint", group: "elect", title: "the witness's resident memory", unit: "MiB",
			how: "The elect-failover site: the witness's VmRSS (/proc/PID/status) read every second for a minute while the coordinator " +
				"changes the failover mode every second (each a replicated write) and the lead moves between main and backup every 10 s; " +
				"its CPU and storage writes (/proc/PID/io write_bytes) over the same minute in the notes. A witness may sit on a " +
				"small board with an SD card.",
			goal:    report.Goal{Stat: "max", Op: "<=", Limit: 30},
			measure: measureWitnessFootprint,
		},
		{
			name: "elect-commit-slow-witness", group: "elect", title: "a replicated write committed, one machine down, the witness on slow storage", unit: "ms",
			how: "Three candidates (main, backup, the witness) in the bench's process: raft with its TLS transport on loopback, bbolt " +
				"with fsync, election timing of a 100 ms heartbeat. The witness's folders are on an ext4 loop device whose writes are " +
				"throttled to 50 a second (cgroup v1 blkio: a slow SD card); backup is stopped, so every commit needs the witness's " +
				"fsync. One transaction on the leader (a put), from Update to its return: the log appended and fsynced on a majority, " +
				"then applied to the leader's state file. The same with all three up, and on ordinary storage, in the notes.",
			goal:    report.Goal{Stat: "p99", Op: "<=", Limit: 100},
			measure: measureSlowWitness,
		},
		{
			name: "dispatch-rate", group: "dispatch", title: "Lua dispatch rate", unit: "events/s", higher: true,
			how: "Events emitted into the engine and run through its queue into a Lua handler (`n = n + ev.value`) on the simulation " +
				"harness, in batches of 10,000 on one goroutine (as BenchmarkLuaDispatch). Reference: the same events through a buffered Go " +
				"channel into a Go func, on one goroutine (the cost floor).",
			goal:    report.Goal{Stat: "p50", Op: ">=", Limit: 200000},
			measure: measureDispatchRate,
		},
		{
			name: "dispatch-latency", group: "dispatch", title: "Lua handler latency at 1,000 events/s", unit: "ms",
			how: "A coordinator's engine on the real clock with its loop on its own goroutine (as in `understudy run`); events emitted at a " +
				"paced 1,000/s for 10 s; latency from just before Emit to the handler's `us.log.info` reaching the logger. Reference: " +
				"the same pacing through a buffered Go channel into a goroutine running a Go func.",
			goal:    report.Goal{Stat: "p99", Op: "<=", Limit: 1},
			measure: measureDispatchLatency,
		},
		{
			name: "scale", group: "scale", title: "CPU at 2,000 members, 1 Hz", unit: "% core",
			how:     scaleHow,
			goal:    report.Goal{Stat: "mean", Op: "<", Limit: 25},
			measure: measureScaleCPU,
		},
		{
			name: "scale-1hz", group: "scale", title: "largest N within one core, 1 Hz", unit: "members", higher: true,
			how: scaleHow + " Members doubled from 2,000 until a step is not within one core (under 100 % of a core, every member " +
				"alive, no false lost, the simulated members keeping their pace) or its time bound ends.",
			goal:    report.Goal{Stat: "p50", Op: ">=", Limit: 2000},
			measure: measureScaleLargest(1),
		},
		{
			name: "scale-10hz", group: "scale", title: "largest N within one core, 10 Hz", unit: "members", higher: true,
			how: scaleHow + " Members doubled from 500 (heartbeat 100 ms) as at 1 Hz. The goal is the message rate of the 1 Hz goal " +
				"(2,000 heartbeats/s).",
			goal:    report.Goal{Stat: "p50", Op: ">=", Limit: 200},
			measure: measureScaleLargest(10),
		},
		{
			name: "copy", group: "copy", title: "material copy", unit: "× rsync",
			how:     copyHow,
			goal:    report.Goal{Stat: "p50", Op: "<=", Limit: 1.0},
			measure: measureCopy,
		},
		{
			name: "simulation", group: "simulation", title: "simulation of 24 h of site time", unit: "s",
			how: "`understudy simulate`'s engine (runtime/scenario): the shipped manager-backup site and policy, heartbeats every 250 ms, " +
				"main crashing and coming back every other hour for 24 h of virtual time, the Videohub simulator over TCP; wall time of " +
				"loading and running the scenario. Reference: the site time simulated (the ratio is the speed-up over real time).",
			goal:    report.Goal{Stat: "p99", Op: "<", Limit: 1},
			measure: measureSimulation,
		},
		{
			name: "startup", group: "footprint", title: "start to ready", unit: "ms",
			how: "`understudy run` of the coordinator (embedded broker, the manager-backup policy, a Videohub driver), built once with " +
				"`go build`; from just before fork/exec to READY=1 on a NOTIFY_SOCKET datagram socket the bench listens on (sd_notify: " +
				"policy loaded, status API listening), 30 starts after one warm-up, each killed and reaped. Reference: Debian " +
				"mosquitto from fork/exec to its port accepting a TCP connection (polled every 1 ms).",
			goal:    report.Goal{Stat: "p99", Op: "<=", Limit: 200},
			measure: measureStartup,
		},
		{
			name: "idle-rss", group: "footprint", title: "idle RSS", unit: "MiB",
			how: "VmRSS from /proc/PID/status of the coordinator (with the embedded broker) and of the member, 10 s after the member is " +
				"alive at the coordinator; the figure is the larger. Reference: Debian mosquitto started at the same time, idle, read at " +
				"the same moment.",
			goal:    report.Goal{Stat: "max", Op: "<=", Limit: 30},
			measure: measureIdleRSS,
		},
	}
}

// scaleHow is the method of the three scale figures.
const scaleHow = "The coordinator (`understudy run`, no policy) and N simulated members in the bench process — each a real bus " +
	"client (`discovery/bus`: Last Will, presence, heartbeats at its own phase, the site's MQTT keep-alive of 2 s) declared " +
	"in site.yaml, subscribed to nothing (a real instance also receives every heartbeat: see the README on sizing), so each " +
	"pings the broker every keep-alive — on loopback, " +
	"lost_after 3 heartbeats. Once the coordinator has every member alive: CPU (user + system from /proc/PID/stat, per " +
	"second) and RSS of the coordinator over a window, member_lost records (false losts), then the heartbeats stopped " +
	"and the published ones counted against those the coordinator took in (`heartbeats_received` in its status: lost " +
	"messages). Two arrangements in the same run: the embedded broker (the figure) and Debian mosquitto as the broker " +
	"(the reference: the coordinator's CPU plus mosquitto's). The site has a key, as a commissioned site does: every message " +
	"signed and checked, each member logged in with its own account. The authentication cost: four more pairs of the " +
	"first 1 Hz step, one site without a key and one with it running at the same time (two coordinators, each with its " +
	"own members and broker, measured over the same 30 s window; which starts first alternates), compared by their mean CPU."

// env is what the figures of one run share: the bounds, a temporary folder,
// the understudy binary (built once) and the crash trials (run once for
// both the crash and the failover figures).
type env struct {
	ctx   context.Context
	quick bool
	root  string // the module's folder
	tmp   string // removed at the end of the run
	log   io.Writer
	// profiles, when set, is where the scale figures' coordinators write
	// their CPU profiles.
	profiles string

	binary    string
	binaryErr error

	trials    *trialResults
	trialsErr error
	trialsRan bool

	scale    *scaleRun
	scaleErr error
	scaleRan bool
}

// pick returns quick or full by the run's kind.
func (e *env) pick(quick, full int) int {
	if e.quick {
		return quick
	}
	return full
}

// pickD is pick for durations.
func (e *env) pickD(quick, full time.Duration) time.Duration {
	if e.quick {
		return quick
	}
	return full
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// dir returns a new folder under the run's temporary folder.
func (e *env) dir(name string) (string, error) {
	d, err := os.MkdirTemp(e.tmp, name+"-")
	if err != nil {
		return "", fmt.Errorf("temporary folder: %w", err)
	}
	return d, nil
}

// understudy builds the binary once per run (go build -o into the
// temporary folder) and returns its path.
func (e *env) understudy() (string, error) {
	if e.binary != "" || e.binaryErr != nil {
		return e.binary, e.binaryErr
	}
	path := filepath.Join(e.tmp, "understudy")
	e.logf("building understudy (go build -o %s ./cmd/understudy)", path)
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/understudy")
	cmd.Dir = e.root
	if out, err := cmd.CombinedOutput(); err != nil {
		e.binaryErr = fmt.Errorf("go build ./cmd/understudy: %w\n%s", err, out)
		return "", e.binaryErr
	}
	e.binary = path
	return path, nil
}

// fail records err as the result's error.
func fail(r *report.Result, err error) { r.Error = err.Error() }
