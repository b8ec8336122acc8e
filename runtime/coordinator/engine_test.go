package coordinator_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
)

const siteYAML = `site: test
coordinator: backup
mdns: false
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 1s}
policy: {file: policy.lua, handler_timeout: 100ms}
members:
  - id: main
    roles: [manager]
  - id: backup
    roles: [manager]
    standby: true
`

func newHarness(t testing.TB, policy string) (*sim.Harness, string, *bytes.Buffer) {
	t.Helper()
	return newHarnessSite(t, siteYAML, policy)
}

// newHarnessSite is newHarness with another site.yaml.
func newHarnessSite(t testing.TB, siteYAML, policy string) (*sim.Harness, string, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.lua")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(siteYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	h, err := sim.New(site, sim.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	return h, path, &log
}

// recordsAreRegistered fails the test, when it ends, for every record of
// h the events registry does not list as a record: each site of these
// tests checks that the coordinator records no name the registry lacks.
func recordsAreRegistered(t testing.TB, h *sim.Harness) {
	t.Cleanup(func() {
		for _, r := range h.Records() {
			if e, ok := events.Lookup(r.Type); !ok || !e.Record {
				t.Errorf("recorded %s (%v), which the events registry does not list as a record", r.Type, r.Fields)
			}
		}
	})
}

func published(h *sim.Harness, from int) []string {
	var out []string
	for _, r := range h.Since(from) {
		out = append(out, r.Type+":"+r.Member)
	}
	return out
}

const countingPolicy = `
local us = require "understudy"
us.on("member_lost", function(ev) us.log.info("v1 saw " .. ev.member.id) end)
us.every("1s", function() us.log.info("v1 tick") end)
`

func TestReloadWithASyntaxErrorKeepsThePreviousPolicy(t *testing.T) {
	h, path, log := newHarness(t, countingPolicy)
	if err := os.WriteFile(path, []byte("local us = require 'understudy'\nus.on('member_lost', function(ev)\n  oops(\nend)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := len(h.Records())
	h.Coordinator.Reload()
	h.Advance(0)
	var perr *engine.Record
	for _, r := range h.Since(mark) {
		if r.Type == "policy_error" {
			perr = &r
		}
	}
	if perr == nil {
		t.Fatalf("no policy_error record: %v", published(h, mark))
	}
	if msg := perr.Fields["error"].(string); !strings.Contains(msg, path+":4:") {
		t.Errorf("error %q does not name %s:4", msg, path)
	}
	// The old policy still handles events and its timers still run.
	h.Up("main")
	h.Advance(100 * time.Millisecond)
	h.Crash("main")
	h.Advance(1500 * time.Millisecond)
	if !strings.Contains(log.String(), "v1 saw main") || !strings.Contains(log.String(), "v1 tick") {
		t.Fatalf("old policy not running after a failed reload:\n%s", log)
	}
}

func TestReloadReplacesHandlersAndTimers(t *testing.T) {
	h, path, log := newHarness(t, countingPolicy)
	v2 := `
local us = require "understudy"
us.on("member_lost", function(ev) us.log.info("v2 saw " .. ev.member.id) end)
us.on("coordinator", function(ev) us.log.info("v2 coordinating, reload=" .. tostring(ev.reload)) end)
`
	if err := os.WriteFile(path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Coordinator.Reload()
	h.Advance(0)
	log.Reset()
	h.Up("main")
	h.Advance(100 * time.Millisecond)
	h.Crash("main")
	h.Advance(5 * time.Second)
	out := log.String()
	if !strings.Contains(out, "v2 saw main") || strings.Contains(out, "v1") {
		t.Fatalf("after reload:\n%s", out)
	}
}

func TestRunawayHandlerDoesNotStopTheLoop(t *testing.T) {
	h, _, log := newHarness(t, `
local us = require "understudy"
us.on("member_lost", function(ev) while true do end end)
us.on("member_lost", function(ev) us.log.info("second handler ran for " .. ev.member.id) end)
`)
	h.Up("main")
	h.Advance(100 * time.Millisecond)
	mark := len(h.Records())
	h.Crash("main")
	var timeouts int
	for _, r := range h.Since(mark) {
		if r.Type == "policy_error" && strings.Contains(r.Fields["error"].(string), "ran longer than 100ms") {
			timeouts++
		}
	}
	if timeouts != 1 {
		t.Fatalf("want one timeout record, got records %v", published(h, mark))
	}
	if !strings.Contains(log.String(), "second handler ran for main") {
		t.Fatalf("second handler did not run:\n%s", log)
	}
	// The loop goes on: the member comes back and is seen.
	mark = len(h.Records())
	h.Up("main")
	if got := published(h, mark); len(got) == 0 || got[0] != "member_restored:main" {
		t.Fatalf("after the timeout: %v", got)
	}
}
