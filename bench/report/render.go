package report

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The README's table sits between these markers; make bench rewrites what is
// between them and nothing else.
const (
	BeginMarker = "<!-- bench:begin -->"
	EndMarker   = "<!-- bench:end -->"
)

// GoalText is the goal in words, e.g. "p99 ≤ 50 ms".
func (r *Result) GoalText() string {
	if r.Goal.Text != "" {
		return r.Goal.Text
	}
	op := map[string]string{"<=": "≤", "<": "<", ">=": "≥", ">": ">"}[r.Goal.Op]
	return fmt.Sprintf("%s %s %s", r.Goal.Stat, op, Format(r.Goal.Limit, r.Unit))
}

// Format writes v in unit for people: three significant digits or so,
// milliseconds under one as microseconds, rates with thousands separators.
func Format(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	switch unit {
	case "ms":
		if v < 1 {
			return trim(v*1000) + " µs"
		}
		return trim(v) + " ms"
	case "events/s":
		return thousands(v) + "/s"
	case "s":
		if v < 1 {
			return trim(v*1000) + " ms"
		}
		return trim(v) + " s"
	case "":
		return trim(v)
	}
	return trim(v) + " " + unit
}

// trim rounds to about three significant digits.
func trim(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e6:
		return thousands(v)
	case a >= 1000:
		return thousands(v)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a == 0:
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// thousands rounds v to three significant digits and separates thousands
// with commas: 412345 → "412,000".
func thousands(v float64) string {
	n := int64(math.Round(v))
	if a := math.Abs(v); a >= 1000 {
		mag := math.Pow(10, math.Floor(math.Log10(a))-2)
		n = int64(math.Round(v/mag) * mag)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// FormatRatio writes a ratio: "1.32×", "86,400×".
func FormatRatio(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return trim(v) + "×"
}

// row is a result's cells, without markup.
type row struct {
	figure, p50, p99, max, reference, ratio, goal, status, command string
}

func (r *Result) row() row {
	out := row{figure: r.Figure, p50: "—", p99: "—", max: "—", reference: "—", ratio: "—", goal: r.GoalText(), status: string(r.Status), command: r.Command}
	if s := r.Stats; s != nil {
		out.p50 = Format(s.P50, r.Unit)
		if r.Higher {
			out.p99 = "p1 " + Format(s.P1, r.Unit)
			out.max = "min " + Format(s.Min, r.Unit)
		} else {
			out.p99 = Format(s.P99, r.Unit)
			out.max = Format(s.Max, r.Unit)
		}
		if s.N > 0 {
			out.figure += " (n=" + thousands(float64(s.N)) + ")"
		}
	}
	if ref := r.Reference; ref != nil {
		if ref.Stats != nil || ref.Value != 0 {
			out.reference = fmt.Sprintf("%s: %s %s", ref.What, ref.Stat, Format(ref.Value, ref.Unit))
			if ref.Stat == "" {
				out.reference = fmt.Sprintf("%s: %s", ref.What, Format(ref.Value, ref.Unit))
			}
		} else {
			out.reference = ref.What
		}
	}
	if r.Ratio != 0 {
		out.ratio = FormatRatio(r.Ratio)
	}
	if r.Status == Failed {
		out.status = "failed: " + firstLine(r.Error)
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// WriteText prints the table for a terminal, then says plainly which goals
// were not met.
func (run *Run) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tp50\tp99\tmax\treference (same run)\tratio\tgoal\tstatus")
	for i := range run.Results {
		c := run.Results[i].row()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.figure, c.p50, c.p99, c.max, c.reference, c.ratio, c.goal, c.status)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	fmt.Fprintln(w, "(for rates, higher is better: the p99 and max columns show the slow end, the 1st percentile and the minimum)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "machine:", run.Machine.MachineLine())
	for _, r := range run.Missed() {
		fmt.Fprintf(w, "NOT MET: %s\n", r.missedSentence())
	}
	return nil
}

// missedSentence says in one sentence how a result missed its goal.
func (r *Result) missedSentence() string {
	if r.Status == Failed {
		return fmt.Sprintf("%s could not be measured: %s", r.Figure, firstLine(r.Error))
	}
	var failed []string
	for _, c := range r.Checks {
		if !c.Met {
			failed = append(failed, c.String())
		}
	}
	v := Format(r.Value(), r.Unit)
	if len(failed) > 0 {
		return fmt.Sprintf("%s: %s is %s; %s; the goal is %s.", r.Figure, r.Goal.Stat, v, strings.Join(failed, "; "), r.GoalText())
	}
	return fmt.Sprintf("%s: %s is %s, the goal is %s.", r.Figure, r.Goal.Stat, v, r.GoalText())
}

// MarkdownTable is the table in Markdown.
func (run *Run) MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| figure | p50 | p99 | max | reference (same run) | ratio | goal | status | reproduce |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for i := range run.Results {
		c := run.Results[i].row()
		status := c.status
		if run.Results[i].Status == Missed || run.Results[i].Status == Failed {
			status = "**" + status + "**"
		}
		cmd := "—"
		if c.command != "" {
			cmd = "`" + c.command + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			cell(c.figure), cell(c.p50), cell(c.p99), cell(c.max), cell(c.reference), cell(c.ratio), cell(c.goal), cell(status), cmd)
	}
	return b.String()
}

// cell escapes what would end a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// header is the sentence above the table: where and how it was measured.
func (run *Run) header(link string) string {
	var b strings.Builder
	kind := "`make bench`"
	if run.Quick {
		kind = "`go run ./bench -quick` (fewer trials: indicative only)"
	}
	fmt.Fprintf(&b, "Measured by %s on %s.", kind, run.Machine.MachineLine())
	if link != "" {
		fmt.Fprintf(&b, " How each figure is measured, its samples and notes: [%s](%s).", link, link)
	}
	b.WriteString(" For rates (higher is better) the p99 and max columns show the slow end: the 1st percentile and the minimum.\n")
	return b.String()
}

// missedList is the goals not met, as a Markdown list ("" when all are).
func (run *Run) missedList() string {
	var b strings.Builder
	for _, r := range run.Missed() {
		fmt.Fprintf(&b, "- **Not met:** %s\n", r.missedSentence())
	}
	return b.String()
}

// ReadmeBlock is what goes between the README's markers.
func (run *Run) ReadmeBlock(link string) string {
	s := run.header(link) + "\n" + run.MarkdownTable()
	if m := run.missedList(); m != "" {
		s += "\n" + m
	}
	return s
}

// Markdown is the whole results file: the machine, the table, the goals not
// met, and every figure's method, samples, reference and notes.
func (run *Run) Markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmark results\n\n")
	b.WriteString("Written by `go run ./bench` (`make bench`); do not edit. The README's performance table is made from the same run.\n\n")
	b.WriteString(run.header(""))
	b.WriteString("\n")
	b.WriteString(run.MarkdownTable())
	if m := run.missedList(); m != "" {
		b.WriteString("\n## Goals not met\n\n" + m)
	}
	b.WriteString("\n## Figures\n")
	for i := range run.Results {
		r := &run.Results[i]
		fmt.Fprintf(&b, "\n### %s\n\n", r.Figure)
		fmt.Fprintf(&b, "- **status:** %s (goal: %s)\n", r.Status, r.GoalText())
		if r.How != "" {
			fmt.Fprintf(&b, "- **how:** %s\n", r.How)
		}
		if r.Command != "" {
			fmt.Fprintf(&b, "- **reproduce:** `%s`\n", r.Command)
		}
		if s := r.Stats; s != nil {
			fmt.Fprintf(&b, "- **samples:** %d; min %s, p1 %s, p50 %s, mean %s, p99 %s, max %s\n", s.N,
				Format(s.Min, r.Unit), Format(s.P1, r.Unit), Format(s.P50, r.Unit), Format(s.Mean, r.Unit), Format(s.P99, r.Unit), Format(s.Max, r.Unit))
		}
		if ref := r.Reference; ref != nil {
			fmt.Fprintf(&b, "- **reference:** %s", ref.What)
			if s := ref.Stats; s != nil {
				fmt.Fprintf(&b, " — %d samples; p50 %s, p99 %s, max %s", s.N, Format(s.P50, ref.Unit), Format(s.P99, ref.Unit), Format(s.Max, ref.Unit))
			} else if ref.Value != 0 {
				fmt.Fprintf(&b, " — %s", Format(ref.Value, ref.Unit))
			}
			b.WriteString("\n")
		}
		if r.Ratio != 0 {
			fmt.Fprintf(&b, "- **ratio:** %s (%s)\n", FormatRatio(r.Ratio), r.RatioIs)
		}
		for _, c := range r.Checks {
			state := "met"
			if !c.Met {
				state = "**not met**"
			}
			fmt.Fprintf(&b, "- **check:** %s — %s\n", c.String(), state)
		}
		if r.Error != "" {
			fmt.Fprintf(&b, "- **error:** %s\n", strings.ReplaceAll(r.Error, "\n", " "))
		}
		if len(r.Notes) > 0 {
			fmt.Fprintf(&b, "- **notes:** %s\n", joinNotes(r.Notes))
		}
		if r.Wall >= 0.001 { // a figure read from another's measurement took no time of its own
			fmt.Fprintf(&b, "- **took:** %s\n", Format(r.Wall, "s"))
		}
	}
	return b.String()
}

// WriteMarkdown writes Markdown to path (atomically).
func (run *Run) WriteMarkdown(path string) error { return writeAtomic(path, []byte(run.Markdown())) }

// ErrNoMarkers is returned when a document lacks the bench markers.
var ErrNoMarkers = errors.New("no " + BeginMarker + " … " + EndMarker + " markers")

// ReplaceBetween returns doc with what lies between the begin and end
// markers replaced by block (the markers stay, each on its own line).
func ReplaceBetween(doc, block string) (string, error) {
	return ReplaceBetweenMarkers(doc, BeginMarker, EndMarker, block)
}

// ReplaceBetweenMarkers is ReplaceBetween with other markers (another
// generated table of the same document).
func ReplaceBetweenMarkers(doc, begin, end, block string) (string, error) {
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < 0 {
		if begin == BeginMarker {
			return "", ErrNoMarkers
		}
		return "", fmt.Errorf("no %s … %s markers", begin, end)
	}
	if j < i {
		return "", fmt.Errorf("%s comes before %s", end, begin)
	}
	if strings.Count(doc, begin) > 1 || strings.Count(doc, end) > 1 {
		return "", fmt.Errorf("more than one %s or %s", begin, end)
	}
	if !strings.HasSuffix(block, "\n") {
		block += "\n"
	}
	return doc[:i] + begin + "\n" + block + doc[j:], nil
}

// UpdateReadme rewrites the table between the markers of the README at path.
func (run *Run) UpdateReadme(path, link string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read README: %w", err)
	}
	doc, err := ReplaceBetween(string(b), run.ReadmeBlock(link))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if doc == string(b) {
		return nil
	}
	return writeAtomic(path, []byte(doc))
}
