package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/faults"
)

// The reports of a run become the README's table between its markers
// (and nothing else of the README changes) and the results file.
func TestTheTableGoesBetweenTheMarkers(t *testing.T) {
	dir := t.TempDir()
	r := faults.NewReport("scripts/manager-backup/site.yaml")
	r.Schedules, r.Duration, r.Started = 200, time.Minute, time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	r.Faults[faults.OpKill] = 3
	f, err := os.Create(filepath.Join(dir, "manager-backup.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	readme := filepath.Join(dir, "README.md")
	before, after := "# x\n\nbefore\n", "\nafter\n"
	if err := os.WriteFile(readme, []byte(before+faults.TableBegin+"\nold\n"+faults.TableEnd+after), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "results.md")
	if err := run([]string{"-out", out, "-readme", readme, filepath.Join(dir, "manager-backup.json")}, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(readme)
	doc := string(b)
	row := "| scripts/manager-backup/site.yaml | 2026-12-07 | 200 × 1m0s | 3: kill 3 |"
	if !strings.HasPrefix(doc, before+faults.TableBegin+"\nRun of 2026-12-07") || !strings.HasSuffix(doc, faults.TableEnd+after) ||
		strings.Contains(doc, "old") || !strings.Contains(doc, row) {
		t.Errorf("README:\n%s", doc)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), row) {
		t.Errorf("results file:\n%s", b)
	}
	// A README without the markers is an error, not a silent no-op.
	os.WriteFile(readme, []byte("# x\n"), 0o644)
	if err := run([]string{"-readme", readme, filepath.Join(dir, "manager-backup.json")}, io.Discard); err == nil {
		t.Error("a README without markers took the table")
	}
}
