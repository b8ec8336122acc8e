package mdns

import (
	"testing"
	"time"
)

func TestRecordsMulticastAtMostOncePerSecond(t *testing.T) {
	var r recentKinds
	t0 := time.Unix(1000, 0)
	if got := r.limit(recAll, t0); got != recAll {
		t.Fatalf("nothing sent yet: %b, want all", got)
	}
	r.sent(recPTR|recSRV, t0)
	if got := r.limit(recAll, t0.Add(999*time.Millisecond)); got != recTXT|recA|recEnum {
		t.Fatalf("999 ms later: %b, want all but PTR and SRV", got)
	}
	if got := r.limit(recAll, t0.Add(time.Second)); got != recAll {
		t.Fatalf("a second later: %b, want all", got)
	}
}

func TestUnicastAnswersAreRateLimited(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newTokenBucket(t0)
	n := 0
	for b.take(t0) {
		n++
	}
	if n != unicastBurst {
		t.Fatalf("burst of %d, want %d", n, unicastBurst)
	}
	// Refilled at unicastRate a second.
	n = 0
	for b.take(t0.Add(time.Second)) {
		n++
	}
	if n != unicastRate {
		t.Fatalf("a second later %d, want %d", n, unicastRate)
	}
	// A clock that steps back refills nothing.
	if b.take(t0) {
		t.Fatal("took a token after the clock stepped back")
	}
}
