// Command faultstable writes the table of a fault-schedule run (the reports
// `understudy faults --results` wrote, one per site) as Markdown: into a
// results file, and between the faults markers of the README. make faults
// runs it after a whole run.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"understudy/bench/report"
	"understudy/faults"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "faultstable:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("faultstable", flag.ContinueOnError)
	out := fs.String("out", "", "write the table, with the run's date and command, to this Markdown file")
	readme := fs.String("readme", "", "rewrite the table between "+faults.TableBegin+" and "+faults.TableEnd+" in this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: faultstable [-out FILE.md] [-readme README.md] REPORT.json…")
	}
	var reports []*faults.Report
	var started, last time.Time
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read report: %w", err)
		}
		var r faults.Report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("report %s: %w", path, err)
		}
		if started.IsZero() || r.Started.Before(started) {
			started = r.Started
		}
		if r.Started.After(last) {
			last = r.Started
		}
		reports = append(reports, &r)
	}
	table := faults.Table(reports)
	fmt.Fprint(stdout, table)
	when := started.Format("2006-01-02")
	if l := last.Format("2006-01-02"); l != when {
		when += " to " + l // sites run one at a time (make faults FAULTS_SITES=…)
	}
	block := fmt.Sprintf("Run of %s (`make faults`; each site's report in `faults/results/`, the commit it ran on in the table):\n\n%s", when, table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte("# Fault schedules: the last full run\n\n"+block), 0o644); err != nil {
			return fmt.Errorf("results: %w", err)
		}
	}
	if *readme != "" {
		b, err := os.ReadFile(*readme)
		if err != nil {
			return fmt.Errorf("read README: %w", err)
		}
		doc, err := report.ReplaceBetweenMarkers(string(b), faults.TableBegin, faults.TableEnd, block)
		if err != nil {
			return fmt.Errorf("%s: %w", *readme, err)
		}
		if err := os.WriteFile(*readme, []byte(doc), 0o644); err != nil {
			return fmt.Errorf("write README: %w", err)
		}
	}
	return nil
}
