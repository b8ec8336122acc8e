package config

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"understudy/drivers/hooks"
)

// Failover is the site's takeover settings: the site-wide limit, the mode and
// the default options of every protected member (which a member may override
// under its own failover: key).
type Failover struct {
	// Limit is how many failovers may run at once (0: no limit); the rest
	// wait in a queue, by priority and then by time, and start as earlier
	// ones end.
	Limit int `yaml:"limit"`
	// Mode is auto (the policy acts) or manual (a takeover becomes a
	// proposal an operator confirms).
	Mode string `yaml:"mode"`
	// ConfirmAfter, in manual mode, acts on a proposal by itself after this
	// long without an answer (0: wait for the operator).
	ConfirmAfter Duration `yaml:"confirm_after"`

	FailoverOptions `yaml:",inline"`
}

// FailoverOptions are the per-member options of the seed products. Unset
// fields take the site's value, then the default.
type FailoverOptions struct {
	Enabled       *bool     `yaml:"enabled"`        // protect this member (default true)
	Delay         *Duration `yaml:"delay"`          // act only when unreachable longer than this (default 0)
	ClosedIsLost  *bool     `yaml:"closed_is_lost"` // a graceful shutdown is a failure too (default false)
	BrokenIsLost  *bool     `yaml:"broken_is_lost"` // all material disks failed starts a failover (default true)
	TakeOutputs   *bool     `yaml:"take_outputs"`   // the standby takes over the switcher outputs (default true)
	TakeClients   *bool     `yaml:"take_clients"`   // the standby takes over the clients the member controls (default true)
	Control       *string   `yaml:"control"`        // name of a hook the standby runs when the member is lost (default none)
	AutoFailback  *bool     `yaml:"auto_failback"`  // give the duties back when the member returns (default true)
	FailbackDelay *Duration `yaml:"failback_delay"` // wait this long after the return (default 30s)
	WaitReady     *bool     `yaml:"wait_ready"`     // the standby keeps the duties until the member has taken them (default true)
	CopyMaterial  *bool     `yaml:"copy_material"`  // copy material recorded meanwhile back before the standby lets go (default false)
	Grace         *Duration `yaml:"grace"`          // grace period of license-bound duties on a standby (default 0: none)
}

// FailoverSettings are a member's options with every default applied.
type FailoverSettings struct {
	Enabled       bool          `json:"enabled"`
	Delay         time.Duration `json:"delay"`
	ClosedIsLost  bool          `json:"closed_is_lost"`
	BrokenIsLost  bool          `json:"broken_is_lost"`
	TakeOutputs   bool          `json:"take_outputs"`
	TakeClients   bool          `json:"take_clients"`
	Control       string        `json:"control,omitempty"`
	AutoFailback  bool          `json:"auto_failback"`
	FailbackDelay time.Duration `json:"failback_delay"`
	WaitReady     bool          `json:"wait_ready"`
	CopyMaterial  bool          `json:"copy_material"`
	Grace         time.Duration `json:"grace"`
}

// Failover modes.
const (
	ModeAuto   = "auto"
	ModeManual = "manual"
)

// DefaultFailbackDelay is how long a returned member is watched before its
// duties go back to it.
const DefaultFailbackDelay = 30 * time.Second

// resolve applies the member's options over the site's over the defaults.
func resolve(site, member FailoverOptions) FailoverSettings {
	b := func(m, s *bool, def bool) bool {
		switch {
		case m != nil:
			return *m
		case s != nil:
			return *s
		}
		return def
	}
	d := func(m, s *Duration, def time.Duration) time.Duration {
		switch {
		case m != nil:
			return m.D()
		case s != nil:
			return s.D()
		}
		return def
	}
	control := ""
	if site.Control != nil {
		control = *site.Control
	}
	if member.Control != nil {
		control = *member.Control
	}
	return FailoverSettings{
		Enabled:       b(member.Enabled, site.Enabled, true),
		Delay:         d(member.Delay, site.Delay, 0),
		ClosedIsLost:  b(member.ClosedIsLost, site.ClosedIsLost, false),
		BrokenIsLost:  b(member.BrokenIsLost, site.BrokenIsLost, true),
		TakeOutputs:   b(member.TakeOutputs, site.TakeOutputs, true),
		TakeClients:   b(member.TakeClients, site.TakeClients, true),
		Control:       control,
		AutoFailback:  b(member.AutoFailback, site.AutoFailback, true),
		FailbackDelay: d(member.FailbackDelay, site.FailbackDelay, DefaultFailbackDelay),
		WaitReady:     b(member.WaitReady, site.WaitReady, true),
		CopyMaterial:  b(member.CopyMaterial, site.CopyMaterial, false),
		Grace:         d(member.Grace, site.Grace, 0),
	}
}

// Pool is a set of standbys that protect other members.
type Pool struct {
	// Match lists what a standby must share with the member it covers:
	// disk_layout, usage. Capabilities are always matched: a standby must have
	// every capability the member requires.
	Match []string `yaml:"match"`
	// Absorb is the worst case the pool is built for: how many of the
	// members it protects may fail at the same time (checked against its
	// standbys' capacities by understudy check; 0: not said).
	Absorb int `yaml:"absorb"`
}

// Pool match keys.
const (
	MatchDiskLayout = "disk_layout"
	MatchUsage      = "usage"
)

// Traits are what decides whether a standby may ever cover a member.
type Traits struct {
	ID           string
	DiskLayout   string
	Usage        []string
	Capabilities []string
	Requires     []string
}

// Traits are m's.
func (m *Member) Traits() Traits {
	return Traits{ID: m.ID, DiskLayout: m.DiskLayout, Usage: m.Usage, Capabilities: m.Capabilities, Requires: m.Requires}
}

// Misfit says why standby can never cover member in a pool that matches
// on match (Pool.Match), "" when it may: a capability member requires that
// standby lacks, another disk layout, no usage name in common. Whether it
// can now (its state, the capacity it has left) is for the takeover
// manager to say.
func Misfit(standby, member Traits, match []string) string {
	for _, need := range member.Requires {
		if !slices.Contains(standby.Capabilities, need) {
			return fmt.Sprintf("%s lacks capability %s", standby.ID, need)
		}
	}
	for _, key := range match {
		switch key {
		case MatchDiskLayout:
			if standby.DiskLayout != member.DiskLayout {
				return fmt.Sprintf("%s has disk layout %q, %s has %q", standby.ID, standby.DiskLayout, member.ID, member.DiskLayout)
			}
		case MatchUsage:
			if !slices.ContainsFunc(member.Usage, func(u string) bool { return slices.Contains(standby.Usage, u) }) {
				return fmt.Sprintf("%s shares no usage name with %s", standby.ID, member.ID)
			}
		}
	}
	return ""
}

// Ports are switcher outputs and inputs, 1-based, in matching order.
type Ports struct {
	Outputs []int `yaml:"outputs" json:"outputs"`
	Inputs  []int `yaml:"inputs" json:"inputs"`
}

// ConfigBundle is a member's configuration: a file on its machine whose
// version the site keeps, so the newest one wins whatever the start order.
type ConfigBundle struct {
	File string `yaml:"file" json:"file"`
	// Bundle names the configuration; members that share one (coordinated
	// peers) share its version. Default: the member's id.
	Bundle string `yaml:"bundle" json:"bundle"`
}

// ConfigBundleName is the name of the member's configuration bundle ("" if none).
func (m *Member) ConfigBundleName() string {
	switch {
	case m.Duties.Config == nil:
		return ""
	case m.Duties.Config.Bundle != "":
		return m.Duties.Config.Bundle
	}
	return m.ID
}

// Stream is a camera or output stream with its multicast address.
type Stream struct {
	Name    string `yaml:"name" json:"name"`
	Address string `yaml:"address" json:"address"` // multicast group:port, like 239.1.1.1:5004
}

// Hook is one step of a duty hook: run a program (no shell), make an HTTP
// call, or write the configuration bundle into place.
type Hook struct {
	Exec    []string          `yaml:"exec"`
	Env     map[string]string `yaml:"env"` // extra environment of an exec step (values are templates)
	HTTP    *HookHTTP         `yaml:"http"`
	Write   *HookWrite        `yaml:"write"`
	Timeout Duration          `yaml:"timeout"`
}

// HookHTTP is an HTTP call of a hook.
type HookHTTP struct {
	Method  string            `yaml:"method"`
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	Expect  []int             `yaml:"expect"`
}

// HookWrite writes a file of a hook, atomically.
type HookWrite struct {
	Path    string `yaml:"path"`
	Content string `yaml:"content"`
	Mode    string `yaml:"mode"` // octal, like "0644"
}

// Hook names the runtime runs on an instance; others are run by name from
// the policy.
const (
	HookTakeover = "takeover" // on a standby: take over a member's duties
	HookRelease  = "release"  // on a standby: give them back
	HookResume   = "resume"   // on a returned member: take its own duties again
	HookCopy     = "copy"     // on a returned member: fetch the material recorded meanwhile
	HookConfig   = "config"   // on any member: apply a newer configuration bundle
	// VerbMaterialGrant, on a member with a material server: let the
	// member named in the command read these folders, with this token, for
	// one copy. The instance carries it out itself; it is not a hook.
	VerbMaterialGrant = "material_grant"
)

// Step converts the hook to what the hook runner runs.
func (h Hook) Step() (hooks.Step, error) {
	s := hooks.Step{Exec: h.Exec, Env: h.Env, Timeout: h.Timeout.D()}
	if h.HTTP != nil {
		s.HTTP = &hooks.HTTP{Method: h.HTTP.Method, URL: h.HTTP.URL, Headers: h.HTTP.Headers, Body: h.HTTP.Body, Expect: h.HTTP.Expect}
	}
	if h.Write != nil {
		s.Write = &hooks.Write{Path: h.Write.Path, Content: h.Write.Content}
		if h.Write.Mode != "" {
			mode, err := strconv.ParseUint(h.Write.Mode, 8, 32)
			if err != nil || mode > 0o777 {
				return s, fmt.Errorf("write.mode %q: want octal permissions like \"0644\"", h.Write.Mode)
			}
			s.Write.Mode = os.FileMode(mode)
		}
	}
	return s, s.Validate()
}

// Steps converts a named hook of a member to runnable steps.
func (m *Member) Steps(name string) ([]hooks.Step, error) {
	var out []hooks.Step
	for i, h := range m.Hooks[name] {
		s, err := h.Step()
		if err != nil {
			return nil, fmt.Errorf("hook %s step %d: %w", name, i+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// validateTakeover checks the failover, pool, duty and hook settings.
func (s *Site) validateTakeover(add func(path, format string, args ...any), ids map[string]bool) {
	switch s.Failover.Mode {
	case ModeAuto, ModeManual:
	default:
		add("$.failover.mode", "failover.mode %q: auto or manual", s.Failover.Mode)
	}
	if s.Failover.Limit < 0 {
		add("$.failover.limit", "failover.limit %d: 0 (no limit) or more", s.Failover.Limit)
	}
	for name, p := range s.Pools {
		if !idRe.MatchString(name) {
			add("$.pools."+name, "pool name %q: use letters, digits, '.', '-' and '_'", name)
		}
		for j, key := range p.Match {
			if key != MatchDiskLayout && key != MatchUsage {
				add(fmt.Sprintf("$.pools.%s.match[%d]", name, j), "pools.%s.match %q: disk_layout or usage", name, key)
			}
		}
	}
	multicast := map[string]string{}
	for i, m := range s.Members {
		p := fmt.Sprintf("$.members[%d]", i)
		if m.Capacity < 0 {
			add(p+".capacity", "capacity %d: how many members a standby covers at once, 1 or more", m.Capacity)
		}
		if m.Pool != "" && !idRe.MatchString(m.Pool) {
			add(p+".pool", "pool name %q: use letters, digits, '.', '-' and '_'", m.Pool)
		}
		for name, ports := range m.Duties.Usage {
			if !slices.Contains(m.Usage, name) {
				add(fmt.Sprintf("%s.duties.usage.%s", p, name), "duties.usage %q is not one of this member's usage names %v", name, m.Usage)
			}
			for j, port := range append(append([]int(nil), ports.Outputs...), ports.Inputs...) {
				if port < 1 {
					add(fmt.Sprintf("%s.duties.usage.%s", p, name), "switcher ports count from 1, got %d (entry %d)", port, j+1)
				}
			}
		}
		for j, c := range m.Duties.Clients {
			if !ids[c] {
				add(fmt.Sprintf("%s.duties.clients[%d]", p, j), "duties.clients %q is not a member of the site", c)
			}
		}
		if m.Duties.Config != nil {
			switch {
			case m.Duties.Config.File == "" || m.Duties.Config.File[0] != '/':
				add(p+".duties.config", "duties.config: give the absolute path of the configuration bundle's file on that machine (file: /etc/app/config.xml)")
			case m.Duties.Config.Bundle != "" && !idRe.MatchString(m.Duties.Config.Bundle):
				add(p+".duties.config.bundle", "duties.config.bundle %q: use letters, digits, '.', '-' and '_'", m.Duties.Config.Bundle)
			}
		}
		for j, st := range m.Duties.Streams {
			sp := fmt.Sprintf("%s.duties.streams[%d]", p, j)
			ap, err := netip.ParseAddrPort(st.Address)
			switch {
			case st.Name == "":
				add(sp, "a stream needs a name")
			case err != nil:
				add(sp+".address", "stream %s address %q: want a multicast group and port, like 239.1.1.1:5004", st.Name, st.Address)
			case !ap.Addr().IsMulticast() || ap.Port() == 0:
				add(sp+".address", "stream %s address %s is not a multicast group with a port", st.Name, st.Address)
			default:
				if other, dup := multicast[ap.String()]; dup {
					add(sp+".address", "stream %s uses %s, already used by %s: every stream needs its own multicast address", st.Name, ap, other)
				}
				multicast[ap.String()] = m.ID + "/" + st.Name
			}
		}
		for j, d := range m.Disks {
			if d == "" || d[0] != '/' {
				add(fmt.Sprintf("%s.disks[%d]", p, j), "disks: give the absolute path of a material disk's folder, not %q", d)
			}
		}
		for name, steps := range m.Hooks {
			if !idRe.MatchString(name) {
				add(fmt.Sprintf("%s.hooks.%s", p, name), "hook name %q: use letters, digits, '.', '-' and '_'", name)
			}
			for j, h := range steps {
				if _, err := h.Step(); err != nil {
					add(fmt.Sprintf("%s.hooks.%s[%d]", p, name, j), "hook %s step %d: %v", name, j+1, err)
				}
			}
		}
		if pr := m.Probe; pr != nil {
			s.validateProbe(add, p, m, pr)
		}
		if c := m.Failover.Control; c != nil && *c != "" {
			if !idRe.MatchString(*c) {
				add(p+".failover.control", "failover.control %q: name a hook", *c)
			}
		}
	}
}
