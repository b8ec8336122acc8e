package coordinator_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"understudy/runtime/config"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

// With the state file not taking writes (a full state folder), an action
// the policy asks for is sent all the same — a failover does not wait for
// the disk — and its record, with its result, is written as soon as the
// file takes writes again: a restart after that neither sends it again
// nor runs its handler again.
func TestAnActionAnsweredWhileTheStateFolderIsFullIsNotRepeated(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(`local us = require "understudy"
us.on("command:flash", function() us.run("a", "flash") end)
`), 0o644)
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(`site: t
coordinator: c
heartbeat: {interval: 1s, lost_after: 5s, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: c
  - id: a
    hooks:
      flash: [{exec: [/bin/true]}]
`), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true, BeforeCommit: func() error {
		if full.Load() {
			return errors.New("no space left on device")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := sim.New(site, sim.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	h.Up("a")
	h.Advance(time.Second)

	full.Store(true)
	h.Command("flash", nil)
	h.Advance(time.Second)
	if ran := h.Ran("a"); len(ran) != 1 || ran[0].Verb != "flash" {
		t.Fatalf("a ran %v with the state folder full, want the flash sent all the same", ran)
	}
	if done := records(h, "action_done"); len(done) != 1 {
		t.Fatalf("action_done records %+v", done)
	}
	if st.Failing() == nil {
		t.Fatal("the store does not say its writes fail")
	}
	// Room again: what waited is written within a second.
	full.Store(false)
	h.Advance(2 * time.Second)
	if err := h.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Advance(5 * time.Second)
	if r := records(h, "action_resumed"); len(r) != 0 {
		t.Fatalf("the restart resumed an action that was answered: %+v", r[0].Fields)
	}
	if ran, done := h.Ran("a"), records(h, "action_done"); len(ran) != 1 || len(done) != 1 {
		t.Fatalf("after the restart a ran %d command(s) and %d action_done were recorded, want 1 and 1", len(ran), len(done))
	}
}

// A member lost while the coordinator's state file takes no writes is
// taken over all the same: the takeover's command goes out, the coverage
// is kept, and both are written once the file takes writes, so that a
// restart after that still covers the member and sends nothing again.
func TestATakeoverDoesNotWaitForAFullStateFolder(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(`local us = require "understudy"
us.on("member_lost", function(ev) us.takeover(ev.member) end)
`), 0o644)
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(poolSite), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true, BeforeCommit: func() error {
		if full.Load() {
			return errors.New("no space left on device")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := sim.New(site, sim.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	for _, m := range []string{"a", "s"} {
		h.Up(m)
	}
	h.Advance(time.Second)

	full.Store(true)
	h.Crash("a")
	h.Advance(2 * time.Second)
	if ran := h.Ran("s"); len(ran) != 1 || ran[0].Verb != "takeover" {
		t.Fatalf("s ran %v with the state folder full, want the takeover", ran)
	}
	if done := records(h, "takeover_done"); len(done) != 1 {
		t.Fatalf("takeover_done records: %d", len(done))
	}
	full.Store(false)
	h.Advance(2 * time.Second)
	if err := h.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Advance(10 * time.Second)
	if r := records(h, "action_resumed"); len(r) != 0 {
		t.Fatalf("the restart resumed an action that was answered: %+v", r[0].Fields)
	}
	if ran, started := h.Ran("s"), records(h, "takeover_started"); len(ran) != 1 || len(started) != 1 {
		t.Fatalf("after the restart s ran %d command(s) and %d takeovers began, want 1 and 1", len(ran), len(started))
	}
	covered := false
	if ts := h.Coordinator.Snapshot().Takeover; ts != nil {
		for _, cv := range ts.Coverage {
			covered = covered || cv.Member == "a" && cv.Standby == "s"
		}
	}
	if !covered {
		t.Fatalf("after the restart a is not covered by s: %+v", h.Coordinator.Snapshot().Takeover)
	}
}
