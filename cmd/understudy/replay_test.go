package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A day at the site, shortened: the coordinator's journal, recorded by real
// daemons, replayed through the same policy gives the same decisions, and
// through a changed one shows where they differ.
func TestReplayOfARecordedJournal(t *testing.T) {
	site, _, sw := localSite(t, "replay")
	backup := runIn(t, nil, site, "backup")
	main := runIn(t, nil, site, "main")
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	runIn(t, nil, site, "main")
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})
	backup.wait(20*time.Second, "msg", "failback_done")
	stopDaemon(t, backup)

	journal := filepath.Join(filepath.Dir(site), ".understudy", "replay-backup.journal")
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the coordinator kept no journal: %v", err)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"replay", "-c", site, journal}, &out, &errs); code != 0 {
		t.Fatalf("replay with the same policy: exit %d\n%s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "no differences") || strings.Contains(out.String(), "0 decisions as recorded") {
		t.Fatalf("replay with the same policy:\n%s", out.String())
	}
	t.Logf("same policy:\n%s", out.String())

	// The changed policy routes the backup's inputs the other way round.
	changed := filepath.Join(t.TempDir(), "changed.lua")
	os.WriteFile(changed, []byte(`local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id ~= "main" then return end
  us.takeover(ev.member, "backup")
  local r = us.driver("router")
  r:route(1, 4)
  r:route(2, 3)
end)
`), 0o644)
	out.Reset()
	errs.Reset()
	if code := run([]string{"replay", "-c", site, journal, changed}, &out, &errs); code != 1 {
		t.Fatalf("replay with a changed policy: exit %d, want 1\n%s%s", code, out.String(), errs.String())
	}
	for _, want := range []string{
		"recorded, but not decided by this policy:",
		"route router output 1 ← input 3",
		"decided by this policy, not recorded:",
		"route router output 1 ← input 4   ← member_lost at " + changed + ":6",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("changed policy:\n%s", out.String())
}

// Runs recorded by the end-to-end tests (their coordinators' journals, with
// the site and policy they ran under; UNDERSTUDY_KEEP_JOURNALS=DIR keeps new
// ones) replay as they did when they were recorded: each replay's report is
// its replay.txt, exit code included. A change to the engine that changes a
// decision shows here. UNDERSTUDY_UPDATE_REPLAYS=1 writes the reports anew.
func TestRecordedRunsReplayAsTheyDid(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "replays", "*"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no recorded runs in testdata/replays: %v", err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			journals, _ := filepath.Glob(filepath.Join(dir, "*.journal"))
			if len(journals) != 1 {
				t.Fatalf("want one journal in %s, have %v", dir, journals)
			}
			var out, errs bytes.Buffer
			code := run([]string{"replay", "-c", filepath.Join(dir, "site.yaml"), journals[0]}, &out, &errs)
			got := fmt.Sprintf("exit %d\n%s%s", code, out.String(), errs.String())
			golden := filepath.Join(dir, "replay.txt")
			if os.Getenv("UNDERSTUDY_UPDATE_REPLAYS") == "1" {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("the replay of %s changed:\n--- was\n%s--- now\n%s", journals[0], want, got)
			}
		})
	}
}
