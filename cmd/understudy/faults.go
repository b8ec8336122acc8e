package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"understudy/drivers/builtin"
	"understudy/faults"
	"understudy/runtime/config"
)

// cmdFaults runs seeded fault schedules against a site (package faults):
// understudy faults -c site.yaml [--schedules N] [--seed S] [--duration D]
// [--out DIR]. It needs root (network namespaces) and Linux. Exit 1 on any
// violation or when a schedule could not run, 2 on a usage error.
func cmdFaults(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "site.yaml", "the site file")
	schedules := fs.Int("schedules", 10, "how many schedules to run (seeds S, S+1, …)")
	seed := fs.Uint64("seed", 0, "the first schedule's seed (default: one drawn from the clock, printed)")
	duration := fs.Duration("duration", time.Minute, "length of each schedule, once every instance is up")
	quiet := fs.Duration("quiet", 0, "after each schedule every fault is healed and killed instances start again; the site then runs this long without faults before its history is read, so that what came back is failed back (0: long enough for the slowest failback: startup grace + reconnect + failback delay + copy.settle + 12s)")
	maxFaults := fs.Int("max-faults", 8, "at most this many faults per schedule")
	aim := fs.String("aim", "takeover,failback", "add to each schedule a fault aimed at one of these phases (takeover, failback, copy, config: a configuration push), landing within milliseconds of the coordinator's journal showing it begin; \"\" for none")
	deviceFaults := fs.Bool("device-faults", true, "switchers also refuse or drop commands (switcher_refuse, switcher_drop)")
	lanDown := fs.Bool("lan-down", true, "one schedule in two also has the whole LAN down at a random time (lan_down)")
	outage := fs.Bool("outage", true, "each schedule also has one outage of a protected member longer than lost_after (a kill, a stop or its cable pulled) in its first half: a takeover to aim at")
	stateFull := fs.Bool("state-full", true, "each schedule also has one member's state folder full (state_full) for a while: each host's state folder is a small tmpfs of its own, which a file fills to the last byte")
	configEdits := fs.Bool("config-edits", true, "on a site whose members have a configuration bundle (duties.config), each schedule also edits their bundle files one to three times (config_edit)")
	operator := fs.Bool("operator", true, "two schedules in three also have an operator's command through a random member's API: manual mode for a while (then auto), or a reassert (operator)")
	brokerStop := fs.Bool("broker-stop", true, "with --broker mosquitto, one schedule in two also has mosquitto stopped (SIGSTOP) for a while (broker_stop)")
	failoverDelay := fs.Duration("failover-delay", 0, "replace the site's failover delay (failover.delay, where set) for the run (0: the site's), so that a short schedule sees delayed failovers")
	hostFaults := fs.Bool("host-faults", true, "schedules also have one or two faults of a member's host through the instance's fault hook (UNDERSTUDY_FAULT_HOOKS): its clock stepped (clock_step), its state store's commits stalled (store_stall)")
	leaderFaults := fs.Bool("leader-faults", true, "on a site whose coordinator is elected, schedules also have one or two faults aimed at the leader (found when they land) or the election: the leader killed, stopped for longer than its lease, cut off from the other candidates (candidate_cut); the witness killed or stopped; a candidate's clock stepped")
	failbackDelay := fs.Duration("failback-delay", 0, "replace the site's failback delay for the run (0: the site's), so that a short schedule sees failbacks")
	copySettle := fs.Duration("copy-settle", 0, "replace the site's copy.settle for the run (0: the site's)")
	results := fs.String("results", "", "also write the run's report (JSON) to this file, for tools/faultstable (make faults)")
	broker := fs.String("broker", faults.BrokerEmbedded, "the bus's broker: embedded (in the coordinator's process) or mosquitto (Debian's, on a test host of its own, configured by broker-config; schedules then also kill it: broker_kill)")
	parallel := fs.Int("parallel", 1, "run this many schedules at once (each on test hosts of its own; two on a 2-core machine)")
	out := fs.String("out", "", "keep every run here (site copies, logs, journals, history.json, report.json); default: a temporary folder kept only when a schedule fails")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	var phases []string
	var bad []string
	for _, p := range strings.Split(*aim, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(faults.AimPhases, p) {
			bad = append(bad, fmt.Sprintf("--aim: unknown phase %q (%s)", p, strings.Join(faults.AimPhases, ", ")))
		}
		phases = append(phases, p)
	}
	if fs.NArg() != 0 {
		bad = append(bad, fmt.Sprintf("unexpected argument %q (flags only)", fs.Arg(0)))
	}
	if *broker != faults.BrokerEmbedded && *broker != faults.BrokerMosquitto {
		bad = append(bad, fmt.Sprintf("--broker: %q is neither %s nor %s", *broker, faults.BrokerEmbedded, faults.BrokerMosquitto))
	}
	for _, c := range []struct {
		ok   bool
		what string
	}{
		{*schedules >= 1, fmt.Sprintf("--schedules %d: at least 1", *schedules)},
		{*parallel >= 1, fmt.Sprintf("--parallel %d: at least 1", *parallel)},
		{*duration >= 10*time.Second, fmt.Sprintf("--duration %s: at least 10s (startup grace and the faults' phases need it)", *duration)},
		{*maxFaults >= 2, fmt.Sprintf("--max-faults %d: at least 2", *maxFaults)},
		{*quiet >= 0, fmt.Sprintf("--quiet %s: not negative", *quiet)},
		{*failoverDelay >= 0, fmt.Sprintf("--failover-delay %s: not negative", *failoverDelay)},
		{*failbackDelay >= 0, fmt.Sprintf("--failback-delay %s: not negative", *failbackDelay)},
		{*copySettle >= 0, fmt.Sprintf("--copy-settle %s: not negative", *copySettle)},
	} {
		if !c.ok {
			bad = append(bad, c.what)
		}
	}
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintln(stderr, "understudy faults:", b)
		}
		fmt.Fprintln(stderr, "usage: understudy faults -c site.yaml [--schedules N>=1] [--seed S] [--duration D>=10s] [--quiet D] [--max-faults N>=2] [--aim takeover,failback,copy,config] [--device-faults=false] [--lan-down=false] [--outage=false] [--state-full=false] [--config-edits=false] [--operator=false] [--host-faults=false] [--leader-faults=false] [--broker embedded|mosquitto] [--broker-stop=false] [--failover-delay D] [--failback-delay D] [--copy-settle D] [--parallel N>=1] [--results FILE] [--out DIR]")
		return 2
	}
	// The site must load before anything runs: its errors once, not once
	// per schedule.
	if _, err := config.Load(*sitePath); err != nil {
		fmt.Fprintln(stderr, "understudy faults:", err)
		return 1
	}
	if runtime.GOOS != "linux" {
		fmt.Fprintln(stderr, "understudy faults: needs Linux (the hosts are network namespaces)")
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "understudy faults: needs root: it makes network namespaces and runs the site's instances in them (run it with sudo)")
		return 1
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		*seed = uint64(time.Now().UnixNano()) % 1_000_000
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "understudy faults: cannot find this binary to run the instances:", err)
		return 1
	}
	dir, keep := *out, *out != ""
	if dir == "" {
		if dir, err = os.MkdirTemp("", "understudy-faults-"); err != nil {
			fmt.Fprintln(stderr, "understudy faults:", err)
			return 1
		}
	}
	// Ctrl-C, a kill or a closed terminal end the run: the schedules under
	// way stop, their hosts and processes are cleaned up. A closed pipe
	// on the output does not kill the runner before it cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt, syscall.SIGHUP)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)
	opts := faults.Options{
		Binary: self, Site: *sitePath, Dir: dir, Duration: *duration, Quiet: *quiet, MaxOps: *maxFaults,
		Aim: phases, DeviceFaults: *deviceFaults, LANDown: *lanDown, Outage: *outage, StateFaults: *stateFull, ConfigEdits: *configEdits, Operator: *operator, HostFaults: *hostFaults, LeaderFaults: *leaderFaults,
		Broker: *broker, BrokerStop: *brokerStop, FailoverDelay: *failoverDelay, FailbackDelay: *failbackDelay, CopySettle: *copySettle,
		Registry: builtin.Registry(), Progress: stderr,
	}
	fmt.Fprintf(stdout, "understudy faults: %s, %d schedule(s) of %s from seed %d, in %s\n", *sitePath, *schedules, *duration, *seed, dir)
	report := faults.NewReport(*sitePath)
	report.Duration, report.Started, report.Build = *duration, time.Now().UTC().Truncate(time.Second), vcsBuild()
	var (
		mu          sync.Mutex
		failed      int
		interrupted int
		next        = make(chan uint64)
		wg          sync.WaitGroup
	)
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				o, err := faults.RunSchedule(ctx, opts, s)
				mu.Lock()
				switch {
				case err != nil && ctx.Err() != nil:
					fmt.Fprintf(stderr, "seed %d: interrupted; not checked\n", s)
					interrupted++
					if *out == "" {
						os.RemoveAll(filepath.Join(dir, fmt.Sprintf("seed-%d", s)))
					}
				case err != nil:
					fmt.Fprintf(stderr, "seed %d: %v\n", s, err)
					failed++
				default:
					if report.Notes == nil {
						report.Notes = o.Notes
					}
					report.Add(o.History, o.Result)
					injected, missed, notInjected := o.History.Injected()
					var also string
					if missed > 0 {
						also += fmt.Sprintf(", %d aimed fault(s) missed (the phase did not come)", missed)
					}
					if notInjected > 0 {
						also += fmt.Sprintf(", %d not injected", notInjected)
					}
					fmt.Fprintf(stdout, "seed %d: %d fault(s) injected%s, %d violation(s)\n", s, injected, also, len(o.Result.Violations))
					for _, v := range o.Result.Violations {
						faults.Explain(stdout, o.History, v)
					}
					if len(o.Result.Violations) > 0 {
						keep = true
					} else if *out == "" {
						os.RemoveAll(o.Dir)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for i := range *schedules {
		if ctx.Err() != nil {
			break
		}
		next <- *seed + uint64(i)
	}
	close(next)
	wg.Wait()
	report.SortBySeed()
	fmt.Fprintln(stdout)
	for _, n := range report.Notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	report.WriteText(stdout)
	var text strings.Builder
	report.WriteText(&text)
	if f, err := os.Create(filepath.Join(dir, "report.json")); err == nil {
		report.WriteJSON(f)
		f.Close()
		os.WriteFile(filepath.Join(dir, "report.txt"), []byte(text.String()), 0o644)
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stdout, "interrupted: %d schedule(s) under way were stopped, not checked, and their hosts removed\n", interrupted)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d schedule(s) could not run\n", failed)
		keep = true
	}
	report.Failed = failed
	if *results != "" {
		if err := writeReport(*results, report); err != nil {
			fmt.Fprintln(stderr, "understudy faults:", err)
			return 1
		}
	}
	if keep {
		fmt.Fprintf(stdout, "runs kept in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	if failed > 0 || len(report.Violations) > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

// vcsBuild is the commit this binary was built from, as go build stamps
// it ("+modified" when the tree had changes), "" without a stamp.
func vcsBuild() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + modified
}

// writeReport writes the run's report as JSON to path, atomically.
func writeReport(path string, r *faults.Report) error {
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
