package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"understudy/drivers"
	"understudy/suggest"
	"understudy/yamlerr"
)

// Probe checks a member that runs no understudy: each success counts as a
// heartbeat. Exactly one of TCP, HTTP, Driver and Kind.
type Probe struct {
	TCP    string `yaml:"tcp"`    // host:port that accepts connections
	HTTP   string `yaml:"http"`   // URL whose GET answers 2xx (or one of Expect)
	Expect []int  `yaml:"expect"` // accepted HTTP statuses
	Driver string `yaml:"driver"` // a driver of the site: alive while it is connected
	// Kind and Address: a device checked by the liveness check its driver
	// kind registers, written `<kind>: <address>` (videohub: 10.0.0.20,
	// extron: host[:23], kramer, kumo, …). Which kinds have one is the
	// driver registry's to say: Site.CheckProbes.
	Kind     string   `yaml:"-"`
	Address  string   `yaml:"-"`
	Interval Duration `yaml:"interval"` // default 1s
	Timeout  Duration `yaml:"timeout"`  // default the interval, at most 2s

	// more are the keys after the first that are not a setting above (a
	// mistake validate reports): only site.yaml can have them, and Kind
	// alone travels in a member's description.
	more []string
}

// DefaultProbeInterval is how often a probe runs unless set.
const DefaultProbeInterval = time.Second

// probeFields is Probe without its UnmarshalYAML, to decode its settings.
type probeFields Probe

// probeKeys returns the keys of a probe's own settings.
func probeKeys() []string { return yamlKeys(reflect.TypeFor[probeFields](), map[reflect.Type]bool{}) }

// UnmarshalYAML reads a probe's settings; any other key names a driver
// kind and its value the device's address.
func (p *Probe) UnmarshalYAML(node ast.Node) error {
	var pairs []*ast.MappingValueNode
	switch n := node.(type) {
	case *ast.MappingNode:
		pairs = n.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{n}
	default:
		return yamlerr.At(node, "probe: a mapping, like {tcp: \"10.0.0.5:554\"} or {videohub: 10.0.0.20}")
	}
	keys := probeKeys()
	var settings []*ast.MappingValueNode
	var kinds []string
	var address string
	for _, kv := range pairs {
		key := kv.Key.String()
		if slices.Contains(keys, key) {
			settings = append(settings, kv)
			continue
		}
		v, ok := kv.Value.(*ast.StringNode)
		if !ok {
			if near := suggest.Nearest(key, keys); near != "" {
				return yamlerr.At(kv.Key, "probe: unknown field %q (did you mean %q?)", key, near)
			}
			return yamlerr.At(kv.Value, "probe.%s: give the address of the device (host, or host:port), like 10.0.0.20", key)
		}
		if len(kinds) == 0 {
			address = v.Value
		}
		kinds = append(kinds, key)
	}
	var f probeFields
	if len(settings) > 0 {
		if err := yaml.NodeToValue(ast.Mapping(node.GetToken(), true, settings...), &f, yaml.Strict()); err != nil {
			return err
		}
	}
	*p = Probe(f)
	if len(kinds) > 0 {
		p.Kind, p.Address, p.more = kinds[0], address, kinds[1:]
	}
	return nil
}

// validateProbe checks what can be checked of a member's probe without the
// driver registry (the kind: CheckProbes).
func (s *Site) validateProbe(add func(path, format string, args ...any), p string, m Member, pr *Probe) {
	var named []string // the keys that name a kind
	if pr.Kind != "" {
		named = append([]string{pr.Kind}, pr.more...)
	}
	given := slices.Clone(named)
	for key, set := range map[string]bool{"tcp": pr.TCP != "", "http": pr.HTTP != "", "driver": pr.Driver != ""} {
		if set {
			given = append(given, key)
		}
	}
	switch {
	case len(given) != 1:
		slices.Sort(given)
		var hint []string
		for _, k := range named {
			if near := suggest.Nearest(k, probeKeys()); near != "" {
				hint = append(hint, fmt.Sprintf("%s: did you mean %s?", k, near))
			}
		}
		msg := "probe: give exactly one of tcp, http, driver, videohub or extron (or another driver kind with a liveness check)"
		if len(given) > 0 {
			msg += "; it gives " + strings.Join(given, ", ")
		}
		if len(hint) > 0 {
			msg += " (" + strings.Join(hint, "; ") + ")"
		}
		add(p+".probe", "%s", msg)
	case pr.Driver != "" && s.Drivers[pr.Driver].Kind == "":
		add(p+".probe.driver", "probe.driver %q is not a driver of this site", pr.Driver)
	case pr.Interval.D() < MinHeartbeat:
		add(p+".probe.interval", "probe.interval %v is shorter than %v", pr.Interval, MinHeartbeat)
	case m.LostAfter.D() < 2*pr.Interval.D():
		add(p+".probe.interval", "lost_after %v is shorter than two probes (2 × %v): one slow answer would be a false loss", m.LostAfter, pr.Interval)
	}
}

// CheckProbes checks every probe that names a driver kind against the
// registry: the kind must be one with a liveness check (drivers.Kind.Alive).
// A name that is not is reported at its file:line with the nearest kind or
// probe setting it may have meant. BuildDrivers calls it.
func (s *Site) CheckProbes(reg *drivers.Registry) Errors {
	var errs Errors
	alive, keys := reg.Probes(), probeKeys()
	for i, m := range s.Members {
		pr := m.Probe
		if pr == nil || pr.Kind == "" {
			continue
		}
		e := &Error{File: s.File}
		e.Line, e.Col = s.position(fmt.Sprintf("$.members[%d].probe.%s", i, pr.Kind))
		k, known := reg.Kind(pr.Kind)
		switch {
		case known && k.Alive != nil:
			continue
		case known:
			e.Msg = fmt.Sprintf("probe: driver kind %s has no liveness check; the kinds that have one: %s", pr.Kind, strings.Join(alive, ", "))
		default:
			e.Msg = fmt.Sprintf("probe: %q is neither a probe setting (%s) nor a driver kind with a liveness check (%s)", pr.Kind, strings.Join(keys, ", "), strings.Join(alive, ", "))
			if near := suggest.Nearest(strings.ToLower(pr.Kind), append(slices.Clone(alive), keys...)); near != "" {
				e.Msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
		}
		errs = append(errs, e)
	}
	return errs
}
