// Package report holds the figures `make bench` measures and how they are
// shown: a Result per figure with its statistics, its reference and its goal;
// percentiles; the table printed on the terminal, in bench/results.md and in
// the README between its bench markers.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Status says whether a figure met its goal.
type Status string

// The statuses of a Result.
const (
	Met         Status = "met"
	Missed      Status = "missed"
	NotMeasured Status = "not measured yet"
	Failed      Status = "failed" // the measurement itself did not work (Result.Error)
)

// Stats summarise samples. P1 and Min matter for figures where higher is
// better (rates), P99 and Max where lower is better (latencies).
type Stats struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P1   float64 `json:"p1"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summarize returns the statistics of samples (nil for none).
func Summarize(samples []float64) *Stats {
	if len(samples) == 0 {
		return nil
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return &Stats{
		N: len(s), Min: s[0], Max: s[len(s)-1], Mean: sum / float64(len(s)),
		P1: Percentile(s, 1), P50: Percentile(s, 50), P99: Percentile(s, 99),
	}
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted samples by
// the nearest-rank method: the smallest sample that at least p % of the
// samples do not exceed. It never interpolates, so p99 of fewer than 100
// samples is the maximum. NaN for no samples.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Goal is what a figure is held to: Stat (p50, p99, max) compared with Limit
// by Op ("<=", "<", ">=").
type Goal struct {
	Text  string  `json:"text,omitempty"` // the goal in words, when Stat, Op and Limit cannot say it
	Stat  string  `json:"stat"`
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
}

// Check is a further condition of a figure's goal that its statistic cannot
// say, such as "0 false losts": a figure meets its goal only when every check
// holds too.
type Check struct {
	What  string `json:"what"`  // e.g. "false losts in 10 member-minutes of normal traffic"
	Found string `json:"found"` // what was measured, e.g. "0"
	Want  string `json:"want"`  // e.g. "0"
	Met   bool   `json:"met"`
}

// String is the check in words.
func (c Check) String() string { return fmt.Sprintf("%s: %s (goal %s)", c.What, c.Found, c.Want) }

// Reference is what a figure is compared with, measured in the same run
// (or, for the simulation, the site time simulated).
type Reference struct {
	What  string  `json:"what"`
	Unit  string  `json:"unit"`
	Stats *Stats  `json:"stats,omitempty"`
	Value float64 `json:"value"` // the statistic the ratio is taken of
	Stat  string  `json:"stat"`  // which one it is (p99, p50, …)
}

// Result is one figure of the table.
type Result struct {
	Name    string `json:"name"`    // what -only selects, e.g. "crash"
	Group   string `json:"group"`   // -only selects a whole group too, e.g. "footprint"
	Figure  string `json:"figure"`  // the row's title
	How     string `json:"how"`     // the method in words
	Command string `json:"command"` // one command that reproduces just this figure

	Unit   string `json:"unit"`   // of Stats and Goal.Limit: "ms", "MiB", "events/s", "s"
	Higher bool   `json:"higher"` // higher is better (rates)
	Stats  *Stats `json:"stats,omitempty"`

	Reference *Reference `json:"reference,omitempty"`
	Ratio     float64    `json:"ratio,omitempty"`
	RatioIs   string     `json:"ratio_is,omitempty"` // what the ratio means, e.g. "p99 / reference p99"

	Goal   Goal     `json:"goal"`
	Checks []Check  `json:"checks,omitempty"` // further conditions of the goal
	Status Status   `json:"status"`
	Met    bool     `json:"met"`
	Notes  []string `json:"notes,omitempty"`
	Error  string   `json:"error,omitempty"`

	Wall float64 `json:"wall_s"` // how long measuring it took
}

// Value returns the statistic the goal is about.
func (r *Result) Value() float64 { return stat(r.Stats, r.Goal.Stat) }

func stat(s *Stats, name string) float64 {
	if s == nil {
		return math.NaN()
	}
	switch name {
	case "min":
		return s.Min
	case "p1":
		return s.P1
	case "p50":
		return s.P50
	case "p99":
		return s.P99
	case "max":
		return s.Max
	case "mean":
		return s.Mean
	}
	return math.NaN()
}

// Judge sets Status and Met from the statistics, the goal and the checks, and Ratio from
// the reference when RatioIs is empty (value / reference value). A result
// with an Error is Failed; one without statistics is NotMeasured.
func (r *Result) Judge() {
	switch {
	case r.Error != "":
		r.Status, r.Met = Failed, false
		return
	case r.Stats == nil:
		r.Status, r.Met = NotMeasured, false
		return
	}
	v := r.Value()
	switch r.Goal.Op {
	case "<=":
		r.Met = v <= r.Goal.Limit
	case "<":
		r.Met = v < r.Goal.Limit
	case ">=":
		r.Met = v >= r.Goal.Limit
	case ">":
		r.Met = v > r.Goal.Limit
	}
	for _, c := range r.Checks {
		r.Met = r.Met && c.Met
	}
	r.Status = Missed
	if r.Met {
		r.Status = Met
	}
	if r.Reference != nil && r.RatioIs == "" && r.Reference.Value != 0 {
		r.Ratio = v / r.Reference.Value
		r.RatioIs = r.Goal.Stat + " / reference " + r.Reference.Stat
	}
}

// Machine is where the figures were measured.
type Machine struct {
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	MemoryMiB int     `json:"memory_mib"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
	Load      float64 `json:"load_1m"` // load average at the start: the machine may be shared
	Date      string  `json:"date"`    // RFC 3339, when the run started
}

// Run is one `make bench` (or `go run ./bench`) and everything it found.
type Run struct {
	Machine Machine  `json:"machine"`
	Quick   bool     `json:"quick"`
	Only    []string `json:"only,omitempty"`
	Wall    float64  `json:"wall_s"`
	Results []Result `json:"results"`
}

// WriteJSON writes the run to path (atomically).
func (run *Run) WriteJSON(path string) error {
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return writeAtomic(path, append(b, '\n'))
}

// ReadJSON reads a run written by WriteJSON.
func ReadJSON(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var run Run
	if err := json.Unmarshal(b, &run); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &run, nil
}

// writeAtomic writes data to a temporary file beside path and renames it.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// MachineLine describes the machine in one line.
func (m Machine) MachineLine() string {
	date := m.Date
	if t, err := time.Parse(time.RFC3339, m.Date); err == nil {
		date = t.Format("2006-01-02 15:04 MST")
	}
	return fmt.Sprintf("%s; %s, %d cores, %s memory; Linux %s; %s; load average %.2f at the start",
		date, m.CPU, m.Cores, fmtMiB(m.MemoryMiB), m.Kernel, m.Go, m.Load)
}

func fmtMiB(mib int) string {
	if mib >= 1024 {
		return fmt.Sprintf("%.1f GiB", float64(mib)/1024)
	}
	return fmt.Sprintf("%d MiB", mib)
}

// Missed returns the results that did not meet their goal or failed.
func (run *Run) Missed() []Result {
	var out []Result
	for _, r := range run.Results {
		if r.Status == Missed || r.Status == Failed {
			out = append(out, r)
		}
	}
	return out
}

// joinNotes is a result's notes as one paragraph.
func joinNotes(notes []string) string { return strings.Join(notes, " ") }
