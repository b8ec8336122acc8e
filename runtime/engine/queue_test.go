package engine

import (
	"fmt"
	"slices"
	"testing"
)

// Bounded inputs beyond maxBounded are dropped and counted by kind; work
// that decides members' states is never dropped; a member's heartbeats take
// one slot, the newest in the place of the first; the order is the order of
// arrival.
func TestTheQueueBoundsWhatMayBeDroppedAndNothingElse(t *testing.T) {
	q := newQueue()
	var ran []string
	run := func(what string) func() { return func() { ran = append(ran, what) } }
	q.push(run("presence 1"))
	q.pushBeat("main", run("main beat 1"))
	for i := range maxBounded {
		if !q.pushBounded("ack", run(fmt.Sprint("ack ", i))) {
			t.Fatalf("bounded input %d dropped below the bound", i)
		}
	}
	if q.pushBounded("health", run("health")) || q.pushBounded("ack", run("ack over")) {
		t.Fatal("a bounded input beyond the bound was queued")
	}
	q.pushBeat("main", run("main beat 2"))
	q.pushBeat("backup", run("backup beat"))
	for i := range 3 * maxBounded {
		q.push(run(fmt.Sprint("presence ", i+2))) // never dropped, whatever waits
	}
	items := q.take()
	for _, it := range items {
		it.f()
	}
	want := []string{"presence 1", "main beat 2", "ack 0"}
	if !slices.Equal(ran[:3], want) {
		t.Errorf("first = %q, want %q", ran[:3], want)
	}
	if got := len(ran); got != 1+1+maxBounded+1+3*maxBounded {
		t.Errorf("%d ran", got)
	}
	if ran[2+maxBounded] != "backup beat" || ran[len(ran)-1] != fmt.Sprint("presence ", 3*maxBounded+1) {
		t.Errorf("order: %q then %q", ran[2+maxBounded], ran[len(ran)-1])
	}
	dropped, merged := q.counts()
	if dropped["ack"] != 1 || dropped["health"] != 1 || merged != 1 {
		t.Errorf("dropped %v, merged %d", dropped, merged)
	}
	// Taken: room again, and the next heartbeat of main takes a new slot.
	if !q.pushBounded("ack", run("ack later")) || !q.pushBeat("main", run("main beat 3")) || q.len() != 2 {
		t.Errorf("after take: %d waiting", q.len())
	}
}
