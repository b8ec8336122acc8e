package faults

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/runtime/config"
)

// Every shipped site plans: each member gets a host, the rewritten site
// loads, names only test-host addresses and folders inside the run.
func TestPlanShippedSites(t *testing.T) {
	for _, name := range []string{"manager-backup", "recorder-standby", "vms-pool"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := NewPlan(filepath.Join("..", "scripts", name, "site.yaml"), dir, builtin.Registry())
			if err != nil {
				t.Fatal(err)
			}
			addrs := map[string]string{}
			for _, s := range p.Switchers {
				addrs[s.Driver] = s.Listen
			}
			if err := p.Write(addrs); err != nil {
				t.Fatal(err)
			}
			for _, h := range p.Hosts {
				data, err := os.ReadFile(h.SiteFile)
				if err != nil {
					t.Fatal(err)
				}
				for _, bad := range []string{"192.168.", "10.0.0.", "/srv/", "/mnt/", "/var/"} {
					if strings.Contains(string(data), bad) {
						t.Errorf("%s: rewritten site still names %q:\n%s", h.Member, bad, data)
					}
				}
				s, err := config.Load(h.SiteFile)
				if err != nil {
					t.Fatal(err)
				}
				if s.AuthMode() != config.AuthRequired {
					t.Errorf("%s: auth mode %s, want required (the run's site key)", h.Member, s.AuthMode())
				}
				if (h.Member == s.Coordinator) != (s.Bus.URL == "") {
					t.Errorf("%s: bus %+v: the coordinator embeds the broker, the others connect to it", h.Member, s.Bus)
				}
				if m, _ := s.Member(h.Member); (m.Duties.Config != nil) != (h.Config != "") || h.Config != "" && m.Duties.Config.File != h.Config {
					t.Errorf("%s: configuration bundle file %q in the plan, %+v in its site", h.Member, h.Config, m.Duties.Config)
				} else if h.Config != "" {
					if data, err := os.ReadFile(h.Config); err != nil || string(data) != InitialConfig(m.ConfigBundleName()) {
						t.Errorf("%s: configuration bundle file %s holds %q (%v), want the initial content", h.Member, h.Config, data, err)
					}
				}
				for _, m := range s.Members {
					for _, f := range append(m.Duties.Material, m.Disks...) {
						if !strings.HasPrefix(f, dir) {
							t.Errorf("%s: folder %s outside the run folder", m.ID, f)
						}
					}
				}
			}
			if len(p.Notes) == 0 {
				t.Error("no notes")
			}
		})
	}
}

// With Debian's mosquitto as the broker, the broker gets a host of its own
// after the devices host, every instance (the coordinator too) connects to
// it and none listens, and its configuration is broker-config's for the
// run's site: a listener on the broker host's address, no anonymous
// client, an account for each instance.
func TestPlanMosquitto(t *testing.T) {
	dir := t.TempDir()
	p, err := NewPlan(filepath.Join("..", "scripts", "manager-backup", "site.yaml"), dir, builtin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	p.Broker = BrokerMosquitto
	if p.TestHosts() != len(p.Hosts)+2 || p.BrokerAddr() != "198.18.0.4" || p.DevicesAddr() != "198.18.0.3" {
		t.Fatalf("%d test hosts, broker at %s, devices at %s", p.TestHosts(), p.BrokerAddr(), p.DevicesAddr())
	}
	addrs := map[string]string{}
	for _, s := range p.Switchers {
		addrs[s.Driver] = s.Listen
	}
	if err := p.Write(addrs); err != nil {
		t.Fatal(err)
	}
	for _, h := range p.Hosts {
		s, err := config.Load(h.SiteFile)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(h.SiteFile)
		if err != nil {
			t.Fatal(err)
		}
		if s.Bus.URL != "tcp://198.18.0.4:1883" || strings.Contains(string(data), "listen:") {
			t.Errorf("%s: bus url %q, want the broker host's and no listener:\n%s", h.Member, s.Bus.URL, data)
		}
	}
	conf, err := os.ReadFile(p.BrokerConf())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"listener 1883 198.18.0.4\n", "allow_anonymous false\n", "password_file " + filepath.Join(p.BrokerDir(), "understudy.passwd") + "\n", "acl_file ", "persistence false\n"} {
		if !strings.Contains(string(conf), line) {
			t.Errorf("mosquitto.conf has no %q:\n%s", line, conf)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(p.BrokerDir(), "understudy.passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"main", "backup"} {
		if !strings.Contains(string(passwd), "understudy-"+m+":$7$") {
			t.Errorf("no account for %s in the password file:\n%s", m, passwd)
		}
	}
	if f := p.Facts(); f.Broker != BrokerMosquitto {
		t.Errorf("facts: broker %q", f.Broker)
	}
}

// The same seed gives the same schedule; another seed another one; ops on
// one resource never overlap.
func TestScheduleIsSeeded(t *testing.T) {
	tg := Target{Members: []string{"main", "backup"}, Coordinator: "backup", Switchers: []string{"router"}, LostAfter: 1e9}
	a, b := NewSchedule(7, tg, 50e9), NewSchedule(7, tg, 50e9)
	if a.String() != b.String() {
		t.Fatalf("seed 7 gave two schedules:\n%s\n%s", a, b)
	}
	if c := NewSchedule(8, tg, 50e9); c.String() == a.String() {
		t.Errorf("seeds 7 and 8 gave the same schedule:\n%s", a)
	}
	kinds := map[OpKind]int{}
	extra := tg
	extra.DeviceFaults, extra.LANDown, extra.Aim, extra.Standbys, extra.Broker = true, true, AimPhases, []string{"backup"}, BrokerMosquitto
	extra.BrokerStop = true
	extra.Outage, extra.Protected, extra.StateFaults, extra.HostFaults = true, []string{"main"}, true, true
	extra.ConfigEdits, extra.Bundled, extra.Operator = true, []string{"main", "backup"}, true
	planted := 0
	for seed := range uint64(200) {
		s := NewSchedule(seed, extra, 50e9)
		if len(s.Ops) < 5 || len(s.Ops) > 8+2+1+1+1+1+1+3+1+1+2 {
			t.Errorf("seed %d: %d ops", seed, len(s.Ops))
		}
		for i, o := range s.Ops {
			kinds[o.Kind]++
			if o.Planted {
				planted++
				if o.Member+o.Host != "main" || o.For <= tg.LostAfter || o.At >= s.Duration/2 {
					t.Errorf("seed %d: planted outage %s: not of main, beyond lost_after, in the first half", seed, o)
				}
			}
			if o.Aim == "" && overlaps(append(append([]Op{}, s.Ops[:i]...), s.Ops[i+1:]...), o, s.Duration) {
				t.Errorf("seed %d: op %s overlaps another holding %s", seed, o, o.resource())
			}
			if o.Aim == "" && o.At+o.For > s.Duration || o.At < s.Duration/6 {
				t.Errorf("seed %d: op %s outside the schedule", seed, o)
			}
		}
	}
	for _, k := range OpKinds {
		if k == OpCandidateCut {
			continue // on elected sites only (TestLeaderFaultsLeaveTheRestAlone)
		}
		if kinds[k] == 0 {
			t.Errorf("200 schedules have no %s", k)
		}
	}
	// The planted outage keeps clear of its member's other faults and of
	// the coordinator's: in some schedules they leave no room.
	if planted < 150 {
		t.Errorf("%d of 200 schedules have their planted outage", planted)
	}
}

// The state folder full is drawn from a stream of its own, after every
// other fault: over 300 seeds, with every other option on and either
// broker, a schedule without its state_full is the schedule drawn with
// StateFaults off. Each has one, on a member's host, within the schedule,
// and the coordinator's is drawn too.
func TestScheduleStateFullLeavesTheRestAlone(t *testing.T) {
	tg := Target{Members: []string{"main", "backup"}, Coordinator: "backup", Switchers: []string{"router"}, LostAfter: 1e9,
		DeviceFaults: true, LANDown: true, Aim: AimPhases, Standbys: []string{"backup"}, Outage: true, Protected: []string{"main"}}
	on := map[string]int{}
	for _, broker := range []string{"", BrokerMosquitto} {
		for seed := range uint64(300) {
			tg.Broker = broker
			without := NewSchedule(seed, tg, 45e9)
			with := tg
			with.StateFaults = true
			s := NewSchedule(seed, with, 45e9)
			var rest, want []string
			full := 0
			for _, o := range s.Ops {
				if o.Kind == OpStateFull {
					full++
					on[o.Member]++
					if !slices.Contains(tg.Members, o.Member) || o.For <= 0 || o.At < s.Duration/6 || o.At+o.For > s.Duration {
						t.Errorf("seed %d: %s", seed, o)
					}
					continue
				}
				o.ID = 0
				rest = append(rest, o.String())
			}
			for _, o := range without.Ops {
				o.ID = 0
				want = append(want, o.String())
			}
			if full != 1 {
				t.Errorf("seed %d: %d state_full ops, want 1", seed, full)
			}
			if strings.Join(rest, "\n") != strings.Join(want, "\n") {
				t.Errorf("seed %d, broker %q: the state folder full changed the other faults:\n%s\nwant\n%s", seed, broker, strings.Join(rest, "\n"), strings.Join(want, "\n"))
			}
			if !s.StateFaults || without.StateFaults || !strings.Contains(s.Flags(), "--state-full=true") || !strings.Contains(without.Flags(), "--state-full=false") {
				t.Errorf("seed %d: flags %q and %q", seed, s.Flags(), without.Flags())
			}
		}
	}
	if on["backup"] == 0 || on["main"] == 0 {
		t.Errorf("state folders filled: %v; want the coordinator's and main's", on)
	}
}

// The extra faults (aimed, switchers refusing or dropping, the whole LAN
// down, the external broker killed) are drawn from a stream of their own:
// a seed's other faults stay what they were without them, so a seed chosen
// for what it does keeps doing it.
func TestScheduleExtrasLeaveTheRestAlone(t *testing.T) {
	tg := Target{Members: []string{"main", "backup"}, Coordinator: "backup", Switchers: []string{"router"}, LostAfter: 1e9}
	extra := tg
	extra.DeviceFaults, extra.LANDown, extra.Aim, extra.Standbys = true, true, []string{PhaseTakeover}, []string{"backup"}
	extra.Outage, extra.Protected = true, []string{"main"}
	extra.ConfigEdits, extra.Bundled, extra.Operator = true, []string{"main", "backup"}, true
	for seed := range uint64(50) {
		plain, more := NewSchedule(seed, tg, 45e9), NewSchedule(seed, extra, 45e9)
		var kept []string
		aimed, edits := 0, 0
		for _, o := range more.Ops {
			switch {
			case o.Aim != "":
				aimed++
				if o.Aim != PhaseTakeover || o.For <= 0 {
					t.Errorf("seed %d: aimed op %s", seed, o)
				}
			case o.Kind == OpConfigEdit:
				edits++
			case o.Kind == OpOperator:
				if o.Verb == VerbMode && o.For <= 0 || o.Verb != VerbMode && o.Verb != VerbReassert {
					t.Errorf("seed %d: %s", seed, o)
				}
			case o.Kind != OpSwitcherRefuse && o.Kind != OpSwitcherDrop && o.Kind != OpLANDown && !o.Planted:
				o.ID = 0
				kept = append(kept, o.String())
			}
		}
		var want []string
		for _, o := range plain.Ops {
			o.ID = 0
			want = append(want, o.String())
		}
		if strings.Join(kept, "\n") != strings.Join(want, "\n") {
			t.Errorf("seed %d: the extras changed the other faults:\n%s\nwant\n%s", seed, kept, want)
		}
		if aimed != 1 {
			t.Errorf("seed %d: %d aimed ops, want 1", seed, aimed)
		}
		if edits < 1 || edits > 3 {
			t.Errorf("seed %d: %d configuration edits, want 1 to 3", seed, edits)
		}
		// With an external broker: one broker kill more, and every
		// partition has the broker's host on one side; the rest, the
		// extras included, is the same.
		mosq := extra
		mosq.Broker, mosq.BrokerStop = BrokerMosquitto, true
		var withBroker, kills []string
		stops := 0
		for _, o := range NewSchedule(seed, mosq, 45e9).Ops {
			o.ID = 0
			if o.Kind == OpBrokerStop {
				stops++
				continue
			}
			if o.Kind == OpBrokerKill {
				if o.For <= 0 || o.At+o.For > 45e9 {
					t.Errorf("seed %d: %s", seed, o)
				}
				kills = append(kills, o.String())
				continue
			}
			if o.Kind == OpPartition {
				in := slices.Contains(o.Groups[0], BrokerHost) != slices.Contains(o.Groups[1], BrokerHost)
				if !in {
					t.Errorf("seed %d: %s: the broker's host is not on one side", seed, o)
				}
				for i := range o.Groups {
					o.Groups[i] = slices.DeleteFunc(slices.Clone(o.Groups[i]), func(h string) bool { return h == BrokerHost })
				}
			}
			withBroker = append(withBroker, o.String())
		}
		var all []string
		for _, o := range more.Ops {
			if o.Kind == OpBrokerKill || slices.Contains(o.Groups[0], BrokerHost) || slices.Contains(o.Groups[1], BrokerHost) {
				t.Errorf("seed %d: %s with the embedded broker", seed, o)
			}
			o.ID = 0
			all = append(all, o.String())
		}
		if strings.Join(withBroker, "\n") != strings.Join(all, "\n") {
			t.Errorf("seed %d: the external broker changed the other faults:\n%s\nwant\n%s", seed, withBroker, all)
		}
		if len(kills) != 1 || stops > 1 {
			t.Errorf("seed %d: broker kills %v, want 1; %d broker stops, want at most 1", seed, kills, stops)
		}
	}
}

// A broker kill holds the broker: two never overlap; it may overlap
// anything else.
func TestBrokerKillConflicts(t *testing.T) {
	kill := Op{Kind: OpBrokerKill, At: 10e9, For: 5e9}
	if !overlaps([]Op{{Kind: OpBrokerKill, At: 14e9, For: 3e9}}, kill, 60e9) {
		t.Error("two broker kills may overlap")
	}
	for _, x := range []Op{
		{Kind: OpLANDown, At: 12e9, For: 1e9},
		{Kind: OpPartition, Groups: [2][]string{{"main", BrokerHost}, {"backup"}}, At: 12e9, For: 1e9},
		{Kind: OpKill, Member: "main", At: 12e9},
	} {
		if overlaps([]Op{x}, kill, 60e9) {
			t.Errorf("a broker kill and %s may not overlap", x)
		}
	}
}

// An aimed op lands only where it holds nothing another op holds, and
// ends within the schedule.
func TestCanLand(t *testing.T) {
	s := Schedule{Duration: 60e9, Ops: []Op{
		{ID: 1, Kind: OpStop, Member: "backup", At: 20e9, For: 5e9},
		{ID: 2, Kind: OpKill, Member: "backup", At: 10e9, For: 3e9, Aim: PhaseTakeover},
	}}
	aimed := s.Ops[1]
	for at, ok := range map[time.Duration]bool{5e9: true, 15e9: true, 17e9: false, 22e9: false, 25.01e9: true, 58e9: false} {
		if got := s.CanLand(aimed, at); got != ok {
			t.Errorf("land at +%s: %v, want %v", at, got, ok)
		}
	}
	other := aimed
	other.Member = "main"
	if !s.CanLand(other, 22e9) {
		t.Errorf("a kill of main cannot land while backup is stopped")
	}
}

// The whole LAN down holds every host's link and the network: it never
// overlaps a link down, a partition or a broker cut.
func TestLANDownConflicts(t *testing.T) {
	lan := Op{Kind: OpLANDown, At: 10e9, For: 5e9}
	for _, x := range []Op{
		{Kind: OpLinkDown, Host: "main", At: 12e9, For: 1e9},
		{Kind: OpLinkDown, Host: DevicesHost, At: 5e9, For: 6e9},
		{Kind: OpPartition, Groups: [2][]string{{"main"}, {"backup"}}, At: 14e9, For: 3e9},
		{Kind: OpBrokerCut, Member: "main", At: 9e9, For: 2e9},
	} {
		if !overlaps([]Op{x}, lan, 60e9) || !overlaps([]Op{lan}, x, 60e9) {
			t.Errorf("the whole LAN down and %s may overlap", x)
		}
	}
	for _, x := range []Op{
		{Kind: OpKill, Member: "main", At: 12e9, For: 1e9},
		{Kind: OpLinkDown, Host: "main", At: 20e9, For: 1e9},
	} {
		if overlaps([]Op{x}, lan, 60e9) {
			t.Errorf("the whole LAN down and %s may not overlap", x)
		}
	}
}

// --failover-delay replaces the failover delay where the site sets one
// (vms-pool waits 10 minutes), in each host's site.yaml as in the facts.
func TestShortenFailoverDelay(t *testing.T) {
	dir := t.TempDir()
	p, err := NewPlan(filepath.Join("..", "scripts", "vms-pool", "site.yaml"), dir, builtin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	p.Shorten(4*time.Second, 0, 0)
	if err := p.Write(map[string]string{}); err != nil {
		t.Fatal(err)
	}
	for id, m := range p.Facts().Members {
		if m.Protected && m.Delay != 4*time.Second {
			t.Errorf("facts: %s delay %s, want 4s", id, m.Delay)
		}
	}
	s, err := config.Load(p.Hosts[0].SiteFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Members {
		if !m.Standby && m.Settings.Enabled && m.Settings.Delay != 4*time.Second {
			t.Errorf("%s: %s: delay %s, want 4s", p.Hosts[0].SiteFile, m.ID, m.Settings.Delay)
		}
	}
}

// The host faults (a clock stepped, a state store stalled) come from a
// stream of their own, drawn after everything else: with them a seed draws
// exactly the same other faults, whatever else is on.
func TestHostFaultsLeaveTheRestAlone(t *testing.T) {
	tg := Target{Members: []string{"main", "backup"}, Coordinator: "backup", Switchers: []string{"router"}, LostAfter: 1e9,
		DeviceFaults: true, LANDown: true, Aim: AimPhases, Standbys: []string{"backup"}, Outage: true, Protected: []string{"main"}}
	kinds := map[OpKind]int{}
	for _, broker := range []string{"", BrokerMosquitto} {
		tg.Broker = broker
		for seed := range uint64(300) {
			with := tg
			with.HostFaults = true
			plain, more := NewSchedule(seed, tg, 45e9), NewSchedule(seed, with, 45e9)
			var kept []string
			for _, o := range more.Ops {
				if o.Kind == OpClockStep || o.Kind == OpStoreStall {
					kinds[o.Kind]++
					if o.Member != "main" && o.Member != "backup" {
						t.Errorf("seed %d: %s hits no member", seed, o)
					}
					if o.Kind == OpClockStep && (o.For != 0 || o.Offset.Abs() < tg.LostAfter/2 || o.Offset.Abs() > 2*time.Minute) {
						t.Errorf("seed %d: %s: a step of half a lost_after to 2 minutes, instantaneous", seed, o)
					}
					if o.Kind == OpStoreStall && (o.For <= 0 || o.At+o.For > more.Duration) {
						t.Errorf("seed %d: %s: a stall within the schedule", seed, o)
					}
					continue
				}
				o.ID = 0
				kept = append(kept, o.String())
			}
			var want []string
			for _, o := range plain.Ops {
				o.ID = 0
				want = append(want, o.String())
			}
			if strings.Join(kept, "\n") != strings.Join(want, "\n") {
				t.Errorf("seed %d, broker %q: the host faults changed the other faults:\n%s\nwant\n%s", seed, broker, kept, want)
			}
			if !more.HostFaults || !strings.Contains(more.Flags(), "--host-faults=true") || !strings.Contains(plain.Flags(), "--host-faults=false") {
				t.Errorf("seed %d: flags %q, %q", seed, more.Flags(), plain.Flags())
			}
		}
	}
	if kinds[OpClockStep] < 100 || kinds[OpStoreStall] < 100 {
		t.Errorf("600 schedules with host faults have %d clock steps and %d store stalls", kinds[OpClockStep], kinds[OpStoreStall])
	}
}

// A clock step is instantaneous: it holds its member's process only at
// its moment (with the usual second of margin), and a store stall holds it
// for its length.
func TestHostFaultConflicts(t *testing.T) {
	step := Op{Kind: OpClockStep, Member: "main", At: 10e9, Offset: time.Minute}
	for _, c := range []struct {
		x    Op
		want bool
	}{
		{Op{Kind: OpKill, Member: "main", At: 5e9, For: 3e9}, false},
		{Op{Kind: OpKill, Member: "main", At: 5e9, For: 5.5e9}, true},
		{Op{Kind: OpStop, Member: "main", At: 10.5e9, For: 5e9}, true},
		{Op{Kind: OpKill, Member: "backup", At: 9e9, For: 5e9}, false},
		{Op{Kind: OpStoreStall, Member: "main", At: 12e9, For: 5e9}, false},
		{Op{Kind: OpClockStep, Member: "main", At: 10.5e9}, true},
	} {
		if got := overlaps([]Op{c.x}, step, 60e9); got != c.want {
			t.Errorf("%s and %s overlap: %v, want %v", step, c.x, got, c.want)
		}
	}
	stall := Op{Kind: OpStoreStall, Member: "backup", At: 10e9, For: 5e9}
	if !overlaps([]Op{{Kind: OpKill, Member: "backup", At: 14e9, For: 5e9}}, stall, 60e9) {
		t.Error("a kill of backup may land while its store stalls")
	}
	s := Schedule{Duration: 60e9, Ops: []Op{step, {ID: 2, Kind: OpKill, Member: "main", Aim: PhaseTakeover, For: 3e9}}}
	if s.CanLand(s.Ops[1], 20e9) != true || s.CanLand(s.Ops[1], 8e9) != false {
		t.Error("an aimed kill of main lands only clear of the clock step's moment")
	}
}

// The quiet time after a schedule is what the slowest failback needs: the
// manager site copies no material, so copy.settle (its default 30 s) does
// not count; the recorder site's does.
func TestQuietFor(t *testing.T) {
	for _, tc := range []struct {
		site string
		want time.Duration
	}{
		// startup grace 5s + reconnect 6s + failback delay 8s + failback 10s + 2s
		{"../scripts/manager-backup/site.yaml", 31 * time.Second},
		// startup grace 10s + reconnect 6s + failback delay 8s + settle 3s + 10s + 2s
		{"../scripts/recorder-standby/site.yaml", 39 * time.Second},
	} {
		p, err := NewPlan(tc.site, t.TempDir(), builtin.Registry())
		if err != nil {
			t.Fatal(err)
		}
		p.Shorten(0, 8*time.Second, 3*time.Second)
		if got := QuietFor(p.Facts(), Bounds{}); got != tc.want {
			t.Errorf("%s: quiet %s, want %s", tc.site, got, tc.want)
		}
	}
}

// An installer runs the suite inside the site's folder (-c site.yaml): the
// policy beside it is inside the folder, not refused as outside.
func TestPlanFromInsideTheSiteFolder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir("../scripts/manager-backup")
	p, err := NewPlan("site.yaml", dir, builtin.Registry())
	if err != nil {
		t.Fatalf("-c site.yaml from the site's folder: %v", err)
	}
	if len(p.Hosts) != 2 {
		t.Errorf("%d hosts, want main and backup", len(p.Hosts))
	}
}

// The standbys that may cover a member are those of its pool that fit it:
// the VMS pool matches disk layouts, and fo-big's is not the servers'.
func TestFactsStandbysThatFit(t *testing.T) {
	p, err := NewPlan("../scripts/vms-pool/site.yaml", t.TempDir(), builtin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	f := p.Facts()
	for _, id := range []string{"srv-1", "srv-2"} {
		if got := f.Members[id].Standbys; !slices.Equal(got, []string{"fo-1"}) {
			t.Errorf("%s may be covered by %v, want [fo-1] (fo-big has another disk layout)", id, got)
		}
	}
}
