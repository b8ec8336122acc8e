package schedule

import (
	"testing"
	"time"

	"understudy/runtime/clock"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

// fire runs s on a virtual clock from start to end the way the runtime does
// (arm the next firing, fire, re-arm) and returns the firing instants.
func fire(t *testing.T, s *Schedule, start, end time.Time) []time.Time {
	t.Helper()
	vc := clock.NewVirtual(start)
	var fired []time.Time
	var arm func()
	arm = func() {
		next := s.Next(vc.Now())
		if next.IsZero() {
			return
		}
		vc.AfterFunc(next.Sub(vc.Now()), func() {
			fired = append(fired, vc.Now())
			arm()
		})
	}
	arm()
	vc.AdvanceTo(end)
	return fired
}

func TestDailyJobRunsOnceEachDayAcrossDaylightSavingChanges(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	s, err := Parse("30 2 * * *", berlin)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		start time.Time
		want  []string // local wall times
	}{
		{"spring forward (02:30 does not exist on 29 March)", time.Date(2026, 3, 28, 0, 0, 0, 0, berlin),
			[]string{"2026-03-28 02:30 CET", "2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST"}},
		{"fall back (02:30 happens twice on 25 October)", time.Date(2026, 10, 24, 0, 0, 0, 0, berlin),
			[]string{"2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fire(t, s, tc.start, tc.start.Add(72*time.Hour))
			if len(got) != len(tc.want) {
				t.Fatalf("fired %d times %v, want %d", len(got), got, len(tc.want))
			}
			for i, g := range got {
				if f := g.In(berlin).Format("2006-01-02 15:04 MST"); f != tc.want[i] {
					t.Errorf("firing %d at %s, want %s", i, f, tc.want[i])
				}
			}
		})
	}
}

func TestHourlyJobOncePerWallHourOnChangeDays(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	s, err := Parse("0 * * * *", berlin)
	if err != nil {
		t.Fatal(err)
	}
	spring := time.Date(2026, 3, 29, 0, 0, 0, 0, berlin)
	// 23 real hours: 00..01, the 02:00 job at the jump (03:00 CEST), 04..23.
	if got := fire(t, s, spring.Add(-time.Second), spring.Add(23*time.Hour-time.Second)); len(got) != 23 {
		t.Errorf("spring day: %d firings, want 23: %v", len(got), got)
	}
	autumn := time.Date(2026, 10, 25, 0, 0, 0, 0, berlin)
	// 25 real hours, 24 wall hours: the repeated 02:00 does not run twice.
	if got := fire(t, s, autumn.Add(-time.Second), autumn.Add(25*time.Hour-time.Second)); len(got) != 24 {
		t.Errorf("autumn day: %d firings, want 24: %v", len(got), got)
	}
}

func TestEveryCountsRealTime(t *testing.T) {
	s, err := Parse("@every 90s", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := fire(t, s, start, start.Add(15*time.Minute)); len(got) != 10 {
		t.Errorf("@every 90s over 15m fired %d times, want 10", len(got))
	}
}

func TestTimezonePrefixOverridesSiteZone(t *testing.T) {
	s, err := Parse("CRON_TZ=America/New_York 0 9 * * *", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	next := s.Next(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 6, 1, 13, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next = %v, want %v", next, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, expr := range []string{"", "* * *", "61 * * * *", "@sometimes", "CRON_TZ=Nowhere/City 0 9 * * *"} {
		if _, err := Parse(expr, time.UTC); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", expr)
		}
	}
}

func TestNeverFiresAgain(t *testing.T) {
	s, err := Parse("0 0 30 2 *", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if next := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !next.IsZero() {
		t.Errorf("February 30th fires at %v", next)
	}
}
