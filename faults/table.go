package faults

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The markers around the README's table of the last full run.
const (
	TableBegin = "<!-- faults:begin -->"
	TableEnd   = "<!-- faults:end -->"
)

// Table renders the reports of a run (one per site) as Markdown: a row per
// site — schedules, faults, where they landed, what was checked, the
// violations (the goal is 0) — then the time to cover per site and kind of
// fault that began the outage.
func Table(reports []*Report) string {
	var b strings.Builder
	b.WriteString("| site | run | schedules | faults | landed in a takeover / failback / copy / config push | losses covered | failbacks | recordings compared | bundles compared | violations (goal 0) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range reports {
		total := 0
		var kinds []string
		for _, k := range OpKinds {
			if n := r.Faults[k]; n > 0 {
				total += n
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
		}
		runs := fmt.Sprint(r.Schedules)
		if r.Failed > 0 {
			runs += fmt.Sprintf(" (+%d that could not run)", r.Failed)
		}
		if r.Duration > 0 {
			runs += fmt.Sprintf(" × %s", r.Duration)
			if r.Quiet > 0 {
				runs += fmt.Sprintf(" + %s quiet", r.Quiet)
			}
		}
		run := "—"
		if !r.Started.IsZero() {
			run = r.Started.Format("2006-01-02")
		}
		if r.Build != "" {
			run += " at " + r.Build
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d: %s | %d / %d / %d / %d | %d | %d | %d | %d | %d |\n",
			r.Site, run, runs, total, strings.Join(kinds, ", "),
			r.Landed[PhaseTakeover], r.Landed[PhaseFailback], r.Landed[PhaseCopy], r.Landed[PhaseConfig],
			r.Covers, r.Failbacks, r.Material, r.ConfigsJudged, len(r.Violations))
	}
	b.WriteString("\n| site | outage begun by | n | time to cover: min | p50 | p90 | max |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range reports {
		for _, k := range OpKinds {
			if d, ok := r.CoverTimes[k]; ok && d.N > 0 {
				fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s |\n", r.Site, k, d.N, secs(d.Min), secs(d.P50), secs(d.P90), secs(d.Max))
			}
		}
	}
	var seen []string
	for _, r := range reports {
		for _, v := range r.Violations {
			line := fmt.Sprintf("- %s, seed %d: %s", r.Site, v.Seed, v.Violation)
			if !slices.Contains(seen, line) {
				seen = append(seen, line)
			}
		}
	}
	if len(seen) > 0 {
		b.WriteString("\nViolations:\n\n" + strings.Join(seen, "\n") + "\n")
	}
	return b.String()
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Millisecond).String()
}
