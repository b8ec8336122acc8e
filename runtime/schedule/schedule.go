// Package schedule parses cron expressions (with robfig/cron/v3's parser) and
// computes when they next fire in a site's time zone, on the runtime's Clock.
//
// Unlike robfig's own runner, a job whose time falls in the hour skipped when
// daylight saving starts is not lost: it runs at the moment the clocks jump.
// When the clocks go back, a job runs once for each time of day it names, not
// twice. Interval schedules ("@every 90s") count real time.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed cron expression bound to a time zone.
type Schedule struct {
	expr  string
	spec  *cron.SpecSchedule          // wall-clock fields, evaluated as if in UTC
	every *cron.ConstantDelaySchedule // or a fixed interval
	loc   *time.Location
}

// Parse parses a standard five-field expression (minute hour day-of-month month
// day-of-week), an optional leading seconds field, or a descriptor such as
// @daily or "@every 10m". A "CRON_TZ=Zone " prefix overrides loc.
func Parse(expr string, loc *time.Location) (*Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	s := &Schedule{expr: expr, loc: loc}
	parsed, err := parser.Parse(strings.TrimSpace(expr))
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	switch p := parsed.(type) {
	case *cron.SpecSchedule:
		if strings.HasPrefix(strings.TrimSpace(expr), "CRON_TZ=") || strings.HasPrefix(strings.TrimSpace(expr), "TZ=") {
			s.loc = p.Location
		}
		spec := *p
		spec.Location = time.UTC
		s.spec = &spec
	case cron.ConstantDelaySchedule:
		s.every = &p
	default:
		return nil, fmt.Errorf("cron %q: unsupported schedule type %T", expr, parsed)
	}
	return s, nil
}

// String returns the expression as written.
func (s *Schedule) String() string { return s.expr }

// Next returns the first firing strictly after t, or the zero time if the
// expression never fires again (e.g. February 30th).
func (s *Schedule) Next(t time.Time) time.Time {
	if s.every != nil {
		return s.every.Next(t)
	}
	local := t.In(s.loc)
	wall := time.Date(local.Year(), local.Month(), local.Day(), local.Hour(), local.Minute(), local.Second(), local.Nanosecond(), time.UTC)
	// A few rounds suffice: a wall time can map to a real time at or before t
	// only around a daylight-saving change.
	for range 8 {
		next := s.spec.Next(wall)
		if next.IsZero() {
			return time.Time{}
		}
		real := s.wallToReal(next)
		if real.After(t) {
			return real
		}
		wall = next
	}
	return time.Time{}
}

// wallToReal maps a wall-clock reading in s.loc (carried in a UTC time) to the
// instant it names. A reading in a gap (clocks jumped forward over it) maps to
// the instant of the jump; a reading that happens twice (clocks went back) maps
// to its first occurrence.
func (s *Schedule) wallToReal(w time.Time) time.Time {
	r := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), s.loc)
	if !sameWall(r.In(s.loc), w) {
		if start, _ := r.ZoneBounds(); !start.IsZero() {
			return start
		}
		return r
	}
	// time.Date picks either occurrence of an ambiguous reading; prefer the
	// earlier one, which exists when the zone before r's had a larger offset.
	start, _ := r.ZoneBounds()
	if start.IsZero() {
		return r
	}
	_, before := start.Add(-time.Nanosecond).Zone()
	_, current := r.Zone()
	if before > current {
		if earlier := r.Add(-time.Duration(before-current) * time.Second); sameWall(earlier.In(s.loc), w) {
			return earlier
		}
	}
	return r
}

func sameWall(t, w time.Time) bool {
	return t.Year() == w.Year() && t.YearDay() == w.YearDay() && t.Hour() == w.Hour() && t.Minute() == w.Minute() && t.Second() == w.Second()
}
