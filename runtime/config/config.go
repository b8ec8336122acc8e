// Package config loads and validates site.yaml, the one file that describes an
// installation: its members, the bus, heartbeat timing, the policy and the
// device drivers. Every instance of a site reads the same file. Every error
// names file:line:col, and Load reports all validation errors at once.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"understudy/drivers"
	"understudy/yamlerr"
)

// Defaults for settings site.yaml leaves out.
const (
	DefaultHeartbeat      = 250 * time.Millisecond
	DefaultLostAfter      = time.Second
	DefaultStartupGrace   = 10 * time.Second
	DefaultBrokerListen   = ":1883"
	DefaultDiscover       = 3 * time.Second
	DefaultKeepAlive      = 2 * time.Second
	DefaultHandlerTimeout = time.Second
	DefaultAPI            = "127.0.0.1:7901"

	MinHeartbeat = 100 * time.Millisecond
	MinLostAfter = 300 * time.Millisecond
	MaxLostAfter = 30 * 24 * time.Hour
)

// Site is a parsed site.yaml.
type Site struct {
	Name     string `yaml:"site"`
	Timezone string `yaml:"timezone"`
	// Coordinator is the member whose instance runs the policy: on a site
	// whose coordinator: lists candidates, the first of them.
	Coordinator string `yaml:"-"`
	// Candidates are the members coordinator: names, in order of preference
	// (one for a single name). With three or more the candidates elect the
	// coordinator among them (Elected).
	Candidates []string `yaml:"-"`
	// CoordinatorYAML is coordinator: as decoded (a name or a list); read
	// Coordinator and Candidates instead.
	CoordinatorYAML CandidateList     `yaml:"coordinator"`
	MDNS            *bool             `yaml:"mdns"` // find peers and the broker by mDNS (default true)
	Bus             Bus               `yaml:"bus"`
	Auth            Auth              `yaml:"auth"` // how instances authenticate their messages (the site key)
	Heartbeat       Heartbeat         `yaml:"heartbeat"`
	Policy          Policy            `yaml:"policy"`
	Members         []Member          `yaml:"members"`
	Drivers         map[string]Driver `yaml:"drivers"`
	Failover        Failover          `yaml:"failover"`
	Pools           map[string]Pool   `yaml:"pools"`
	Copy            Copy              `yaml:"copy"` // how material is copied back to a restored member
	// HomeAssistant: the coordinator publishes Home Assistant MQTT
	// discovery configurations of the members.
	HomeAssistant HomeAssistant `yaml:"home_assistant"`
	// StateDir is where each instance keeps its state file (default: a
	// folder .understudy beside site.yaml); run --state overrides it.
	StateDir string `yaml:"state_dir"`

	File     string         `yaml:"-"` // path of the file as given to Load
	Dir      string         `yaml:"-"` // its directory; relative paths in the file start here
	Location *time.Location `yaml:"-"` // Timezone, loaded
	authMode string         // AuthMode, resolved at Load
	// memberAt is each member's index in Members, made at Load (Member is
	// asked per message and per status answer: a site has thousands).
	memberAt map[string]int
	ast      *ast.File
}

// Bus says where the MQTT broker is.
type Bus struct {
	// URL of an existing broker (tcp://host:1883). Empty: find the site's
	// broker by mDNS; if none answers, the member named by BrokerOn embeds one.
	URL       string   `yaml:"url"`
	Listen    string   `yaml:"listen"`    // address of the embedded broker ("none": only ListenTLS)
	BrokerOn  string   `yaml:"broker_on"` // member that embeds the broker (default: the coordinator)
	Discover  Duration `yaml:"discover"`  // how long to look for a broker by mDNS before embedding one
	KeepAlive Duration `yaml:"keepalive"` // MQTT keep-alive: how soon an instance notices a dead broker (about 1.5×)

	// ListenTLS is the address of the embedded broker's MQTT-over-TLS
	// listener (empty: none); ServerTLS holds its certificate.
	ListenTLS string     `yaml:"listen_tls"`
	ServerTLS *ServerTLS `yaml:"server_tls"`
	// Username and Password are the account the instances log in with.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS, for an ssl://, tls:// or mqtts:// URL: files of the CA that
	// signed the broker's certificate and of this machine's own certificate.
	TLS *BusTLS `yaml:"tls"`
	// Users are the embedded broker's accounts: with any, a client must log
	// in as one of them (the instances' own account among them).
	Users []BusUser `yaml:"users"`
	// Anonymous, with a site key: none (the default: a client must log in)
	// or read (may subscribe to the site's tree without an account).
	Anonymous string `yaml:"anonymous"`
}

// BusTLS names the files of a TLS connection to the broker.
type BusTLS struct {
	CA   string `yaml:"ca"`   // PEM of the CA(s) to trust (default: the system's)
	Cert string `yaml:"cert"` // PEM of this machine's client certificate (optional)
	Key  string `yaml:"key"`  // and its key
}

// BusUser is an account of the embedded broker. Publish and Subscribe are
// MQTT topic filters; a user with neither may use the site's whole tree
// (understudy/<site>/#), as the instances do.
type BusUser struct {
	Username  string   `yaml:"username"`
	Password  string   `yaml:"password"`
	Publish   []string `yaml:"publish"`
	Subscribe []string `yaml:"subscribe"`
	// ReplyPrefix is a topic prefix outside understudy/ (like
	// "showctl/replies/") under which commands may ask for their replies
	// (reply_to), besides understudy/<site>/reply/. MQTT does not say who
	// published a command, so every prefix holds for every command of the
	// site (see Site.ReplyPrefixes).
	ReplyPrefix string `yaml:"reply_prefix"`
	// Alternates are passwords also accepted (an instance's, derived from
	// the other keys of the ring during a key change).
	Alternates []string `yaml:"-"`
}

// Heartbeat is the site-wide liveness timing; members may override it.
type Heartbeat struct {
	Interval     Duration `yaml:"interval"`      // how often each instance publishes a heartbeat
	LostAfter    Duration `yaml:"lost_after"`    // silence after which a member is lost
	StartupGrace Duration `yaml:"startup_grace"` // how long a starting instance waits for members it has not heard yet
}

// Policy names the Lua policy and its settings.
type Policy struct {
	File           string         `yaml:"file"`            // relative to site.yaml; its folder is where require looks
	HandlerTimeout Duration       `yaml:"handler_timeout"` // deadline of every call into Lua
	Watch          *bool          `yaml:"watch"`           // reload when the files change (default true)
	MemoryLimitMB  int            `yaml:"memory_limit_mb"` // memory bound of the Lua state, MiB (0: the policy host's default, 64)
	Settings       map[string]any `yaml:"settings"`        // given to Lua as us.settings
}

// Member is one machine of the site.
type Member struct {
	ID        string   `yaml:"id"`
	Roles     []string `yaml:"roles"`
	Usage     []string `yaml:"usage"`
	Priority  int      `yaml:"priority"`
	Standby   bool     `yaml:"standby"`
	Heartbeat Duration `yaml:"heartbeat"`  // overrides heartbeat.interval
	LostAfter Duration `yaml:"lost_after"` // overrides heartbeat.lost_after
	API       string   `yaml:"api"`        // where this instance serves its status API
	// OpenMetrics lets /metrics answer without a token where the API is
	// not on loopback (for a scraper).
	OpenMetrics bool   `yaml:"api_open_metrics"`
	Duties      Duties `yaml:"duties"`

	// Pool is, for a standby, the pool it belongs to; for any other member,
	// the pool that protects it.
	Pool         string   `yaml:"pool"`
	Capacity     int      `yaml:"capacity"`     // a standby covers this many members at once (default 1)
	DiskLayout   string   `yaml:"disk_layout"`  // matched when the pool says so
	Capabilities []string `yaml:"capabilities"` // what this machine can do (a standby's offer)
	Requires     []string `yaml:"requires"`     // what a standby needs to cover this member
	// Disks are the member's material disks (folders); when every one has
	// failed the member is broken.
	Disks    []string          `yaml:"disks"`
	Failover FailoverOptions   `yaml:"failover"`
	Hooks    map[string][]Hook `yaml:"hooks"` // duty hooks this member's instance runs, by name
	// Probe, for a member that runs no understudy, checks it from the
	// coordinator instead of heartbeats.
	Probe *Probe `yaml:"probe"`
	// Witness: a coordinator candidate that only votes in the election of
	// the coordinator. It has no duties and covers no one; its failover is
	// off (Settings.Enabled), so no policy protects it.
	Witness bool `yaml:"witness"`
	// Raft is, for a candidate of an elected coordinator, the host:port
	// where its raft transport listens and the other candidates reach it.
	Raft string `yaml:"raft"`
	// Broker is, for a candidate of an elected coordinator on a site
	// without bus.url, the host:port where its instance embeds a broker;
	// every instance connects to every candidate's (Site.CandidateBrokers),
	// so the bus outlives any one machine.
	Broker string `yaml:"broker"`
	// MaterialServer is the address (host:port) where this instance serves
	// its material folders, read-only, to the peer the coordinator
	// authorises for a copy. Empty: it serves none.
	MaterialServer string `yaml:"material_server"`
	// MaterialMounts are folders mounted on this member's machine that hold
	// other members' material: the only places a copy to this member may
	// read from as folders (us.copy_missing's paths) rather than over a
	// peer's material server.
	MaterialMounts []string `yaml:"material_mounts"`

	// Settings are the failover options with the site's and the defaults applied.
	Settings FailoverSettings `yaml:"-"`
}

// Duties are what a member does that another may have to take over.
type Duties struct {
	Switcher string           `yaml:"switcher"` // the router driver its signals go through
	Outputs  []int            `yaml:"outputs"`  // switcher outputs it normally feeds (1-based)
	Inputs   []int            `yaml:"inputs"`   // switcher inputs its signals arrive on, in the same order
	Usage    map[string]Ports `yaml:"usage"`    // outputs and inputs per usage name (1:1 mirrors)
	Clients  []string         `yaml:"clients"`  // members (render clients, encoders) this member controls
	Config   *ConfigBundle    `yaml:"config"`   // its configuration bundle
	Streams  []Stream         `yaml:"streams"`  // cameras and streams with their multicast addresses
	Material []string         `yaml:"material"` // folders of recorded material
}

// Driver is one entry of the drivers section. Its settings are decoded by the
// driver kind itself (Decode), so errors in them still name file:line.
type Driver struct {
	Name string
	Kind string

	file string
	node *ast.MappingNode
}

// UnmarshalYAML keeps the entry's node for Decode and reads its kind.
func (d *Driver) UnmarshalYAML(node ast.Node) error {
	m, ok := node.(*ast.MappingNode)
	if !ok {
		return yamlerr.At(node, "a driver is a mapping with a kind and its settings")
	}
	d.node = m
	for _, kv := range m.Values {
		if kv.Key.String() == "kind" {
			kind, ok := kv.Value.(*ast.StringNode)
			if !ok {
				return yamlerr.At(kv.Value, "kind must be a name, like videohub")
			}
			d.Kind = kind.Value
		}
	}
	return nil
}

// Line returns the line of the driver's entry in site.yaml.
func (d Driver) Line() int {
	if d.node == nil {
		return 0
	}
	return d.node.GetToken().Position.Line
}

// Decode strictly decodes the driver's settings (all keys but kind) into v.
func (d Driver) Decode(v any) error {
	if d.node == nil {
		return nil
	}
	settings := *d.node
	settings.Values = nil
	for _, kv := range d.node.Values {
		if kv.Key.String() != "kind" {
			settings.Values = append(settings.Values, kv)
		}
	}
	if len(settings.Values) == 0 {
		return nil
	}
	if err := yaml.NodeToValue(&settings, v, yaml.Strict()); err != nil {
		return positionedIn(d.file, err, v)
	}
	return nil
}

// Error is one problem in site.yaml (or another YAML file of the site),
// at its file:line:col; Errors is every problem found, in file order. They
// are yamlerr's, so drivers and other leaves recognise them too.
type (
	Error  = yamlerr.Error
	Errors = yamlerr.Errors
)

// Load reads, decodes and validates a site file.
func Load(path string) (*Site, error) {
	data, err := yamlerr.ReadFile(path)
	if err != nil {
		if e := (*Error)(nil); errors.As(err, &e) {
			return nil, Errors{e}
		}
		return nil, fmt.Errorf("read site file: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates site.yaml content; path is used in messages and
// to resolve relative paths.
func Parse(path string, data []byte) (*Site, error) {
	file, err := yamlerr.Parse(path, data)
	if err != nil {
		return nil, Errors{positioned(path, err)}
	}
	s := &Site{File: path, Dir: filepath.Dir(path), ast: file}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return nil, Errors{{File: path, Msg: "empty site file"}}
	}
	if err := yaml.NodeToValue(file.Docs[0].Body, s, yaml.Strict()); err != nil {
		return nil, Errors{positioned(path, err)}
	}
	s.applyDefaults()
	s.authMode = s.resolveAuthMode()
	s.memberAt = make(map[string]int, len(s.Members))
	for i, m := range s.Members {
		if _, dup := s.memberAt[m.ID]; !dup { // a duplicate is a validation error; the first stands
			s.memberAt[m.ID] = i
		}
	}
	if errs := s.validate(); len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

func (s *Site) applyDefaults() {
	s.Candidates = slices.Clone([]string(s.CoordinatorYAML))
	if len(s.Candidates) > 0 {
		s.Coordinator = s.Candidates[0]
	}
	if s.Timezone == "" {
		s.Timezone = "Local"
	}
	if s.Bus.Listen == "" {
		s.Bus.Listen = DefaultBrokerListen
	}
	if s.Bus.BrokerOn == "" {
		s.Bus.BrokerOn = s.Coordinator
	}
	if s.Bus.Discover == 0 {
		s.Bus.Discover = Duration(DefaultDiscover)
	}
	if s.Bus.KeepAlive == 0 {
		s.Bus.KeepAlive = Duration(DefaultKeepAlive)
	}
	if s.Heartbeat.Interval == 0 {
		s.Heartbeat.Interval = Duration(DefaultHeartbeat)
	}
	if s.Heartbeat.LostAfter == 0 {
		s.Heartbeat.LostAfter = Duration(DefaultLostAfter)
	}
	if s.Heartbeat.StartupGrace == 0 {
		s.Heartbeat.StartupGrace = Duration(DefaultStartupGrace)
	}
	if s.Policy.HandlerTimeout == 0 {
		s.Policy.HandlerTimeout = Duration(DefaultHandlerTimeout)
	}
	if s.Failover.Mode == "" {
		s.Failover.Mode = ModeAuto
	}
	if s.StateDir == "" {
		s.StateDir = ".understudy"
	}
	if !filepath.IsAbs(s.StateDir) {
		s.StateDir = filepath.Join(s.Dir, s.StateDir)
	}
	for i := range s.Members {
		s.memberDefaults(&s.Members[i])
	}
	for name, d := range s.Drivers {
		d.Name = name
		d.file = s.File
		s.Drivers[name] = d
	}
}

func (s *Site) memberDefaults(m *Member) {
	if m.Heartbeat == 0 {
		m.Heartbeat = s.Heartbeat.Interval
	}
	if m.LostAfter == 0 {
		m.LostAfter = s.Heartbeat.LostAfter
	}
	if m.API == "" {
		m.API = DefaultAPI
	}
	if m.Standby && m.Capacity == 0 {
		m.Capacity = 1
	}
	m.Settings = resolve(s.Failover.FailoverOptions, m.Failover)
	if m.Witness {
		m.Settings.Enabled = false // no duties: nothing to fail over
	}
	if m.Probe != nil {
		if m.Probe.Interval == 0 {
			m.Probe.Interval = Duration(DefaultProbeInterval)
		}
		if m.Probe.Timeout == 0 {
			m.Probe.Timeout = Duration(min(m.Probe.Interval.D(), 2*time.Second))
		}
	}
}

var (
	siteNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	idRe       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

func (s *Site) validate() Errors {
	var errs Errors
	add := func(path, format string, args ...any) {
		e := &Error{File: s.File, Msg: fmt.Sprintf(format, args...)}
		e.Line, e.Col = s.position(path)
		errs = append(errs, e)
	}
	if !siteNameRe.MatchString(s.Name) {
		add("$.site", "site: give the site a name of lower-case letters, digits, - and _ (it is part of every MQTT topic), not %q", s.Name)
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		add("$.timezone", "timezone %q is not a known IANA zone (like Europe/Berlin): %v", s.Timezone, err)
	}
	s.Location = loc
	s.validateAuth(add)
	if len(s.Members) == 0 {
		add("$", "members: a site needs at least one member")
	}
	ids := map[string]bool{}
	for i, m := range s.Members {
		p := fmt.Sprintf("$.members[%d]", i)
		if !idRe.MatchString(m.ID) {
			add(p, "member id %q: use letters, digits, '.', '-' and '_' (at most 64)", m.ID)
		} else if ids[m.ID] {
			add(p+".id", "member id %q is used twice", m.ID)
		}
		ids[m.ID] = true
		for j, r := range m.Roles {
			if strings.TrimSpace(r) == "" {
				add(fmt.Sprintf("%s.roles[%d]", p, j), "empty role")
			}
		}
		if s.node(p+".heartbeat") != nil || s.node(p+".lost_after") != nil {
			s.checkTiming(add, p+".heartbeat", p+".lost_after", m.Heartbeat.D(), m.LostAfter.D())
		}
		if m.Duties.Switcher != "" {
			if _, ok := s.Drivers[m.Duties.Switcher]; !ok {
				add(p+".duties.switcher", "duties.switcher %q is not a driver of this site (drivers: %s)", m.Duties.Switcher, strings.Join(s.DriverNames(), ", "))
			}
		}
		for j, port := range m.Duties.Outputs {
			if port < 1 {
				add(fmt.Sprintf("%s.duties.outputs[%d]", p, j), "switcher ports count from 1, got %d", port)
			}
		}
		for j, port := range m.Duties.Inputs {
			if port < 1 {
				add(fmt.Sprintf("%s.duties.inputs[%d]", p, j), "switcher ports count from 1, got %d", port)
			}
		}
	}
	s.validateCandidates(add, ids)
	if s.node("$.bus.broker_on") != nil && !ids[s.Bus.BrokerOn] {
		add("$.bus.broker_on", "bus.broker_on %q is not a member", s.Bus.BrokerOn)
	}
	if s.Bus.URL != "" {
		u, err := url.Parse(s.Bus.URL)
		switch {
		case err != nil:
			add("$.bus.url", "bus.url: %v", err)
		case u.Host == "" || !map[string]bool{"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "ws": true, "wss": true}[u.Scheme]:
			add("$.bus.url", "bus.url %q: want tcp://host:port (or mqtt, ssl, tls, mqtts, ws, wss)", s.Bus.URL)
		}
	}
	if s.Bus.KeepAlive.D() < time.Second || s.Bus.KeepAlive.D()%time.Second != 0 {
		add("$.bus.keepalive", "bus.keepalive %v: MQTT counts keep-alive in whole seconds, at least 1s", s.Bus.KeepAlive)
	}
	s.checkTiming(add, "$.heartbeat.interval", "$.heartbeat.lost_after", s.Heartbeat.Interval.D(), s.Heartbeat.LostAfter.D())
	if s.Policy.File != "" {
		if _, err := os.Stat(s.PolicyPath()); err != nil {
			add("$.policy.file", "policy.file %q: %v", s.Policy.File, errors.Unwrap(err))
		}
	}
	if d := s.Policy.HandlerTimeout.D(); d < time.Millisecond || d > time.Minute {
		add("$.policy.handler_timeout", "policy.handler_timeout %v: between 1ms and 1m", d)
	}
	if n := s.Policy.MemoryLimitMB; n < 0 || n > 16384 {
		add("$.policy.memory_limit_mb", "policy.memory_limit_mb %d: between 1 and 16384 (MiB), or 0 for the default", n)
	}
	for _, name := range s.DriverNames() {
		d := s.Drivers[name]
		p := "$.drivers." + name
		if !idRe.MatchString(name) {
			add(p, "driver name %q: use letters, digits, '.', '-' and '_'", name)
		}
		if d.Kind == "" {
			add(p, "driver %s: say which kind it is (kind: videohub)", name)
		}
	}
	s.validateTakeover(add, ids)
	s.validateMaterial(add)
	s.validateBusUsers(add)
	s.validateBrokerTLS(add)
	s.validateHomeAssistant(add)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

func (s *Site) checkTiming(add func(path, format string, args ...any), intervalPath, lostPath string, interval, lostAfter time.Duration) {
	if interval < MinHeartbeat {
		add(intervalPath, "heartbeat %v is faster than the minimum %v", interval, MinHeartbeat)
	}
	if lostAfter < MinLostAfter || lostAfter > MaxLostAfter {
		add(lostPath, "lost_after %v: between %v and %v", lostAfter, MinLostAfter, MaxLostAfter)
	} else if lostAfter < 2*interval {
		add(lostPath, "lost_after %v is shorter than two heartbeats (2 × %v): one late heartbeat would be a false loss", lostAfter, interval)
	}
}

// Member returns the member with the given id.
func (s *Site) Member(id string) (*Member, bool) {
	if i, ok := s.memberAt[id]; ok && i < len(s.Members) && s.Members[i].ID == id {
		return &s.Members[i], true
	}
	// A Site not made by Load, or whose Members changed since.
	for i := range s.Members {
		if s.Members[i].ID == id {
			return &s.Members[i], true
		}
	}
	return nil, false
}

// MemberIDs returns the member ids in file order.
func (s *Site) MemberIDs() []string {
	ids := make([]string, len(s.Members))
	for i, m := range s.Members {
		ids[i] = m.ID
	}
	return ids
}

// DriverNames returns the driver names, sorted.
func (s *Site) DriverNames() []string { return slices.Sorted(maps.Keys(s.Drivers)) }

// PolicyPath returns the policy file's path, or "" when the site has none.
func (s *Site) PolicyPath() string {
	if s.Policy.File == "" {
		return ""
	}
	if filepath.IsAbs(s.Policy.File) {
		return s.Policy.File
	}
	return filepath.Join(s.Dir, s.Policy.File)
}

// UseMDNS reports whether instances advertise and browse by mDNS.
func (s *Site) UseMDNS() bool { return s.MDNS == nil || *s.MDNS }

// WatchPolicy reports whether the policy is reloaded when its files change.
func (s *Site) WatchPolicy() bool { return s.Policy.Watch == nil || *s.Policy.Watch }

// BuildDrivers creates every configured driver through the registry, decoding
// and validating their settings, and checks the members' probes against it
// (CheckProbes); no driver connects yet.
func (s *Site) BuildDrivers(reg *drivers.Registry) (map[string]drivers.Driver, error) {
	out := make(map[string]drivers.Driver, len(s.Drivers))
	var errs Errors
	for _, name := range s.DriverNames() {
		d := s.Drivers[name]
		drv, err := reg.New(d.Kind, drivers.Config{Name: name, Decode: d.Decode})
		if err != nil {
			var ce *Error
			if errors.As(err, &ce) {
				errs = append(errs, &Error{File: ce.File, Line: ce.Line, Col: ce.Col, Msg: fmt.Sprintf("driver %s: %s", name, ce.Msg)})
				continue
			}
			e := &Error{File: s.File, Msg: err.Error()}
			if !slices.Contains(reg.Kinds(), d.Kind) {
				e.Line, e.Col = s.position("$.drivers." + name + ".kind")
			} else {
				e.Line, e.Col = s.position("$.drivers." + name)
			}
			errs = append(errs, e)
			continue
		}
		out[name] = drv
	}
	errs = append(errs, s.CheckProbes(reg)...)
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// position returns the line and column of the node at path, or of its
// nearest ancestor that exists (a missing key is reported where it belongs).
func (s *Site) position(path string) (line, col int) {
	for path != "" {
		if n := s.node(path); n != nil {
			if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 {
				n = m.Values[0].Key
			}
			return n.GetToken().Position.Line, n.GetToken().Position.Column
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			break
		}
		path = path[:i]
	}
	return 0, 0
}

func (s *Site) node(path string) ast.Node {
	p, err := yaml.PathString(path)
	if err != nil {
		return nil
	}
	n, err := p.FilterFile(s.ast)
	if err != nil {
		return nil
	}
	return n
}

// Positioned turns a go-yaml error into an *Error with file:line:col (for
// other YAML files of a site, such as scenarios).
func Positioned(file string, err error) *Error { return yamlerr.Positioned(file, err) }

// positioned turns a go-yaml error into an *Error with file:line:col.
func positioned(file string, err error) *Error {
	return positionedIn(file, err, nil)
}

// positionedIn is positioned, with a did-you-mean for an unknown field
// drawn from the yaml keys of vocabulary (a value of the decoded type; nil:
// every key of site.yaml).
func positionedIn(file string, err error, vocabulary any) *Error {
	e := yamlerr.Positioned(file, err)
	if ye := yaml.Error(nil); errors.As(err, &ye) && ye.GetToken() != nil {
		e.Msg = didYouMean(e.Msg, vocabulary)
	}
	return e
}
