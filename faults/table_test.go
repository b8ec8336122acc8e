package faults

import (
	"strings"
	"testing"
	"time"
)

func TestTableSumsUpEachSite(t *testing.T) {
	r := NewReport("scripts/manager-backup/site.yaml")
	r.Duration = time.Minute
	h := killedMain()
	h.Ops[0].ID = 1
	h.Ops = append(h.Ops, Op{ID: 2, Kind: OpStop, Member: "backup", Start: at(10.05), End: at(10.5)})
	r.Add(h, Check(h, Bounds{}))
	broken := killedMain()
	broken.Seed = 2
	broken.Journal = broken.Journal[:2] // never covered
	r.Add(broken, Check(broken, Bounds{}))
	r.Failed = 1
	r.Started, r.Build = t0, "c11a42d"
	got := Table([]*Report{r})
	for _, want := range []string{
		"| scripts/manager-backup/site.yaml | 2026-01-02 at c11a42d | 2 (+1 that could not run) × 1m0s | 3: kill 2, stop 1 | 1 / 0 / 0 / 0 | 2 | 0 | 0 | 0 | 1 |",
		"| scripts/manager-backup/site.yaml | kill | 1 | 100ms | 100ms | 100ms | 100ms |",
		"- scripts/manager-backup/site.yaml, seed 2: ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the table lacks %q:\n%s", want, got)
		}
	}
}
