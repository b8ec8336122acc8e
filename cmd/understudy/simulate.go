package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"understudy/drivers/builtin"
	"understudy/events"
	"understudy/runtime/scenario"
)

// cmdSimulate runs one scenario on the virtual clock, prints the decision
// log and the expectations, and exits 1 when one failed.
func cmdSimulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "", "the site file (default: the scenario's site, or site.yaml beside it or in the folder above)")
	quiet := fs.Bool("q", false, "print only the expectations, not the decision log")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: understudy simulate [-c site.yaml] [-q] scenario.yaml")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	res, err := runScenario(fs.Arg(0), *sitePath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if !*quiet {
		fmt.Fprintf(stdout, "%s — %s\n", res.Scenario.File, res.Scenario.Name)
		res.WriteLog(stdout)
		fmt.Fprintln(stdout)
	}
	res.WriteChecks(stdout)
	if res.Failed() {
		return 1
	}
	return 0
}

// cmdTest runs every scenario under a folder (scenario files are *.yaml in
// folders named scenarios, beside the policies) and reports, per policy,
// the events it handles that no scenario produced.
func cmdTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "print each scenario's decision log too")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: understudy test [-v] [DIR]   (default DIR: .)")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	dir := "."
	if fs.NArg() > 0 {
		dir = fs.Arg(0)
	}
	files, err := scenario.Find(dir)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	failed := 0
	handled := map[string][]string{}         // policy → events it handles
	produced := map[string]map[string]bool{} // policy → events some scenario produced
	for _, f := range files {
		res, err := runScenario(f, "")
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", f, err)
			failed++
			continue
		}
		if *verbose {
			res.WriteLog(stdout)
		}
		res.WriteChecks(stdout)
		if res.Failed() {
			failed++
		}
		p := res.Site.PolicyPath()
		handled[p] = res.Handlers
		if produced[p] == nil {
			produced[p] = map[string]bool{}
		}
		for _, r := range res.Records {
			produced[p][r.Type] = true
			if r.Type == events.Command {
				produced[p][events.CommandEvent(fmt.Sprint(r.Fields["verb"]))] = true
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(handled)) {
		var missing []string
		for _, ev := range handled[p] {
			if !produced[p][ev] && ev != events.CatchAll && !strings.HasPrefix(ev, events.CronPrefix) {
				missing = append(missing, ev)
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(stdout, "note %s: no scenario produced %s (handlers not exercised)\n", p, strings.Join(missing, ", "))
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d of %d scenarios FAILED\n", failed, len(files))
		return 1
	}
	fmt.Fprintf(stdout, "all %d scenarios passed\n", len(files))
	return 0
}

func runScenario(path, site string) (*scenario.Result, error) {
	sc, err := scenario.Load(path)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "understudy-simulate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	return scenario.Run(context.Background(), sc, scenario.Options{Site: site, Registry: builtin.Registry(), StateDir: dir})
}

// cmdReplay runs a recorded journal through the site's policy, or a changed
// one, and shows where the decisions differ; exit 1 when they do.
func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "site.yaml", "the site file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: understudy replay [-c site.yaml] JOURNAL [policy.lua]")
		fmt.Fprintln(stderr, "  JOURNAL: the coordinator's event journal, <state_dir>/<site>-<member>.journal")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 2
	}
	dir, err := os.MkdirTemp("", "understudy-replay-")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	opts := scenario.ReplayOptions{Options: scenario.Options{Site: *sitePath, Registry: builtin.Registry(), StateDir: dir}}
	if fs.NArg() == 2 {
		opts.Policy = fs.Arg(1)
	}
	res, err := scenario.ReplayJournal(context.Background(), fs.Arg(0), opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	res.Write(stdout)
	if res.Differs() {
		return 1
	}
	return 0
}
