package coordinator_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/runtime/config"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

// cueDriver is a control driver (a cue GO: not idempotent) that counts what
// it was sent; while hold is set, Do blocks until its context ends, as a
// send cut short by the coordinator's end.
type cueDriver struct {
	mu   sync.Mutex
	sent []map[string]any
	hold bool
	in   chan struct{} // a value when a held Do has begun
}

func (d *cueDriver) Start(context.Context, drivers.Emitter) {}
func (d *cueDriver) Close() error                           { return nil }
func (d *cueDriver) Status() drivers.Status                 { return drivers.Status{Connected: true} }
func (d *cueDriver) Check(map[string]any) error             { return nil }
func (d *cueDriver) Do(ctx context.Context, args map[string]any) (any, error) {
	d.mu.Lock()
	d.sent = append(d.sent, args)
	hold := d.hold
	d.mu.Unlock()
	if hold {
		d.in <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return "ok", nil
}

func (d *cueDriver) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sent)
}

const cueSite = `site: t
coordinator: c
mdns: false
heartbeat: {interval: 1s, lost_after: 5s, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: c
`

const cuePolicy = `local us = require "understudy"
us.on("command:go", function() us.driver("cue"):send("go") end)
`

func cueHarness(t *testing.T, dir string, st *store.Store, d *cueDriver, mayAct func() error) *sim.Harness {
	t.Helper()
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := sim.New(site, sim.Options{Store: st, Drivers: map[string]drivers.Driver{"cue": d}, MayAct: mayAct})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	recordsAreRegistered(t, h)
	return h
}

func cueFiles(t *testing.T) (string, *store.Store) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(cuePolicy), 0o644)
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(cueSite), 0o644)
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return dir, st
}

// A control send that was under way when its coordinator stopped (a new
// leader elected, or this one restarted) is not sent again: it may have
// reached the device, and a cue GO twice is worse than once missed. It
// fails as "outcome unknown" and raises an alarm.
func TestAControlSendCutShortIsNotSentAgain(t *testing.T) {
	dir, st := cueFiles(t)
	first := &cueDriver{hold: true, in: make(chan struct{}, 1)}
	h := cueHarness(t, dir, st, first, nil)
	h.Command("go", nil)
	select {
	case <-first.in:
	case <-time.After(30 * time.Second):
		t.Fatal("the cue was never sent")
	}
	h.Stop() // the coordinator ends while the send waits for its answer

	second := &cueDriver{}
	h2 := cueHarness(t, dir, st, second, nil)
	t.Cleanup(h2.Stop)
	h2.Advance(time.Second)
	if n := second.count(); n != 0 {
		t.Fatalf("the new coordinator sent the cut-short cue again (%d sends)", n)
	}
	failed := records(h2, "action_failed")
	if len(failed) != 1 || !strings.Contains(failedError(failed[0].Fields), "outcome unknown") {
		t.Fatalf("action_failed records %+v, want one saying outcome unknown", failed)
	}
	alarms := records(h2, "alarm")
	if len(alarms) != 1 || alarms[0].Fields["kind"] != "control_outcome_unknown" {
		t.Fatalf("alarm records %+v, want control_outcome_unknown", alarms)
	}
	// A new send is sent as usual.
	h2.Command("go", nil)
	h2.Advance(time.Second)
	waitFor(t, func() bool { return second.count() == 1 })
}

func failedError(f map[string]any) string {
	s, _ := f["error"].(string)
	return s
}

// While the coordinator may not act (an elected leader that cannot confirm
// its lease), a send waits; it goes out once it may, once.
func TestASendWaitsForTheLease(t *testing.T) {
	dir, st := cueFiles(t)
	d := &cueDriver{}
	var lease atomic.Bool
	var asked atomic.Int64
	mayAct := func() error {
		asked.Add(1)
		if !lease.Load() {
			return errors.New("lease lapsed")
		}
		return nil
	}
	h := cueHarness(t, dir, st, d, mayAct)
	t.Cleanup(h.Stop)
	h.Command("go", nil)
	h.Advance(time.Second)
	// The worker is held and asks again: a few times, and nothing went out.
	waitFor(t, func() bool { return asked.Load() >= 5 })
	if d.count() != 0 {
		t.Fatal("sent without the lease")
	}
	lease.Store(true)
	waitFor(t, func() bool { return d.count() == 1 })
}

// waitFor waits (in real time, generously) until cond holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
