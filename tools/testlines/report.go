package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// slow is how long a test runs before its line is shown when it passes.
const slow = time.Second

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action      string
	Package     string
	ImportPath  string // build-output and build-fail
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
}

// report follows the events of a run.
type report struct {
	out      io.Writer
	output   map[string][]string // by package and test ("" for the package's own)
	failures int
	failed   map[string]bool // packages with a failed test
	skips    int
	builds   map[string][]string // build output by import path
}

func newReport(out io.Writer) *report {
	return &report{out: out, output: map[string][]string{}, builds: map[string][]string{}, failed: map[string]bool{}}
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Action == "" {
			// Not an event (go vet's or the go command's own words): pass it on.
			fmt.Fprintln(r.out, string(line))
			continue
		}
		r.take(ev)
	}
	return sc.Err()
}

func key(pkg, test string) string { return pkg + "\x00" + test }

func (r *report) take(ev event) {
	switch ev.Action {
	case "build-output":
		r.builds[ev.ImportPath] = append(r.builds[ev.ImportPath], ev.Output)
		return
	case "build-fail":
		r.failures++
		fmt.Fprint(r.out, strings.Join(r.builds[ev.ImportPath], ""))
		return
	case "output":
		k := key(ev.Package, ev.Test)
		r.output[k] = append(r.output[k], ev.Output)
		return
	}
	if ev.Test == "" {
		r.packageDone(ev)
		return
	}
	if ev.Action != "pass" && ev.Action != "fail" && ev.Action != "skip" {
		return
	}
	k := key(ev.Package, ev.Test)
	lines := r.output[k]
	delete(r.output, k)
	took := time.Duration(ev.Elapsed * float64(time.Second))
	sub := strings.Contains(ev.Test, "/")
	switch {
	case ev.Action == "fail":
		r.failures++
		r.failed[ev.Package] = true
		fmt.Fprintf(r.out, "--- FAIL %s %s (%.2fs)\n", ev.Package, ev.Test, ev.Elapsed)
		fmt.Fprint(r.out, strings.Join(lines, ""))
	case ev.Action == "skip" && !sub:
		r.skips++
		fmt.Fprintf(r.out, "    skip %s %s: %s\n", ev.Package, ev.Test, skipReason(lines))
	case ev.Action == "pass" && !sub && took >= slow:
		fmt.Fprintf(r.out, "    ok   %s %s (%.1fs)\n", ev.Package, ev.Test, ev.Elapsed)
	}
}

// packageDone prints go test's line for a package (and its own output when
// it failed outside any test: a panic, a timeout, TestMain).
func (r *report) packageDone(ev event) {
	if ev.Action != "pass" && ev.Action != "fail" && ev.Action != "skip" {
		return
	}
	k := key(ev.Package, "")
	lines := r.output[k]
	delete(r.output, k)
	if ev.Action == "fail" && ev.FailedBuild == "" {
		if !r.failed[ev.Package] {
			r.failures++ // not a test: a panic, a timeout, TestMain
		}
		fmt.Fprint(r.out, strings.Join(lines, ""))
		return
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "FAIL") || strings.HasPrefix(l, "?") {
			fmt.Fprint(r.out, l)
		}
	}
}

// skipReason is the last line a skipped test logged, trimmed.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "--- SKIP") && !strings.HasPrefix(l, "=== ") {
			return l
		}
	}
	return "(no reason given)"
}

func (r *report) result() error {
	if r.failures > 0 {
		return fmt.Errorf("%d failed (tests, packages or builds)", r.failures)
	}
	if r.skips > 0 {
		fmt.Fprintf(r.out, "%d tests skipped\n", r.skips)
	}
	return nil
}
