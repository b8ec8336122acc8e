package mdns

import "time"

// multicastInterval is the least time between two multicasts of one record on
// one interface (RFC 6762 §6); goodbyes are exempt.
const multicastInterval = time.Second

// recentKinds tracks when each kind of record was last multicast on one
// interface.
type recentKinds [numKinds]time.Time

// limit returns the kinds of set that may be multicast at now: those not
// multicast in the last multicastInterval.
func (r *recentKinds) limit(set recordSet, now time.Time) recordSet {
	for _, k := range set.kinds() {
		if last := r[k.index()]; !last.IsZero() && now.Sub(last) < multicastInterval {
			set &^= k
		}
	}
	return set
}

// sent records that the kinds of set were multicast at now.
func (r *recentKinds) sent(set recordSet, now time.Time) {
	for _, k := range set.kinds() {
		r[k.index()] = now
	}
}

// Unicast answers: at most unicastRate a second on average, unicastBurst at
// once. A site's browsers ask a few times a second at most; the bound keeps a
// flood of (possibly spoofed) queries from turning this host into a
// reflector.
const (
	unicastRate  = 50
	unicastBurst = 100
)

// tokenBucket is a rate limit; it is used by one goroutine only.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newTokenBucket(now time.Time) *tokenBucket {
	return &tokenBucket{tokens: unicastBurst, last: now}
}

// take reports whether one more unicast answer may go out at now.
func (b *tokenBucket) take(now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(unicastBurst, b.tokens+d.Seconds()*unicastRate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
