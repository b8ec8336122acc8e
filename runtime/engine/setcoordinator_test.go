package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/engine"
)

// fakeCoordinator notes what the loop tells it.
type fakeCoordinator struct {
	calls    []string
	startErr error
}

func (f *fakeCoordinator) Attach(*engine.Engine) { f.calls = append(f.calls, "attach") }
func (f *fakeCoordinator) Start(context.Context) error {
	f.calls = append(f.calls, "start")
	return f.startErr
}
func (f *fakeCoordinator) Stop() { f.calls = append(f.calls, "stop") }
func (f *fakeCoordinator) MemberEvent(ev members.Event) {
	f.calls = append(f.calls, ev.Kind+" "+ev.Member.ID)
}
func (f *fakeCoordinator) BusConnected(up bool) {
	f.calls = append(f.calls, map[bool]string{true: "bus up", false: "bus down"}[up])
}
func (f *fakeCoordinator) Described(string)      {}
func (f *fakeCoordinator) Record(*engine.Record) {}
func (f *fakeCoordinator) MemberState(_ string, s members.State) string {
	return string(s)
}
func (f *fakeCoordinator) Status(*engine.Status) {}

// A coordinator set on a running loop (an election won) starts and hears
// what the table knows, as a restarted coordinator's table would tell it
// but without the startup grace; one set aside (the election lost) stops.
func TestSetCoordinatorOnARunningLoop(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(siteYAML+"  - id: spare\n"), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewVirtual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e, err := engine.New(engine.Options{Site: site, Self: "backup", Online: true, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.Coordinating() {
		t.Fatal("coordinating before any coordinator was set")
	}
	// main is heard; spare never is and is lost after the startup grace.
	for range 15 {
		e.Heartbeat(bus.Heartbeat{Member: "main", Boot: "b", Conn: 1, IntervalMS: 100})
		e.RunPending()
		clk.Advance(100 * time.Millisecond)
		e.RunPending()
	}
	f := &fakeCoordinator{}
	if err := e.SetCoordinator(f); err != nil {
		t.Fatal(err)
	}
	if !e.Coordinating() {
		t.Fatal("not coordinating after SetCoordinator")
	}
	want := []string{"attach", "start", "member_seen backup", "member_seen main", "member_lost spare", "bus up"}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("the new coordinator heard %q, want %q", f.calls, want)
	}
	if err := e.SetCoordinator(nil); err != nil {
		t.Fatal(err)
	}
	if e.Coordinating() || f.calls[len(f.calls)-1] != "stop" {
		t.Fatalf("after SetCoordinator(nil): coordinating %v, calls %q", e.Coordinating(), f.calls)
	}
	// A coordinator that does not start is stopped and leaves none.
	bad := &fakeCoordinator{startErr: errors.New("policy does not load")}
	if err := e.SetCoordinator(bad); err == nil || e.Coordinating() {
		t.Fatalf("a failed start: err %v, coordinating %v", err, e.Coordinating())
	}
	if !slices.Equal(bad.calls, []string{"attach", "start", "stop"}) {
		t.Fatalf("a failed start: calls %q", bad.calls)
	}
}
