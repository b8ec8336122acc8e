//go:build linux

// Command bench measures understudy's figures — crash detection, end-to-end
// failover, Lua dispatch, simulation speed, footprint — each beside a
// reference measured in the same run, prints the table, and writes the
// results (bench/results.json, bench/results.md and the README's table
// between its bench markers). `make bench` runs it.
//
//	go run ./bench [-only NAME,...] [-quick] [-out bench/results.json] [-readme README.md]
//
// Every loop is bounded in count and time, only loopback is used, and every
// process it starts is killed and waited for. A full run takes a few
// minutes; -quick runs fewer trials (under a minute) and, like -only, writes
// no files unless -out or -readme is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"understudy/bench/report"
)

// Hard bounds of a whole run; the figures bound themselves well within them.
const (
	fullBound  = 12 * time.Minute
	quickBound = 2 * time.Minute
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "measure only these figures or groups, comma-separated (see -list)")
	quick := fs.Bool("quick", false, "fewer trials and shorter runs: a check that everything works, not figures to quote")
	out := fs.String("out", "bench/results.json", "results file; the Markdown beside it (.md) is written too")
	readme := fs.String("readme", "README.md", "README whose table between "+report.BeginMarker+" and "+report.EndMarker+" is rewritten")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of this process to `file` (what the in-process figures spend: dispatch, simulation; go tool pprof reads it)")
	profiles := fs.String("profiles", "", "write CPU profiles of the coordinators the scale figures start into `folder` (one per step, for go tool pprof)")
	list := fs.Bool("list", false, "list the figures and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	figs := figures()
	if *list {
		for _, f := range figs {
			state := ""
			if f.measure == nil {
				state = " (not measured yet)"
			}
			fmt.Fprintf(stdout, "%-18s group %-14s %s%s\n", f.name, f.group, f.title, state)
		}
		return nil
	}
	selected, err := selectFigures(figs, *only)
	if err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	// A whole run writes the results; a partial or quick one only when asked.
	writeOut := set["out"] || (*only == "" && !*quick)
	writeReadme := set["readme"] || (*only == "" && !*quick)

	bound := fullBound
	if *quick {
		bound = quickBound
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()

	tmp, err := os.MkdirTemp("", "understudy-bench-")
	if err != nil {
		return fmt.Errorf("temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	e := &env{ctx: ctx, quick: *quick, root: root, tmp: tmp, log: stderr, profiles: *profiles}
	if e.profiles != "" {
		if err := os.MkdirAll(e.profiles, 0o755); err != nil {
			return fmt.Errorf("profiles: %w", err)
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	start := time.Now()
	results := report.Run{Machine: machine(start), Quick: *quick}
	if *only != "" {
		results.Only = strings.Split(*only, ",")
	}
	results.Results = make([]report.Result, len(selected))
	for _, i := range measureOrder(selected) {
		f := selected[i]
		r := f.result()
		if f.measure != nil {
			// Each figure starts from a collected heap: the garbage of the
			// one before (millions of events) is not collected during it.
			runtime.GC()
			e.logf("measuring %s", f.title)
			t0 := time.Now()
			f.measure(e, &r)
			r.Wall = time.Since(t0).Seconds()
			if ctx.Err() != nil && r.Error == "" && r.Stats == nil {
				r.Error = fmt.Sprintf("not measured: %v", context.Cause(ctx))
			}
		}
		r.Judge()
		results.Results[i] = r
	}
	results.Wall = time.Since(start).Seconds()

	fmt.Fprintln(stdout)
	if err := results.WriteText(stdout); err != nil {
		return err
	}
	if !writeOut {
		// A partial run writes no results file: its notes are said here.
		for _, r := range results.Results {
			for _, n := range r.Notes {
				fmt.Fprintf(stdout, "\n%s: %s", r.Name, n)
			}
		}
		fmt.Fprintln(stdout)
	}
	var errs []error
	if writeOut {
		path := filepath.Join(root, *out)
		if filepath.IsAbs(*out) {
			path = *out
		}
		md := strings.TrimSuffix(path, filepath.Ext(path)) + ".md"
		if err := results.WriteJSON(path); err != nil {
			errs = append(errs, err)
		}
		if err := results.WriteMarkdown(md); err != nil {
			errs = append(errs, err)
		}
		fmt.Fprintf(stdout, "\nwrote %s and %s\n", rel(root, path), rel(root, md))
		if writeReadme {
			readmePath := filepath.Join(root, *readme)
			if filepath.IsAbs(*readme) {
				readmePath = *readme
			}
			link, err := filepath.Rel(filepath.Dir(readmePath), md)
			if err != nil {
				link = md
			}
			if err := results.UpdateReadme(readmePath, filepath.ToSlash(link)); err != nil {
				errs = append(errs, err)
			} else {
				fmt.Fprintf(stdout, "updated the table in %s\n", rel(root, readmePath))
			}
		}
	} else {
		fmt.Fprintln(stdout, "\n(a quick or partial run: no results written; pass -out and -readme to write them)")
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		errs = append(errs, fmt.Errorf("interrupted: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// measureOrder is the order to measure figs in: the table's, except that
// the figures marked last come after all the others.
func measureOrder(figs []figure) []int {
	var order, later []int
	for i, f := range figs {
		if f.last {
			later = append(later, i)
		} else {
			order = append(order, i)
		}
	}
	return append(order, later...)
}

// rel is path relative to root when it lies inside it.
func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// moduleRoot is the folder of the understudy module's go.mod, at or above
// the working folder.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working folder: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module understudy") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it inside the understudy module (no go.mod of module understudy above the working folder)")
		}
		dir = parent
	}
}

// selectFigures returns the figures named (by name or group) in only, in the
// table's order; all of them when only is empty.
func selectFigures(figs []figure, only string) ([]figure, error) {
	if only == "" {
		return figs, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var out []figure
	for _, f := range figs {
		if want[f.name] || want[f.group] {
			out = append(out, f)
		}
	}
	for n := range want {
		if !slices.ContainsFunc(figs, func(f figure) bool { return f.name == n || f.group == n }) {
			return nil, fmt.Errorf("-only: no figure or group %q (go run ./bench -list)", n)
		}
	}
	return out, nil
}
