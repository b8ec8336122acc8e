package engine_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/engine"
)

const siteYAML = `site: test
coordinator: backup
mdns: false
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 1s}
members:
  - id: main
    roles: [manager]
  - id: backup
    roles: [manager]
    standby: true
`

func TestUnknownMembersAreDroppedAndCounted(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(siteYAML), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	drops := bus.NewDrops(slog.New(slog.NewTextHandler(&log, nil)))
	e, err := engine.New(engine.Options{Site: site, Self: "backup", Online: true, Drops: drops})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		e.Heartbeat(bus.Heartbeat{Member: "ghost", Boot: "b", Conn: 1, Seq: uint64(i), IntervalMS: 100})
	}
	e.Presence(bus.Presence{Member: "ghost", State: "gone", Boot: "b", Conn: 1}, false)
	e.RunPending()
	// The 50 heartbeats waited together: the loop took the newest of them.
	if got := drops.Counts()["unknown_member"]; got != 2 {
		t.Errorf("unknown_member drops = %d, want 2 (%v)", got, drops.Counts())
	}
	if _, merged := e.InputsDropped(); merged != 49 {
		t.Errorf("merged heartbeats = %d, want 49", merged)
	}
	if n := strings.Count(log.String(), "dropped bad bus payload"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, log.String())
	}
}
