package scripts_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"understudy/drivers/builtin"
	"understudy/events"
	"understudy/runtime/config"
	scenarios "understudy/runtime/scenario"
	"understudy/runtime/sim"
)

// catchAll is appended to a policy under test: a handler for every event
// that logs its name.
const catchAll = `
local __us = require "understudy"
__us.on("*", function(ev) __us.log.debug("dispatched", {event = ev.name}) end)
`

// dispatched collects the names catchAll logs (from the loop and the
// drivers' goroutines).
type dispatched struct {
	mu    *sync.Mutex
	names *[]string
}

func (d dispatched) Enabled(context.Context, slog.Level) bool { return true }
func (d dispatched) WithAttrs([]slog.Attr) slog.Handler       { return d }
func (d dispatched) WithGroup(string) slog.Handler            { return d }
func (d dispatched) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "dispatched" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "event" {
			d.mu.Lock()
			*d.names = append(*d.names, a.Value.String())
			d.mu.Unlock()
		}
		return true
	})
	return nil
}

// Every shipped scenario, run with a handler for "*" added to its policy,
// records only what the events registry lists as a record, and hands the
// policy only what it lists as a policy event; and the handler changes
// nothing (the scenario still passes).
func TestShippedScenariosRecordAndDispatchOnlyRegisteredEvents(t *testing.T) {
	files, err := scenarios.Find(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
			sc, err := scenarios.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			site, err := config.Load(sc.SitePath())
			if err != nil {
				t.Fatal(err)
			}
			policy := withCatchAll(t, site.PolicyPath())
			var (
				mu    sync.Mutex
				names []string
			)
			res, err := scenarios.Run(t.Context(), sc, scenarios.Options{
				Policy: policy, Registry: builtin.Registry(), StateDir: t.TempDir(),
				Logger: slog.New(dispatched{&mu, &names}),
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Failed() {
				t.Errorf("with a handler for * the scenario fails: %+v", res.Checks)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Contains(names, events.Coordinator) || len(res.Records) == 0 {
				t.Fatalf("the handler for * saw %v and the run recorded %d records: nothing to check", names, len(res.Records))
			}
			for _, r := range res.Records {
				if e, ok := events.Lookup(r.Type); !ok || !e.Record {
					t.Errorf("recorded %s (at %v), which the events registry does not list as a record", r.Type, r.At.Sub(res.Start))
				}
			}
			for _, name := range names {
				if e, ok := events.Lookup(name); !ok || !e.Policy {
					t.Errorf("handed the policy %s, which the events registry does not list as a policy event", name)
				}
			}
		})
	}
}

// recordsAreRegistered fails the test, when it ends, for every record of h
// the events registry does not list as a record.
func recordsAreRegistered(t *testing.T, h *sim.Harness) {
	t.Cleanup(func() {
		for _, r := range h.Records() {
			if e, ok := events.Lookup(r.Type); !ok || !e.Record {
				t.Errorf("recorded %s (%v), which the events registry does not list as a record", r.Type, r.Fields)
			}
		}
	})
}

// withCatchAll copies the policy's folder's .lua files to a temporary
// folder, adds catchAll to the policy there and returns its path.
func withCatchAll(t *testing.T, policy string) string {
	t.Helper()
	dir := t.TempDir()
	lua, err := filepath.Glob(filepath.Join(filepath.Dir(policy), "*.lua"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range lua {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f == policy {
			data = append(data, catchAll...)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, filepath.Base(policy))
}
