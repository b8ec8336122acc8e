package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A coordinator whose state file was corrupt starts empty and
// forgot who covers whom: the standby kept running the lost member's duties,
// but nobody failed them back. Now the standby's instance reports what it
// covers and the coordinator rebuilds the coverage from that report: kill
// main, backup takes over; stop the coordinator, damage its state file,
// start it again: it says so, and covers main by backup again (no second
// takeover); main comes back: the failback gives it its outputs, and
// backup's release hook runs once.
func TestCoverageIsRebuiltFromTheStandbyAfterTheStateFileWasCorrupt(t *testing.T) {
	ts := newTakeoverSite(t, "rebuild", false)
	mgr, main, backup := ts.startAll()
	ts.coverMain(mgr, main)
	backup.wait(20*time.Second, "msg", "covering main", "member", "main")

	stopDaemon(t, mgr)
	stateFile := filepath.Join(ts.stateDir, "rebuild-manager.db")
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(16, 16))
	for i := 2 * os.Getpagesize(); i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(stateFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	routesBefore := len(ts.routeCommands())

	mgr = ts.run("manager")
	mgr.wait(20*time.Second, "msg", "state file "+stateFile+" was corrupt", "level", "ERROR")
	e := mgr.wait(20*time.Second, "msg", "coverage_rebuilt", "member", "main")
	t.Logf("rebuilt: %v", e["fields"])
	mgr.wait(20*time.Second, "msg", "coverage rebuilt from the standby's report", "member", "main", "standby", "backup", "level", "WARN")

	mgr.mark()
	ts.run("main")
	mgr.wait(30*time.Second, "msg", "failback_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 1, 2: 2})
	backup.wait(20*time.Second, "msg", "no longer covering main")
	ts.expectRouteCommands("after the restart", ts.routeCommands()[routesBefore:], [2]int{1, 1}, [2]int{2, 2})
	ts.expectHooks(map[string]int{"takeover main": 1, "resume main": 1, "release main": 1})
	if mgr.has("msg", "takeover_started") {
		t.Errorf("the restarted coordinator took main over again instead of rebuilding its coverage")
	}
}
