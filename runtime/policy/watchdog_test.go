package policy

import (
	"context"
	"testing"
	"time"
)

// A call's deadline does not run while the process was not running: a
// watchdog tick that comes long after it was due (the process stopped with
// SIGSTOP in the middle of a handler: make faults, manager-backup seed 22)
// moves the deadline by the gap instead of stopping the handler, which
// had no time to run either. A tick on time past the deadline stops it.
func TestTheDeadlineDoesNotRunWhileTheProcessIsStopped(t *testing.T) {
	w := newWatchdog(1 << 30)
	defer w.close()
	start := time.Now()
	ctx := w.begin(start, time.Second)
	w.end() // the real timer is not part of this test
	w.running = true

	// Stopped for 10 s right after the call began; woken, the tick comes.
	w.tickAt(start.Add(10 * time.Second))
	if ctx.Err() != nil {
		t.Fatalf("the call was stopped for the time its process was stopped: %v", context.Cause(ctx))
	}
	// Then the handler runs on, ticking on time, past its second.
	now := start.Add(10 * time.Second)
	for i := 0; i < 1100 && ctx.Err() == nil; i++ {
		now = now.Add(watchTick)
		w.tickAt(now)
	}
	if ctx.Err() == nil {
		t.Fatal("a call that ran past its deadline on time was not stopped")
	}
	if ran := now.Sub(start.Add(10 * time.Second)); ran < 990*time.Millisecond || ran > 1100*time.Millisecond {
		t.Errorf("stopped after running %v, want its 1s", ran)
	}
}
