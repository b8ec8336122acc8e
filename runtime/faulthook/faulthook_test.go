package faulthook

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/runtime/clock"
)

// A stepped time reads the stepped wall clock wherever it leaves the
// process, and the unstepped monotonic clock for every duration measured
// in the process: as on a host whose clock was stepped.
func TestStepWallMovesOnlyTheWallReading(t *testing.T) {
	now := time.Now()
	for _, d := range []time.Duration{90 * time.Second, -2 * time.Minute, time.Nanosecond} {
		s := StepWall(now, d)
		if got := s.Sub(now); got != 0 {
			t.Errorf("step %s: Sub with the unstepped time %s, want 0 (monotonic)", d, got)
		}
		if !s.Equal(now) || s.Before(now) || s.After(now) {
			t.Errorf("step %s: compares unequal with the unstepped time in the process", d)
		}
		if got := s.Round(0).Sub(now.Round(0)); got != d {
			t.Errorf("step %s: wall readings %s apart", d, got)
		}
		if got := s.UnixNano() - now.UnixNano(); got != int64(d) {
			t.Errorf("step %s: UnixNano %d apart", d, got)
		}
		data, _ := json.Marshal(s)
		var back time.Time
		json.Unmarshal(data, &back)
		if got := back.Sub(now.Round(0)); got != d {
			t.Errorf("step %s: persisted and read back, %s from the real time", d, got)
		}
		later := StepWall(now.Add(time.Second), d)
		if got := later.Sub(s); got != time.Second {
			t.Errorf("step %s: a second later reads %s later", d, got)
		}
	}
	// A time without a monotonic reading moves as Add moves it.
	wall := now.Round(0)
	if got := StepWall(wall, time.Minute).Sub(wall); got != time.Minute {
		t.Errorf("a wall-only time stepped by 1m is %s later", got)
	}
}

// Steps through the hook's clock move its wall reading, and durations
// across a step (the member table's silences) do not see it.
func TestClockStepAcrossAStep(t *testing.T) {
	h, err := Listen(filepath.Join(shortDir(t), "h.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c := h.Clock(clock.Real{})
	before := c.Now()
	if err := h.Do("clock-step -2m"); err != nil {
		t.Fatal(err)
	}
	after := c.Now()
	if d := after.Sub(before); d < 0 || d > time.Second {
		t.Errorf("a duration across a step of -2m reads %s", d)
	}
	if d := after.Round(0).Sub(before.Round(0)); d > -119*time.Second || d < -2*time.Minute {
		t.Errorf("the wall reading moved by %s, want about -2m", d)
	}
	if err := h.Do("clock-step +30s"); err != nil {
		t.Fatal(err)
	}
	if h.Step() != -90*time.Second {
		t.Errorf("steps add up to %s, want -1m30s", h.Step())
	}
}

// The hooks off (nil) cost nothing and change nothing.
func TestNilHooksAreOff(t *testing.T) {
	t.Setenv(EnvVar, "")
	h, err := FromEnv(nil)
	if err != nil || h != nil {
		t.Fatalf("FromEnv without %s: %v, %v", EnvVar, h, err)
	}
	if _, ok := h.Clock(clock.Real{}).(clock.Real); !ok {
		t.Error("the clock with the hooks off is not the real clock")
	}
	if h.StoreCommit() != nil {
		t.Error("a commit hook with the hooks off")
	}
	base := slog.DiscardHandler
	if h.LogHandler(base) != base {
		t.Error("the log handler is wrapped with the hooks off")
	}
	h.Stall(time.Hour)
	if h.StepClock(time.Hour) != nil || h.Step() != 0 || h.Close() != nil {
		t.Error("a nil Hooks does something")
	}
}

// Commands over the socket: each answered, logged at warn, a stall holding
// commits until it ends (or is ended), a step kept for the next instance on
// the host.
func TestSocketCommands(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "h.sock")
	var logs bytes.Buffer
	t.Setenv(EnvVar, path)
	h, err := FromEnv(slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	send := func(line string) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		reply, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(reply)
	}
	if r := send("clock-step 45s"); r != Reply {
		t.Errorf("clock-step: %q", r)
	}
	for _, bad := range []string{"clock-step", "clock-step soon", "reboot 1s", "store-stall -1s"} {
		if r := send(bad); !strings.HasPrefix(r, "error: ") {
			t.Errorf("%q answered %q", bad, r)
		}
	}
	if r := send("store-stall 1h"); r != Reply {
		t.Errorf("store-stall: %q", r)
	}
	committed := make(chan struct{})
	go func() { h.StoreCommit()(); close(committed) }()
	select {
	case <-committed:
		t.Fatal("a commit went through a stall")
	case <-time.After(50 * time.Millisecond): // a commit that waits: nothing to wait for
	}
	if r := send("store-stall 0"); r != Reply {
		t.Errorf("store-stall 0: %q", r)
	}
	select {
	case <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("the commit still waits after the stall was ended")
	}
	if r := send("store-stall 30ms"); r != Reply {
		t.Errorf("store-stall: %q", r)
	}
	start := time.Now()
	h.StoreCommit()()
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("a commit during a stall of 30ms took %s", took)
	}
	if strings.Count(logs.String(), `"level":"WARN"`) < 8 || !strings.Contains(logs.String(), "fault hook: clock stepped") {
		t.Errorf("commands not logged at warn:\n%s", logs.String())
	}
	// The hook's own line of the step shows the stepped clock.
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct {
			Time time.Time
			Msg  string
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "fault hook: clock stepped" {
			if d := time.Until(l.Time); d < 40*time.Second || d > 46*time.Second {
				t.Errorf("the step's line reads %s from the machine's clock, want 45s", d)
			}
		}
	}
	// A client that keeps its connection does not hold Close up.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.ReadString('\n'); err == nil {
		t.Error("the connection is still open after Close")
	}
	again, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Step() != 45*time.Second {
		t.Errorf("the next instance on the host reads a step of %s, want 45s", again.Step())
	}
}

// The log shows the stepped clock.
func TestLogHandlerStepsTheTime(t *testing.T) {
	h, err := Listen(filepath.Join(shortDir(t), "h.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.StepClock(-time.Minute)
	var buf bytes.Buffer
	log := slog.New(h.LogHandler(slog.NewJSONHandler(&buf, nil))).With("k", "v")
	before := time.Now()
	log.Info("hello")
	var line struct{ Time time.Time }
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if d := before.Round(0).Sub(line.Time); d < 59*time.Second || d > 61*time.Second {
		t.Errorf("logged %s before the real time, want 1m", d)
	}
}

// shortDir is a temporary folder with a path short enough for a Unix
// socket (108 bytes).
func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "fh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
