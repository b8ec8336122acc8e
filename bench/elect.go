//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"understudy/bench/proc"
	"understudy/bench/report"
	"understudy/drivers/videohub/videohubsim"
	"understudy/fixtures/testhost"
	"understudy/runtime/instance"
	"understudy/scripts"
)

// electSiteTemplate: two machines and a witness elect the coordinator;
// main has the duties, backup stands by. %s: the bus URL, three raft
// ports, the switcher.
const electSiteTemplate = `site: elect
coordinator: [main, backup, w]
mdns: false
bus: {url: "%s"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
policy:
  file: policy.lua
  settings: {failback_delay: 100ms}
members:
  - id: main
    api: 127.0.0.1:0
    roles: [manager]
    raft: 127.0.0.1:%d
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    api: 127.0.0.1:0
    roles: [manager]
    standby: true
    raft: 127.0.0.1:%d
    duties: {switcher: router, inputs: [3, 4]}
  - id: w
    api: 127.0.0.1:0
    witness: true
    raft: 127.0.0.1:%d
drivers:
  router: {kind: videohub, address: "%s", timeout: 2s}
`

// electSite is the two machines and the witness, on loopback, with Debian
// mosquitto as the broker.
type electSite struct {
	e      *env
	dir    string
	site   string
	binary string
	mq     *mosquitto
	sw     *videohubsim.Sim
	routes <-chan videohubsim.RouteRecord
	cancel func()
	procs  map[string]*proc.Process
}

// The bus of an elect site: Debian's mosquitto beside the candidates, or a
// broker embedded in every candidate (members.X.broker) with every instance
// connected to all of them.
const (
	busMosquitto = "mosquitto"
	busBrokers   = "brokers"
)

func newElectSite(e *env, busKind string) (*electSite, error) {
	bin, err := e.understudy()
	if err != nil {
		return nil, err
	}
	dir, err := e.dir("site-elect-" + busKind)
	if err != nil {
		return nil, err
	}
	s := &electSite{e: e, dir: dir, binary: bin, procs: map[string]*proc.Process{}}
	busURL := ""
	if busKind == busMosquitto {
		mqBin, err := testhost.LookPath("mosquitto")
		if err != nil {
			return nil, fmt.Errorf("mosquitto is not installed (make bench installs it): %w", err)
		}
		if s.mq, err = startMosquitto(e, mqBin); err != nil {
			return nil, err
		}
		busURL = "tcp://" + s.mq.addr
	}
	s.sw = videohubsim.New(videohubsim.Options{Inputs: 8, Outputs: 8})
	addr, err := s.sw.Listen("127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, fmt.Errorf("videohub simulator: %w", err)
	}
	s.routes, s.cancel = s.sw.Subscribe(1024)
	policy, err := scripts.FS.ReadFile("manager-backup/policy.lua")
	if err != nil {
		s.close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), policy, 0o644); err != nil {
		s.close()
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			s.close()
			return nil, err
		}
	}
	s.site = filepath.Join(dir, "site.yaml")
	text := fmt.Sprintf(electSiteTemplate, busURL, ports[0], ports[1], ports[2], addr.String())
	if busKind == busBrokers {
		text = strings.Replace(text, "bus: {url: \"\"}\n", "", 1)
		for _, raft := range ports {
			broker, err := freePort()
			if err != nil {
				s.close()
				return nil, err
			}
			line := fmt.Sprintf("    raft: 127.0.0.1:%d\n", raft)
			text = strings.Replace(text, line, line+fmt.Sprintf("    broker: 127.0.0.1:%d\n", broker), 1)
		}
	}
	if err := os.WriteFile(s.site, []byte(text), 0o644); err != nil {
		s.close()
		return nil, err
	}
	if _, err := writeSiteKey(dir); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *electSite) start(id string) error {
	p, err := proc.Start(exec.Command(s.binary, "run", "-c", s.site, "--member", id, "--state", filepath.Join(s.dir, "state"),
		"--log-format", "json", "--log-level", "info"))
	if err != nil {
		return err
	}
	s.procs[id] = p
	return nil
}

func (s *electSite) close() {
	for _, p := range s.procs {
		p.Kill()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.sw != nil {
		s.sw.Close()
	}
	if s.mq != nil {
		s.mq.p.Kill()
	}
}

// waitCount waits until p has printed substr at least n times.
func waitCount(ctx context.Context, p *proc.Process, substr string, n int) error {
	for strings.Count(p.Output(), substr) < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q (%d times): %w; output ends:\n%s", substr, n, ctx.Err(), proc.Tail(p.Output(), 20))
		case <-p.Exited():
			return fmt.Errorf("exited waiting for %q; output ends:\n%s", substr, proc.Tail(p.Output(), 20))
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// waitRoutes waits until the switcher applied every route of want and
// returns when the last of them was applied.
func (s *electSite) waitRoutes(ctx context.Context, want map[int]int) (time.Time, error) {
	var last time.Time
	for len(want) > 0 {
		select {
		case r := <-s.routes:
			if in, ok := want[r.Output]; ok && in == r.Input {
				delete(want, r.Output)
				last = r.Time
			}
		case <-ctx.Done():
			return last, fmt.Errorf("routes %v not applied: %w", want, ctx.Err())
		}
	}
	return last, nil
}

// transferTo asks the leader (through any instance's API: it passes the
// command on) to hand the lead to id.
func (s *electSite) transferTo(via, id string) error {
	return s.command(via, "leader_transfer", `{"to":"`+id+`"}`)
}

// command gives an operator command through member via's API and checks
// that it was carried out.
func (s *electSite) command(via, verb, body string) error {
	dir := filepath.Join(s.dir, "state")
	api, err := os.ReadFile(instance.AddressPath(dir, "elect", via))
	if err != nil {
		return err
	}
	token, err := os.ReadFile(instance.TokenPath(dir, "elect", via))
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodPost, strings.TrimSpace(string(api))+"/command/"+verb, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(b.String(), `"ok":true`) {
		return fmt.Errorf("%s %s: %s %s", verb, body, resp.Status, strings.TrimSpace(b.String()))
	}
	return nil
}

// startElectSite starts the two machines and the witness and waits until
// main (the first candidate) coordinates.
func startElectSite(e *env, ctx context.Context, busKind string) (*electSite, error) {
	s, err := newElectSite(e, busKind)
	if err != nil {
		return nil, err
	}
	for _, id := range []string{"main", "backup", "w"} {
		if err := s.start(id); err != nil {
			s.close()
			return nil, err
		}
	}
	if err := waitCount(ctx, s.procs["main"], "elected: coordinating", 1); err != nil {
		s.close()
		return nil, fmt.Errorf("main never led: %w", err)
	}
	return s, nil
}

// measureElectFailover kills the elected coordinator's own host (main, with
// duties) and times its duties covered: its outputs routed to the backup.
func measureElectFailover(e *env, r *report.Result) {
	covered, elected, err := electKills(e, busBrokers)
	if err != nil {
		fail(r, err)
		return
	}
	r.Stats = report.Summarize(covered)
	es := report.Summarize(elected)
	r.Notes = append(r.Notes, fmt.Sprintf("%d kills. Election alone (kill → the backup's `elected: coordinating` line read by the bench, an upper bound): p50 %s, p99 %s.",
		len(covered), report.Format(es.P50, "ms"), report.Format(es.P99, "ms")))
	if mq, _, err := electKills(e, busMosquitto); err != nil {
		r.Notes = append(r.Notes, "With Debian's mosquitto as the site's one broker instead: not measured: "+err.Error())
	} else {
		ms := report.Summarize(mq)
		r.Notes = append(r.Notes, fmt.Sprintf("With Debian's mosquitto as the site's one broker instead of a broker in every candidate (the main's host killed, the broker alive): p50 %s, p99 %s over %d kills.",
			report.Format(ms.P50, "ms"), report.Format(ms.P99, "ms"), len(mq)))
	}
	keepalivedReference(e, r)
}

// electKills kills the elected coordinator's own host (main, with duties,
// and its broker when every candidate embeds one) again and again, and
// returns each kill's time to main's outputs routed to the backup and to
// the backup's election.
func electKills(e *env, busKind string) (covered, elected []float64, err error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.pickD(2*time.Minute, 6*time.Minute))
	defer cancel()
	s, err := startElectSite(e, ctx, busKind)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	n := e.pick(5, 30)
	backupElected := 0
	e.logf("elected coordinator (%s): %d kills of the leader's host", busKind, n)
	for i := range n {
		// Steady: main leads, is on air, backup and w alive.
		for _, id := range []string{"main", "backup", "w"} {
			if err := waitCount(ctx, s.procs[id], `"member alive"`, 1); err != nil {
				return nil, nil, err
			}
		}
		time.Sleep(500 * time.Millisecond) // a few heartbeats of steady state
		for len(s.routes) > 0 {
			<-s.routes
		}
		t0 := time.Now()
		if err := s.procs["main"].KillNow(); err != nil {
			return nil, nil, err
		}
		last, err := s.waitRoutes(ctx, map[int]int{1: 3, 2: 4})
		if err != nil {
			return nil, nil, fmt.Errorf("trial %d: %w\nbackup's output ends:\n%s", i+1, err, proc.Tail(s.procs["backup"].Output(), 30))
		}
		covered = append(covered, ms(last.Sub(t0)))
		backupElected++
		if err := waitCount(ctx, s.procs["backup"], "elected: coordinating", backupElected); err != nil {
			return nil, nil, err
		}
		elected = append(elected, ms(time.Since(t0))) // an upper bound: when the line was read
		s.procs["main"].Wait()
		// Back to normal: main restarted, failed back, and the lead handed
		// back to it.
		if err := s.start("main"); err != nil {
			return nil, nil, err
		}
		if _, err := s.waitRoutes(ctx, map[int]int{1: 1, 2: 2}); err != nil {
			return nil, nil, fmt.Errorf("trial %d failback: %w", i+1, err)
		}
		if err := waitCount(ctx, s.procs["main"], `"member alive","instance":"main","member":"backup"`, 1); err != nil {
			return nil, nil, err
		}
		if err := s.transferTo("backup", "main"); err != nil {
			return nil, nil, err
		}
		if err := waitCount(ctx, s.procs["main"], "elected: coordinating", 1); err != nil {
			return nil, nil, fmt.Errorf("trial %d: main did not lead again: %w", i+1, err)
		}
	}
	return covered, elected, nil
}

// keepalivedReference measures the reference of elect-failover.
func keepalivedReference(e *env, r *report.Result) {
	// The reference: keepalived moving a virtual IP, at its fastest (VRRPv3
	// advertisements every 10 ms) and at its default (every second).
	kctx, kcancel := context.WithTimeout(e.ctx, e.pickD(time.Minute, 3*time.Minute))
	defer kcancel()
	fastest, err := keepalivedTrials(kctx, e, "0.01", e.pick(5, 30))
	if err != nil {
		r.Notes = append(r.Notes, "The keepalived reference was not measured: "+err.Error())
		return
	}
	fs := report.Summarize(fastest)
	r.Reference = &report.Reference{What: "keepalived 2.2.7 moving a virtual IP, advert_int 0.01 (its fastest)", Unit: "ms", Stats: fs, Value: fs.P99, Stat: "p99"}
	deflt, err := keepalivedTrials(kctx, e, "1", e.pick(2, 10))
	if err != nil {
		r.Notes = append(r.Notes, "keepalived at its default advertisement interval was not measured: "+err.Error())
		return
	}
	ds := report.Summarize(deflt)
	r.Notes = append(r.Notes, fmt.Sprintf("Reference: keepalived (VRRP between two network-namespace hosts, its processes killed → the other host has the "+
		"address): at its fastest (advert_int 0.01) p50 %s, p99 %s over %d kills; at its default (advert_int 1) p50 %s, p99 %s over %d. "+
		"keepalived moves an address only: no state, no quorum, no fencing (two hosts that cannot hear each other both take it).",
		report.Format(fs.P50, "ms"), report.Format(fs.P99, "ms"), len(fastest), report.Format(ds.P50, "ms"), report.Format(ds.P99, "ms"), len(deflt)))
}

// writeBytes is what a process has caused to be written to storage so far
// (/proc/PID/io write_bytes).
func writeBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, fmt.Errorf("no write_bytes in /proc/%d/io", pid)
}

// measureWitnessFootprint runs the two machines and the witness and reads
// the witness's resident memory, CPU and storage writes while the
// coordinator works: a leader change every 10 s (handed over between main
// and backup), and a command to the coordinator every second (each one a
// replicated write).
func measureWitnessFootprint(e *env, r *report.Result) {
	ctx, cancel := context.WithTimeout(e.ctx, e.pickD(time.Minute, 3*time.Minute))
	defer cancel()
	s, err := startElectSite(e, ctx, busBrokers)
	if err != nil {
		fail(r, err)
		return
	}
	defer s.close()
	window := e.pickD(20*time.Second, time.Minute)
	w := s.procs["w"].Pid()
	cpu0, err := proc.CPUTime(w)
	if err != nil {
		fail(r, err)
		return
	}
	wb0, err := writeBytes(w)
	if err != nil {
		fail(r, err)
		return
	}
	start := time.Now()
	var rss []float64
	leader, other := "main", "backup"
	transfers, commandErrs := 0, 0
	for i := 0; time.Since(start) < window; i++ {
		if ctx.Err() != nil {
			fail(r, ctx.Err())
			return
		}
		// A mode change is a replicated write of the coordinator's state.
		mode := []string{"manual", "auto"}[i%2]
		if err := s.command("w", "mode", `{"mode":"`+mode+`"}`); err != nil {
			commandErrs++
		}
		if i > 0 && i%10 == 0 {
			if err := s.transferTo(leader, other); err == nil {
				leader, other = other, leader
				transfers++
			}
		}
		kb, _, err := proc.RSS(w)
		if err == nil {
			rss = append(rss, float64(kb)/1024)
		}
		time.Sleep(time.Second)
	}
	wall := time.Since(start)
	cpu1, _ := proc.CPUTime(w)
	wb1, _ := writeBytes(w)
	r.Stats = report.Summarize(rss)
	r.Notes = append(r.Notes, fmt.Sprintf("The witness over %v, with a mode change (a replicated write) every second (%d not carried out) and %d leader changes: CPU %.2f %% of a core; storage writes %.1f KiB/min (/proc/PID/io write_bytes: raft's log, fsynced, and the replicated state, written back by the kernel). The witness embeds a broker too (the site's bus has one in every candidate).",
		wall.Round(time.Second), commandErrs, transfers, 100*float64(cpu1-cpu0)/float64(wall), float64(wb1-wb0)/1024/wall.Minutes()))
}
