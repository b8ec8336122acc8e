package faults

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"understudy/events"
	"understudy/runtime/config"
)

// Phases where a fault can land.
const (
	PhaseIdle     = "idle"
	PhaseTakeover = "takeover"
	PhaseFailback = "failback"
	PhaseCopy     = "copy"
	// PhaseConfig is a configuration push: the coordinator sending a
	// member a bundle's newest version (an action with the verb config).
	PhaseConfig = "config"
)

// phaseBegins names the phase rec begins, "" for none.
func phaseBegins(rec Record) string {
	switch {
	case rec.Type == events.TakeoverStarted:
		return PhaseTakeover
	case rec.Type == events.FailbackStarted:
		return PhaseFailback
	case rec.Type == events.CopyStarted:
		return PhaseCopy
	case rec.Type == events.ActionStarted && rec.Str("verb") == config.HookConfig:
		return PhaseConfig
	}
	return ""
}

// Report sums up one or more schedules.
type Report struct {
	Site      string         `json:"site"`
	Schedules int            `json:"schedules"`
	Seeds     []uint64       `json:"seeds"`
	Faults    map[OpKind]int `json:"faults"`       // faults carried out, by kind
	FaultErrs int            `json:"fault_errors"` // faults the runner could not inject
	Landed    map[string]int `json:"landed"`       // faults by the phase they landed in
	Aimed     map[string]int `json:"aimed"`        // aimed faults injected, by the phase aimed at
	AimedHit  map[string]int `json:"aimed_hit"`    // … of which landed in that phase
	Missed    int            `json:"aimed_missed"` // aimed faults whose phase never came where they could land
	Covers    int            `json:"covers"`       // outages that had to be covered
	Failbacks int            `json:"failbacks"`    // returns that had to be failed back
	Queued    int            `json:"queued"`
	Unproven  int            `json:"unproven,omitempty"` // outages the coordinator's journal could not show (its folder full until it died)
	Actions   int            `json:"actions"`            // action executions read at the members
	Losses    int            `json:"losses"`             // member_lost records judged
	Copies    int            `json:"copies"`             // failbacks with a copy whose material was compared
	Material  int            `json:"material_files"`     // recordings compared for them
	// ConfigsJudged counts the configuration bundles whose files were
	// compared at the end; ConfigsUnjudged those not (the site had not
	// settled long enough before the end).
	ConfigsJudged   int `json:"configs_judged,omitempty"`
	ConfigsUnjudged int `json:"configs_unjudged,omitempty"`
	// Terms counts, on an elected site, the leaders' terms read from the
	// candidates' journals; Routes the routes applied at the switchers
	// judged by the connection they came over (overlapping-terms).
	Terms      int                     `json:"terms,omitempty"`
	Routes     int                     `json:"routes,omitempty"`
	Violations []ScheduleViolation     `json:"violations"`
	CoverTimes map[OpKind]Distribution `json:"time_to_cover"` // by the kind of fault that began the outage
	Notes      []string                `json:"notes,omitempty"`
	// Build is the commit the binary was built from (its VCS stamp, with
	// "+modified" when the tree had changes), "" when it has none.
	Build string `json:"build,omitempty"`
	// Failed is how many schedules could not run; Duration each
	// schedule's length and Quiet the time without faults after it (the
	// longest of the run); Started when the run began.
	Failed   int           `json:"failed,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Quiet    time.Duration `json:"quiet,omitempty"`
	Started  time.Time     `json:"started,omitzero"`
	times    map[OpKind][]time.Duration
}

// ScheduleViolation is a violation with its seed.
type ScheduleViolation struct {
	Seed uint64 `json:"seed"`
	Violation
}

// Distribution is a set of durations summed up, in seconds.
type Distribution struct {
	N   int     `json:"n"`
	Min float64 `json:"min_s"`
	P50 float64 `json:"p50_s"`
	P90 float64 `json:"p90_s"`
	Max float64 `json:"max_s"`
}

// NewReport starts an empty report of site.
func NewReport(site string) *Report {
	return &Report{Site: site, Faults: map[OpKind]int{}, Landed: map[string]int{}, Aimed: map[string]int{}, AimedHit: map[string]int{}, CoverTimes: map[OpKind]Distribution{}, times: map[OpKind][]time.Duration{}}
}

// The outcomes of an op (Op.outcome).
const (
	opInjected = iota
	opMissed   // an aimed fault whose phase did not come
	opFailed   // not injected: an error, or its time never came
)

// outcome says whether o was injected.
func (o Op) outcome() int {
	switch {
	case o.Missed:
		return opMissed
	case o.Err != "" || o.Start.IsZero():
		return opFailed
	}
	return opInjected
}

// Injected counts the faults of h injected, the aimed ones missed (their
// phase did not come) and the others not injected.
func (h *History) Injected() (injected, missed, failed int) {
	for _, o := range h.Ops {
		switch o.outcome() {
		case opMissed:
			missed++
		case opFailed:
			failed++
		default:
			injected++
		}
	}
	return injected, missed, failed
}

// Add counts one schedule's outcome.
func (r *Report) Add(h *History, res Result) {
	r.Schedules++
	r.Seeds = append(r.Seeds, h.Seed)
	r.Quiet = max(r.Quiet, h.Quiet)
	for _, o := range h.Ops {
		switch o.outcome() {
		case opMissed:
			r.Missed++
			continue
		case opFailed:
			r.FaultErrs++
			continue
		}
		r.Faults[o.Kind]++
		p := Phase(h, o.Start)
		r.Landed[p]++
		if o.Aim != "" {
			r.Aimed[o.Aim]++
			if p == o.Aim {
				r.AimedHit[o.Aim]++
			}
		}
	}
	for _, c := range res.Covers {
		r.Covers++
		if c.OK && !c.Already {
			r.times[c.Kind] = append(r.times[c.Kind], c.Took)
		}
	}
	r.Failbacks += res.Failbacks
	r.Queued += res.Queued
	r.Unproven += res.Unproven
	r.Actions += res.Actions
	r.Losses += res.Losses
	r.Terms += res.Terms
	r.Routes += res.Routes
	r.Copies += res.Copies
	r.Material += res.MaterialFiles
	r.ConfigsJudged += res.ConfigsJudged
	r.ConfigsUnjudged += res.ConfigsUnjudged
	for _, v := range res.Violations {
		r.Violations = append(r.Violations, ScheduleViolation{Seed: h.Seed, Violation: v})
	}
	for k, ts := range r.times {
		r.CoverTimes[k] = distribution(ts)
	}
}

func distribution(ts []time.Duration) Distribution {
	s := slices.Clone(ts)
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))].Seconds() }
	return Distribution{N: len(s), Min: s[0].Seconds(), P50: q(0.5), P90: q(0.9), Max: s[len(s)-1].Seconds()}
}

// Phase says what the site was doing at t, from the journal: a copy, a
// failback, a takeover or a configuration push under way, else idle.
func Phase(h *History, t time.Time) string {
	open := map[string]map[string]bool{PhaseTakeover: {}, PhaseFailback: {}, PhaseCopy: {}, PhaseConfig: {}}
	for _, rec := range h.Journal {
		if rec.At.After(t) {
			break
		}
		if p := phaseBegins(rec); p == PhaseConfig {
			open[p][rec.Str("id")] = true // an action, by its id
		} else if p != "" {
			open[p][rec.Member] = true
		}
		switch rec.Type {
		case events.TakeoverDone, events.TakeoverFailed:
			delete(open[PhaseTakeover], rec.Member)
		case events.FailbackDone, events.FailbackFailed:
			delete(open[PhaseFailback], rec.Member)
		case events.CopyDone, events.CopyFailed:
			delete(open[PhaseCopy], rec.Member)
		case events.ActionDone, events.ActionFailed:
			delete(open[PhaseConfig], rec.Str("id"))
		}
	}
	for _, p := range []string{PhaseCopy, PhaseFailback, PhaseTakeover, PhaseConfig} {
		if len(open[p]) > 0 {
			return p
		}
	}
	return PhaseIdle
}

// SortBySeed puts the seeds and the violations in the order of their
// seeds (schedules run at once are added as they end).
func (r *Report) SortBySeed() {
	slices.Sort(r.Seeds)
	slices.SortStableFunc(r.Violations, func(a, b ScheduleViolation) int { return cmp.Compare(a.Seed, b.Seed) })
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "site %s: %d schedule(s), seeds %s\n", r.Site, r.Schedules, seedList(r.Seeds))
	var kinds []string
	total := 0
	for _, k := range OpKinds {
		if n := r.Faults[k]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			total += n
		}
	}
	fmt.Fprintf(w, "faults: %d", total)
	if len(kinds) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(kinds, ", "))
	}
	if r.FaultErrs > 0 {
		fmt.Fprintf(w, "; %d could not be injected", r.FaultErrs)
	}
	fmt.Fprintln(w)
	var landed []string
	for _, p := range []string{PhaseIdle, PhaseTakeover, PhaseFailback, PhaseCopy, PhaseConfig} {
		landed = append(landed, fmt.Sprintf("%s %d", p, r.Landed[p]))
	}
	fmt.Fprintf(w, "faults landed: %s\n", strings.Join(landed, ", "))
	if len(r.Aimed) > 0 || r.Missed > 0 {
		var aimed []string
		for _, p := range AimPhases {
			if n := r.Aimed[p]; n > 0 {
				aimed = append(aimed, fmt.Sprintf("%d at a %s (%d landed in it)", n, p, r.AimedHit[p]))
			}
		}
		if r.Missed > 0 {
			aimed = append(aimed, fmt.Sprintf("%d missed (the phase never came where it could land)", r.Missed))
		}
		fmt.Fprintf(w, "aimed faults: %s\n", strings.Join(aimed, ", "))
	}
	fmt.Fprintf(w, "checked: %d loss(es) that had to be covered, %d return(s) that had to be failed back, %d member_lost record(s), %d command record(s) read at members; %d outage(s) queued (no free standby), %d not provable (the coordinator's journal lost with its state folder full)\n", r.Covers, r.Failbacks, r.Losses, r.Actions, r.Queued, r.Unproven)
	if r.Copies > 0 {
		fmt.Fprintf(w, "material: %d recording(s) compared after %d failback(s) with a copy\n", r.Material, r.Copies)
	}
	if r.Terms > 0 {
		fmt.Fprintf(w, "leaders: %d term(s) read from the candidates' journals, %d route(s) applied at the switchers judged by the connection they came over\n", r.Terms, r.Routes)
	}
	if r.ConfigsJudged+r.ConfigsUnjudged > 0 {
		fmt.Fprintf(w, "configuration bundles: %d compared on every host at the end, %d not (the site had not settled before the end)\n", r.ConfigsJudged, r.ConfigsUnjudged)
	}
	if len(r.CoverTimes) > 0 {
		fmt.Fprintln(w, "time to cover (fault → takeover_done), seconds:")
		for _, k := range OpKinds {
			if d, ok := r.CoverTimes[k]; ok {
				fmt.Fprintf(w, "  %-18s n=%-3d min %.2f  p50 %.2f  p90 %.2f  max %.2f\n", k, d.N, d.Min, d.P50, d.P90, d.Max)
			}
		}
	}
	fmt.Fprintf(w, "violations: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  seed %d: %s\n", v.Seed, v.Violation)
	}
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func seedList(s []uint64) string {
	if len(s) == 0 {
		return "none"
	}
	c := slices.Clone(s)
	slices.Sort(c)
	if len(c) > 2 && c[len(c)-1]-c[0] == uint64(len(c)-1) {
		return fmt.Sprintf("%d…%d", c[0], c[len(c)-1])
	}
	parts := make([]string, len(c))
	for i, x := range c {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

// Explain prints a violation for people: the seed, the schedule and the
// timeline around it from every source.
func Explain(w io.Writer, h *History, v Violation) {
	fmt.Fprintf(w, "VIOLATION %s (seed %d): %s: %s\n", v.Property, h.Seed, v.Member, v.Message)
	fmt.Fprintf(w, "reproduce: understudy faults -c site.yaml --schedules 1 %s\n", strings.TrimSpace(h.Schedule.Flags()+" "+h.Timing))
	fmt.Fprint(w, h.Schedule.String())
	fmt.Fprintf(w, "timeline %s … %s (schedule started %s):\n", clock(v.From), clock(v.To), clock(h.Start))
	Timeline(w, h, v.From, v.To)
}

// Timeline prints every source's entries between from and to, in time
// order: nemesis ops, journal records, log lines (info and above) and
// switcher routing changes.
func Timeline(w io.Writer, h *History, from, to time.Time) {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	in := func(t time.Time) bool { return !t.Before(from) && !t.After(to) }
	for _, o := range h.Ops {
		if in(o.Start) {
			lines = append(lines, line{o.Start, "nemesis   begin " + o.String()})
		}
		if !o.End.IsZero() && in(o.End) && !o.instant() {
			lines = append(lines, line{o.End, fmt.Sprintf("nemesis   end   #%d %s", o.ID, o.Kind)})
		}
	}
	for _, r := range h.Journal {
		if in(r.At) {
			lines = append(lines, line{r.At, fmt.Sprintf("journal   %s %s %s%s", r.Type, r.Member, compact(r.Fields), steppedNote(r.Stepped))})
		}
	}
	for _, l := range h.Logs {
		if in(l.At) && l.Level != "DEBUG" {
			lines = append(lines, line{l.At, fmt.Sprintf("log %-6s %s: %s %s%s", l.Member, l.Level, l.Msg, compact(l.Fields), steppedNote(l.Stepped))})
		}
	}
	for _, s := range h.Routing {
		if in(s.At) {
			lines = append(lines, line{s.At, fmt.Sprintf("switcher  %s routing %v", s.Driver, s.Routing[:min(len(s.Routing), 8)])})
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	for _, l := range lines {
		fmt.Fprintf(w, "  %s %+8.3fs  %s\n", clock(l.at), l.at.Sub(h.Start).Seconds(), l.text)
	}
}

// steppedNote says that a record's time was put back from its host's
// stepped clock ("" when it was not).
func steppedNote(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return " [its clock read " + signed(d) + "]"
}

// compact renders fields as key=value, short.
func compact(f map[string]any) string {
	var parts []string
	for _, k := range sortedKeys(f) {
		v := fmt.Sprint(f[k])
		if len(v) > 80 {
			v = v[:77] + "…"
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}
