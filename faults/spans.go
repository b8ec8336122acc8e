package faults

import (
	"slices"
	"time"
)

// span is a half-open time interval [From, To).
type span struct{ From, To time.Time }

func (s span) overlaps(o span) bool { return s.From.Before(o.To) && o.From.Before(s.To) }

func (s span) contains(t time.Time) bool { return !t.Before(s.From) && t.Before(s.To) }

// spans is a set of intervals; merge makes them disjoint and sorted.
type spans []span

// merge sorts and joins intervals that overlap or are closer than gap.
func (ss spans) merge(gap time.Duration) spans {
	if len(ss) == 0 {
		return nil
	}
	s := slices.Clone(ss)
	slices.SortFunc(s, func(a, b span) int { return a.From.Compare(b.From) })
	out := spans{s[0]}
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if !x.From.After(last.To.Add(gap)) {
			if x.To.After(last.To) {
				last.To = x.To
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

// overlapping returns the intervals that overlap w.
func (ss spans) overlapping(w span) spans {
	var out spans
	for _, s := range ss {
		if s.overlaps(w) {
			out = append(out, s)
		}
	}
	return out
}

// extend lengthens every interval's end by d.
func (ss spans) extend(d time.Duration) spans {
	out := make(spans, len(ss))
	for i, s := range ss {
		out[i] = span{s.From, s.To.Add(d)}
	}
	return out
}

// intersect returns the times inside both sets.
func (ss spans) intersect(o spans) spans {
	var out spans
	for _, a := range ss {
		for _, b := range o {
			from, to := a.From, a.To
			if b.From.After(from) {
				from = b.From
			}
			if b.To.Before(to) {
				to = b.To
			}
			if from.Before(to) {
				out = append(out, span{from, to})
			}
		}
	}
	return out.merge(0)
}
