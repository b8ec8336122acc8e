package scenario

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"understudy/events"
	"understudy/runtime/engine"
)

// at is a virtual time as an offset from the start, for people.
func at(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	return d.Round(time.Millisecond).String()
}

// window describes [after, end] in words.
func window(after, end time.Duration) string {
	switch {
	case after == 0 && end == 0:
		return ""
	case after == 0:
		return " by " + at(end)
	case end == 0:
		return " after " + at(after)
	}
	return fmt.Sprintf(" between %s and %s", at(after), at(end))
}

// matches reports whether a record is the event x names.
func (x Expectation) matches(name string, r engine.Record) bool {
	if r.Type != name {
		return false
	}
	if x.Member != "" && r.Member != x.Member && fmt.Sprint(r.Fields["member"]) != x.Member {
		return false
	}
	for k, v := range x.Fields {
		if fmt.Sprint(r.Fields[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// describe is the expectation in words.
func (x Expectation) describe() string {
	var b strings.Builder
	switch {
	case x.Event != "":
		b.WriteString(x.Event)
	case x.No != "":
		b.WriteString("no " + x.No)
	case x.Nothing:
		b.WriteString("no action at all")
	case x.Routed != nil:
		fmt.Fprintf(&b, "%s output %d shows input %d", x.Routed.Driver, x.Routed.Output, x.Routed.Input)
		if end := x.end(); end != 0 {
			b.WriteString(" at " + at(end))
		} else {
			b.WriteString(" at the end")
		}
		return b.String()
	}
	if x.Member != "" {
		b.WriteString(" of " + x.Member)
	}
	for _, k := range slices.Sorted(maps.Keys(x.Fields)) {
		fmt.Fprintf(&b, " %s=%v", k, x.Fields[k])
	}
	if x.Before != 0 {
		b.WriteString(" before " + at(x.Before.D()))
		if x.After != 0 {
			b.WriteString(" (from " + at(x.After.D()) + ")")
		}
		return b.String()
	}
	b.WriteString(window(x.After.D(), x.end()))
	return b.String()
}

// checkEvents checks an event, no or nothing expectation against the records.
func checkEvents(x Expectation, records []engine.Record, start time.Time, length time.Duration) Check {
	c := Check{Want: x.describe()}
	from, to := x.After.D(), x.end()
	if to == 0 {
		to = length
	}
	in := func(r engine.Record) bool {
		d := r.At.Sub(start)
		if x.Before != 0 {
			return d >= from && d < to // before: the moment itself is outside
		}
		return d >= from && d <= to
	}
	switch {
	case x.Event != "":
		var outside []string
		for _, r := range records {
			if !x.matches(x.Event, r) {
				continue
			}
			if in(r) {
				c.OK, c.Detail = true, "at "+at(r.At.Sub(start))+r.Summary()
				return c
			}
			outside = append(outside, at(r.At.Sub(start)))
		}
		if len(outside) > 0 {
			c.Detail = "it happened at " + strings.Join(outside, ", ") + ", not" + window(from, to)
			return c
		}
		c.Detail = "it never happened" + seenInstead(x, records, start)
	case x.No != "":
		for _, r := range records {
			if x.matches(x.No, r) && in(r) {
				c.Detail = "it happened at " + at(r.At.Sub(start)) + r.Summary()
				return c
			}
		}
		c.OK = true
	case x.Nothing:
		for _, r := range records {
			if r.Type == events.ActionStarted && in(r) {
				c.Detail = fmt.Sprintf("at %s: %s", at(r.At.Sub(start)), actionText(r))
				return c
			}
		}
		c.OK = true
	}
	return c
}

// seenInstead lists what did happen to the member (or at all), briefly.
func seenInstead(x Expectation, records []engine.Record, start time.Time) string {
	var seen []string
	for _, r := range records {
		if !interesting(r.Type) || (x.Member != "" && r.Member != x.Member && fmt.Sprint(r.Fields["member"]) != x.Member) {
			continue
		}
		who := ""
		if r.Member != "" && x.Member == "" {
			who = " " + r.Member
		}
		seen = append(seen, fmt.Sprintf("%s%s at %s", r.Type, who, at(r.At.Sub(start))))
	}
	if len(seen) == 0 {
		if x.Member != "" {
			return "; nothing happened to " + x.Member
		}
		return "; nothing happened"
	}
	if len(seen) > 8 {
		seen = append(seen[:8], fmt.Sprintf("… (%d more)", len(seen)-8))
	}
	what := "instead"
	if x.Member != "" {
		what = "for " + x.Member
	}
	return "; " + what + ": " + strings.Join(seen, ", ")
}

// checkRouted checks the switcher simulator's routing at a routing check's
// time, and says which action put it there or what happened instead.
func checkRouted(x Expectation, devs map[string]*device, records []engine.Record, start time.Time, when time.Duration) Check {
	c := Check{Want: x.describe()}
	rt := x.Routed
	d, ok := devs[rt.Driver]
	if !ok {
		c.Detail = "driver " + rt.Driver + " is not a switcher"
		return c
	}
	routing := d.routing()
	if rt.Output > len(routing) {
		c.Detail = fmt.Sprintf("the %s simulator has %d outputs", d.kind, len(routing))
		return c
	}
	got := routing[rt.Output-1]
	var routes []string
	for _, r := range records {
		if r.Fields["driver"] != rt.Driver || r.Fields["verb"] != "route" || fmt.Sprint(r.Fields["output"]) != fmt.Sprint(rt.Output) {
			continue
		}
		switch r.Type {
		case events.ActionDone:
			routes = append(routes, fmt.Sprintf("input %v at %s (%v)", r.Fields["input"], at(r.At.Sub(start)), r.Fields["cause"]))
		case events.ActionFailed:
			routes = append(routes, fmt.Sprintf("input %v failed at %s: %v", r.Fields["input"], at(r.At.Sub(start)), r.Fields["error"]))
		}
	}
	last := "no route action for that output"
	if len(routes) > 0 {
		last = "routes of that output: " + strings.Join(routes, "; ")
	}
	if got == rt.Input {
		c.OK, c.Detail = true, last
		return c
	}
	c.Detail = fmt.Sprintf("at %s it shows input %d; %s", at(when), got, last)
	return c
}
