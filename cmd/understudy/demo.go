package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"understudy/discovery/bus"
	"understudy/drivers/videohub/videohubsim"
	"understudy/events"
	"understudy/runtime/engine"
	"understudy/scripts"
	"understudy/sitekey"
)

// The demo site: a main media server feeding two projectors through a
// Videohub, and a backup whose signals are on two other inputs.
var (
	demoInputs  = []string{"Main A", "Main B", "Backup A", "Backup B", "Camera 1", "Camera 2", "Playout", "Test pattern"}
	demoOutputs = []string{"Projector L", "Projector R", "Stage monitor", "Recorder", "Multiview", "Output 6", "Output 7", "Output 8"}
)

const demoSite = `# Written by "understudy demo". Run an instance of this site with:
#   understudy run -c site.yaml --member main
site: demo
coordinator: [backup, main, w]   # elected among these, in order of preference
mdns: false            # everything is on this machine: the brokers' addresses are given
bus:
  users:               # the demo's own account, to watch the site
    - {username: demo, password: %q, subscribe: ["understudy/demo/#"]}
heartbeat:
  interval: 100ms
  lost_after: 300ms
  startup_grace: 5s
policy:
  file: policy.lua
  settings:
    failback_delay: %s
members:
  - id: main
    roles: [manager]
    api: 127.0.0.1:0
    raft: 127.0.0.1:%d
    broker: 127.0.0.1:%d
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    roles: [manager]
    standby: true
    api: 127.0.0.1:0
    raft: 127.0.0.1:%d
    broker: 127.0.0.1:%d
    duties: {switcher: router, inputs: [3, 4]}
  - id: w
    witness: true      # votes in the coordinator's election, nothing else
    api: 127.0.0.1:0
    raft: 127.0.0.1:%d
    broker: 127.0.0.1:%d
drivers:
  router:
    kind: videohub
    address: %s
`

// demoMembers are the demo's processes, in the order they start.
var demoMembers = []string{"backup", "main", "w"}

type demo struct {
	stdout   io.Writer
	exe      string
	dir      string
	failback time.Duration
	sim      *videohubsim.Sim

	mu       sync.Mutex
	procs    map[string]*demoProc
	faultAt  time.Time // when the last fault was injected, for detection latency
	seen     map[string]bool
	ready    chan struct{}
	readyOne sync.Once
	pending  []narrationLine
	// leader is the coordinator's word of itself (newest term); records
	// are the events already narrated (each comes through every broker).
	leader  bus.CoordinatorInfo
	records recentPayloads
}

// recentPayloads remembers the last few hundred payloads taken, to take
// each once when it comes through several brokers.
type recentPayloads struct {
	seen  map[[32]byte]bool
	order [][32]byte
}

// first reports whether payload was not taken before, and remembers it.
func (r *recentPayloads) first(payload []byte) bool {
	k := sha256.Sum256(payload)
	if r.seen == nil {
		r.seen = map[[32]byte]bool{}
	}
	if r.seen[k] {
		return false
	}
	r.seen[k] = true
	r.order = append(r.order, k)
	if len(r.order) > 512 {
		delete(r.seen, r.order[0])
		r.order = r.order[1:]
	}
	return true
}

type demoProc struct {
	id     string
	cmd    *exec.Cmd
	paused bool
	done   chan struct{}
	err    error
}

func cmdDemo(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	failback := fs.Duration("failback-delay", 5*time.Second, "how long the backup waits after the main is restored before failing back")
	dir := fs.String("dir", "", "where to write the demo site (default: a temporary folder, removed at the end)")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "understudy demo: unexpected argument %q: demo takes only flags (understudy demo -h)\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d := &demo{stdout: stdout, failback: *failback, procs: map[string]*demoProc{}, seen: map[string]bool{}, ready: make(chan struct{})}
	if err := d.run(ctx, *dir, stdin); err != nil {
		fmt.Fprintln(stderr, "understudy demo:", err)
		return 1
	}
	return 0
}

func (d *demo) run(ctx context.Context, dir string, stdin io.Reader) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program: %w", err)
	}
	d.exe = exe
	if dir == "" {
		if dir, err = os.MkdirTemp("", "understudy-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	d.dir = dir
	printCtx, stopPrinting := context.WithCancel(context.Background())
	printed := make(chan struct{})
	go d.printLines(printCtx, printed)
	defer func() { stopPrinting(); <-printed }()

	d.sim = videohubsim.New(videohubsim.Options{Inputs: 8, Outputs: 8, InputLabels: demoInputs, OutputLabels: demoOutputs})
	simAddr, err := d.sim.Listen("127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("videohub simulator: %w", err)
	}
	defer d.sim.Close()
	routes, unsubscribe := d.sim.Subscribe(64)
	defer unsubscribe()
	go func() {
		for r := range routes {
			d.sayAt(r.Time, "videohub", "output %d %s now shows input %d %s", r.Output, demoOutputs[r.Output-1], r.Input, demoInputs[r.Input-1])
		}
	}()

	policySrc, err := scripts.FS.ReadFile("manager-backup/policy.lua")
	if err != nil {
		return err
	}
	ports := make([]any, 6) // raft and broker of main, backup, w
	for i := range ports {
		if ports[i], err = demoPort(); err != nil {
			return err
		}
	}
	password := make([]byte, 12)
	rand.Read(password)
	args := append(append([]any{hex.EncodeToString(password), d.failback}, ports...), simAddr)
	site := fmt.Sprintf(demoSite, args...)
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), policySrc, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(site), 0o644); err != nil {
		return err
	}
	// A site key, as a commissioned site has: the instances sign what they
	// send each other (see the README's Security), and the candidates
	// authenticate each other in the election.
	key, err := sitekey.NewKey("k1")
	if err != nil {
		return err
	}
	ring, err := sitekey.NewRing(key)
	if err != nil {
		return err
	}
	if err := ring.Write(filepath.Join(dir, "site.key"), true); err != nil {
		return err
	}
	for _, id := range demoMembers {
		if err := d.start(id); err != nil {
			return err
		}
	}
	defer d.stopAll()

	// The demo watches the site through every candidate's broker, as
	// every instance does: any one of them may go.
	var brokers []string
	for i := 1; i < len(ports); i += 2 {
		brokers = append(brokers, fmt.Sprintf("tcp://127.0.0.1:%d", ports[i]))
	}
	topics := bus.Topics{Site: "demo"}
	for i, url := range brokers {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		obs, err := bus.ObserveWith(octx, bus.ObserveOptions{URL: url, ClientID: fmt.Sprintf("understudy-demo-%d", i), Username: "demo", Password: hex.EncodeToString(password)},
			[]string{topics.Events(), topics.AllStates(), topics.CoordinatorInfo()}, d.observe)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch the site through %s: %w", url, err)
		}
		defer obs.Close()
	}
	d.banner(strings.Join(brokers, " "), simAddr.String())

	if err := d.waitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	d.say("demo", "ready: main is on air (outputs 1-2 show inputs 1-2); press k, p, c, r, s or q, then Enter")

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			d.say("demo", "stopping")
			return nil
		case line, ok := <-lines:
			if !ok {
				lines = nil // stdin closed: keep running until Ctrl-C
				continue
			}
			if quit := d.command(line); quit {
				d.say("demo", "stopping")
				return nil
			}
		}
	}
}

func (d *demo) banner(brokers, simAddr string) {
	main, backup, w := d.proc("main"), d.proc("backup"), d.proc("w")
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.stdout, `
understudy demo — a simulated site on this machine

  brokers   %s
            one embedded in each of main, backup and w; every instance is connected to all three
  videohub  %-24s simulator, 8×8 (outputs 1-2: projectors)
  main      pid %-20d feeds outputs 1-2 from inputs 1-2
  backup    pid %-20d standby on inputs 3-4
  w         pid %-20d witness: only votes
            the coordinator (running the manager-backup policy) is elected among backup, main and w
  files     %s  (site.yaml, site.key, policy.lua, main.log, backup.log, w.log)

Fail the main and watch the backup take over:
  k  Enter   kill -9 the main: a crash — its connections drop, the brokers send its Last Will
  p  Enter   pause the main (SIGSTOP): like a pulled cable — heartbeats stop, nothing closes
  c  Enter   kill -9 the coordinator: another candidate is elected and carries on
  r  Enter   bring back what is down (restart it, or continue it); failback follows after %v
  s  Enter   show the switcher's routing and who coordinates
  q  Enter   quit (or Ctrl-C)
or, from another terminal:  `+demoKillHint+`

`, brokers, simAddr, main.cmd.Process.Pid, backup.cmd.Process.Pid, w.cmd.Process.Pid, d.dir, d.failback, main.cmd.Process.Pid)
}

// observe takes a message from one of the brokers: each event once, the
// members' states, and the coordinator's word of itself.
func (d *demo) observe(m bus.Message) {
	topics := bus.Topics{Site: "demo"}
	if m.Topic == topics.CoordinatorInfo() {
		var ci bus.CoordinatorInfo
		if json.Unmarshal(m.Payload, &ci) == nil && ci.Member != "" {
			d.mu.Lock()
			if ci.Term > d.leader.Term || d.leader.Member == "" {
				d.leader = ci
			}
			d.mu.Unlock()
		}
		return
	}
	if id, leaf, ok := topics.MemberOf(m.Topic); ok && leaf == "state" {
		d.memberState(id, m.Payload) // retained, republished on every connect: the source of truth
		return
	}
	d.mu.Lock()
	first := d.records.first(m.Payload)
	d.mu.Unlock()
	var r engine.Record
	if first && json.Unmarshal(m.Payload, &r) == nil {
		d.narrate(r)
	}
}

// leaderName is the member that coordinates, as far as the demo knows.
func (d *demo) leaderName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return cmp.Or(d.leader.Member, "coordinator")
}

// running reports whether p's process runs (paused or not).
func (p *demoProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// demoPort is a TCP port free on 127.0.0.1 now.
func demoPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (d *demo) proc(id string) *demoProc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.procs[id]
}

// start runs `understudy run` for a member, logging to <dir>/<id>.log.
func (d *demo) start(id string) error {
	logFile, err := os.OpenFile(filepath.Join(d.dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.exe, "run", "-c", filepath.Join(d.dir, "site.yaml"), "--member", id)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = demoProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", id, err)
	}
	p := &demoProc{id: id, cmd: cmd, done: make(chan struct{})}
	d.mu.Lock()
	d.procs[id] = p
	d.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
		d.say(id, "process %d exited (%v)", cmd.Process.Pid, exitText(p.err))
	}()
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "clean exit"
	}
	return err.Error()
}

func (d *demo) command(line string) (quit bool) {
	main := d.proc("main")
	switch line {
	case "":
	case "k":
		if !main.running() {
			d.say("demo", "the main is not running; r starts it")
			return
		}
		d.fault()
		d.say("demo", "kill -9 %d (main)", main.cmd.Process.Pid)
		_ = main.cmd.Process.Kill()
	case "p":
		if !main.running() || main.paused {
			d.say("demo", "the main is not running, or already paused")
			return
		}
		if err := pauseProcess(main.cmd.Process); err != nil {
			d.say("demo", "pause: %v", err)
			return
		}
		d.fault()
		main.paused = true
		d.say("demo", "kill -STOP %d (main): it stays connected but says nothing", main.cmd.Process.Pid)
	case "c":
		leader := d.leaderName()
		p := d.proc(leader)
		if p == nil || !p.running() || p.paused {
			d.say("demo", "no coordinator is running now; r brings back what is down")
			return
		}
		d.fault()
		d.say("demo", "kill -9 %d (%s, the coordinator)", p.cmd.Process.Pid, leader)
		_ = p.cmd.Process.Kill()
	case "r":
		restored := false
		for _, id := range demoMembers {
			p := d.proc(id)
			switch {
			case p.running() && p.paused:
				p.paused = false
				d.say("demo", "kill -CONT %d (%s)", p.cmd.Process.Pid, id)
				_ = resumeProcess(p.cmd.Process)
				restored = true
			case !p.running():
				if err := d.start(id); err != nil {
					d.say("demo", "restart failed: %v", err)
					return
				}
				d.say("demo", "%s restarted as pid %d", id, d.proc(id).cmd.Process.Pid)
				restored = true
			}
		}
		if !restored {
			d.say("demo", "everything is running")
		}
	case "s":
		routing := d.sim.Routing()
		for out := 1; out <= 4; out++ {
			in := routing[out-1]
			d.say("videohub", "output %d %-13s ← input %d %s", out, demoOutputs[out-1], in, demoInputs[in-1])
		}
		d.mu.Lock()
		l := d.leader
		d.mu.Unlock()
		d.say("demo", "%s coordinates (term %d)", cmp.Or(l.Member, "nobody"), l.Term)
	case "q", "quit", "exit":
		return true
	default:
		d.say("demo", "unknown key %q: k kill, p pause, c kill the coordinator, r restore, s show routing, q quit", line)
	}
	return false
}

func (d *demo) fault() {
	d.mu.Lock()
	d.faultAt = time.Now()
	d.mu.Unlock()
}

// narrate prints a coordinator record as a line a person can follow.
func (d *demo) narrate(r engine.Record) {
	f := r.Fields
	str := func(k string) string { s, _ := f[k].(string); return s }
	say := func(who, format string, args ...any) { d.sayAt(r.At, who, format, args...) }
	switch r.Type {
	case events.MemberSuspect:
		say(r.Member, "suspect: %s", str("reason"))
	case events.MemberAlive:
		say(r.Member, "heard again (it was only suspect: nothing happens)")
	case events.MemberLost:
		d.mu.Lock()
		since := time.Since(d.faultAt)
		d.mu.Unlock()
		detail := ""
		if since < time.Minute {
			detail = fmt.Sprintf(" — detected %v after the fault", since.Round(time.Millisecond))
		}
		say(r.Member, "LOST: %s%s", str("reason"), detail)
	case events.MemberClosed:
		say(r.Member, "closed: %s", str("reason"))
	case events.MemberRestored:
		if r.Member == "main" {
			say(r.Member, "restored — the policy fails back in %v", d.failback)
		} else {
			say(r.Member, "restored")
		}
	case events.DriverConnected:
		say(d.leaderName(), "connected to the videohub at %s", str("address"))
	case events.DriverDisconnected:
		say(d.leaderName(), "lost the videohub: %s", str("error"))
	case events.CoordinatorElected:
		say(r.Member, "elected: coordinates from now on (term %v)", f["term"])
	case events.CoordinatorLost:
		say(r.Member, "no longer coordinates: %s", str("reason"))
	case events.ActionStarted:
		// A switcher route or a hook an instance runs: the record says which.
		cause, _, _ := strings.Cut(str("cause"), " at ")
		say("policy", "%s (on %s)", r.Action(), cause)
	case events.ActionFailed:
		say("policy", "%s FAILED: %s", r.Action(), str("error"))
	case events.PolicyError:
		say("policy", "ERROR: %s", str("error"))
	case events.PolicyLoaded:
		if f["reload"] == true {
			say("policy", "reloaded")
		}
	}
}

// memberState notes a member's state as the coordinator publishes it; the
// first time a member is alive it has joined.
func (d *demo) memberState(id string, payload []byte) {
	var st struct{ State string }
	if json.Unmarshal(payload, &st) != nil || st.State != "alive" {
		return
	}
	d.mu.Lock()
	first := !d.seen[id]
	d.seen[id] = true
	d.mu.Unlock()
	if first {
		d.say(id, "joined the site")
		d.checkReady()
	}
}

func (d *demo) checkReady() {
	d.mu.Lock()
	ok := d.seen["main"] && d.seen["backup"] && d.seen["w"]
	d.mu.Unlock()
	if ok {
		d.readyOne.Do(func() { close(d.ready) })
	}
}

// waitReady waits until every member joined and the backup is connected to
// the switcher (the simulator counts its clients).
func (d *demo) waitReady(ctx context.Context) error {
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	members := d.ready
	for {
		select {
		case <-members:
			members = nil
		case <-tick.C:
			if members == nil && d.sim.ClientCount() > 0 {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("the site did not come up in 30s; see %s/*.log", d.dir)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// narrationDelay is how long lines wait so that lines from different sources
// (the bus, the simulator, the demo itself) print in the order they happened.
const narrationDelay = 60 * time.Millisecond

type narrationLine struct {
	at   time.Time
	text string
}

func (d *demo) say(who, format string, args ...any) { d.sayAt(time.Now(), who, format, args...) }

func (d *demo) sayAt(at time.Time, who, format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = append(d.pending, narrationLine{at: at, text: fmt.Sprintf("%s  %-9s %s", at.Format("15:04:05.000"), who, fmt.Sprintf(format, args...))})
}

// printLines prints pending lines in time order once they are narrationDelay
// old, until ctx ends; then it prints the rest.
func (d *demo) printLines(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	flush := func(all bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		sort.SliceStable(d.pending, func(i, j int) bool { return d.pending[i].at.Before(d.pending[j].at) })
		cut := time.Now().Add(-narrationDelay)
		n := 0
		for n < len(d.pending) && (all || d.pending[n].at.Before(cut)) {
			fmt.Fprintln(d.stdout, d.pending[n].text)
			n++
		}
		d.pending = d.pending[n:]
	}
	for {
		select {
		case <-ctx.Done():
			flush(true)
			return
		case <-tick.C:
			flush(false)
		}
	}
}

// stopAll ends the members gracefully (stopProcess), then forcefully.
func (d *demo) stopAll() {
	d.mu.Lock()
	procs := make([]*demoProc, 0, len(d.procs))
	for _, p := range d.procs {
		procs = append(procs, p)
	}
	d.mu.Unlock()
	for _, p := range procs {
		if p.paused {
			_ = resumeProcess(p.cmd.Process)
		}
		_ = stopProcess(p.cmd.Process)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = killProcessGroup(p.cmd.Process)
			<-p.done
		}
	}
}
