package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"understudy/drivers/videohub/videohubsim"
	"understudy/fixtures/testhost"
)

// raceEnabled is set when the tests run with -race; the binary under test is
// then built with the race detector too.
var raceEnabled bool

// binary is the understudy binary built for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "understudy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "understudy")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	if os.Getenv("E2E_TAGS") != "" {
		args = append(args, "-tags", os.Getenv("E2E_TAGS"))
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building understudy for the end-to-end tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// siteParams fill siteTemplate.
type siteParams struct {
	Name        string
	Bus         string // the bus: section body
	MDNS        bool
	Router      string // Videohub address
	Failback    string
	MainAPI     string
	BackupAPI   string
	ExtraPolicy string // appended to the shipped policy
}

const siteTemplate = `site: %s
coordinator: backup
mdns: %v
bus: {%s}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
policy:
  file: policy.lua
  settings: {failback_delay: %s}
members:
  - id: main
    roles: [manager]
    api: %s
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    roles: [manager]
    standby: true
    api: %s
    duties: {switcher: router, inputs: [3, 4]}
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

// writeSite writes site.yaml and the shipped manager-backup policy to a
// temporary folder and returns the site.yaml path.
func writeSite(t *testing.T, p siteParams) string {
	t.Helper()
	if p.Failback == "" {
		p.Failback = "1s"
	}
	if p.MainAPI == "" {
		p.MainAPI = "127.0.0.1:0"
	}
	if p.BackupAPI == "" {
		p.BackupAPI = "127.0.0.1:0"
	}
	dir := t.TempDir()
	policy, err := os.ReadFile("../../scripts/manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), append(policy, p.ExtraPolicy...), 0o644); err != nil {
		t.Fatal(err)
	}
	site := fmt.Sprintf(siteTemplate, p.Name, p.MDNS, p.Bus, p.Failback, p.MainAPI, p.BackupAPI, p.Router)
	path := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(path, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemon is a running `understudy run` and a cursor over its JSON log.
type daemon struct {
	t      *testing.T
	id     string
	p      *testhost.Process
	cursor int // waits look at log lines from here on (see mark)
}

// runIn starts `understudy run` for member id, in host h (nil: this host).
func runIn(t *testing.T, h *testhost.Host, site, id string) *daemon {
	t.Helper()
	keepJournals(t, site)
	args := []string{"run", "-c", site, "--member", id, "--log-format", "json", "--log-level", "debug"}
	var p *testhost.Process
	if h == nil {
		p = testhost.StartProcess(t, exec.Command(binary, args...))
	} else {
		// Each test host gets a host name of its own (the namespace's name), as
		// machines have: mDNS publishes it as the SRV target <name>.local.,
		// and hosts sharing one name would contest its address records.
		// unshare execs: the daemon keeps the process's PID.
		uts := append([]string{"--uts", "sh", "-c", `echo "$0" > /proc/sys/kernel/hostname && exec "$@"`, h.Name, binary}, args...)
		p = h.Start(t, h.Command(context.Background(), "unshare", uts...))
	}
	return &daemon{t: t, id: id, p: p}
}

// logEntry is one JSON log line.
type logEntry map[string]any

func (e logEntry) str(k string) string { s, _ := e[k].(string); return s }

// wait returns the first log line after the mark that has every key=value
// given (values match as substrings). It does not move the mark, so several
// waits after one mark may be satisfied in any order.
func (in *daemon) wait(timeout time.Duration, kv ...string) logEntry {
	in.t.Helper()
	e, err := in.waitErr(timeout, kv...)
	if err != nil {
		in.dumpGoroutines()
		in.t.Fatal(err)
	}
	return e
}

// dumpGoroutines makes a daemon that did not log what was awaited print its
// goroutines (SIGQUIT), so the failed test's output shows where it was.
func (in *daemon) dumpGoroutines() {
	if in.p.Signal(syscall.SIGQUIT) != nil {
		return // already gone
	}
	select {
	case <-in.p.Exited():
	case <-time.After(5 * time.Second):
	}
}

func (in *daemon) waitErr(timeout time.Duration, kv ...string) (logEntry, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		lines := strings.Split(in.p.Output(), "\n")
		for i := in.cursor; i < len(lines)-1; i++ {
			var e logEntry
			if json.Unmarshal([]byte(lines[i]), &e) != nil {
				continue
			}
			if matches(e, kv) {
				return e, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no log line with %v within %v; log since the last match:\n%s", in.id, kv, timeout, strings.Join(lines[min(in.cursor, len(lines)):], "\n"))
		}
		select {
		case <-tick.C:
		case <-in.p.Exited():
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s exited", in.id)
			}
		}
	}
}

// has reports whether a line after the mark matches.
func (in *daemon) has(kv ...string) bool {
	lines := strings.Split(in.p.Output(), "\n")
	for i := in.cursor; i < len(lines)-1; i++ {
		var e logEntry
		if json.Unmarshal([]byte(lines[i]), &e) == nil && matches(e, kv) {
			return true
		}
	}
	return false
}

// mark makes later waits look only at lines logged from now on.
func (in *daemon) mark() {
	in.cursor = len(strings.Split(in.p.Output(), "\n")) - 1
}

func matches(e logEntry, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		v, ok := e[kv[i]]
		if !ok || !strings.Contains(fmt.Sprint(v), kv[i+1]) {
			return false
		}
	}
	return true
}

// switcher is a Videohub simulator whose route changes a test waits for.
type switcher struct {
	*videohubsim.Sim
	routes <-chan videohubsim.RouteRecord
}

// startSwitcher serves a Videohub simulator on l (a listener made inside a
// test host, or on loopback).
func startSwitcher(t *testing.T, l net.Listener) *switcher {
	t.Helper()
	sim := videohubsim.New(videohubsim.Options{Inputs: 8, Outputs: 8})
	go sim.Serve(l)
	t.Cleanup(func() { sim.Close() })
	routes, cancel := sim.Subscribe(256)
	t.Cleanup(cancel)
	return &switcher{Sim: sim, routes: routes}
}

// expectRoutes waits until the switcher has applied every route given as
// output, input pairs (in any order), and fails on any other route.
func (s *switcher) expectRoutes(t *testing.T, timeout time.Duration, pairs ...[2]int) {
	t.Helper()
	want := map[[2]int]bool{}
	for _, p := range pairs {
		want[p] = true
	}
	deadline := time.After(timeout)
	for len(want) > 0 {
		select {
		case r := <-s.routes:
			p := [2]int{r.Output, r.Input}
			if !want[p] {
				t.Fatalf("unexpected route output %d ← input %d (waiting for %v)", r.Output, r.Input, want)
			}
			delete(want, p)
		case <-deadline:
			t.Fatalf("routes %v not applied within %v; switcher routing now %v", want, timeout, s.Routing()[:4])
		}
	}
}

// expectNoRoutes fails if the switcher applies a route before any pending
// route changes are drained; call it after the moment a route would have come.
func (s *switcher) expectNoRoutes(t *testing.T) {
	t.Helper()
	select {
	case r := <-s.routes:
		t.Fatalf("unexpected route output %d ← input %d", r.Output, r.Input)
	default:
	}
}

// keepJournals copies, when UNDERSTUDY_KEEP_JOURNALS names a folder, the
// journals a test's coordinator wrote, with the site and policy they were
// written under, to FOLDER/TESTNAME once its daemons have stopped: real runs
// to replay (testdata/replays). Once per site and test.
func keepJournals(t *testing.T, site string) {
	dest := os.Getenv("UNDERSTUDY_KEEP_JOURNALS")
	if dest == "" {
		return
	}
	dir := filepath.Dir(site)
	marker, err := os.OpenFile(filepath.Join(dir, ".journals-kept"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return // kept already (another member of the same site), or no folder
	}
	marker.Close()
	// Registered before the daemon's own cleanup, so it runs after it.
	t.Cleanup(func() {
		journals, _ := filepath.Glob(filepath.Join(dir, ".understudy", "*.journal"))
		if len(journals) == 0 {
			return
		}
		to := filepath.Join(dest, strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
		os.MkdirAll(to, 0o755)
		for _, f := range append(journals, site, filepath.Join(dir, "policy.lua")) {
			if data, err := os.ReadFile(f); err == nil {
				os.WriteFile(filepath.Join(to, filepath.Base(f)), data, 0o644)
			}
		}
	})
}
