//go:build linux

package faults

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/events"
	"understudy/fixtures/testhost"
	"understudy/guards"
	"understudy/runtime/materialcopy"
)

// ciRuns are the manager-backup schedules CI runs: seed 3 kills main for
// good while the coordinator is stopped and unplugged (the stall rule),
// seed 4 cuts main off from the broker and then kills the coordinator, seed
// 6 whatever it draws; seed 3 again with a fault aimed at the takeover:
// the same faults, and the coordinator (backup, also the standby) killed
// within milliseconds of the takeover of main beginning, once its stop
// is over; seed 195 (at most 2 faults besides the aimed one) makes the
// switcher refuse both takeover routes, which were then never sent again
// until the switcher happened to restart 18 s later (the coordinator now
// sends a refused route again). Two run at a time.
var ciRuns = []ciRun{{seed: 3}, {seed: 4}, {seed: 6}, {seed: 3, aim: []string{PhaseTakeover}}, {seed: 195, aim: []string{PhaseTakeover}, maxOps: 2}}

type ciRun struct {
	seed   uint64
	aim    []string
	maxOps int
}

func (r ciRun) name() string {
	n := "seed=" + itoa(r.seed)
	if len(r.aim) > 0 {
		n += ",aim=" + strings.Join(r.aim, ",")
	}
	return n
}

// ciDuration is each CI schedule's length.
const ciDuration = 45 * time.Second

// noQuiet runs a schedule without the quiet time after it: the CI
// schedules end where what they test has happened (but the one of
// TestRecorderStandbySchedule, which checks the quiet time's failbacks).
const noQuiet = -1

// The shipped manager-backup site under fixed schedules: no violation, and
// the faults really hit (main was lost and covered at least once). Then the
// checker is checked on the real histories: with their coverage records
// removed, a duplicated action, a loss nobody caused, it must object.
func TestManagerBackupSchedules(t *testing.T) {
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare")
	var (
		mu        sync.Mutex
		histories = map[string]*History{}
		covered   int
	)
	t.Run("schedules", func(t *testing.T) {
		for _, run := range ciRuns {
			t.Run(run.name(), func(t *testing.T) {
				t.Parallel()
				out, err := RunSchedule(context.Background(), Options{
					Binary: binary, Site: "../scripts/manager-backup/site.yaml", Dir: t.TempDir(),
					Duration: ciDuration, Quiet: noQuiet, Registry: builtin.Registry(), Progress: testLog{t},
					Aim: run.aim, MaxOps: run.maxOps,
				}, run.seed)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range out.History.Ops {
					if o.Err != "" {
						t.Errorf("fault %s not injected", o)
					}
					if o.Aim == "" {
						continue
					}
					// The aimed fault must land, in its phase, within
					// milliseconds of the journal showing it begin.
					if p := Phase(out.History, o.Start); o.Missed || p != o.Aim {
						t.Errorf("aimed fault %s landed in phase %q (missed %v)", o, p, o.Missed)
					} else if late := o.Start.Sub(o.AimedAt); late > 50*time.Millisecond {
						t.Errorf("aimed fault %s landed %s after the phase began", o, late)
					}
				}
				failOnViolations(t, "manager-backup", out)
				mu.Lock()
				defer mu.Unlock()
				histories[run.name()] = out.History
				for _, c := range out.Result.Covers {
					if c.OK && !c.Already {
						covered++
					}
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	if covered == 0 {
		t.Fatalf("no schedule of %v made a loss that had to be covered: the faults did not hit", ciRuns)
	}
	t.Run("checker catches", func(t *testing.T) {
		for _, run := range ciRuns {
			checkTheChecker(t, run.name(), histories[run.name()])
		}
	})
}

// checkTheChecker breaks a real history the ways a broken build would and
// asserts the checker reports each.
func checkTheChecker(t *testing.T, seed string, h *History) {
	res := Check(h, Bounds{})
	if len(res.Covers) > 0 {
		// A build whose takeover never finishes: no coverage records.
		broken := *h
		broken.Journal = without(h.Journal, func(r Record) bool { return r.Type == "takeover_done" })
		expect(t, seed, "takeover never done", &broken, PropCoverage)
	}
	if res.RoutingChecked > 0 && slices.ContainsFunc(res.Covers, func(c Cover) bool { return c.OK }) {
		// A build whose routes never reach the switcher.
		broken := *h
		broken.Routing = nil
		for _, s := range h.Routing {
			if !s.At.After(h.Start) {
				broken.Routing = append(broken.Routing, s)
			}
		}
		expect(t, seed, "switcher never re-routed", &broken, PropCoverRoutes)
	}
	if res.Actions > 0 {
		// A build that forgets the agent's record: a finished command
		// received and run again (a read after the end shows it so).
		broken := *h
		broken.Stores = slices.Clone(h.Stores)
		var again StoreRead
		for _, sr := range h.Stores {
			for _, s := range sr.Records {
				if sr.After == ReadEnd && s.State == "done" && again.Member == "" {
					s.At, s.State, s.Finished = s.Finished.Add(time.Second), "running", time.Time{}
					again = StoreRead{Member: sr.Member, At: sr.At.Add(time.Second), After: "a repeat made up", Records: []Stored{s}}
				}
			}
		}
		if again.Member != "" {
			broken.Stores = append(broken.Stores, again)
			expect(t, seed, "action run twice", &broken, PropAtMostOnce)
		}
		// A build whose agent keeps its records elsewhere (or the reader
		// reads the wrong place): nothing to read must fail, not pass.
		for member := range (&checker{h: h, end: h.End}).answered() {
			broken = *h
			broken.Stores = slices.DeleteFunc(slices.Clone(h.Stores), func(sr StoreRead) bool { return sr.Member == member })
			expect(t, seed, "no records read at "+member, &broken, PropAtMostOnce)
		}
		// A build that accepts an older coordinator's command after a newer
		// one's: the member's first command made the newest, and a command
		// of the older epoch received after the last one.
		broken = *h
		broken.Stores = slices.Clone(h.Stores)
		for i, sr := range broken.Stores {
			if len(sr.Records) == 0 {
				continue
			}
			sr.Records = slices.Clone(sr.Records)
			first, last, top := 0, 0, uint64(0)
			for j, s := range sr.Records {
				top = max(top, s.Epoch)
				if s.At.Before(sr.Records[first].At) {
					first = j
				}
				if s.At.After(sr.Records[last].At) {
					last = j
				}
			}
			late := sr.Records[last]
			late.ID, late.At, late.Epoch = late.ID+"-made-up", late.At.Add(time.Second), top
			sr.Records[first].Epoch = top + 1
			sr.Records = append(sr.Records, late)
			broken.Stores[i] = sr
			expect(t, seed, "epoch going backwards", &broken, PropEpochs)
			break
		}
	}
	// A build that judges a healthy member lost: a member_lost for main
	// just before the first fault, when nothing had happened yet.
	first := h.End
	for _, o := range h.Ops {
		if !o.Start.IsZero() && o.Start.Before(first) {
			first = o.Start
		}
	}
	broken := *h
	broken.Journal = append(append([]Record(nil), h.Journal...), Record{At: first.Add(-time.Millisecond), Type: "member_lost", Member: "main", Fields: map[string]any{"reason": "injected"}})
	broken.Sort()
	expect(t, seed, "false loss", &broken, PropFalseLoss)
}

// The shipped recorder-standby site under seed 1 (60 s, no aimed fault),
// its failback delay shortened to 5 s and copy.settle to 3 s (the site's 1
// minute and 30 s would not fit in a CI schedule): rec-2 is killed (and the
// coordinator with it), covered by standby-1, back and failed back with two
// copy passes (the first finds the file standby-1 was writing when it let
// go still being written), then rec-1 is stopped, covered and failed back
// likewise. No violation, and the material check really ran: recordings
// compared, the name conflict reported by the copy. Then the real history
// is broken — a copied file removed from the member's folder, one
// truncated, a copy's temporary file left, failback_done before the copy
// was done — and the checker must report each.
func TestRecorderStandbySchedule(t *testing.T) {
	t.Parallel() // with the mosquitto and state-folder schedules, once the others are done: two schedules at a time
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare")
	out, err := RunSchedule(context.Background(), Options{
		Binary: binary, Site: "../scripts/recorder-standby/site.yaml", Dir: t.TempDir(),
		Duration: 60 * time.Second, Registry: builtin.Registry(), Progress: testLog{t},
		FailbackDelay: 5 * time.Second, CopySettle: 3 * time.Second,
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, res := out.History, out.Result
	failOnViolations(t, "recorder-standby", out)
	if res.Copies == 0 || res.MaterialFiles == 0 {
		t.Fatalf("no failback with a copy was checked (%d failbacks, %d files compared): the schedule did not reach one", res.Copies, res.MaterialFiles)
	}
	// rec-1 is back before the schedule ends: the quiet time after it
	// lets its failback be judged (property 5), not just seen.
	if h.Quiet == 0 || res.Failbacks == 0 {
		t.Errorf("no failback judged (%d) in a history with %s quiet after the schedule", res.Failbacks, h.Quiet)
	}
	conflicts := 0
	for _, r := range h.Journal {
		if r.Type == events.CopyDone {
			conflicts += intOf(r.Fields["conflicts"])
		}
	}
	if conflicts == 0 {
		t.Error("no copy reported the name conflict the emulation makes")
	}
	if t.Failed() {
		return
	}
	fb := (&checker{h: h, end: h.End}).copiedFailbacks()[0]
	var copied Recorded // a recording copied back, not the conflict
	for _, w := range h.Recorded {
		if w.Host == fb.standby && w.For == fb.member && !w.Closed.IsZero() && w.Closed.Before(fb.copyStarted) &&
			!slices.ContainsFunc(h.Recorded, func(o Recorded) bool { return o.Host == fb.member && o.Rel == w.Rel }) {
			copied = w
		}
	}
	if copied.Path == "" {
		t.Fatalf("no recording of %s for %s was copied back", fb.standby, fb.member)
	}
	root := h.Site.Members[fb.member].Material[0]
	at := slices.IndexFunc(h.Material, func(f FileSeen) bool { return f.Host == fb.member && f.Root == root && f.Path == copied.Rel })
	if at < 0 {
		t.Fatalf("%s not in %s's folder", copied.Rel, fb.member)
	}
	broken := *h
	broken.Material = slices.Delete(slices.Clone(h.Material), at, at+1)
	expect(t, "seed 1", "a copied file lost", &broken, PropMaterial)
	broken = *h
	broken.Material = slices.Clone(h.Material)
	broken.Material[at].Size--
	expect(t, "seed 1", "a copied file truncated", &broken, PropMaterial)
	broken = *h
	broken.Material = append(slices.Clone(h.Material), FileSeen{Host: fb.member, Root: root, Path: path.Join(path.Dir(copied.Rel), "."+path.Base(copied.Rel)+materialcopy.TempSuffix), Size: 10})
	expect(t, "seed 1", "a temporary file left", &broken, PropMaterial)
	broken = *h
	broken.Journal = slices.Clone(h.Journal)
	for i, r := range broken.Journal {
		if r.Type == events.FailbackDone && r.Member == fb.member && r.At.Equal(fb.done) {
			broken.Journal[i].At = fb.copyStarted.Add(-time.Millisecond)
		}
	}
	broken.Sort()
	expect(t, "seed 1", "failback_done before the copy was done", &broken, PropFailbackCopy)
}

// failOnViolations fails t with each violation of the run, explained, and
// logs the run's report.
func failOnViolations(t *testing.T, site string, out *Outcome) {
	t.Helper()
	for _, v := range out.Result.Violations {
		var b strings.Builder
		Explain(&b, out.History, v)
		t.Error(b.String())
	}
	rep := NewReport(site)
	rep.Add(out.History, out.Result)
	var b strings.Builder
	rep.WriteText(&b)
	t.Log(b.String())
}

func expect(t *testing.T, seed string, what string, h *History, prop string) {
	t.Helper()
	for _, v := range Check(h, Bounds{}).Violations {
		if v.Property == prop {
			return
		}
	}
	t.Errorf("%s, %s: the checker did not report %s", seed, what, prop)
}

func without(rs []Record, drop func(Record) bool) []Record {
	var out []Record
	for _, r := range rs {
		if !drop(r) {
			out = append(out, r)
		}
	}
	return out
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// testLog writes progress lines to the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// A build with one safety guard switched off (package guards) runs a
// schedule that needs the guard, and the checker must report what the
// guard prevents: a checker that never fails proves nothing. The stall
// rule's schedule runs on the real build too, which must pass it.
func TestTheCheckerCatchesBrokenBuilds(t *testing.T) {
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare")
	const coord, protected = "backup", "main"
	cases := []struct {
		name  string
		guard guards.Name // "" : the real build
		sched *Schedule
		seed  uint64
		aim   []string
		ops   int
		want  string                    // the property reported; "" none
		site  func(t *testing.T) string // site.yaml (default the shipped manager-backup)
	}{{
		// The coordinator stopped for 6 s (lost_after 1 s), main killed
		// meanwhile: woken, the coordinator must give main a fresh
		// lost_after before judging it (its Last Will, which the broker
		// publishes as the coordinator wakes, is set aside). Main killed,
		// not alive: an alive main's heartbeats, waiting in the broker's
		// socket, may be read before the late timers run, and then even a
		// build without the rule loses no one.
		//
		// The site's MQTT keep-alive is 10 s here: with the default 2 s
		// the broker, embedded in the stopped coordinator, times out the
		// coordinator's own connection as it wakes (3 s of a client's
		// silence), and the reconnect's grace then spares main in a build
		// without the rule too — when it comes before main's late timer.
		// The stop (6 s) outlasts the startup grace (5 s), past which this
		// instance's own silence suppresses no judgement.
		name: "stall rule", guard: guards.StallRule, want: PropFalseLoss, sched: stallSchedule(coord, protected), site: stallSite,
	}, {
		name: "stall rule kept", want: "", sched: stallSchedule(coord, protected), site: stallSite,
	}, {
		// main killed and taken over, then the coordinator killed and
		// restarted: it must not carry out the takeover's routes again.
		name: "intent log", guard: guards.IntentLog, want: PropAtMostOnce,
		sched: &Schedule{Duration: 25 * time.Second, Ops: []Op{
			{ID: 1, Kind: OpKill, Member: protected, At: 6 * time.Second},
			{ID: 2, Kind: OpKill, Member: coord, At: 10 * time.Second, For: time.Second},
		}},
	}, {
		// Seed 195 of the CI schedules: the switcher refuses both takeover
		// routes; they must be sent again.
		name: "route retry", guard: guards.RouteRetry, want: PropCoverRoutes,
		seed: 195, aim: []string{PhaseTakeover}, ops: 2,
	}, {
		// TestEditsAndOperatorCommands' schedule: main comes back with
		// its older bundle after backup's edit; the coordinator must send
		// it the newest, not take main's as the newest.
		name: "config base", guard: guards.ConfigBase, want: PropConfig, sched: editsSchedule(),
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			site := "../scripts/manager-backup/site.yaml"
			if tc.site != nil {
				site = tc.site(t)
			}
			opts := Options{
				Binary: binary, Site: site, Dir: t.TempDir(),
				Duration: ciDuration, Quiet: noQuiet, Registry: builtin.Registry(), Progress: testLog{t},
				Schedule: tc.sched, Aim: tc.aim, MaxOps: tc.ops,
			}
			if tc.guard != "" {
				opts.Binary, opts.Env = brokenBinary, []string{guards.EnvVar + "=" + string(tc.guard)}
			}
			out, err := RunSchedule(context.Background(), opts, tc.seed)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range out.History.Ops {
				if o.Err != "" || o.Missed {
					t.Fatalf("fault %s not injected: the schedule does not test the guard", o)
				}
			}
			var got []string
			var b strings.Builder
			for _, v := range out.Result.Violations {
				got = append(got, v.Property)
				Explain(&b, out.History, v)
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("violations on the real build: %v\n%s", got, b.String())
			case tc.want != "" && !slices.Contains(got, tc.want):
				Timeline(&b, out.History, out.History.Start, out.History.End)
				t.Errorf("guard %s switched off: the checker reported %v, not %s; the run:\n%s", tc.guard, got, tc.want, b.String())
			default:
				t.Logf("reported %v\n%s", got, b.String())
			}
		})
	}
}

// stallSite is the shipped manager-backup site with an MQTT keep-alive of
// 10 s (see the stall rule's cases), in a folder of its own.
func stallSite(t *testing.T) string {
	dir := t.TempDir()
	for _, f := range []string{"site.yaml", "policy.lua"} {
		data, err := os.ReadFile(filepath.Join("../scripts/manager-backup", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "site.yaml" {
			data = []byte(strings.Replace(string(data), `bus: {url: "tcp://192.168.10.2:1883"}`, `bus: {url: "tcp://192.168.10.2:1883", keepalive: 10s}`, 1))
			if !strings.Contains(string(data), "keepalive: 10s") {
				t.Fatal("the shipped manager-backup site's bus line changed: stallSite needs updating")
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "site.yaml")
}

// stallSchedule stops the coordinator for 6 s and kills the protected
// member 2 s into the stop (restarted 8 s later).
func stallSchedule(coord, protected string) *Schedule {
	return &Schedule{Duration: 25 * time.Second, Ops: []Op{
		{ID: 1, Kind: OpStop, Member: coord, At: 8 * time.Second, For: 6 * time.Second},
		{ID: 2, Kind: OpKill, Member: protected, At: 10 * time.Second, For: 8 * time.Second},
	}}
}

// editsSchedule is TestEditsAndOperatorCommands' schedule on manager-backup.
func editsSchedule() *Schedule {
	return &Schedule{Duration: 45 * time.Second, ConfigEdits: true, Operator: true, Ops: []Op{
		{ID: 1, Kind: OpConfigEdit, Member: "main", At: 3 * time.Second},
		{ID: 2, Kind: OpOperator, Verb: VerbMode, Member: "main", At: 18 * time.Second, For: 7 * time.Second},
		{ID: 3, Kind: OpKill, Member: "main", At: 20 * time.Second, For: 8 * time.Second},
		{ID: 4, Kind: OpConfigEdit, Member: "backup", At: 22 * time.Second},
	}}
}

// The manager-backup site on Debian's mosquitto (a host of its own, the
// files of broker-config): the broker killed for 4 s, main killed while it
// is down and never restarted. Nobody hears anybody meanwhile; once the
// broker is back every instance reconnects, the coordinator gives main the
// startup grace, declares it lost and covers it. No violation, and main's
// outage was covered.
func TestMosquittoBrokerKilled(t *testing.T) {
	t.Parallel()
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare", "mosquitto")
	sched := &Schedule{Duration: 32 * time.Second, Broker: BrokerMosquitto, Ops: []Op{
		{ID: 1, Kind: OpBrokerKill, At: 6 * time.Second, For: 4 * time.Second},
		{ID: 2, Kind: OpKill, Member: "main", At: 8 * time.Second},
	}}
	out, err := RunSchedule(context.Background(), Options{
		Binary: binary, Site: "../scripts/manager-backup/site.yaml", Dir: t.TempDir(),
		Registry: builtin.Registry(), Progress: testLog{t}, Broker: BrokerMosquitto, Schedule: sched, Quiet: noQuiet,
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, res := out.History, out.Result
	for _, o := range h.Ops {
		if o.Err != "" || o.Start.IsZero() {
			t.Fatalf("fault %s not injected", o)
		}
	}
	failOnViolations(t, "manager-backup on mosquitto", out)
	mainCovered(t, res)
	// The kill hit: the coordinator lost its connection to mosquitto and
	// connected again once it was back.
	kill := h.Ops[0]
	lost := slices.IndexFunc(h.Logs, func(l LogLine) bool {
		return l.Member == "backup" && l.Msg == "bus connection lost; reconnecting" && !l.At.Before(kill.Start) && l.At.Before(kill.End)
	})
	back := slices.IndexFunc(h.Logs, func(l LogLine) bool {
		return l.Member == "backup" && l.Msg == "bus connected" && !l.At.Before(kill.End)
	})
	if lost < 0 || back < 0 {
		t.Errorf("the coordinator's log does not show its bus connection lost while mosquitto was down (%v) and connected again after (%v)", lost >= 0, back >= 0)
	}
}

// An installer's edits and an operator's commands in the middle of
// faults, on the manager-backup site (main and backup share the bundle
// "show"): main's bundle edited at +3 s on a quiet site; the operator
// switches to manual mode through main's API at +18 s and back to auto at
// +25 s; main is killed at +20 s for 8 s, so its loss is a proposal until
// auto; backup's bundle edited at +22 s while main is down. Main must be
// covered once the mode is auto again, and come back to the newest
// bundle, not push its older one over it.
func TestEditsAndOperatorCommands(t *testing.T) {
	t.Parallel()
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare")
	h, res := runHandMade(t, editsSchedule(), "manager-backup with edits and operator commands")
	if res.ConfigsJudged != 1 {
		t.Errorf("the bundle was not compared at the end (judged %d, not %d)", res.ConfigsJudged, res.ConfigsUnjudged)
	}
	newest := EditContent("show", h.Ops[3])
	for _, cs := range h.Configs {
		if cs.Content != newest {
			t.Errorf("%s holds %q at the end, want backup's edit %q", cs.Member, cs.Content, newest)
		}
	}
	// The mode really changed, and main's loss waited for auto.
	modes := map[string]time.Time{}
	var proposed, done time.Time
	for _, r := range h.Journal {
		switch {
		case r.Type == events.ModeChanged:
			modes[r.Str("mode")] = r.At
		case r.Type == events.TakeoverProposed && r.Member == "main":
			proposed = r.At
		case r.Type == events.TakeoverDone && r.Member == "main" && done.IsZero():
			done = r.At
		}
	}
	switch {
	case modes["manual"].IsZero() || modes["auto"].IsZero():
		t.Errorf("the journal does not show the mode switched to manual and back (%v): replies %q", modes, h.Ops[1].Reply)
	case proposed.IsZero() || proposed.Before(modes["manual"]):
		t.Errorf("main's loss was not proposed in manual mode (proposed %v, manual from %v)", proposed, modes["manual"])
	case done.Before(modes["auto"]):
		t.Errorf("main was covered at %v, before the mode was auto again at %v", done, modes["auto"])
	}
	mainCovered(t, res)
	// The checker catches a host left with an older bundle.
	broken := *h
	broken.Configs = slices.Clone(h.Configs)
	broken.Configs[0].Content = EditContent("show", h.Ops[0])
	expect(t, "edits", "a host left with an older bundle", &broken, PropConfig)
}

// The manager-backup site with the coordinator's (backup's) state folder
// full (a tmpfs of its own, filled to the last byte) from +6 s to +16 s,
// main killed at +8 s and never restarted, then the coordinator killed at
// +19 s, once its folder has room again, and restarted a second later. The
// coordinator must cover main all the same (a failover does not wait for
// the disk), say at ERROR why its state is not written, and, restarted,
// neither repeat an action that was answered while the folder was full
// nor forget one: no violation (at-most-once reads the journal and the
// members' stores), main covered.
func TestCoordinatorStateFolderFull(t *testing.T) {
	t.Parallel()
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare")
	sched := &Schedule{Duration: 32 * time.Second, Ops: []Op{
		{ID: 1, Kind: OpStateFull, Member: "backup", At: 6 * time.Second, For: 10 * time.Second},
		{ID: 2, Kind: OpKill, Member: "main", At: 8 * time.Second},
		{ID: 3, Kind: OpKill, Member: "backup", At: 19 * time.Second, For: time.Second},
	}}
	h, res := runHandMade(t, sched, "manager-backup, the coordinator's state folder full")
	mainCovered(t, res)
	// The fault hit, and the coordinator said so (the line /healthz
	// answers with).
	full := h.Ops[0]
	said := slices.ContainsFunc(h.Logs, func(l LogLine) bool {
		return l.Member == "backup" && l.Level == "ERROR" && strings.HasPrefix(l.Msg, "state not written: ") &&
			strings.Contains(l.Msg, "no space left on device") && !l.At.Before(full.Start) && l.At.Before(full.End.Add(2*time.Second))
	})
	if !said {
		var b strings.Builder
		Timeline(&b, h, full.Start, full.End)
		t.Errorf("the coordinator's log does not say its state is not written while its folder was full:\n%s", b.String())
	}
}

// The manager-backup site with its hosts' faults through the instances'
// fault hook (runtime/faulthook): the coordinator's clock (backup, also
// the standby) stepped back 90 s and main's forward 75 s; the
// coordinator's state store stalled for 6 s and main killed 2 s into the
// stall (its loss is judged at once, its takeover's first commit waits for
// the stall); main started again at +31 s on its stepped host; the
// coordinator's clock stepped forward 60 s (most of the way back). No
// violation on the history put back on one time base, main covered, and
// the coordinator's log said which write did not finish.
func TestHostFaults(t *testing.T) {
	t.Parallel()
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare")
	sched := &Schedule{Duration: 35 * time.Second, HostFaults: true, Ops: []Op{
		{ID: 1, Kind: OpClockStep, Member: "backup", At: 5 * time.Second, Offset: -90 * time.Second},
		{ID: 2, Kind: OpClockStep, Member: "main", At: 6 * time.Second, Offset: 75 * time.Second},
		{ID: 3, Kind: OpStoreStall, Member: "backup", At: 9 * time.Second, For: 6 * time.Second},
		{ID: 4, Kind: OpKill, Member: "main", At: 11 * time.Second, For: 20 * time.Second},
		{ID: 5, Kind: OpClockStep, Member: "backup", At: 27 * time.Second, Offset: 60 * time.Second},
	}}
	h, res := runHandMade(t, sched, "manager-backup with host faults")
	mainCovered(t, res)
	stall := h.Ops[2]
	if !slices.ContainsFunc(h.Logs, func(l LogLine) bool {
		return l.Member == "backup" && strings.HasPrefix(l.Msg, "a write to the state store") && l.At.After(stall.Start) && !l.At.After(stall.End.Add(time.Second))
	}) {
		t.Error("the coordinator's log does not say, during the stall, that a write to its store does not finish")
	}
	// The stepped records were put back: the journal after the first
	// step read 90 s early, main's log after its step (and after its
	// restart, which found the step kept on its host) 75 s late.
	if !slices.ContainsFunc(h.Journal, func(r Record) bool { return r.Stepped == -90*time.Second && r.At.After(h.Ops[0].Start) }) {
		t.Error("no journal record of the coordinator's stepped clock was put back")
	}
	// The hook's own line of each step lands within the step's moment.
	for _, o := range h.Ops {
		if o.Kind == OpClockStep && !slices.ContainsFunc(h.Logs, func(l LogLine) bool {
			return l.Member == o.Member && l.Msg == logClockStepped && !l.At.Before(o.Start) && !l.At.After(o.End)
		}) {
			t.Errorf("%s: its member's log line of the step is not placed between its sending and the hook's answer", o)
		}
	}
	restarted := h.Ops[3].End
	if !slices.ContainsFunc(h.Logs, func(l LogLine) bool {
		return l.Member == "main" && l.Stepped == 75*time.Second && l.At.After(restarted)
	}) {
		t.Error("main's log after its restart on its stepped host was not put back")
	}
}

// runHandMade runs a hand-made schedule on the manager-backup site and
// fails the test unless every fault was injected and the checker found no
// violation (what says which run it was).
func runHandMade(t *testing.T, sched *Schedule, what string) (*History, Result) {
	t.Helper()
	out, err := RunSchedule(context.Background(), Options{
		Binary: binary, Site: "../scripts/manager-backup/site.yaml", Dir: t.TempDir(),
		Registry: builtin.Registry(), Progress: testLog{t}, Schedule: sched, Quiet: noQuiet,
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.History.Ops {
		if o.Err != "" || o.Start.IsZero() {
			t.Fatalf("fault %s not injected", o)
		}
	}
	failOnViolations(t, what, out)
	return out.History, out.Result
}

// mainCovered fails the test unless main's outage was covered.
func mainCovered(t *testing.T, res Result) {
	t.Helper()
	if !slices.ContainsFunc(res.Covers, func(c Cover) bool { return c.Member == "main" && c.OK && !c.Already }) {
		t.Errorf("main's outage was not covered: covers %+v", res.Covers)
	}
}

// electedRuns are the elected example sites' CI schedules (45 s, the
// leader faults on, a fault aimed at the takeover, the planted outage):
// each with at least one fault that lands on the leader.
var electedRuns = []struct {
	site string
	seed uint64
}{{"elect-witness", 1}, {"elect-witness", 2}, {"elect-three", 1}, {"elect-three", 2}}

// The elected example sites (two machines and a witness; three candidates)
// under fixed schedules with the faults aimed at the leader: no violation,
// the leader really changed (two terms or more in some schedule), a fault
// landed on the leader, and the switchers' own records of the routes were
// judged. Then each real history is broken as a build that lets two
// leaders act would break it — a route from an earlier leader's connection
// after a newer leader began acting — and the checker must report it.
func TestElectedSchedules(t *testing.T) {
	testhost.RequireRoot(t)
	testhost.RequireTools(t, "ip", "unshare")
	var (
		mu        sync.Mutex
		histories = map[string]*History{}
		changed   int
		onLeader  int
	)
	t.Run("schedules", func(t *testing.T) {
		for _, run := range electedRuns {
			name := run.site + "/seed=" + itoa(run.seed)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				out, err := RunSchedule(context.Background(), Options{
					Binary: binary, Site: electedSiteFile(run.site), Dir: t.TempDir(),
					Duration: ciDuration, Quiet: noQuiet, Registry: builtin.Registry(), Progress: testLog{t},
					Aim: []string{PhaseTakeover}, Outage: true, LeaderFaults: true,
				}, run.seed)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range out.History.Ops {
					if o.Err != "" {
						t.Errorf("fault %s not injected", o)
					}
				}
				failOnViolations(t, run.site, out)
				if out.Result.Routes == 0 {
					t.Errorf("no route applied at the switcher was judged")
				}
				mu.Lock()
				defer mu.Unlock()
				histories[name] = out.History
				if out.Result.Terms >= 2 {
					changed++
				}
				for _, o := range out.History.Ops {
					if o.Leader && !o.Missed && !o.Start.IsZero() {
						onLeader++
					}
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	if changed == 0 || onLeader == 0 {
		t.Fatalf("%d schedule(s) saw the leader change, %d fault(s) landed on the leader: the faults did not reach the election", changed, onLeader)
	}
	t.Run("checker catches", func(t *testing.T) {
		for name, h := range histories {
			checkTheChecker(t, name, h)
			c := &checker{h: h, b: Bounds{}.withDefaults(h.Site), end: h.End, elected: true}
			terms := c.terms()
			for i := 1; i < len(terms); i++ {
				old, nw := terms[i-1], terms[i]
				if old.Member == nw.Member || old.Term >= nw.Term {
					continue
				}
				broken := *h
				broken.Applied = append(slices.Clone(h.Applied), RouteApplied{At: nw.From.Add(10 * time.Millisecond), Driver: "router", Output: 1, Input: 1,
					Remote: "made-up", Host: old.Member})
				expect(t, name, "the old leader routing after the new one began", &broken, PropTerms)
				break
			}
		}
	})
}
