package instance

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// What keeps an instance off the bus is said in words, and a lost
// connection only after it has stayed lost for disconnectGrace.
func TestBusHealthSaysWhatKeepsTheInstanceOffTheBus(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var h busHealth
	expect := func(at time.Duration, want string) {
		t.Helper()
		msg, _, _ := h.problem(t0.Add(at))
		if want == "" && msg != "" || !strings.Contains(msg, want) {
			t.Fatalf("at +%v: %q, want %q", at, msg, want)
		}
	}
	expect(0, "starting")
	h.finding("looking for _mqtt._tcp of site hall by mDNS (embedded on member backup)", false, t0)
	expect(0, "waiting for the site's broker: looking for _mqtt._tcp of site hall by mDNS (embedded on member backup); not found yet")
	expect(90*time.Second, "; not found for 1m30s")
	h.connecting("tcp://198.18.0.2:1883", t0.Add(90*time.Second))
	h.connectFailed(errors.New("connection refused"))
	expect(92*time.Second, "waiting for the broker: connecting to tcp://198.18.0.2:1883 for 2s: connection refused")
	h.connected(t0.Add(100 * time.Second))
	expect(100*time.Second, "")
	h.disconnected(errors.New("EOF"), t0.Add(200*time.Second))
	expect(204*time.Second, "")
	expect(206*time.Second, "not connected to the broker since 2026-03-01T12:03:20Z (6s): EOF; reconnecting to tcp://198.18.0.2:1883")
	h.connected(t0.Add(210 * time.Second))
	expect(210*time.Second, "")
}

type fakeWrites struct {
	since time.Time
	ok    bool
}

func (f fakeWrites) Path() string               { return "/var/lib/understudy/hall-backup.db" }
func (f fakeWrites) Writing() (time.Time, bool) { return f.since, f.ok }

// A write to the state store that does not finish (a stalled fsync) is
// said, with how long, once it has lasted storeStuckAfter.
func TestStoreProblemSaysAWriteDoesNotFinish(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if msg := storeProblem(fakeWrites{}, t0); msg != "" {
		t.Errorf("no write under way: %q", msg)
	}
	if msg := storeProblem(fakeWrites{t0, true}, t0.Add(storeStuckAfter-time.Millisecond)); msg != "" {
		t.Errorf("a write of less than %s: %q", storeStuckAfter, msg)
	}
	msg := storeProblem(fakeWrites{t0, true}, t0.Add(7*time.Second))
	if !strings.Contains(msg, "a write to the state store /var/lib/understudy/hall-backup.db has not finished for 7s") || !strings.Contains(msg, "fsync stalled") {
		t.Errorf("a write of 7s: %q", msg)
	}
}
