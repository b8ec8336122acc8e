// Package clock gives the runtime one notion of time. Daemons use Real; the
// simulator and every unit test with delays use Virtual, so hours of site time
// run in microseconds and tests never sleep.
package clock

import (
	"container/heap"
	"sync"
	"time"
)

// Clock tells the time and runs a function after a delay.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed. Real clocks call f on a goroutine of
	// their own; the virtual clock calls it from Advance. f must not block: the
	// runtime's callbacks only enqueue work for the goroutine that owns the state.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not happened yet and reports whether it did so.
	Stop() bool
}

// Real is the wall clock.
type Real struct{}

var _ Clock = Real{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Virtual is a clock that moves only when told to. It is safe for concurrent use;
// timer functions run on the goroutine that calls Advance or AdvanceTo, in
// deadline order (ties in the order they were set), with Now reading the deadline.
type Virtual struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	seq    uint64
}

var _ Clock = (*Virtual)(nil)

// NewVirtual returns a virtual clock that reads start.
func NewVirtual(start time.Time) *Virtual { return &Virtual{now: start} }

// Now returns the virtual time.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

// AfterFunc schedules f at Now()+d. A d of zero or less fires at the next Advance.
func (v *Virtual) AfterFunc(d time.Duration, f func()) Timer {
	v.mu.Lock()
	defer v.mu.Unlock()
	if d < 0 {
		d = 0
	}
	v.seq++
	t := &virtualTimer{clock: v, at: v.now.Add(d), seq: v.seq, f: f, index: -1}
	heap.Push(&v.timers, t)
	return t
}

// Next reports the deadline of the earliest pending timer.
func (v *Virtual) Next() (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.timers) == 0 {
		return time.Time{}, false
	}
	return v.timers[0].at, true
}

// Pending reports how many timers are waiting.
func (v *Virtual) Pending() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.timers)
}

// Advance moves the clock forward by d, firing every timer that falls due.
func (v *Virtual) Advance(d time.Duration) { v.AdvanceTo(v.Now().Add(d)) }

// AdvanceTo moves the clock to t (never backwards), firing due timers in order.
// Timers set by fired functions fire too if they fall due by t.
func (v *Virtual) AdvanceTo(t time.Time) {
	for v.FireNext(t) {
	}
	v.mu.Lock()
	if t.After(v.now) {
		v.now = t
	}
	v.mu.Unlock()
}

// FireNext fires the earliest timer if it is due by t, setting the clock to its
// deadline, and reports whether it fired one. A caller that must finish the work
// a timer causes before the next one fires (the simulator does) steps with it.
func (v *Virtual) FireNext(t time.Time) bool {
	v.mu.Lock()
	if len(v.timers) == 0 || v.timers[0].at.After(t) {
		v.mu.Unlock()
		return false
	}
	next := heap.Pop(&v.timers).(*virtualTimer)
	if next.at.After(v.now) {
		v.now = next.at
	}
	f := next.f
	v.mu.Unlock()
	f()
	return true
}

type virtualTimer struct {
	clock *Virtual
	at    time.Time
	seq   uint64
	f     func()
	index int
}

func (t *virtualTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.clock.timers, t.index)
	return true
}

type timerHeap []*virtualTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*virtualTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
