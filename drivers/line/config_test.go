package line_test

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"understudy/drivers"
	"understudy/drivers/line"
	"understudy/units"
)

// readmeDrivers decodes the drivers in README.md's sample configuration and
// returns each one's settings without kind, as YAML.
func readmeDrivers(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("no yaml sample in README.md")
	}
	var doc struct {
		Drivers map[string]map[string]any `yaml:"drivers"`
	}
	if err := yaml.Unmarshal(m[1], &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, settings := range doc.Drivers {
		if settings["kind"] != "line" {
			t.Errorf("README driver %s has kind %v", name, settings["kind"])
		}
		delete(settings, "kind")
		y, err := yaml.Marshal(settings)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(y)
	}
	return out
}

func TestReadmeSample(t *testing.T) {
	docs := readmeDrivers(t)
	if got := slices.Sorted(maps.Keys(docs)); !slices.Equal(got, []string{"dsp", "player", "projector"}) {
		t.Fatalf("README drivers %v", got)
	}
	built := map[string]*line.Line{}
	for name, doc := range docs {
		d, err := line.New(driverConfig(name, doc))
		if err != nil {
			t.Fatalf("README driver %s: %v\n%s", name, err, doc)
		}
		built[name] = d.(*line.Line)
	}
	p := built["projector"]
	s := p.Settings()
	if s.Transport != "tcp" || s.Address != "192.168.10.60:4352" || s.Terminator != `\r` || s.Timeout.D() != 2*time.Second ||
		s.BackoffMin.D() != line.DefaultBackoffMin || s.BackoffMax.D() != line.DefaultBackoffMax || s.Raw {
		t.Errorf("projector settings %+v", s)
	}
	if got := p.Commands(); !slices.Equal(got, []string{"input", "mute", "power", "power_off", "power_on"}) {
		t.Errorf("projector commands %v", got)
	}
	if c := s.Commands["input"]; c.Send != `INPUT {{.n}}\r` || c.Timeout.D() != 5*time.Second {
		t.Errorf("input command %+v", c)
	}
	if err := p.Check(map[string]any{"command": "input", "args": map[string]any{"n": 3}}); err != nil {
		t.Error(err)
	}
	dsp := built["dsp"].Settings()
	if dsp.Transport != "serial" || dsp.Baud != 115200 || dsp.DataBits != 8 || dsp.Parity != "none" || dsp.StopBits != 1 || dsp.Terminator != `\r\n` {
		t.Errorf("dsp settings %+v", dsp)
	}
	player := built["player"]
	if s := player.Settings(); s.Transport != "udp" || !s.Raw || s.Commands["play"].Send != "play\n" {
		t.Errorf("player settings %+v", s)
	}
	if err := player.Check(map[string]any{"send": "seek 120\n", "expect": "^ok", "error": "^error"}); err != nil {
		t.Error(err)
	}
	for name, d := range built {
		if st := d.Status(); st.Connected || st.Address == "" {
			t.Errorf("%s Status() before Start = %+v", name, st)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	const cmds = "commands: { on: { send: 'ON\\r' } }\n"
	for _, tc := range []struct{ doc, want string }{
		{cmds, "address is required (host:port)"},
		{"address: dev\n" + cmds, `address "dev": want host:port`},
		{"address: 'dev:99999'\n" + cmds, "port must be a number from 1 to 65535"},
		{"transport: serial\n" + cmds, "address is required (the serial device"},
		{"transport: ir\naddress: dev:1\n" + cmds, `transport: want tcp, udp or serial, not "ir"`},
		{"address: dev:1\n", "commands: none defined (and raw sends are off)"},
		{"address: dev:1\nspeed: fast\n" + cmds, "speed"},
		{"address: dev:1\ntimeout: 2 parsecs\n" + cmds, `bad duration "2 parsecs"`},
		{"address: dev:1\ntimeout: -1s\n" + cmds, "timeout: -1s is negative"},
		{"address: dev:1\nbackoff_min: 2s\nbackoff_max: 1s\n" + cmds, "backoff_max (1s) is less than backoff_min (2s)"},
		{"address: dev:1\nterminator: '\\q'\n" + cmds, `terminator: unknown escape \q`},
		{"address: dev:1\nbaud: 9600\n" + cmds, "baud: only for transport serial"},
		{"transport: udp\naddress: dev:1\ngreeting: x\n" + cmds, "greeting: only for transport tcp"},
		{"address: dev:1\ngreeting: '('\n" + cmds, "greeting: error parsing regexp"},
		{"transport: serial\naddress: /dev/x\nparity: pair\n" + cmds, `parity: want none, odd, even, mark or space, not "pair"`},
		{"transport: serial\naddress: /dev/x\ndata_bits: 9\n" + cmds, "data_bits: want 5, 6, 7 or 8, not 9"},
		{"transport: serial\naddress: /dev/x\nstop_bits: 3\n" + cmds, "stop_bits: want 1 or 2, not 3"},
		{"transport: serial\naddress: /dev/x\nbaud: -5\n" + cmds, "baud: -5 is not a baud rate"},
		{"address: dev:1\ncommands: { on: { expect: OK } }\n", "commands.on.send: required"},
		{"address: dev:1\ncommands: { on: { send: 'ON\\x4' } }\n", `commands.on.send: \x needs two hex digits`},
		{"address: dev:1\ncommands: { on: { send: 'ON\\' } }\n", "commands.on.send: a backslash at the end"},
		{"address: dev:1\ncommands: { on: { send: 'IN {{.n' } }\n", "commands.on.send: template: on:1: unclosed action"},
		{"address: dev:1\ncommands: { on: { send: 'ON', expect: '(' } }\n", "commands.on.expect: error parsing regexp"},
		{"address: dev:1\ncommands: { on: { send: 'ON', expect: '(?P<reply>.*)' } }\n", "commands.on.expect: a group may not be named reply"},
		{"address: dev:1\ncommands: { on: { send: 'ON', error: 'ERR' } }\n", "commands.on.error: needs expect"},
		{"address: dev:1\ncommands: { on: { send: 'ON', expect: OK, error: '[' } }\n", "commands.on.error: error parsing regexp"},
		{"address: dev:1\ncommands: { on: { send: 'ON', expect: OK, timeout: -1s } }\n", "commands.on.timeout: -1s is negative"},
		{"address: dev:1\ncommands: { on: { send: 'ON', wait: 1s } }\n", "wait"},
		{"address: dev:1\ncommands: { '': { send: 'ON' } }\n", "commands: a command has an empty name"},
	} {
		_, err := line.New(driverConfig("projector", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// Raw sends alone need no commands.
	if _, err := line.New(driverConfig("projector", "address: dev:1\nraw: true\n")); err != nil {
		t.Errorf("raw without commands: %v", err)
	}
	// Through the registry, the error names the driver.
	reg := drivers.NewRegistry(line.Kind)
	if _, err := reg.New("line", driverConfig("projector", "adress: dev:1\n")); err == nil || !strings.Contains(err.Error(), "driver projector (line)") {
		t.Errorf("registry error %v", err)
	}
	if _, err := line.New(drivers.Config{Name: "projector"}); err == nil {
		t.Error("New without a decoder succeeded")
	}
}

func TestConfigDefaults(t *testing.T) {
	d, err := line.New(driverConfig("projector", "address: 10.0.0.5:4352\ncommands: { on: { send: \"ON\\r\" } }\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := d.(*line.Line).Settings()
	want := line.Settings{Transport: "tcp", Address: "10.0.0.5:4352", Terminator: `\r\n`,
		Timeout: units.Duration(2 * time.Second), BackoffMin: units.Duration(100 * time.Millisecond), BackoffMax: units.Duration(5 * time.Second),
		Commands: map[string]line.Command{"on": {Send: "ON\r"}}}
	if s.Transport != want.Transport || s.Address != want.Address || s.Terminator != want.Terminator || s.Timeout != want.Timeout ||
		s.BackoffMin != want.BackoffMin || s.BackoffMax != want.BackoffMax || s.Commands["on"] != want.Commands["on"] || s.Baud != 0 {
		t.Errorf("settings %+v, want %+v", s, want)
	}
}

func TestBackoffBounds(t *testing.T) {
	d, err := line.New(driverConfig("projector", "address: 10.0.0.5:4352\nbackoff_min: 100ms\nbackoff_max: 1s\nraw: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := d.(*line.Line)
	for n, want := range []struct{ lo, hi time.Duration }{
		{100 * time.Millisecond, 100 * time.Millisecond},
		{100 * time.Millisecond, 200 * time.Millisecond},
		{200 * time.Millisecond, 400 * time.Millisecond},
		{400 * time.Millisecond, 800 * time.Millisecond},
		{500 * time.Millisecond, time.Second},
		{500 * time.Millisecond, time.Second},
	} {
		for range 50 {
			if got := line.Backoff(l, n); got < want.lo || got > want.hi {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, got, want.lo, want.hi)
			}
		}
	}
}
