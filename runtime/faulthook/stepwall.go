package faulthook

import (
	"time"
	"unsafe"
)

// timeWords is time.Time's layout (go/src/time/time.go): wall holds the
// wall-clock seconds and nanoseconds (and, with its top bit, says a
// monotonic reading is in ext), ext the monotonic reading. The standard
// library gives no way to move one reading without the other: Add moves
// both.
type timeWords struct {
	wall uint64
	ext  int64
	loc  *time.Location
}

// The layout must be time.Time's size exactly (a compile error if not);
// TestStepWallMovesOnlyTheWallReading checks the rest.
const (
	_ uintptr = unsafe.Sizeof(time.Time{}) - unsafe.Sizeof(timeWords{})
	_ uintptr = unsafe.Sizeof(timeWords{}) - unsafe.Sizeof(time.Time{})
)

const hasMonotonic = 1 << 63

// StepWall returns t with its wall reading moved by d and its monotonic
// reading, if it has one, kept: what time.Now returns on a host whose clock
// was stepped by d. Durations between two such times (Sub, Before, Since)
// read the monotonic clock and do not see the step; a time formatted,
// marshalled, persisted or sent elsewhere does.
func StepWall(t time.Time, d time.Duration) time.Time {
	s := t.Add(d)
	tw := (*timeWords)(unsafe.Pointer(&t))
	sw := (*timeWords)(unsafe.Pointer(&s))
	if d != 0 && tw.wall&hasMonotonic != 0 && sw.wall&hasMonotonic != 0 {
		sw.ext = tw.ext
	}
	return s
}
