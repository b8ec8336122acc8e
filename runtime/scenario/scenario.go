// Package scenario runs a site's real policy against a timeline of faults on
// the virtual clock and checks what it decided: the installer's way to find
// out what a policy does without pulling cables (understudy simulate and
// understudy test). A scenario is a YAML file:
//
//	name: main crashes; backup takes over; failback after it returns
//	site: site.yaml                # relative to this file (default: site.yaml beside it)
//	run: 10m                       # simulated time (default: the last step or check + 1m)
//	devices: {router: {inputs: 16, outputs: 16}}
//	agents: {backup: {takeover: {delay: 2s}}}   # how members' instances answer
//	steps:
//	  - {at: 10s, crash: main}
//	  - {at: 2m, up: main}
//	  - {at: 2m29s, blip: main, for: 2s}   # its network flaps: suspect, not lost
//	  - {at: 3m, command: failback, args: {member: main}}
//	  - {at: 4m, device: router, fault: refuse}
//	  - {at: 4m30s, device: router, fault: restart}
//	  - {at: 5m, broker: down}
//	expect:
//	  - {routed: {driver: router, output: 1, input: 3}, by: 11s}
//	  - {event: takeover_started, member: main, fields: {standby: backup}, after: 10s, within: 8s}
//	  - {no: failback_started, before: 2m30s}
//	  - {nothing: true, before: 10s}
//
// Every member's instance is simulated (it heartbeats, crashes, answers
// commands); switchers are the simulators of fixtures/, in process, driven by
// the real drivers over loopback; control drivers (line, http, osc, mqtt, wol,
// exec) check their arguments as for real and record what they would send,
// sending nothing. Hours of site time take well under a second.
package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/yamlerr"
)

// Scenario is a parsed scenario file.
type Scenario struct {
	Name    string                          `yaml:"name"`
	Site    string                          `yaml:"site"`
	Start   string                          `yaml:"start"` // RFC 3339; default 2026-01-01T00:00:00Z
	Run     config.Duration                 `yaml:"run"`
	Devices map[string]Device               `yaml:"devices"`
	Agents  map[string]map[string]AgentPlan `yaml:"agents"`
	// NoneUp: the members' instances start down, and steps bring them up
	// (default: every member is up at the start).
	NoneUp bool          `yaml:"none_up"`
	Steps  []Step        `yaml:"steps"`
	Expect []Expectation `yaml:"expect"`

	File string `yaml:"-"`
}

// Device sizes a switcher simulator (default: the simulator's own size).
type Device struct {
	Inputs  int `yaml:"inputs"`
	Outputs int `yaml:"outputs"`
}

// AgentPlan is how a member's instance answers commands of one verb.
type AgentPlan struct {
	Delay  config.Duration `yaml:"delay"`  // virtual time it takes
	Fail   string          `yaml:"fail"`   // fails with this error
	Silent bool            `yaml:"silent"` // never answers
}

// Step is one thing that happens at a time.
type Step struct {
	At      config.Duration `yaml:"at"`
	Up      string          `yaml:"up"`      // the member's instance starts (again)
	Crash   string          `yaml:"crash"`   // its process dies: the broker sees the connection drop
	Silence string          `yaml:"silence"` // its cable is pulled: heartbeats stop
	// Blip cuts its network for For (default 2s): it keeps running, but
	// nothing goes in or out meanwhile; then it is heard again.
	Blip string `yaml:"blip"`
	// Partition cuts a candidate of an elected coordinator off from the
	// other candidates for For (default: to the end): it still reaches the
	// bus, the members and the devices.
	Partition string          `yaml:"partition"`
	For       config.Duration `yaml:"for"`
	Shutdown  string          `yaml:"shutdown"` // it closes gracefully
	Broken    string          `yaml:"broken"`   // every material disk of it fails
	Repaired  string          `yaml:"repaired"` // its disks work again
	// Restart kills and restarts the coordinator (state kept); on a site
	// that elects it, the leader's process (the candidates elect again).
	Restart bool `yaml:"restart_coordinator"`
	// Broker: down (nothing goes over the bus) or up again.
	Broker string `yaml:"broker"`
	// Command is an operator command (failback, takeover, mode, confirm…).
	Command string         `yaml:"command"`
	Args    map[string]any `yaml:"args"`
	// Device and Fault: a switcher misbehaves. refuse: it refuses the next
	// command (NAK, E-code, ERR); drop: it drops the connection on the next
	// command; disconnect: it drops every connection now; restart: it
	// restarts (a power cycle) and comes back with its default routing
	// (output n shows input n).
	Device string `yaml:"device"`
	Fault  string `yaml:"fault"`
	// Panel: someone routes at the switcher's panel (with Device).
	Panel *Route `yaml:"panel"`

	Line int `yaml:"-"`
}

// Route is a switcher route.
type Route struct {
	Driver string `yaml:"driver"`
	Output int    `yaml:"output"`
	Input  int    `yaml:"input"`
}

// Expectation is one check of what the policy decided. Exactly one of
// Event, No, Routed and Nothing is set; the window is [After, By] (By from
// Within, Before or By; default the end of the run).
type Expectation struct {
	Event   string          `yaml:"event"`   // this event happens in the window
	No      string          `yaml:"no"`      // this event does not
	Routed  *Route          `yaml:"routed"`  // the switcher shows this route at By
	Nothing bool            `yaml:"nothing"` // no action at all in the window
	Member  string          `yaml:"member"`
	Fields  map[string]any  `yaml:"fields"` // fields the event must have (as text)
	After   config.Duration `yaml:"after"`
	By      config.Duration `yaml:"by"`
	Within  config.Duration `yaml:"within"`
	Before  config.Duration `yaml:"before"`

	Line int `yaml:"-"`
}

// Faults a step may give a device.
const (
	FaultRefuse     = "refuse"
	FaultDrop       = "drop"
	FaultDisconnect = "disconnect"
	FaultRestart    = "restart"
)

// end is the end of the expectation's window (0: the end of the run).
func (x Expectation) end() time.Duration {
	switch {
	case x.By != 0:
		return x.By.D()
	case x.Before != 0:
		return x.Before.D()
	case x.Within != 0:
		return x.After.D() + x.Within.D()
	}
	return 0
}

// Load reads and checks a scenario file; errors name file:line:col.
func Load(path string) (*Scenario, error) {
	data, err := yamlerr.ReadFile(path)
	if err != nil {
		if e := (*config.Error)(nil); errors.As(err, &e) {
			return nil, config.Errors{e}
		}
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and checks a scenario.
func Parse(path string, data []byte) (*Scenario, error) {
	file, err := yamlerr.Parse(path, data)
	if err != nil {
		return nil, config.Errors{config.Positioned(path, err)}
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return nil, config.Errors{{File: path, Msg: "empty scenario"}}
	}
	sc := &Scenario{File: path}
	body := file.Docs[0].Body
	if err := yaml.NodeToValue(body, sc, yaml.Strict()); err != nil {
		return nil, config.Errors{config.Positioned(path, err)}
	}
	lines := func(key string) []int {
		var out []int
		m, ok := body.(*ast.MappingNode)
		if !ok {
			return nil
		}
		for _, kv := range m.Values {
			if kv.Key.String() != key {
				continue
			}
			if seq, ok := kv.Value.(*ast.SequenceNode); ok {
				for _, v := range seq.Values {
					out = append(out, v.GetToken().Position.Line)
				}
			}
		}
		return out
	}
	for i, l := range lines("steps") {
		if i < len(sc.Steps) {
			sc.Steps[i].Line = l
		}
	}
	for i, l := range lines("expect") {
		if i < len(sc.Expect) {
			sc.Expect[i].Line = l
		}
	}
	if errs := sc.validate(); len(errs) > 0 {
		return nil, errs
	}
	return sc, nil
}

func (sc *Scenario) validate() config.Errors {
	var errs config.Errors
	add := func(line int, format string, args ...any) {
		errs = append(errs, &config.Error{File: sc.File, Line: line, Col: 1, Msg: fmt.Sprintf(format, args...)})
	}
	if sc.Start != "" {
		if _, err := time.Parse(time.RFC3339, sc.Start); err != nil {
			add(0, "start %q: want an RFC 3339 time like 2026-03-01T20:00:00+01:00", sc.Start)
		}
	}
	for _, s := range sc.Steps {
		n := 0
		for _, set := range []bool{s.Up != "", s.Crash != "", s.Silence != "", s.Blip != "", s.Partition != "", s.Shutdown != "", s.Broken != "", s.Repaired != "", s.Restart, s.Broker != "", s.Command != "", s.Device != ""} {
			if set {
				n++
			}
		}
		switch {
		case n != 1:
			add(s.Line, "a step does one thing: up, crash, silence, blip, partition, shutdown, broken, repaired, restart_coordinator, broker, command or device")
		case s.For != 0 && s.Blip == "" && s.Partition == "":
			add(s.Line, "for belongs to a blip or a partition")
		case s.For < 0:
			add(s.Line, "for %v: a duration, more than 0", s.For)
		case s.Broker != "" && s.Broker != "down" && s.Broker != "up":
			add(s.Line, "broker %q: down or up", s.Broker)
		case s.At < 0:
			add(s.Line, "at %v: a time from the start, 0 or later", s.At)
		case s.Device != "" && (s.Fault == "") == (s.Panel == nil):
			add(s.Line, "device %s: give a fault (refuse, drop, disconnect or restart) or a panel route", s.Device)
		case s.Fault != "" && !slices.Contains([]string{FaultRefuse, FaultDrop, FaultDisconnect, FaultRestart}, s.Fault):
			add(s.Line, "fault %q: refuse, drop, disconnect or restart", s.Fault)
		case s.Args != nil && s.Command == "":
			add(s.Line, "args belong to a command")
		}
	}
	if len(sc.Expect) == 0 {
		add(0, "expect: a scenario needs at least one expectation (use {nothing: true} to say the policy must not act)")
	}
	for _, x := range sc.Expect {
		n := 0
		for _, set := range []bool{x.Event != "", x.No != "", x.Routed != nil, x.Nothing} {
			if set {
				n++
			}
		}
		if n != 1 {
			add(x.Line, "an expectation checks one thing: event, no, routed or nothing")
			continue
		}
		windows := 0
		for _, set := range []bool{x.By != 0, x.Within != 0, x.Before != 0} {
			if set {
				windows++
			}
		}
		if windows > 1 {
			add(x.Line, "give one of by, within and before")
		}
		if x.Event != "" {
			if msg := checkEventName(x.Event, "expectation can never be met"); msg != "" {
				add(x.Line, "event: %s", msg)
			}
		}
		if x.No != "" {
			if msg := checkEventName(x.No, "expectation can never fail"); msg != "" {
				add(x.Line, "no: %s", msg)
			}
		}
		if x.Routed != nil && (x.Routed.Driver == "" || x.Routed.Output < 1 || x.Routed.Input < 1) {
			add(x.Line, "routed: give driver, output and input (ports from 1)")
		}
		if end := x.end(); end != 0 && end < x.After.D() {
			add(x.Line, "the window ends (%v) before it starts (after %v)", end, x.After)
		}
	}
	return errs
}

// checkEventName says what is wrong with an expectation of the event
// name, "" when nothing is: expectations look at the record stream, so the
// name must be a record of the events registry. otherwise says what such
// an expectation of a name never recorded does ("expectation can never be
// met").
func checkEventName(name, otherwise string) string {
	e, known := events.Lookup(name)
	switch {
	case known && e.Record:
		return ""
	case known && strings.HasPrefix(name, events.CommandPrefix):
		return fmt.Sprintf("%s reaches the policy but is not recorded, so this %s: an operator command is the record %s (fields: {verb: %s})",
			name, otherwise, events.Command, strings.TrimPrefix(name, events.CommandPrefix))
	case known:
		return fmt.Sprintf("%s reaches the policy but is not recorded, so this %s", name, otherwise)
	}
	msg := fmt.Sprintf("no event is called %s, so this %s", name, otherwise)
	if near := events.Nearest(name, events.Recorded); near != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", near)
	}
	return msg
}

// SitePath is the site file the scenario runs on: its site (relative to
// the scenario file), else a site.yaml beside it or in the folder above
// (scenarios live in a folder beside the policy).
func (sc *Scenario) SitePath() string {
	dir := filepath.Dir(sc.File)
	if sc.Site != "" {
		if filepath.IsAbs(sc.Site) {
			return sc.Site
		}
		return filepath.Join(dir, sc.Site)
	}
	for _, p := range []string{filepath.Join(dir, "site.yaml"), filepath.Join(filepath.Dir(dir), "site.yaml")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(dir, "site.yaml")
}

// Find lists the scenario files under dir: *.yaml files in folders named
// scenarios, sorted.
func Find(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != dir {
			return filepath.SkipDir
		}
		if !d.IsDir() && filepath.Base(filepath.Dir(path)) == "scenarios" && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("looking for scenarios in %s: %w", dir, err)
	}
	if len(out) == 0 {
		return nil, errors.New("no scenarios found in " + dir + " (scenario files are *.yaml in folders named scenarios)")
	}
	slices.Sort(out)
	return out, nil
}
