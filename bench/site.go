//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
	"understudy/fixtures/testhost"
	"understudy/runtime/config"
	"understudy/sitekey"

	"understudy/bench/proc"
	"understudy/discovery/bus"
	"understudy/drivers/videohub/videohubsim"
	"understudy/scripts"
)

// realSiteTemplate is the site of cmd/understudy's end-to-end tests
// (harness_test.go writeSite): main feeds outputs 1-2 from inputs 1-2, the
// backup is the coordinator and standby on inputs 3-4, heartbeat 100 ms,
// lost_after 300 ms, the shipped manager-backup policy. The bus line differs
// between the coordinator (it embeds the broker) and the member (it is given
// the broker's address).
const realSiteTemplate = `site: %s
coordinator: backup
mdns: false
bus: {%s}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
policy:
  file: policy.lua
  settings: {failback_delay: %s}
members:
  - id: main
    roles: [manager]
    api: 127.0.0.1:0
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    roles: [manager]
    standby: true
    api: 127.0.0.1:0
    duties: {switcher: router, inputs: [3, 4]}
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

// realSite is a site of real processes on loopback: a Videohub simulator in
// this process, the coordinator (`understudy run --member backup`, with the
// embedded broker), the member main, and a subscriber to the site's events,
// member states and the reference's Last Wills.
type realSite struct {
	e                     *env
	name                  string
	dir                   string
	binary                string
	coordSite, memberSite string
	port                  int
	url                   string

	sw           *videohubsim.Sim
	routes       <-chan videohubsim.RouteRecord
	cancelRoutes func()

	coord, member *proc.Process
	obs           *bus.Observer
	*siteWatch
}

// newRealSite writes the site's files and starts the switcher; nothing else
// runs yet.
func newRealSite(e *env, name, failback string) (*realSite, error) {
	return newRealSiteKeyed(e, name, failback, true)
}

// newRealSiteKeyed is newRealSite with or without a site key (the
// authentication cost's reference runs without: messages unsigned, the
// broker open).
func newRealSiteKeyed(e *env, name, failback string, keyed bool) (*realSite, error) {
	bin, err := e.understudy()
	if err != nil {
		return nil, err
	}
	dir, err := e.dir("site-" + name)
	if err != nil {
		return nil, err
	}
	policy, err := scripts.FS.ReadFile("manager-backup/policy.lua")
	if err != nil {
		return nil, fmt.Errorf("the shipped policy: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), policy, 0o644); err != nil {
		return nil, fmt.Errorf("write the policy: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &realSite{e: e, name: name, dir: dir, binary: bin, port: port, url: fmt.Sprintf("tcp://127.0.0.1:%d", port),
		siteWatch: newSiteWatch()}
	s.sw = videohubsim.New(videohubsim.Options{Inputs: 8, Outputs: 8})
	addr, err := s.sw.Listen("127.0.0.1:0")
	if err != nil {
		s.sw.Close()
		return nil, fmt.Errorf("videohub simulator: %w", err)
	}
	s.routes, s.cancelRoutes = s.sw.Subscribe(1024)
	s.coordSite = filepath.Join(dir, "site-backup.yaml")
	s.memberSite = filepath.Join(dir, "site-main.yaml")
	// The site has a key, as a commissioned site does: its messages are
	// signed and its broker closed (the bench's own clients have an account).
	coordBus := fmt.Sprintf("listen: \"127.0.0.1:%d\"", port)
	if keyed {
		if _, err := writeSiteKey(dir); err != nil {
			s.close()
			return nil, err
		}
		coordBus += fmt.Sprintf(", users: [{username: %s, password: %s, publish: [\"#\"], subscribe: [\"#\"]}]", benchUser, benchPassword)
	}
	for path, busLine := range map[string]string{
		s.coordSite:  coordBus,
		s.memberSite: fmt.Sprintf("url: %q", s.url),
	} {
		text := fmt.Sprintf(realSiteTemplate, name, busLine, failback, addr.String())
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			s.close()
			return nil, fmt.Errorf("write the site: %w", err)
		}
	}
	return s, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) { return testhost.FreeLoopbackPort() }

// command is `understudy run` of member id, with its state in the site's
// folder.
func (s *realSite) command(id string) *exec.Cmd {
	site := s.memberSite
	if id == "backup" {
		site = s.coordSite
	}
	return exec.Command(s.binary, "run", "-c", site, "--member", id, "--state", filepath.Join(s.dir, "state-"+id),
		"--log-format", "json", "--log-level", "info")
}

// start brings the site up: the coordinator (and its broker), the
// subscriber, then main; it returns once main is alive at the coordinator
// and on air (outputs 1-2 show inputs 1-2).
func (s *realSite) start() error {
	ctx, cancel := context.WithTimeout(s.e.ctx, 30*time.Second)
	defer cancel()
	var err error
	if s.coord, err = proc.Start(s.command("backup")); err != nil {
		return err
	}
	if err := s.coord.WaitOutput(ctx, "embedded broker started"); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	s.obs, err = bus.Observe(ctx, strings.Replace(s.url, "tcp://", "tcp://"+benchUser+":"+benchPassword+"@", 1), "understudy-bench", s.filters(s.name), s.onMessage)
	if err != nil {
		return fmt.Errorf("subscribe to the site: %w", err)
	}
	if err := s.startMember(); err != nil {
		return err
	}
	return s.steady(ctx)
}

// startMember starts main's instance.
func (s *realSite) startMember() error {
	p, err := proc.Start(s.command("main"))
	if err != nil {
		return err
	}
	s.member = p
	return nil
}

// steady waits until main is alive at the coordinator and on air.
func (s *realSite) steady(ctx context.Context) error {
	if err := s.waitState(ctx, "main", "alive"); err != nil {
		return err
	}
	return s.waitRouting(ctx, map[int]int{1: 1, 2: 2})
}

// waitRouting waits until the switcher shows the routing given (output →
// input, from 1).
func (s *realSite) waitRouting(ctx context.Context, want map[int]int) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		routing := s.sw.Routing()
		ok := true
		for out, in := range want {
			if out > len(routing) || routing[out-1] != in {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("switcher routing %v, want %v: %w", routing[:min(4, len(routing))], want, ctx.Err())
		}
	}
}

// waitRoutes waits until the switcher has applied every route of want
// (output → input) and returns when it applied the first and the last.
func (s *realSite) waitRoutes(ctx context.Context, want map[int]int) (first, last time.Time, err error) {
	left := map[int]int{}
	for o, i := range want {
		left[o] = i
	}
	for len(left) > 0 {
		select {
		case r, ok := <-s.routes:
			if !ok {
				return first, last, fmt.Errorf("the switcher's route records ended")
			}
			if in, ok := left[r.Output]; ok && in == r.Input {
				delete(left, r.Output)
				if first.IsZero() {
					first = r.Time
				}
				last = r.Time
			}
		case <-ctx.Done():
			return first, last, fmt.Errorf("routes %v not applied (routing now %v): %w", left, s.sw.Routing()[:4], ctx.Err())
		}
	}
	return first, last, nil
}

// drain forgets the routes, records and wills received so far.
func (s *realSite) drain() {
	s.siteWatch.drain()
	for {
		select {
		case <-s.routes:
		default:
			return
		}
	}
}

// close kills and reaps the processes and stops the switcher.
func (s *realSite) close() {
	if s.obs != nil {
		s.obs.Close()
	}
	for _, p := range []*proc.Process{s.member, s.coord} {
		if p != nil {
			p.Kill()
		}
	}
	if s.cancelRoutes != nil {
		s.cancelRoutes()
	}
	s.sw.Close()
}

// logTail is the end of a process's log, for error messages.
func logTail(p *proc.Process) string {
	if p == nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(p.Output()), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// writeSiteKey makes a site key in dir (site.key, as `understudy keys new`
// does), which turns authentication on for the sites written there.
func writeSiteKey(dir string) (*sitekey.Ring, error) {
	k, err := sitekey.NewKey("k1")
	if err != nil {
		return nil, err
	}
	ring, err := sitekey.NewRing(k)
	if err != nil {
		return nil, err
	}
	if err := ring.Write(filepath.Join(dir, config.DefaultKeyFile), true); err != nil {
		return nil, err
	}
	return ring, nil
}

// The account of the bench's own clients (its observer, the reference
// clients with a plain Last Will) on the real sites' closed brokers.
const (
	benchUser     = "bench"
	benchPassword = "bench-pw"
)
