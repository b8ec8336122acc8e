package report

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []float64
	for i := 1; i <= 100; i++ {
		s = append(s, float64(i))
	}
	for _, c := range []struct{ p, want float64 }{{1, 1}, {50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("p%v of 1..100 = %v, want %v", c.p, got, c.want)
		}
	}
	// Fewer than 100 samples: p99 is the maximum, p50 the lower middle.
	if got := Percentile([]float64{1, 2, 3, 4}, 99); got != 4 {
		t.Errorf("p99 of 4 samples = %v, want 4", got)
	}
	if got := Percentile([]float64{1, 2, 3, 4}, 50); got != 2 {
		t.Errorf("p50 of 1..4 = %v, want 2", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("p50 of nothing is not NaN")
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	in := []float64{5, 1, 3}
	s := Summarize(in)
	if s.N != 3 || s.Min != 1 || s.Max != 5 || s.P50 != 3 || s.Mean != 3 {
		t.Errorf("Summarize = %+v", s)
	}
	if in[0] != 5 {
		t.Error("Summarize sorted its argument")
	}
	if Summarize(nil) != nil {
		t.Error("Summarize(nil) is not nil")
	}
}

func TestJudge(t *testing.T) {
	r := Result{Stats: Summarize([]float64{10, 20, 60}), Goal: Goal{Stat: "p99", Op: "<=", Limit: 50},
		Reference: &Reference{Value: 30, Stat: "p99"}}
	r.Judge()
	if r.Status != Missed || r.Met {
		t.Errorf("p99 60 against ≤ 50: %s", r.Status)
	}
	if r.Ratio != 2 || r.RatioIs != "p99 / reference p99" {
		t.Errorf("ratio %v (%s), want 2", r.Ratio, r.RatioIs)
	}
	r = Result{Stats: Summarize([]float64{300000}), Higher: true, Goal: Goal{Stat: "p50", Op: ">=", Limit: 200000}}
	r.Judge()
	if r.Status != Met {
		t.Errorf("300,000 against ≥ 200,000: %s", r.Status)
	}
	r = Result{Figure: "silent loss", Unit: "ms", Stats: Summarize([]float64{350}), Goal: Goal{Stat: "p99", Op: "<=", Limit: 400},
		Checks: []Check{{What: "false losts", Found: "2", Want: "0", Met: false}}}
	r.Judge()
	if r.Status != Missed {
		t.Errorf("p99 met but a check not: %s", r.Status)
	}
	if got := r.missedSentence(); !strings.Contains(got, "false losts: 2 (goal 0)") {
		t.Errorf("the sentence does not name the check: %q", got)
	}
	r.Checks[0].Met = true
	r.Judge()
	if r.Status != Met {
		t.Errorf("p99 and the check met: %s", r.Status)
	}
	r = Result{Goal: Goal{Text: "later"}}
	r.Judge()
	if r.Status != NotMeasured {
		t.Errorf("no samples: %s", r.Status)
	}
	r = Result{Stats: Summarize([]float64{1}), Error: "broken", Goal: Goal{Stat: "p99", Op: "<=", Limit: 50}}
	r.Judge()
	if r.Status != Failed {
		t.Errorf("with an error: %s", r.Status)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{0.0315, "ms", "31.5 µs"},
		{2.434, "ms", "2.43 ms"},
		{50, "ms", "50 ms"},
		{12.55, "ms", "12.6 ms"},
		{412345, "events/s", "412,000/s"},
		{0.341, "s", "341 ms"},
		{86400, "s", "86,400 s"},
		{23.31, "MiB", "23.3 MiB"},
		{math.NaN(), "ms", "—"},
	} {
		if got := Format(c.v, c.unit); got != c.want {
			t.Errorf("Format(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
	if got := FormatRatio(254000.4); got != "254,000×" {
		t.Errorf("FormatRatio = %q", got)
	}
}

func sampleRun() *Run {
	run := &Run{Machine: Machine{CPU: "Test CPU", Cores: 2, MemoryMiB: 2048, Kernel: "6.1", Go: "go1.26", Date: "2026-01-02T03:04:05Z"}}
	rs := []Result{
		{Name: "crash", Figure: "crash detection", Command: "go run ./bench -only crash", Unit: "ms",
			Stats: Summarize([]float64{2, 3, 4}), Goal: Goal{Stat: "p99", Op: "<=", Limit: 50},
			Reference: &Reference{What: "plain MQTT Last Will", Unit: "ms", Value: 1, Stat: "p99"}},
		{Name: "rate", Figure: "Lua dispatch rate", Command: "go run ./bench -only rate", Unit: "events/s", Higher: true,
			Stats: Summarize([]float64{100000, 150000}), Goal: Goal{Stat: "p50", Op: ">=", Limit: 200000}},
		{Name: "scale", Figure: "scale", Goal: Goal{Text: "2,000 members | later"}},
	}
	for i := range rs {
		rs[i].Judge()
	}
	run.Results = rs
	return run
}

func TestTables(t *testing.T) {
	run := sampleRun()
	md := run.MarkdownTable()
	for _, want := range []string{
		"| crash detection (n=3) | 3 ms | 4 ms | 4 ms | plain MQTT Last Will: p99 1 ms | 4× | p99 ≤ 50 ms | met | `go run ./bench -only crash` |",
		"| Lua dispatch rate (n=2) | 100,000/s | p1 100,000/s | min 100,000/s | — | — | p50 ≥ 200,000/s | **missed** |",
		"| scale | — | — | — | — | — | 2,000 members \\| later | not measured yet | — |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown table lacks\n%s\nin\n%s", want, md)
		}
	}
	var text strings.Builder
	if err := run.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "NOT MET: Lua dispatch rate: p50 is 100,000/s, the goal is p50 ≥ 200,000/s.") {
		t.Errorf("the text does not say plainly what was missed:\n%s", text.String())
	}
	if !strings.Contains(run.Markdown(), "## Goals not met") || !strings.Contains(run.Markdown(), "Test CPU, 2 cores, 2.0 GiB memory") {
		t.Errorf("results.md lacks the missed goals or the machine:\n%s", run.Markdown())
	}
}

func TestReplaceBetween(t *testing.T) {
	doc := "# T\n\n## Performance\n\nintro\n\n" + BeginMarker + "\nold table\n" + EndMarker + "\n\n## Development\n"
	got, err := ReplaceBetween(doc, "new table")
	if err != nil {
		t.Fatal(err)
	}
	want := "# T\n\n## Performance\n\nintro\n\n" + BeginMarker + "\nnew table\n" + EndMarker + "\n\n## Development\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	again, _ := ReplaceBetween(got, "new table")
	if again != got {
		t.Error("rewriting with the same block changed the document")
	}
	if _, err := ReplaceBetween("no markers", "x"); !errors.Is(err, ErrNoMarkers) {
		t.Errorf("without markers: %v", err)
	}
	if _, err := ReplaceBetween(EndMarker+"\n"+BeginMarker, "x"); err == nil {
		t.Error("markers out of order: no error")
	}
	if _, err := ReplaceBetween(BeginMarker+BeginMarker+EndMarker, "x"); err == nil {
		t.Error("two begin markers: no error")
	}
}

func TestUpdateReadmeAndJSON(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	os.WriteFile(readme, []byte("before\n"+BeginMarker+"\n"+EndMarker+"\nafter\n"), 0o644)
	run := sampleRun()
	if err := run.UpdateReadme(readme, "bench/results.md"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(readme)
	if !strings.HasPrefix(string(b), "before\n"+BeginMarker+"\nMeasured by `make bench`") || !strings.HasSuffix(string(b), EndMarker+"\nafter\n") ||
		!strings.Contains(string(b), "[bench/results.md](bench/results.md)") || !strings.Contains(string(b), "- **Not met:** Lua dispatch rate") {
		t.Errorf("README now:\n%s", b)
	}
	path := filepath.Join(dir, "results.json")
	if err := run.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 3 || back.Results[0].Stats.P99 != 4 || back.Results[2].Status != NotMeasured {
		t.Errorf("read back %+v", back.Results)
	}
}
