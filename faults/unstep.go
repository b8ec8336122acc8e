package faults

import (
	"time"

	"understudy/events"
)

// The history is on one time base: this machine's clock. A member whose
// clock was stepped (clock_step, through its fault hook) stamps its
// journal records, log lines and command records with its stepped clock;
// Unstep puts them back on the machine's, from what the history knows of
// each step: its offset, when the nemesis sent it and when the hook
// answered (Op.Start, Op.End), and where each source was at that moment:
//
//   - a member's log says so itself, in order: the hook logs every step
//     it takes ("fault hook: clock stepped", with the step in force after
//     it) and, when the instance starts, the step it found kept on the
//     host ("fault hooks enabled"); every line from there on has that
//     step.
//   - the coordinator's journal (every candidate's on an elected site,
//     each its own): the nemesis counts its records before it sends a
//     step to its member and once the hook answered
//     (Op.JournalMarks); records before the first count were stamped
//     before the step, from the second on after it, and the few between
//     are placed by which reading falls within the step's moment.
//   - command records (the agent's receipt and finish times, read from a
//     store): a time that only one step period can explain is placed so;
//     one that two can (after a step back, the same reading comes twice)
//     is placed before the first read that saw it, then next to the
//     coordinator's journal records of the same command, else at the
//     latest reading before the store was read.
//
// Each record placed keeps the correction it got (Stepped: the reading
// was At + Stepped).

// Log messages of the fault hook (runtime/faulthook) that Unstep follows.
const (
	logHooksEnabled = "fault hooks enabled: this instance takes clock steps and state store stalls from the fault suite (a test hook; never on a site)"
	logClockStepped = "fault hook: clock stepped"
)

// hostClock is one member's clock over the history: the steps in the
// order they took hold.
type hostClock []clockStep

// clockStep is a step that took hold between From and To, after which
// the member's clock read Off (the steps before it added up) ahead of the
// machine's.
type clockStep struct {
	From, To time.Time
	Off      time.Duration
	marks    [2]int
}

// clocks returns each stepped member's clock.
func (h *History) clocks() map[string]hostClock {
	out := map[string]hostClock{}
	for _, o := range h.Ops {
		if o.Kind != OpClockStep || o.Err != "" || o.Start.IsZero() {
			continue
		}
		c := out[o.Member]
		off := o.Offset
		if len(c) > 0 {
			off += c[len(c)-1].Off
		}
		end := o.End
		if end.IsZero() {
			end = o.Start
		}
		out[o.Member] = append(c, clockStep{From: o.Start, To: end, Off: off, marks: o.JournalMarks})
	}
	return out
}

// off is the offset in period k (0: before the first step).
func (c hostClock) off(k int) time.Duration {
	if k == 0 {
		return 0
	}
	return c[k-1].Off
}

// period is when period k may have been: from its step's sending to the
// next step's answer.
func (c hostClock) period(k int) (from, to time.Time) {
	if k > 0 {
		from = c[k-1].From
	}
	if k < len(c) {
		to = c[k].To
	}
	return from, to
}

// real returns the machine's times that the reading t could be, by
// period: t - off(k) where it falls in period k.
func (c hostClock) real(t time.Time) map[int]time.Time {
	out := map[int]time.Time{}
	for k := 0; k <= len(c); k++ {
		r := t.Add(-c.off(k))
		from, to := c.period(k)
		if (from.IsZero() || !r.Before(from)) && (to.IsZero() || r.Before(to)) {
			out[k] = r
		}
	}
	return out
}

// nearest returns the candidate closest to t (the only one, or none:
// false).
func nearest(cands map[int]time.Time, t time.Time) (time.Time, bool) {
	var best time.Time
	found := false
	for _, r := range cands {
		if !found || r.Sub(t).Abs() < best.Sub(t).Abs() {
			best, found = r, true
		}
	}
	return best, found
}

// Unstep puts every record of a member whose clock was stepped on the
// machine's time base (see above). It must run before Sort, on the
// sources in the order they were read (the journal and each log in file
// order), and once.
func (h *History) Unstep() {
	clocks := h.clocks()
	if len(clocks) == 0 {
		return
	}
	// Each journal (the coordinator's, every candidate's on an elected
	// site), by the nemesis' counts of its own records.
	index := map[string]int{} // each journal's records so far, in file order
	for i := range h.Journal {
		rec := &h.Journal[i]
		src := rec.By(h.Site)
		n := index[src]
		index[src]++
		c := clocks[src]
		if len(c) == 0 {
			continue
		}
		k, between := 0, -1
		for j, s := range c {
			switch {
			case n >= s.marks[1]:
				k = j + 1
			case n >= s.marks[0]:
				between = j
			}
		}
		r := rec.At.Add(-c.off(k))
		if between >= 0 {
			// Sent but not yet answered: the reading that falls
			// within the step's moment.
			if cands := c.real(rec.At); len(cands) > 0 {
				s := c[between]
				r, _ = nearest(cands, s.From.Add(s.To.Sub(s.From)/2))
			}
		}
		rec.Stepped = rec.At.Sub(r)
		rec.At = r
	}
	// Each log, by the hook's own lines.
	off := map[string]time.Duration{}
	for i := range h.Logs {
		l := &h.Logs[i]
		if _, ok := clocks[l.Member]; !ok {
			continue
		}
		if l.Msg == logHooksEnabled || l.Msg == logClockStepped {
			if n, ok := l.Fields["clock_step"].(float64); ok {
				off[l.Member] = time.Duration(n)
			}
		}
		if d := off[l.Member]; d != 0 {
			l.At, l.Stepped = l.At.Add(-d), d
		}
	}
	// Command records, by the journal's records of the same command.
	journal := map[string][]time.Time{}
	for _, rec := range h.Journal {
		if id := rec.Str("id"); id != "" && (rec.Type == events.ActionRunning || rec.Type == events.ActionDone) {
			journal[rec.Str("target")+"/"+id] = append(journal[rec.Str("target")+"/"+id], rec.At)
		}
	}
	// A reading is written before the first read that saw it: the same
	// record (the same reading) in an earlier read bounds it.
	firstSeen := map[string]time.Time{}
	seenKey := func(member, id string, t time.Time) string {
		return member + "/" + id + "/" + t.UTC().Format(time.RFC3339Nano)
	}
	for _, sr := range h.Stores {
		for _, s := range sr.Records {
			for _, t := range []time.Time{s.At, s.Finished} {
				if k := seenKey(sr.Member, s.ID, t); !t.IsZero() && (firstSeen[k].IsZero() || sr.At.Before(firstSeen[k])) {
					firstSeen[k] = sr.At
				}
			}
		}
	}
	for i := range h.Stores {
		sr := &h.Stores[i]
		c, ok := clocks[sr.Member]
		if !ok {
			continue
		}
		for j := range sr.Records {
			s := &sr.Records[j]
			near := journal[sr.Member+"/"+s.ID]
			place := func(t time.Time) (time.Time, time.Duration) {
				if t.IsZero() {
					return t, 0
				}
				cands := c.real(t)
				if bound := firstSeen[seenKey(sr.Member, s.ID, t)]; !bound.IsZero() {
					for k, cand := range cands {
						if cand.After(bound) && len(cands) > 1 {
							delete(cands, k) // written after a read that had already seen it: not this period
						}
					}
				}
				var r time.Time
				found := false
				for _, at := range near {
					if n, ok := nearest(cands, at); ok && (!found || n.Sub(at).Abs() < r.Sub(at).Abs()) {
						r, found = n, true
					}
				}
				if !found {
					for _, cand := range cands {
						if !cand.After(sr.At) && (!found || cand.After(r)) {
							r, found = cand, true
						}
					}
				}
				if !found {
					r = t.Add(-c.off(len(c)))
				}
				return r, t.Sub(r)
			}
			s.At, s.Stepped = place(s.At)
			s.Finished, _ = place(s.Finished)
		}
	}
}
