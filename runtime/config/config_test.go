package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/drivers"
)

const validSite = `site: demo
timezone: Europe/Berlin
coordinator: backup
heartbeat:
  interval: 100ms
  lost_after: 300ms
policy:
  file: policy.lua
  settings:
    failback_delay: 10s
members:
  - id: main
    roles: [manager]
    lost_after: 2h
    heartbeat: 1s
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    roles: [manager]
    standby: true
    duties: {switcher: router, inputs: [3, 4]}
drivers:
  router:
    kind: fake
    address: 127.0.0.1:9990
    timeout: 2s
`

func writeSite(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), []byte("-- empty\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadValidSiteAppliesDefaultsAndOverrides(t *testing.T) {
	s, err := Load(writeSite(t, validSite))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	main, ok := s.Member("main")
	if !ok {
		t.Fatal("member main missing")
	}
	if main.LostAfter.D() != 2*time.Hour || main.Heartbeat.D() != time.Second {
		t.Errorf("main timing = %v/%v, want member overrides 1s/2h", main.Heartbeat, main.LostAfter)
	}
	backup, _ := s.Member("backup")
	if backup.LostAfter.D() != 300*time.Millisecond || backup.Heartbeat.D() != 100*time.Millisecond {
		t.Errorf("backup timing = %v/%v, want site values", backup.Heartbeat, backup.LostAfter)
	}
	if s.Bus.BrokerOn != "backup" || s.Bus.Listen != DefaultBrokerListen {
		t.Errorf("bus defaults: %+v", s.Bus)
	}
	if s.Location.String() != "Europe/Berlin" {
		t.Errorf("location %v", s.Location)
	}
	if got := s.Policy.Settings["failback_delay"]; got != "10s" {
		t.Errorf("settings = %v", s.Policy.Settings)
	}
	if s.Drivers["router"].Kind != "fake" || s.Drivers["router"].Line() != 23 {
		t.Errorf("driver = %+v line %d", s.Drivers["router"], s.Drivers["router"].Line())
	}
}

func TestErrorsNameFileLineAndColumn(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           string
	}{
		{"unknown key", "    standby: true\n", "    stanby: true\n", "site.yaml:19:5: unknown field \"stanby\""},
		{"bad duration", "lost_after: 2h", "lost_after: 2 hours", "site.yaml:14:17: bad duration \"2 hours\""},
		{"duration without unit", "lost_after: 2h", "lost_after: 5", "site.yaml:14:17: 5 is not a duration"},
		{"unknown coordinator", "coordinator: backup", "coordinator: bakup", "site.yaml:3:14: coordinator \"bakup\" is not a member (members: main, backup)"},
		{"lost_after below minimum", "  lost_after: 300ms", "  lost_after: 150ms", "site.yaml:6:15: lost_after 150ms: between 300ms and 720h0m0s"},
		{"lost_after shorter than two heartbeats", "    heartbeat: 1s", "    heartbeat: 2h", "site.yaml:14:17: lost_after 2h0m0s is shorter than two heartbeats"},
		{"duplicate member", "  - id: main\n    roles", "  - id: backup\n    roles", "site.yaml:17:9: member id \"backup\" is used twice"},
		{"unknown switcher", "duties: {switcher: router, inputs", "duties: {switcher: rooter, inputs", "site.yaml:20:24: duties.switcher \"rooter\" is not a driver of this site (drivers: router)"},
		{"switcher ports from 1", "inputs: [3, 4]", "inputs: [0, 4]", "site.yaml:20:41: switcher ports count from 1, got 0"},
		{"missing policy file", "file: policy.lua", "file: nope.lua", "site.yaml:8:9: policy.file \"nope.lua\": no such file or directory"},
		{"bad timezone", "Europe/Berlin", "Europe/Atlantis", "site.yaml:2:11: timezone \"Europe/Atlantis\" is not a known IANA zone"},
		{"bad site name", "site: demo", "site: Demo Site", "site.yaml:1:7: site: give the site a name"},
		{"syntax error", "roles: [manager]\n    lost_after", "roles: [manager\n    lost_after", "site.yaml:"},
		{"driver without kind", "    kind: fake\n", "", "driver router: say which kind it is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validSite, tc.from) {
				t.Fatalf("fixture lacks %q", tc.from)
			}
			path := writeSite(t, strings.Replace(validSite, tc.from, tc.to, 1))
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			msg := strings.ReplaceAll(err.Error(), path, "site.yaml")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error\n  %s\nwant it to contain\n  %s", msg, tc.want)
			}
			if n := len(errs); n != 1 {
				t.Errorf("%d errors reported for one mistake:\n%s", n, msg)
			}
		})
	}
}

type fakeSettings struct {
	Address string   `yaml:"address"`
	Timeout Duration `yaml:"timeout"`
}

type fakeDriver struct {
	drivers.Driver
	settings fakeSettings
}

func fakeKind() drivers.Kind {
	return drivers.Kind{Name: "fake", New: func(cfg drivers.Config) (drivers.Driver, error) {
		d := &fakeDriver{}
		if err := cfg.Decode(&d.settings); err != nil {
			return nil, err
		}
		if d.settings.Address == "" {
			return nil, errors.New("address is required")
		}
		return d, nil
	}}
}

func TestBuildDriversDecodesSettingsWithPositions(t *testing.T) {
	reg := drivers.NewRegistry(fakeKind())
	s, err := Load(writeSite(t, validSite))
	if err != nil {
		t.Fatal(err)
	}
	built, err := s.BuildDrivers(reg)
	if err != nil {
		t.Fatalf("BuildDrivers: %v", err)
	}
	fd := built["router"].(*fakeDriver)
	if fd.settings.Address != "127.0.0.1:9990" || fd.settings.Timeout.D() != 2*time.Second {
		t.Errorf("settings = %+v", fd.settings)
	}
	for _, tc := range []struct{ from, to, want string }{
		{"    timeout: 2s\n", "    timeout: 2s\n    adress: x\n", "site.yaml:26:5: driver router: unknown field \"adress\""},
		{"timeout: 2s", "timeout: soon", "site.yaml:25:14: driver router: bad duration \"soon\""},
		{"    address: 127.0.0.1:9990\n", "", "site.yaml:23:5: driver router (fake): address is required"},
		{"kind: fake", "kind: fak", "site.yaml:23:11: unknown driver kind \"fak\" (known: [fake])"},
	} {
		path := writeSite(t, strings.Replace(validSite, tc.from, tc.to, 1))
		s, err := Load(path)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		_, err = s.BuildDrivers(reg)
		if err == nil {
			t.Errorf("%q: BuildDrivers succeeded", tc.to)
			continue
		}
		if msg := strings.ReplaceAll(err.Error(), path, "site.yaml"); !strings.Contains(msg, tc.want) {
			t.Errorf("error\n  %s\nwant it to contain\n  %s", msg, tc.want)
		}
	}
}

// The site.yaml shown in the README must load.
func TestTheREADMESiteExampleLoads(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## site.yaml\n\n```yaml\n")
	if !ok {
		t.Fatal("README.md has no site.yaml example")
	}
	example, _, _ := strings.Cut(rest, "```")
	s, err := Load(writeSite(t, example))
	if err != nil {
		t.Fatalf("the README's site.yaml does not load:\n%v", err)
	}
	if b, _ := s.Member("backup"); b.Pool != "managers" || len(b.Hooks["takeover"]) != 1 || !b.Settings.WaitReady {
		t.Fatalf("backup = %+v", b)
	}
}

const takeoverSite = `site: t
coordinator: a
failover:
  mode: %s
  grace: 60d
  failback_delay: 1m
pools:
  vms: {match: [%s]}
members:
  - id: a
    pool: vms
    usage: [left]
    failover: {failback_delay: 5m, copy_material: true}
    duties:
      usage: {%s: {outputs: [1], inputs: [1]}}
      clients: [%s]
      streams:
        - {name: cam-1, address: "%s"}
        - {name: cam-2, address: "239.1.1.2:5004"}
    hooks:
      takeover:
        - exec: [%s]
  - id: b
    standby: true
    pool: vms
`

func TestTakeoverSettingsResolveAndErrorsNameTheLine(t *testing.T) {
	s, err := Parse("site.yaml", fmt.Appendf(nil, takeoverSite, "manual", "disk_layout", "left", "b", "239.1.1.1:5004", "/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Member("a")
	want := FailoverSettings{Enabled: true, BrokenIsLost: true, TakeOutputs: true, TakeClients: true, AutoFailback: true, WaitReady: true,
		FailbackDelay: 5 * time.Minute, CopyMaterial: true, Grace: 60 * 24 * time.Hour}
	if a.Settings != want {
		t.Errorf("a's settings = %+v\nwant %+v", a.Settings, want)
	}
	if b, _ := s.Member("b"); b.Capacity != 1 || b.Settings.FailbackDelay != time.Minute {
		t.Errorf("b = capacity %d, failback %v", b.Capacity, b.Settings.FailbackDelay)
	}
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"sometimes", "disk_layout", "left", "b", "239.1.1.1:5004", "/bin/true"}, `site.yaml:4:9: failover.mode "sometimes": auto or manual`},
		{[]any{"auto", "colour", "left", "b", "239.1.1.1:5004", "/bin/true"}, `site.yaml:8:17: pools.vms.match "colour": disk_layout or usage`},
		{[]any{"auto", "usage", "right", "b", "239.1.1.1:5004", "/bin/true"}, `duties.usage "right" is not one of this member's usage names`},
		{[]any{"auto", "usage", "left", "ghost", "239.1.1.1:5004", "/bin/true"}, `site.yaml:16:17: duties.clients "ghost" is not a member`},
		{[]any{"auto", "usage", "left", "b", "239.1.1.2:5004", "/bin/true"}, `stream cam-2 uses 239.1.1.2:5004, already used by a/cam-1`},
		{[]any{"auto", "usage", "left", "b", "10.0.0.1:5004", "/bin/true"}, `stream cam-1 address 10.0.0.1:5004 is not a multicast group`},
		{[]any{"auto", "usage", "left", "b", "239.1.1.1:5004", "true"}, `site.yaml:22:11: hook takeover step 1: exec: program "true" is not an absolute path`},
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, takeoverSite, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("args %v:\n  error %v\n  want %q", tc.args, err, tc.want)
		}
	}
}

func TestProbeSettingsAreChecked(t *testing.T) {
	const site = `site: t
coordinator: a
members:
  - id: a
  - id: cam
    lost_after: %s
    probe: {%s}
drivers:
  router: {kind: videohub}
`
	s, err := Parse("site.yaml", fmt.Appendf(nil, site, "3s", `tcp: "10.0.0.5:554"`))
	if err != nil {
		t.Fatal(err)
	}
	if cam, _ := s.Member("cam"); cam.Probe.Interval.D() != time.Second || cam.Probe.Timeout.D() != time.Second {
		t.Errorf("probe defaults = %+v", cam.Probe)
	}
	for _, tc := range []struct{ lost, probe, want string }{
		{"3s", `tcp: "h:1", http: "http://h/"`, "site.yaml:7:13: probe: give exactly one of tcp, http, driver, videohub or extron"},
		{"3s", `driver: switcher`, `probe.driver "switcher" is not a driver`},
		{"1s", `tcp: "h:1", interval: 800ms`, "lost_after 1s is shorter than two probes"},
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, site, tc.lost, tc.probe))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("probe {%s}: %v, want %q", tc.probe, err, tc.want)
		}
	}
}

func TestMaterialSettingsAreChecked(t *testing.T) {
	const site = `site: t
coordinator: a
copy: {%s}
members:
  - id: a
  - id: sb
    material_server: %s
    duties: {material: [%s]}
`
	s, err := Parse("site.yaml", fmt.Appendf(nil, site, "limit_mbit: 400", "198.18.0.2:7902", "/srv/material"))
	if err != nil {
		t.Fatal(err)
	}
	if s.CopySubfolder("rec-1") != "rec-1" || s.CopySettle() != DefaultCopySettle || s.CopyLimit() != 50_000_000 {
		t.Errorf("copy defaults: subfolder %q, settle %v, limit %d B/s", s.CopySubfolder("rec-1"), s.CopySettle(), s.CopyLimit())
	}
	if s, err = Parse("site.yaml", fmt.Appendf(nil, site, `subfolder: "", settle: 5s`, "sb.local:7902", "/srv/material")); err != nil {
		t.Fatal(err)
	} else if s.CopySubfolder("rec-1") != "" || s.CopySettle() != 5*time.Second || s.CopyLimit() != 0 {
		t.Errorf("copy settings: subfolder %q, settle %v, limit %d", s.CopySubfolder("rec-1"), s.CopySettle(), s.CopyLimit())
	}
	for _, tc := range []struct{ copy, server, material, want string }{
		{"subfolder: ../x", "198.18.0.2:7902", "/srv/m", `site.yaml:3:19: copy.subfolder "../x": give a folder inside the material folders`},
		{"limit_mbit: -1", "198.18.0.2:7902", "/srv/m", "site.yaml:3:20: copy.limit_mbit -1: 0 (no cap) or more"},
		{"", "0.0.0.0:7902", "/srv/m", "site.yaml:7:22: material_server 0.0.0.0:7902: give the address peers reach"},
		{"", "7902", "/srv/m", `material_server "7902": give the host:port`},
		{"", "198.18.0.2:7902", "", "material_server: member sb has no duties.material folders to serve"},
		{"", "198.18.0.2:7902", "srv/m", `site.yaml:8:25: duties.material: give the absolute path of a material folder, not "srv/m"`},
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, site, tc.copy, tc.server, tc.material))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("copy {%s} server %s material [%s]:\n  error %v\n  want %q", tc.copy, tc.server, tc.material, err, tc.want)
		}
	}
}

func TestBusUsersAreChecked(t *testing.T) {
	const site = `site: t
coordinator: a
bus: {%s}
members:
  - id: a
`
	s, err := Parse("site.yaml", fmt.Appendf(nil, site, `username: inst, password: p, users: [{username: inst, password: p}, {username: show, password: q, publish: ["understudy/t/command/+"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	users := s.BrokerUsers()
	if len(users) != 2 || users[0].Publish[0] != "understudy/t/#" || users[0].Subscribe[0] != "understudy/t/#" || users[1].Publish[0] != "understudy/t/command/+" || len(users[1].Subscribe) != 0 {
		t.Errorf("broker users = %+v", users)
	}
	for _, tc := range []struct{ bus, want string }{
		{`users: [{username: show, password: q}]`, "the instances need an account too"},
		{`username: inst, password: p, users: [{username: show, password: q}]`, `bus.username "inst" is not one of bus.users`},
		{`username: a, password: p, users: [{username: a, password: p}, {username: a, password: p}]`, `bus.users: "a" is there twice`},
		{`username: a, password: p, users: [{username: a}]`, "bus.users: a needs a password"},
		{`username: a, password: p, users: [{username: a, password: p}, {username: understudy-main, password: p}]`, `bus.users: "understudy-main": names beginning with "understudy-" are the instances' own accounts`},
		{`username: a, password: p, users: [{username: a, password: p, publish: ["x/#/y"]}]`, "# must be the last level"},
		{`tls: {ca: certs/ca.pem}`, `bus.tls.ca: give the absolute path`},
		{`tls: {cert: /etc/c.pem}`, "bus.tls: give both cert and key"},
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, site, tc.bus))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bus {%s}: %v, want %q", tc.bus, err, tc.want)
		}
	}
}

// An alias bomb in policy.settings is refused before it is decoded, at its
// file:line:col; so is a site file over yamlerr.MaxDocument, and a member
// description of either kind. Before, nine levels of nine aliases (9^9
// values once decoded) ran `understudy check` out of memory; six levels
// (half a million values, tens of MB: bounded, should this test run against
// a decoder without the bound) are enough to go over it.
func TestYAMLBombsAreRefusedAtTheirLine(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString("    l0: &l0 \"lol\"\n")
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&bomb, "    l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), ", "))
	}
	site := strings.Replace(validSite, "    failback_delay: 10s\n", "    failback_delay: 10s\n"+bomb.String(), 1)
	_, err := Load(writeSite(t, site))
	// Level 6 is line 17 (failback_delay is line 10, l0 line 11), and its
	// first alias goes over the bound.
	if err == nil || !strings.Contains(err.Error(), "site.yaml:17:14: aliases expand to more than 100000 nodes") {
		t.Errorf("alias bomb in policy.settings: %v", err)
	}

	huge := validSite + "# " + strings.Repeat("x", 1<<20) + "\n"
	if _, err := Load(writeSite(t, huge)); err == nil || !strings.Contains(err.Error(), "site.yaml: the file is over 1048576 bytes") {
		t.Errorf("a site file over 1 MiB: %v", err)
	}
	if _, err := Parse("site.yaml", []byte(huge)); err == nil || !strings.Contains(err.Error(), "site.yaml: the file is") {
		t.Errorf("a site file over 1 MiB: %v", err)
	}

	path := filepath.Join(t.TempDir(), "me.yaml")
	if err := os.WriteFile(path, []byte("id: main\nsettings:\n"+bomb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMember(path); err == nil || !strings.Contains(err.Error(), "me.yaml:9:14: aliases expand") {
		t.Errorf("alias bomb in a member description: %v", err)
	}
}
