//go:build unix

package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The coordinator's process is stopped (SIGSTOP) for 13 times lost_after and
// continued: as after a VM pause or a long garbage collection, its timers
// all fire at once, late. It must not declare the members it can hear again
// lost (nor run takeover hooks), and a member that really died while it was
// stopped is still found lost.
//
// With a keep-alive longer than the stall the bus connections stay up and
// the dead member is lost one lost_after after the resume. With the default
// keep-alive (2s) the stall is a bus outage as well: the broker, embedded in
// the stopped process, drops the connections it could not read (their Last
// Wills right after the stall prove nothing) and the coordinator's own
// client may reconnect first, after which every member gets startup_grace
// (10s here) to be heard, as after any bus outage: the dead member is lost
// after a lost_after or after the startup grace, whichever path comes first.
func TestAStoppedCoordinatorJudgesNobodyWhenContinued(t *testing.T) {
	for _, c := range []struct {
		keepalive string
		within    time.Duration // the dead member is lost at most this long after the resume
	}{
		{"30s", 300 * time.Millisecond},
		{"2s", 10 * time.Second}, // or 300ms
	} {
		t.Run("keepalive "+c.keepalive, func(t *testing.T) {
			ts := newTakeoverSite(t, "stall", false)
			for _, f := range []string{ts.coordSite, ts.peerSite} {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f, []byte(strings.Replace(string(b), "bus: {", "bus: {keepalive: "+c.keepalive+", ", 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			mgr, _, backup := ts.startAll()
			mgr.mark()
			if err := mgr.p.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			// The backup dies silently while the coordinator is stopped:
			// stopped too, its connection stays open, so only its silence
			// tells.
			if err := backup.p.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { backup.p.Signal(syscall.SIGCONT) })
			stop := time.Now()
			for time.Since(stop) < 4*time.Second { // the stall: 13 × lost_after, 2 × the shorter keep-alive
				time.Sleep(100 * time.Millisecond)
			}
			if err := mgr.p.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			stalled := mgr.wait(10*time.Second, "msg", "loop did not run", "level", "WARN")
			lost := mgr.wait(c.within+10*time.Second, "msg", "member lost", "member", "backup")
			if mgr.has("msg", "member lost", "member", "main") {
				t.Error("main, heard again after the stall, was declared lost")
			}
			if mgr.has("msg", "takeover_started") {
				t.Error("a takeover started after the stall")
			}
			at := func(e logEntry) time.Time {
				tm, err := time.Parse(time.RFC3339Nano, e.str("time"))
				if err != nil {
					t.Fatalf("log time %q: %v", e.str("time"), err)
				}
				return tm
			}
			// With room for a busy machine.
			if d := at(lost).Sub(at(stalled)); d < 250*time.Millisecond || d > c.within+2*time.Second {
				t.Errorf("the backup was found lost %v after the resume, want after one lost_after (300ms) and within %v", d, c.within)
			}
			t.Logf("stall logged as %vns; backup lost %v after the resume (%s)", stalled["stalled"], at(lost).Sub(at(stalled)), lost.str("reason"))
		})
	}
}
