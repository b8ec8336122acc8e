package clock

import (
	"testing"
	"time"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestVirtualFiresInDeadlineOrderAndReadsDeadline(t *testing.T) {
	vc := NewVirtual(epoch)
	var got []string
	record := func(name string, want time.Duration) func() {
		return func() {
			if d := vc.Now().Sub(epoch); d != want {
				t.Errorf("%s ran at +%v, want +%v", name, d, want)
			}
			got = append(got, name)
		}
	}
	vc.AfterFunc(3*time.Second, record("c", 3*time.Second))
	vc.AfterFunc(time.Second, record("a", time.Second))
	vc.AfterFunc(time.Second, record("b", time.Second)) // same deadline: order of setting
	vc.Advance(2 * time.Second)
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("after 2s fired %v, want [a b]", got)
	}
	if d := vc.Now().Sub(epoch); d != 2*time.Second {
		t.Fatalf("clock reads +%v after Advance(2s)", d)
	}
	vc.Advance(time.Hour)
	if len(got) != 3 || got[2] != "c" {
		t.Fatalf("fired %v, want [a b c]", got)
	}
}

func TestVirtualStopAndChainedTimers(t *testing.T) {
	vc := NewVirtual(epoch)
	fired := 0
	tm := vc.AfterFunc(time.Second, func() { fired++ })
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	if tm.Stop() {
		t.Fatal("second Stop reported true")
	}
	// A timer that re-arms itself every second: ten firings in ten seconds.
	var tick func()
	tick = func() { fired++; vc.AfterFunc(time.Second, tick) }
	vc.AfterFunc(time.Second, tick)
	vc.Advance(10 * time.Second)
	if fired != 10 {
		t.Fatalf("chained timer fired %d times in 10s, want 10", fired)
	}
	if vc.Pending() != 1 {
		t.Fatalf("pending = %d, want 1", vc.Pending())
	}
	next, ok := vc.Next()
	if !ok || !next.Equal(epoch.Add(11*time.Second)) {
		t.Fatalf("Next = %v %v", next, ok)
	}
}

func TestVirtualNeverGoesBackwards(t *testing.T) {
	vc := NewVirtual(epoch)
	vc.AdvanceTo(epoch.Add(-time.Hour))
	if !vc.Now().Equal(epoch) {
		t.Fatalf("clock went back to %v", vc.Now())
	}
	ran := false
	vc.AfterFunc(-time.Second, func() { ran = true })
	vc.Advance(0)
	if !ran {
		t.Fatal("a timer with a negative delay did not fire at the next Advance")
	}
}
