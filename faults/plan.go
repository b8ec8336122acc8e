package faults

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"understudy/drivers"
	"understudy/runtime/brokerconf"
	"understudy/runtime/config"
	"understudy/sitekey"
)

// Ports the plan gives the parts of the run on their hosts.
const (
	BrokerPort = 1883
	APIPort    = 7901
	// RaftPort is each coordinator candidate's raft transport on an
	// elected site.
	RaftPort     = 7950
	MaterialPort = 7902
	// firstSimPort is the first switcher simulator's port on the devices host.
	firstSimPort = 9990
)

// Plan is a site rewritten for a run on test hosts: one host per member
// that runs an instance (198.18.0.1, .2, … in Hosts order), a host,
// "devices", for the switcher simulators, and with an external broker a
// last host, "broker", for it. Nothing in it points anywhere but the test
// hosts.
type Plan struct {
	Dir    string       // the run's folder
	Source string       // the site.yaml it was made from
	Site   *config.Site // the site as loaded from Source
	Hosts  []HostPlan   // one per member that runs an instance
	// Broker is the bus's broker (Options.Broker): "" or BrokerEmbedded in
	// the coordinator's process, BrokerMosquitto on the broker host. Set it
	// before Write.
	Broker string
	// Switchers are the switcher drivers, each served by its simulator.
	Switchers []SwitcherPlan
	// Notes say what was replaced or disabled, for the report.
	Notes []string

	doc map[string]any // site.yaml as a tree, rewritten but for the bus
}

// HostPlan is one member's host.
type HostPlan struct {
	Member   string
	Addr     string // its address, 198.18.0.N
	SiteFile string // its own copy of the site folder's site.yaml
	StateDir string
	Log      string // its JSON log
	// Hooks is the Unix socket of its instance's fault hook
	// (runtime/faulthook), when the run enables it.
	Hooks string
	// Material are its duties.material folders on this machine, in
	// site.yaml's order (moved under the host's folder).
	Material []string
	// Config is its configuration bundle's file on this machine
	// (duties.config.file moved under the host's folder), "" without one.
	Config string
}

// SwitcherPlan is a switcher driver served by a simulator on the devices host.
type SwitcherPlan struct {
	Driver string
	Kind   string
	Listen string // address it listens on (devices host)
	Size   drivers.Size
}

// hostAddr is the address testhost gives the n-th host (from 1).
func hostAddr(n int) string { return net.IPv4(198, 18, 0, byte(n)).String() }

// DevicesAddr is the devices host's address.
func (p *Plan) DevicesAddr() string { return hostAddr(len(p.Hosts) + 1) }

// Host returns the plan of member's host.
func (p *Plan) Host(member string) (HostPlan, bool) {
	for _, h := range p.Hosts {
		if h.Member == member {
			return h, true
		}
	}
	return HostPlan{}, false
}

func (p *Plan) hostIndex(member string) int {
	return slices.IndexFunc(p.Hosts, func(h HostPlan) bool { return h.Member == member })
}

// CoordinatorAddr is the address of the coordinator's host (on an
// elected site, the first candidate's).
func (p *Plan) CoordinatorAddr() string {
	h, _ := p.Host(p.Site.Coordinator)
	return h.Addr
}

// Elected reports whether the site elects its coordinator among its
// candidates (config.Site.Elected): every candidate may coordinate.
func (p *Plan) Elected() bool { return p.Site.Elected() }

// Candidates are the members that may coordinate: an elected site's
// candidates (its witnesses included: one may lead for a moment), else the
// one coordinator.
func (p *Plan) Candidates() []string {
	if p.Elected() {
		return slices.Clone(p.Site.Candidates)
	}
	return []string{p.Site.Coordinator}
}

// CandidateBrokers reports whether every candidate of an elected site
// embeds a broker (members.X.broker) in the run: with the embedded broker
// (the default), not with an external one.
func (p *Plan) CandidateBrokers() bool { return p.Elected() && !p.External() }

// BrokerHosts are the labels of the hosts whose broker the instances use:
// the broker host with an external broker, every candidate's on an elected
// site whose candidates embed one each, else the coordinator's.
func (p *Plan) BrokerHosts() []string {
	switch {
	case p.External():
		return []string{BrokerHost}
	case p.CandidateBrokers():
		return p.Candidates()
	}
	return []string{p.Site.Coordinator}
}

// External reports whether the broker runs on a host of its own.
func (p *Plan) External() bool { return externalBroker(p.Broker) }

// TestHosts is how many test hosts the run needs: the members', the
// devices host and, with an external broker, the broker's.
func (p *Plan) TestHosts() int {
	if p.External() {
		return len(p.Hosts) + 2
	}
	return len(p.Hosts) + 1
}

// BrokerAddr is the address of the broker's host: the broker host with an
// external broker, else the coordinator's.
func (p *Plan) BrokerAddr() string {
	if p.External() {
		return hostAddr(len(p.Hosts) + 2)
	}
	return p.CoordinatorAddr()
}

// BrokerDir is the folder of an external broker's configuration.
func (p *Plan) BrokerDir() string { return filepath.Join(p.Dir, "broker") }

// BrokerConf is an external broker's configuration file (Write makes it).
func (p *Plan) BrokerConf() string { return filepath.Join(p.BrokerDir(), "mosquitto.conf") }

// BrokerLog is an external broker's log.
func (p *Plan) BrokerLog() string { return filepath.Join(p.Dir, "logs", BrokerHost+".log") }

// NewPlan loads sitePath (runtime/config Load: the site must be valid) and
// plans its run in dir (which it creates): a host per member, the
// embedded broker on the coordinator's host, simulators for the switchers,
// per-host state and material folders, and a site key of the run's own.
// reg names the driver kinds (which are switchers). Write puts the files in
// place once the simulators listen.
func NewPlan(sitePath, dir string, reg *drivers.Registry) (*Plan, error) {
	// Absolute, so that the site's folder holds its policy also when the
	// path is relative ("site.yaml", inside the folder).
	sitePath, err := filepath.Abs(sitePath)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", sitePath, err)
	}
	site, err := config.Load(sitePath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", sitePath, err)
	}
	data, err := os.ReadFile(sitePath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sitePath, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read %s: %w", sitePath, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	p := &Plan{Dir: dir, Source: sitePath, Site: site, doc: doc}
	if !strings.HasPrefix(filepath.Clean(site.PolicyPath()), filepath.Clean(site.Dir)+string(filepath.Separator)) {
		return nil, fmt.Errorf("%s: the policy %s is outside the site's folder; the fault suite copies the site's folder to every host", sitePath, site.PolicyPath())
	}
	n := 0
	for _, m := range site.Members {
		if m.Probe != nil {
			p.note("member %s is probed, not an instance: left out of the run (its probe would reach outside the test hosts)", m.ID)
			continue
		}
		n++
		hd := filepath.Join(dir, "hosts", m.ID)
		p.Hosts = append(p.Hosts, HostPlan{
			Member: m.ID, Addr: hostAddr(n),
			SiteFile: filepath.Join(hd, "site", filepath.Base(sitePath)),
			StateDir: filepath.Join(hd, "state"),
			Log:      filepath.Join(dir, "logs", m.ID+".log"),
			Hooks:    filepath.Join(hd, "hooks.sock"),
		})
	}
	for _, c := range p.Candidates() {
		if _, ok := p.Host(c); !ok {
			return nil, fmt.Errorf("%s: the coordinator candidate %s runs no instance", sitePath, c)
		}
	}
	if err := p.rewriteMembers(); err != nil {
		return nil, err
	}
	if p.Elected() {
		p.note("coordinator elected among %s: each candidate's raft: on its own host, port %d", strings.Join(p.Site.Candidates, ", "), RaftPort)
	}
	if err := p.rewriteDrivers(reg); err != nil {
		return nil, err
	}
	p.rewriteSite()
	return p, nil
}

func (p *Plan) note(format string, args ...any) {
	p.Notes = append(p.Notes, fmt.Sprintf(format, args...))
}

// rewriteSite sets what is the same for every host.
func (p *Plan) rewriteSite() {
	if v, ok := p.doc["mdns"]; !ok || v != false {
		p.note("mdns: false (the broker is named by address)")
	}
	p.doc["mdns"] = false
	delete(p.doc, "state_dir") // each instance gets --state
	if auth, ok := p.doc["auth"].(map[string]any); ok {
		delete(auth, "key")
		if auth["mode"] == config.AuthOff {
			p.note("auth.mode off: kept (the run's site key is made but not used)")
		}
	}
	p.note("a site key of the run's own (site.key beside each host's site.yaml): the bus is authenticated as on a commissioned site")
}

// rewriteMembers points every member at its host and folders.
func (p *Plan) rewriteMembers() error {
	list, _ := p.doc["members"].([]any)
	for i, raw := range list {
		m, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		id, _ := m["id"].(string)
		h, ok := p.Host(id)
		if !ok {
			continue
		}
		if i >= len(p.Site.Members) || p.Site.Members[i].ID != id {
			return fmt.Errorf("%s: members are not in the order they were loaded", p.Source)
		}
		hd := filepath.Dir(filepath.Dir(h.SiteFile))
		folders := map[string]string{}
		local := func(orig string) string {
			if f, ok := folders[orig]; ok {
				return f
			}
			f := filepath.Join(hd, "fs", strings.Trim(strings.ReplaceAll(filepath.Clean(orig), string(filepath.Separator), "_"), "_"))
			folders[orig] = f
			return f
		}
		m["api"] = net.JoinHostPort(h.Addr, strconv.Itoa(APIPort))
		if p.Elected() && p.Site.IsCandidate(id) {
			// Each candidate's raft transport on its own host; its broker
			// (broker:) is set by Write, which knows the run's broker.
			m["raft"] = net.JoinHostPort(h.Addr, strconv.Itoa(RaftPort))
		}
		if _, ok := m["material_server"]; ok {
			m["material_server"] = net.JoinHostPort(h.Addr, strconv.Itoa(MaterialPort))
		}
		for _, key := range []string{"disks", "material_mounts"} {
			if l, ok := m[key].([]any); ok {
				for j, v := range l {
					if s, ok := v.(string); ok {
						l[j] = local(s)
					}
				}
			}
		}
		if duties, ok := m["duties"].(map[string]any); ok {
			if l, ok := duties["material"].([]any); ok {
				for j, v := range l {
					if s, ok := v.(string); ok {
						l[j] = local(s)
						p.Hosts[p.hostIndex(id)].Material = append(p.Hosts[p.hostIndex(id)].Material, l[j].(string))
					}
				}
			}
		}
		if duties, ok := m["duties"].(map[string]any); ok {
			if cfg, ok := duties["config"].(map[string]any); ok {
				if orig, ok := cfg["file"].(string); ok {
					f := filepath.Join(local(filepath.Dir(orig)), filepath.Base(orig))
					cfg["file"] = f
					p.Hosts[p.hostIndex(id)].Config = f
					p.note("member %s: its configuration bundle's file moved under its host folder and started as the fault suite's own content", id)
				}
			}
		}
		if hooks, ok := m["hooks"].(map[string]any); ok {
			for name := range hooks {
				hooks[name] = []any{map[string]any{"write": map[string]any{
					"path":    filepath.Join(hd, "hooks", name+".txt"),
					"content": "hook " + name + " (replaced by the fault suite) ran\n",
				}}}
			}
			p.note("member %s: hooks %s replaced by a write of a file in its host folder (exec and http steps would reach outside the test hosts)", id, strings.Join(slices.Sorted(maps.Keys(hooks)), ", "))
		}
		for _, f := range folders {
			if err := os.MkdirAll(f, 0o755); err != nil {
				return fmt.Errorf("folders of %s: %w", id, err)
			}
		}
		if f := p.Hosts[p.hostIndex(id)].Config; f != "" {
			if err := os.WriteFile(f, []byte(InitialConfig(p.Site.Members[i].ConfigBundleName())), 0o644); err != nil {
				return fmt.Errorf("configuration bundle of %s: %w", id, err)
			}
		}
		if len(folders) > 0 {
			p.note("member %s: %d material, disk or configuration folder(s) moved under its host folder", id, len(folders))
		}
	}
	return nil
}

// rewriteDrivers gives every switcher a simulator on the devices host and
// points the other drivers where they can do no harm.
func (p *Plan) rewriteDrivers(reg *drivers.Registry) error {
	ds, _ := p.doc["drivers"].(map[string]any)
	dev := hostAddr(len(p.Hosts) + 1)
	sink := net.JoinHostPort(dev, "9") // discard: nothing listens there
	for i, name := range slices.Sorted(maps.Keys(ds)) {
		d, _ := ds[name].(map[string]any)
		kind, _ := d["kind"].(string)
		k, known := reg.Kind(kind)
		switch {
		case known && k.Simulate != nil:
			listen := net.JoinHostPort(dev, strconv.Itoa(firstSimPort+i))
			p.Switchers = append(p.Switchers, SwitcherPlan{Driver: name, Kind: kind, Listen: listen, Size: p.switcherSize(name)})
		case kind == "execprog":
			if progs, ok := d["programs"].(map[string]any); ok {
				for pn, raw := range progs {
					if prog, ok := raw.(map[string]any); ok {
						prog["path"] = "/bin/true"
						progs[pn] = prog
					}
				}
			}
			p.note("driver %s (execprog): every program replaced by /bin/true", name)
		case kind == "httpreq":
			d["base_url"] = "http://" + sink + "/"
			p.note("driver %s (httpreq): base_url pointed at %s on the devices host, where nothing answers: its actions fail", name, sink)
		case kind == "wol":
			d["broadcast"] = dev
			p.note("driver %s (wol): packets sent to the devices host only", name)
		case kind == "osc" || kind == "line":
			d["address"] = sink
			p.note("driver %s (%s): address pointed at %s on the devices host, where nothing answers", name, kind, sink)
		case kind == "mqttpub":
			d["url"] = "tcp://" + sink
			p.note("driver %s (mqttpub): url pointed at %s on the devices host, where nothing answers", name, sink)
		default:
			return fmt.Errorf("%s: driver %s of kind %q has no replacement in the fault suite yet", p.Source, name, kind)
		}
	}
	if len(p.Switchers) > 0 {
		p.note("switchers %s: simulators speaking their real protocol on the devices host %s", strings.Join(switcherNames(p.Switchers), ", "), dev)
	}
	return nil
}

func switcherNames(s []SwitcherPlan) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Driver+" ("+x.Kind+")")
	}
	return out
}

// switcherSize is big enough for every port the site names on it (at
// least 16×16).
func (p *Plan) switcherSize(driver string) drivers.Size {
	n := 16
	for _, m := range p.Site.Members {
		if m.Duties.Switcher != driver {
			continue
		}
		for _, v := range slices.Concat(m.Duties.Outputs, m.Duties.Inputs) {
			n = max(n, v)
		}
		for _, u := range m.Duties.Usage {
			for _, v := range slices.Concat(u.Outputs, u.Inputs) {
				n = max(n, v)
			}
		}
	}
	return drivers.Size{Inputs: n, Outputs: n}
}

// Write puts every host's copy of the site folder in place, with its
// site.yaml (switchers at addrs, by driver name: where their simulators
// really listen) and the run's site key.
func (p *Plan) Write(addrs map[string]string) error {
	ds, _ := p.doc["drivers"].(map[string]any)
	for _, s := range p.Switchers {
		d, _ := ds[s.Driver].(map[string]any)
		addr, ok := addrs[s.Driver]
		if !ok {
			return fmt.Errorf("plan: no address for switcher %s", s.Driver)
		}
		d["address"] = addr
	}
	k, err := sitekey.NewKey("k1")
	if err != nil {
		return fmt.Errorf("site key: %w", err)
	}
	ring, err := sitekey.NewRing(k)
	if err != nil {
		return fmt.Errorf("site key: %w", err)
	}
	orig, _ := p.doc["bus"].(map[string]any)
	broker := net.JoinHostPort(p.BrokerAddr(), strconv.Itoa(BrokerPort))
	if p.Elected() {
		// Every candidate embeds a broker on its own host (every instance
		// is connected to all of them), or none does and the external
		// broker is the site's one.
		list, _ := p.doc["members"].([]any)
		for _, raw := range list {
			m, ok := raw.(map[string]any)
			if !ok {
				continue
			}
			id, _ := m["id"].(string)
			h, ok := p.Host(id)
			switch {
			case !ok || !p.Site.IsCandidate(id) || p.External():
				delete(m, "broker")
			default:
				m["broker"] = net.JoinHostPort(h.Addr, strconv.Itoa(BrokerPort))
			}
		}
	}
	for _, h := range p.Hosts {
		dir := filepath.Dir(h.SiteFile)
		if err := copySiteFolder(p.Site.Dir, dir); err != nil {
			return err
		}
		bus := map[string]any{}
		for _, k := range []string{"username", "password", "users", "anonymous", "keepalive"} {
			if v, ok := orig[k]; ok {
				bus[k] = v
			}
		}
		switch {
		case p.External():
			// The users stay: broker-config writes their accounts.
			bus = keep(bus, "username", "password", "users", "anonymous", "keepalive")
			bus["url"] = "tcp://" + broker
		case p.CandidateBrokers():
			// No bus.url, no listen: each candidate's broker: is where it
			// embeds one, and every instance connects to every one. The
			// accounts stay (every candidate's broker has them).
			bus = keep(bus, "username", "password", "users", "anonymous", "keepalive")
		case h.Member == p.Site.Coordinator:
			bus["listen"] = broker
		default:
			bus = keep(bus, "username", "password", "keepalive")
			bus["url"] = "tcp://" + broker
		}
		p.doc["bus"] = bus
		data, err := yaml.Marshal(p.doc)
		if err != nil {
			return fmt.Errorf("site for %s: %w", h.Member, err)
		}
		if err := os.WriteFile(h.SiteFile, data, 0o644); err != nil {
			return fmt.Errorf("site for %s: %w", h.Member, err)
		}
		if err := ring.Write(filepath.Join(dir, config.DefaultKeyFile), true); err != nil {
			return fmt.Errorf("site key for %s: %w", h.Member, err)
		}
		for _, d := range []string{h.StateDir, filepath.Dir(h.Log)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("folders for %s: %w", h.Member, err)
			}
		}
		// The rewritten site must load as the original did.
		if _, err := config.Load(h.SiteFile); err != nil {
			return fmt.Errorf("rewritten site of %s does not load: %w", h.Member, err)
		}
	}
	p.doc["bus"] = orig
	if p.External() {
		if err := p.writeMosquitto(); err != nil {
			return err
		}
		p.note("bus: Debian's mosquitto on a host of its own, %s, with the accounts, ACLs and listener of understudy broker-config --mosquitto for the run's site; every instance connects to tcp://%s", p.BrokerAddr(), broker)
		return nil
	}
	if p.CandidateBrokers() {
		var addrs []string
		for _, c := range p.Candidates() {
			h, _ := p.Host(c)
			addrs = append(addrs, c+" "+net.JoinHostPort(h.Addr, strconv.Itoa(BrokerPort)))
		}
		p.note("bus: every coordinator candidate embeds a broker on its own host (%s), and every instance is connected to all of them", strings.Join(addrs, ", "))
		return nil
	}
	p.note("bus: the embedded broker on the coordinator's host %s; the others connect to tcp://%s", p.CoordinatorAddr(), broker)
	return nil
}

// mosquittoRun are the lines a run adds to broker-config's: it runs as root
// (mosquitto would drop to its own user, who cannot read the run's
// folders), keeps nothing on disk (a kill forgets every retained message,
// as a broker without persistence does) and logs connections with their
// times.
const mosquittoRun = `# added by the fault suite for the run
user root
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp true
log_timestamp_format %Y-%m-%dT%H:%M:%S
`

// writeMosquitto writes the external broker's configuration into BrokerDir
// as understudy broker-config --mosquitto does, from the first host's copy
// of the site and the run's key (every copy has the same), with a
// listener on the broker host's address.
func (p *Plan) writeMosquitto() error {
	site, err := config.Load(p.Hosts[0].SiteFile)
	if err != nil {
		return fmt.Errorf("broker configuration: %w", err)
	}
	ring, err := sitekey.Load(site.KeyPath())
	if err != nil {
		return fmt.Errorf("broker configuration: %w", err)
	}
	dir := p.BrokerDir()
	files, err := brokerconf.Mosquitto(site, ring, dir, fmt.Sprintf("%d %s", BrokerPort, p.BrokerAddr()))
	if err != nil {
		return fmt.Errorf("broker configuration: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("broker configuration: %w", err)
	}
	for name, data := range files {
		mode := os.FileMode(0o644)
		if name == brokerconf.PasswordFile {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			return fmt.Errorf("broker configuration: %w", err)
		}
	}
	conf := append(slices.Clone(files[brokerconf.ConfFile]), mosquittoRun...)
	if err := os.WriteFile(p.BrokerConf(), conf, 0o644); err != nil {
		return fmt.Errorf("broker configuration: %w", err)
	}
	return nil
}

// Shorten sets the site's failback delay (failover.failback_delay, the
// members' own and policy.settings.failback_delay where the site has them)
// and copy.settle for the run, so that a schedule of a minute or two can see
// a member failed back with its material copied; zero keeps the site's.
// Call it before Write.
func (p *Plan) Shorten(failoverDelay, failbackDelay, settle time.Duration) {
	if failoverDelay > 0 {
		// Only where a delay is set: a member failed over at once stays so.
		set := func(m map[string]any) {
			if m != nil {
				if _, ok := m["delay"]; ok {
					m["delay"] = failoverDelay.String()
				}
			}
		}
		set(mapOf(p.doc["failover"]))
		list, _ := p.doc["members"].([]any)
		for _, raw := range list {
			if m, ok := raw.(map[string]any); ok {
				set(mapOf(m["failover"]))
			}
		}
		for i := range p.Site.Members {
			if p.Site.Members[i].Settings.Delay > 0 {
				p.Site.Members[i].Settings.Delay = failoverDelay
			}
		}
		p.note("failover delay shortened to %s for the run (--failover-delay)", failoverDelay)
	}
	if failbackDelay > 0 {
		set := func(m map[string]any) {
			if m != nil {
				if _, ok := m["failback_delay"]; ok {
					m["failback_delay"] = failbackDelay.String()
				}
			}
		}
		fo, _ := p.doc["failover"].(map[string]any)
		if fo == nil {
			fo = map[string]any{}
			p.doc["failover"] = fo
		}
		fo["failback_delay"] = failbackDelay.String()
		if pol, ok := p.doc["policy"].(map[string]any); ok {
			set(mapOf(pol["settings"]))
		}
		list, _ := p.doc["members"].([]any)
		for _, raw := range list {
			if m, ok := raw.(map[string]any); ok {
				set(mapOf(m["failover"]))
			}
		}
		for i := range p.Site.Members {
			p.Site.Members[i].Settings.FailbackDelay = failbackDelay
		}
		if _, ok := p.Site.Policy.Settings["failback_delay"].(string); ok {
			p.Site.Policy.Settings["failback_delay"] = failbackDelay.String()
		}
		p.note("failback delay shortened to %s for the run (--failback-delay)", failbackDelay)
	}
	if settle > 0 {
		c, _ := p.doc["copy"].(map[string]any)
		if c == nil {
			c = map[string]any{}
			p.doc["copy"] = c
		}
		c["settle"] = settle.String()
		p.Site.Copy.Settle = config.Duration(settle)
		p.note("copy.settle shortened to %s for the run (--copy-settle)", settle)
	}
}

func mapOf(v any) map[string]any { m, _ := v.(map[string]any); return m }

func keep(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// maxCopy bounds the site folder copied to each host.
const maxCopy = 64 << 20

// copySiteFolder copies the site's folder (policies, scenarios, bundles)
// to dst, leaving out state folders and the site key.
func copySiteFolder(src, dst string) error {
	var total int64
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || d.Name() == config.DefaultKeyFile || strings.HasSuffix(d.Name(), ".key") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if total += info.Size(); total > maxCopy {
			return errors.New("the site's folder holds more than 64 MiB")
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		return fmt.Errorf("copy site folder %s: %w", src, err)
	}
	return nil
}

// Facts are what the checker needs to know of the site.
func (p *Plan) Facts() SiteFacts {
	s := p.Site
	f := SiteFacts{
		Name: s.Name, Coordinator: s.Coordinator, Mode: s.Failover.Mode, Limit: s.Failover.Limit,
		StartupGrace: s.Heartbeat.StartupGrace.D(), KeepAlive: s.Bus.KeepAlive.D(),
		CopySettle: s.CopySettle(), Members: map[string]MemberFact{},
	}
	if p.External() {
		f.Broker = p.Broker
	}
	if p.Elected() {
		f.Candidates = slices.Clone(s.Candidates)
		f.BrokerHosts = p.BrokerHosts()
		for _, id := range s.Candidates {
			if m, ok := s.Member(id); ok && m.Witness {
				f.Witnesses = append(f.Witnesses, id)
			}
		}
	}
	settings := s.Policy.Settings
	for _, m := range s.Members {
		_, instance := p.Host(m.ID)
		mf := MemberFact{
			ID: m.ID, Standby: m.Standby, Pool: m.Pool, Capacity: m.Capacity, Instance: instance,
			Protected: !m.Standby && m.Settings.Enabled,
			Interval:  m.Heartbeat.D(), LostAfter: m.LostAfter.D(), Delay: m.Settings.Delay,
			AutoFailback: m.Settings.AutoFailback, FailbackDelay: m.Settings.FailbackDelay,
			Switcher: m.Duties.Switcher, Outputs: m.Duties.Outputs, Inputs: m.Duties.Inputs,
			CopyMaterial: m.Settings.CopyMaterial, Material: m.Duties.Material,
			Bundle: m.ConfigBundleName(),
		}
		if !m.Settings.TakeOutputs {
			mf.Outputs = nil
		}
		if !m.Standby {
			for _, sb := range s.Members {
				if sb.Standby && sb.Pool == m.Pool && config.Misfit(sb.Traits(), m.Traits(), s.Pools[m.Pool].Match) == "" {
					mf.Standbys = append(mf.Standbys, sb.ID)
				}
			}
		}
		// Older policies read these from policy.settings (manager-backup does).
		if v, ok := settings["failback_delay"].(string); ok {
			if d, err := time.ParseDuration(v); err == nil {
				mf.FailbackDelay = d
			}
		}
		if v, ok := settings["auto_failback"].(bool); ok && !v {
			mf.AutoFailback = false
		}
		f.Members[m.ID] = mf
	}
	return f
}
