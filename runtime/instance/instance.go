// Package instance runs one understudy instance, as `understudy run` does: it
// finds the site's broker (configured, found by mDNS, or embedded), joins the
// bus, advertises itself by mDNS, publishes heartbeats, keeps the member
// table, serves its status API, and on the coordinator runs the policy and the
// drivers. SIGTERM-style shutdown (ctx cancelled) announces a graceful close.
package instance

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"understudy/discovery/broker"
	"understudy/discovery/bus"
	"understudy/discovery/mdns"
	"understudy/drivers"
	"understudy/drivers/hooks"
	"understudy/runtime/agent"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/configsync"
	"understudy/runtime/coordinator"
	"understudy/runtime/diskhealth"
	"understudy/runtime/engine"
	"understudy/runtime/faulthook"
	"understudy/runtime/inbound"
	"understudy/runtime/journal"
	"understudy/runtime/materialcopy"
	"understudy/runtime/policy"
	"understudy/runtime/store"
	"understudy/sitekey"
)

// Service types advertised by mDNS.
const (
	ServiceInstance = "_understudy._tcp"
	ServiceBroker   = "_mqtt._tcp"
)

// Options configure an instance.
type Options struct {
	Site     *config.Site
	Self     string
	Registry *drivers.Registry
	Logger   *slog.Logger
	Version  string
	// Reload receives a value when the policy should be reloaded (SIGHUP).
	Reload <-chan struct{}
	// PolicyPoll is how often the policy files are checked for changes
	// (default 1s); a negative value turns the watch off.
	PolicyPoll time.Duration
	// StateDir overrides the site's state_dir: where this instance keeps its
	// state file.
	StateDir string
	// Described says this instance described itself (run --describe; the
	// caller has applied it to Site): it publishes the description so the
	// other instances know it too.
	Described bool
}

// Instance is a running instance.
type Instance struct {
	opts   Options
	site   *config.Site
	member *config.Member
	log    *slog.Logger
	clock  clock.Clock // the wall clock (stepped by the fault hooks in a fault schedule)
	engine *engine.Engine
	// coord is the coordinator this instance runs now: nil unless it
	// coordinates (named in site.yaml, or elected: then it changes).
	coord    atomic.Pointer[coordinator.Coordinator]
	election *election // this candidate's part in electing the coordinator, else nil
	// coordinatorInfo is the newest word of itself a coordinator published
	// (the highest term), nil before any.
	coordinatorInfo atomic.Pointer[bus.CoordinatorInfo]
	bus             atomic.Pointer[bus.Paths] // set once the broker is found; read by the engine and the API
	drops           *bus.Drops
	ring            *sitekey.Ring // the site key (nil: auth off)
	bootCount       uint64        // this start's boot counter, for the stamps of its messages
	auth            *inbound.Auth // checks the codes of messages between instances (nil: auth off)
	api             net.Listener
	store           *store.Store
	agent           *agent.Agent
	config          *configsync.Sync       // nil when the member has no configuration bundle
	health          atomic.Pointer[[]byte] // last disk health report, published again on reconnect
	grants          *materialcopy.Grants   // nil when the member serves no material
	material        net.Listener           // the material server's listener, or nil
	copying         chan struct{}          // holds a token while a material copy runs
	journal         *journal.Writer        // the coordinator's event journal, else nil
	metrics         *metrics
	feed            *recordFeed // recent records, for the dashboard
	token           string      // the API token commands need
	readToken       string      // the API token that may only read (off loopback)
	readTokenPath   string
	coveringMu      sync.Mutex     // one covering report at a time, the newest last
	busCommands     chan struct{}  // bounds the bus commands carried out at once
	recent          recentCommands // the bus commands of the last minute, by request_id
	replies         pendingReplies // commands passed to the coordinator, waiting for its answer
	busHealth       busHealth      // what keeps this instance off the bus, for /healthz and systemd
	busTLS          *tls.Config    // from bus.tls, read at start
	tokenPath       string
	closers         closers // what start opened, closed when the instance stops

	// materialRefused counts the material commands refused (copy,
	// material_grant) for what they asked.
	materialRefused refusals

	mu     sync.Mutex // guards what the status API reads
	busURL string
	broker *broker.Broker
	peers  map[string]mdns.Entry

	brokerAdv *mdns.Advertisement // the embedded broker's (set by findBroker, closed by run)
}

// Run runs the instance until ctx ends. It returns an error if the instance
// cannot start (bad drivers, a policy that does not load, a port in use).
func Run(ctx context.Context, opts Options) error {
	inst, err := start(ctx, opts)
	if err != nil {
		return err
	}
	return inst.run(ctx)
}

func start(ctx context.Context, opts Options) (_ *Instance, err error) {
	site := opts.Site
	member, ok := site.Member(opts.Self)
	if !ok {
		return nil, fmt.Errorf("%q is not a member of site %s (members: %s)", opts.Self, site.Name, strings.Join(site.MemberIDs(), ", "))
	}
	if site.Bus.URL == "" && !site.UseMDNS() && site.Bus.BrokerOn != opts.Self && site.CandidateBrokers() == nil {
		// Nothing would ever tell this instance where the broker is.
		return nil, fmt.Errorf("no way to the bus: site.yaml has no bus.url and mdns is false, so only %s (bus.broker_on), which embeds the broker, is on the bus; %s would wait for ever. Set bus.url to a broker every member reaches (then no member embeds one), or turn mdns on", site.Bus.BrokerOn, opts.Self)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PolicyPoll == 0 {
		opts.PolicyPoll = time.Second
	}
	inst := &Instance{opts: opts, site: site, member: member, log: opts.Logger, peers: map[string]mdns.Entry{}, copying: make(chan struct{}, 1), busCommands: make(chan struct{}, 16)}
	// What start opens is closed in reverse order: here when a later step
	// fails, else when the instance stops (run).
	defer func() {
		if err != nil {
			inst.closers.closeAll()
		}
	}()
	// The fault suite's test hooks: only with UNDERSTUDY_FAULT_HOOKS set;
	// otherwise hooks is nil and every use of it below is the plain thing
	// (the real clock, no commit hook, the logger as it is).
	hooks, err := faulthook.FromEnv(inst.log)
	if err != nil {
		return nil, err
	}
	if hooks != nil {
		inst.closers.add(func() { hooks.Close() })
		inst.log = slog.New(hooks.LogHandler(inst.log.Handler()))
	}
	inst.clock = hooks.Clock(clock.Real{})
	inst.drops = bus.NewDrops(inst.log)
	// A named coordinator coordinates from the start; on a site that
	// elects its coordinator, every candidate may (elect.go).
	coordinating := site.Coordinator == opts.Self && !site.Elected()
	candidate := site.Elected() && site.IsCandidate(opts.Self)

	var drvs map[string]drivers.Driver
	if coordinating {
		if drvs, err = site.BuildDrivers(opts.Registry); err != nil {
			return nil, err
		}
	}
	dir := site.StateDir
	if opts.StateDir != "" {
		dir = opts.StateDir
	}
	st, err := store.Open(filepath.Join(dir, site.Name+"-"+opts.Self+".db"), store.Options{BeforeCommit: hooks.StoreCommit()})
	if err != nil {
		return nil, err
	}
	inst.store = st
	inst.closers.add(func() { st.Close() })
	if rec := st.Recovered(); rec != nil {
		inst.log.Error(rec.Message(st.Path()), "reason", rec.Reason, "moved_to", rec.MovedTo)
	}
	if inst.busTLS, err = busTLS(site.Bus.TLS); err != nil {
		return nil, err
	}
	if err := inst.loadSiteKey(); err != nil {
		return nil, err
	}
	inst.metrics = newMetrics(inst)
	if candidate {
		if inst.election, err = inst.startElection(dir, hooks.StoreCommit()); err != nil {
			return nil, err
		}
	}
	inst.tokenPath = TokenPath(dir, site.Name, opts.Self)
	if inst.token, err = loadToken(inst.tokenPath); err != nil {
		return nil, err
	}
	inst.readTokenPath = ReadTokenPath(dir, site.Name, opts.Self)
	if inst.readToken, err = loadToken(inst.readTokenPath); err != nil {
		return nil, err
	}
	if b := member.ConfigBundleName(); b != "" {
		topic := (bus.Topics{Site: site.Name}).Config(opts.Self)
		inst.config = configsync.New(configsync.Options{
			Self: opts.Self, Bundle: b, File: member.Duties.Config.File, Store: st, Logger: inst.log.With("component", "config"),
			Publish: func(payload []byte) {
				if err := (publisher{inst}).Publish(topic, 1, true, payload); err != nil {
					inst.log.Debug("configuration report not published yet", "error", err)
				}
			},
		})
	}
	inst.agent, err = agent.New(agent.Options{
		Site: site, Self: opts.Self, Store: st, Publish: publisher{inst}.Publish, Logger: inst.log, Now: inst.clock.Now,
		Builtin: inst.builtinSteps, Tasks: inst.materialTasks(), Drops: inst.drops,
		CoveringChanged: func([]bus.Covered) { inst.publishCovering(true) },
	})
	if err != nil {
		return nil, err
	}
	if inst.material, err = inst.startMaterialServer(); err != nil {
		return nil, err
	}
	if inst.material != nil {
		inst.closers.add(func() { inst.material.Close() })
	}
	api, err := net.Listen("tcp", member.API)
	if err != nil {
		return nil, fmt.Errorf("status API on %s: %w", member.API, err)
	}
	inst.api = api
	inst.closers.add(func() { api.Close() })
	if err := os.WriteFile(AddressPath(dir, site.Name, opts.Self), []byte("http://"+api.Addr().String()+"\n"), 0o644); err != nil {
		inst.log.Warn("API address not written for the CLI", "error", err)
	}
	inst.feed = newRecordFeed()
	observe := func(r engine.Record) {
		inst.metrics.observe(r)
		inst.feed.add(r)
	}
	if coordinating || candidate {
		// The event journal: what happened and what the policy decided, for
		// people and for understudy replay (a candidate's: while it leads).
		j, err := journal.Open(filepath.Join(dir, site.Name+"-"+opts.Self+".journal"), journal.Options{})
		if err != nil {
			return nil, err
		}
		inst.journal = j
		inst.closers.add(func() { j.Close() })
		observe = func(r engine.Record) {
			inst.metrics.observe(r)
			inst.feed.add(r)
			if err := j.Write(r); err != nil {
				inst.log.Error("event journal not written: its records wait in memory and are written in order as soon as the file takes writes (further failures are not logged until it works again)", "error", err)
			}
		}
	}
	var coord engine.Coordinator
	if coordinating {
		c, err := coordinator.New(coordinator.Options{Drivers: drvs, Registry: opts.Registry, Publisher: publisher{inst}, Store: st})
		if err != nil {
			return nil, err
		}
		inst.coord.Store(c)
		coord = c
	}
	inst.engine, err = engine.New(engine.Options{
		// The engine's copy of the site changes when members describe themselves.
		Site: site.Clone(), Self: opts.Self, Clock: inst.clock, Logger: inst.log, Drops: inst.drops,
		Coordinator: coord, Observe: observe, Paths: len(site.CandidateBrokers()),
	})
	if err != nil {
		return nil, err
	}
	return inst, nil
}

// closers is a cleanup stack: what start opened, closed in reverse order.
type closers []func()

func (c *closers) add(f func()) { *c = append(*c, f) }

// closeAll closes everything added, the last first, once.
func (c *closers) closeAll() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// publisher lets the engine publish before the bus client exists.
type publisher struct{ inst *Instance }

func (p publisher) Publish(topic string, qos byte, retained bool, payload []byte) error {
	c := p.inst.bus.Load()
	if c == nil {
		return errors.New("bus not started")
	}
	return c.Publish(topic, qos, retained, payload)
}

func (inst *Instance) run(ctx context.Context) error {
	defer inst.closers.closeAll()
	site := inst.site
	inst.log.Info("starting", "site", site.Name, "member", inst.opts.Self, "coordinator", inst.coord.Load() != nil, "candidate", inst.election != nil, "version", inst.opts.Version)

	// The engine starts first (a policy that does not load stops us here,
	// before we join the bus), and its loop runs on the same goroutine, so
	// bus callbacks have somewhere to go.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	engineCtx, stopEngine := context.WithCancel(context.Background())
	defer stopEngine()
	started := make(chan error, 1)
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		if err := inst.engine.Start(engineCtx); err != nil {
			started <- err
			return
		}
		started <- nil
		inst.engine.Loop(engineCtx)
	}()
	if err := <-started; err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		inst.serveAPI(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		inst.agent.Run(ctx)
	}()
	if inst.material != nil {
		wg.Go(func() { inst.serveMaterial(ctx, inst.material) })
	}
	if inst.config != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst.config.Run(ctx)
		}()
	}
	// Ready as far as systemd is concerned: the policy is loaded and the
	// status API listens; finding the broker may take a while (watchHealth
	// says so).
	inst.notify(daemon.SdNotifyReady, "STATUS=running; connecting to the bus")
	wg.Go(func() { inst.watchdog(ctx) })
	wg.Go(func() { inst.watchHealth(ctx) })
	if len(inst.member.Disks) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			diskhealth.Run(ctx, diskhealth.Options{Paths: inst.member.Disks, OnChange: inst.reportHealth})
		}()
	}

	urls, err := inst.findBrokers(ctx)
	if err != nil {
		stopping := ctx.Err() != nil
		cancel() // the goroutines above end, so that the error is returned now
		stopEngine()
		<-engineDone
		if stopping {
			return nil
		}
		return err
	}
	url := strings.Join(urls, " ")
	inst.busHealth.connecting(url, time.Now())
	inst.mu.Lock()
	inst.busURL = url
	embedded := inst.broker
	inst.mu.Unlock()
	if embedded != nil {
		defer embedded.Close()
	} else {
		// The broker is another process (mosquitto, or the broker embedded
		// in another member): one that shuts down publishes its clients'
		// Last Wills on its way out, so a Will is taken as a loss once the
		// broker has carried this instance's own heartbeat back after it
		// (engine.CheckWills). One embedded here cannot go without us.
		inst.engine.CheckWills(func() (bus.Heartbeat, bool) {
			if c := inst.bus.Load(); c != nil {
				return c.Probe()
			}
			return bus.Heartbeat{}, false
		})
	}
	if inst.brokerAdv != nil {
		defer inst.brokerAdv.Close() // its goodbye goes out before the broker closes
	}
	client := inst.connectBus(urls)

	if site.UseMDNS() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst.mdnsLoop(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		client.RunHeartbeats(ctx)
	}()
	if inst.election != nil {
		wg.Go(func() { inst.election.run(ctx) })
	}
	if (inst.coord.Load() != nil || inst.election != nil) && site.PolicyPath() != "" && site.WatchPolicy() && inst.opts.PolicyPoll > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			policy.Watch(ctx, filepath.Dir(site.PolicyPath()), inst.opts.PolicyPoll, func() {
				if c := inst.coord.Load(); c != nil {
					inst.log.Info("policy files changed; reloading")
					c.Reload()
				}
			})
		}()
	}
	if inst.opts.Reload != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-inst.opts.Reload:
					inst.log.Info("reload requested")
					inst.notify(daemon.SdNotifyReloading, strings.TrimSpace(daemon.SdNotifyMonotonicUsec()))
					if c := inst.coord.Load(); c != nil {
						c.Reload() // only the coordinator runs the policy
					}
					inst.notify(daemon.SdNotifyReady)
				}
			}
		}()
	}

	<-ctx.Done()
	inst.notify(daemon.SdNotifyStopping, "STATUS=closing")
	// Graceful close: say so on the bus before leaving, so the site sees a
	// shutdown rather than a loss.
	client.Close(true)
	stopEngine()
	<-engineDone
	inst.log.Info("stopped", "member", inst.opts.Self)
	return nil
}

// mdnsRetry is how long a member waiting for the site's broker waits
// before trying mDNS again when it could not run.
const mdnsRetry = 5 * time.Second

// findBroker returns the bus URL: the configured one; one found by mDNS; or,
// on the member that hosts it, a newly embedded broker. Other members keep
// looking until the broker appears.
func (inst *Instance) findBroker(ctx context.Context) (string, error) {
	site := inst.site
	if site.Bus.URL != "" {
		return site.Bus.URL, nil
	}
	match := func(e mdns.Entry) bool { return e.TXT["site"] == site.Name }
	hosts := site.Bus.BrokerOn == inst.opts.Self
	if site.UseMDNS() {
		lookFor := site.Bus.Discover.D()
		what := fmt.Sprintf("looking for %s of site %s by mDNS for %v before this instance embeds one", ServiceBroker, site.Name, lookFor)
		if !hosts {
			lookFor = 0 // until found
			what = fmt.Sprintf("looking for %s of site %s by mDNS (embedded on member %s)", ServiceBroker, site.Name, site.Bus.BrokerOn)
			inst.log.Info("looking for the site's broker by mDNS", "service", ServiceBroker, "embedded_on", site.Bus.BrokerOn)
		}
		inst.busHealth.finding(what, hosts, time.Now())
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if lookFor > 0 {
			fctx, cancel = context.WithTimeout(ctx, lookFor)
		}
		entry, err := mdns.Find(fctx, ServiceBroker, time.Second, match, inst.log)
		// mDNS that cannot run at all (no multicast-capable interface with
		// an address yet: a machine still booting, a cable out) is tried
		// again by a member that waits for the broker, and it says why.
		logged := ""
		for err != nil && !hosts && ctx.Err() == nil {
			if err.Error() != logged {
				logged = err.Error()
				inst.log.Warn("mDNS cannot look for the site's broker; trying again", "error", err, "retry_every", mdnsRetry)
			}
			inst.busHealth.finding(fmt.Sprintf("%s: mDNS cannot run (%v); trying again every %v", what, err, mdnsRetry), hosts, time.Now())
			select {
			case <-ctx.Done():
			case <-time.After(mdnsRetry):
				entry, err = mdns.Find(fctx, ServiceBroker, time.Second, match, inst.log)
			}
		}
		cancel()
		if err == nil {
			url := brokerURL(entry, inst.busTLS != nil)
			inst.log.Info("found the site's broker by mDNS", "broker", url, "host", entry.Host)
			return url, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if hosts {
			inst.log.Warn("mDNS could not look for another broker of the site; embedding one", "error", err)
		}
	}
	if !hosts {
		return "", fmt.Errorf("no bus: site.yaml names no broker (bus.url), mDNS is off, and the broker is embedded on %s", site.Bus.BrokerOn)
	}
	return inst.embedBroker(site.Bus.PlainListen(), site.UseMDNS())
}

// findBrokers returns the URLs of the brokers this instance connects to:
// every candidate's on a site whose candidates each embed one (this
// instance's own over loopback, started here), else the site's one broker
// (findBroker).
func (inst *Instance) findBrokers(ctx context.Context) ([]string, error) {
	brokers := inst.site.CandidateBrokers()
	if brokers == nil {
		url, err := inst.findBroker(ctx)
		if err != nil {
			return nil, err
		}
		return []string{url}, nil
	}
	var urls []string
	for _, b := range brokers {
		if b.Member != inst.opts.Self {
			urls = append(urls, "tcp://"+b.Address)
			continue
		}
		url, err := inst.embedBroker(b.Address, false)
		if err != nil {
			return nil, fmt.Errorf("%w (members.%s.broker)", err, b.Member)
		}
		urls = append(urls, url)
	}
	inst.log.Info("connecting to every candidate's broker", "brokers", strings.Join(urls, " "))
	return urls, nil
}

// embedBroker starts the broker this instance embeds, listening on listen
// (plain MQTT; bus.listen_tls adds TLS), announced by mDNS when advertise
// is set, and returns the URL this instance reaches it at.
func (inst *Instance) embedBroker(listen string, advertise bool) (string, error) {
	site := inst.site
	var users []broker.User
	var own *broker.OwnTopics
	accounts := site.BrokerUsers()
	switch {
	case inst.ring == nil:
	case site.AuthMode() == config.AuthPermissive && len(accounts) == 0:
		// An upgrade under way on an open site: instances not yet upgraded
		// connect as they did, without an account; it stays open.
		inst.log.Warn("auth: permissive: the embedded broker lets every client in until auth is required")
	default:
		// A site with a key: the broker is closed; each instance logs in
		// with its own account, derived from the key.
		accounts = append(site.InstanceAccounts(inst.ring), accounts...)
		own = site.OwnTopics()
	}
	for _, u := range accounts {
		users = append(users, broker.User{Username: u.Username, Password: u.Password, Alternates: u.Alternates, Publish: u.Publish, Subscribe: u.Subscribe})
	}
	opts := broker.Options{Listen: listen, ListenTLS: site.Bus.ListenTLS, Logger: inst.log.With("component", "broker"), Users: users, OwnTopics: own}
	if t := site.Bus.ServerTLS; t != nil && opts.ListenTLS != "" {
		var err error
		if opts.TLS, err = broker.ServerTLS(t.Cert, t.Key, t.ClientCA); err != nil {
			return "", fmt.Errorf("embedded broker: bus.server_tls: %w", err)
		}
	}
	b, err := broker.Start(opts)
	if err != nil {
		return "", fmt.Errorf("embedded broker: %w", err)
	}
	inst.mu.Lock()
	inst.broker = b
	inst.mu.Unlock()
	inst.log.Info("embedded broker started", "listen", cmp.Or(b.PlainAddr(), config.ListenNone), "listen_tls", b.TLSAddr())
	if advertise {
		inst.brokerAdv = inst.advertiseBroker(b)
	}
	url := b.LocalURL()
	if strings.HasPrefix(url, "ssl://") {
		// Only a TLS listener: this instance connects to it over loopback,
		// trusting the broker's own certificate, with its client certificate
		// from bus.tls (required with server_tls.client_ca).
		var certs []tls.Certificate
		if inst.busTLS != nil {
			certs = inst.busTLS.Certificates
		}
		inst.busTLS = b.LocalTLS(certs)
	}
	return url, nil
}

// brokerURL is the URL of a broker found by mDNS: ssl:// to its TLS port when
// it advertises one (TXT tls=PORT) and this instance has bus.tls, or when it
// has no other port; else tcp://.
func brokerURL(e mdns.Entry, haveTLS bool) string {
	if p, err := strconv.Atoi(e.TXT[txtTLS]); err == nil && p > 0 && p < 65536 && (haveTLS || p == e.Port) {
		return "ssl://" + net.JoinHostPort(e.Addr.String(), strconv.Itoa(p))
	}
	return "tcp://" + e.HostPort()
}

// connectBus starts the bus client: subscriptions first, then the connection.
func (inst *Instance) connectBus(urls []string) *bus.Paths {
	site := inst.site
	topics := bus.Topics{Site: site.Name}
	username, password := site.Bus.Username, site.Bus.Password
	var alternates []string
	if inst.ring != nil && username == "" {
		username = config.InstanceUsername(inst.opts.Self)
		password, alternates = site.InstancePassword(inst.ring, inst.opts.Self)
	}
	url := strings.Join(urls, " ")
	c := bus.NewPaths(bus.Options{
		URLs: urls, Topics: topics, Member: inst.opts.Self,
		Interval: inst.member.Heartbeat.D(), KeepAlive: site.Bus.KeepAlive.D(),
		Version: inst.opts.Version, Logger: inst.log.With("component", "bus"),
		Username: username, Password: password, Alternates: alternates, TLS: inst.busTLS,
		Ring: inst.ring, BootCount: inst.bootCount,
		// Its own heartbeats come back every interval: four missed, and
		// two keep-alives, is a deaf connection, not a slow one.
		DeafAfter:      max(4*inst.member.Heartbeat.D(), 2*site.Bus.KeepAlive.D()),
		OnConnectError: func(err error) { inst.busHealth.connectFailed(err) },
		OnConnected: func() {
			inst.busHealth.connected(time.Now())
			inst.notify("STATUS=running; bus connected to " + url)
			inst.engine.BusConnected(true)
			inst.publishHealth()
			inst.publishCovering(false)
			inst.publishAbout()
			inst.publishHomeAssistant(inst.site.MemberIDs()...)
			if inst.config != nil {
				inst.config.Republish()
			}
			if inst.election != nil {
				inst.election.announce()
			}
		},
		OnDisconnected: func(err error) {
			inst.busHealth.disconnected(err, time.Now())
			inst.engine.BusConnected(false)
		},
		OnPath: func(path int, up bool) {
			if len(urls) > 1 {
				inst.engine.BusPath(path, up)
			}
		},
	})
	in := inbound.Inputs{
		Loop: inst.engine, Command: inst.agent.Handle, Control: inst.controlFromBus,
		Reply: inst.replyFromBus, ReplyFilter: inst.replyTopics(), Described: inst.homeAssistantDescribed,
		CoordinatorInfo: inst.takeCoordinatorInfo,
	}
	switch {
	case inst.election != nil:
		in.Coordinator = inst.election.in // whichever coordinator this candidate runs, if any
		in.RaftMember = inst.election.takeWord
	case inst.coord.Load() != nil:
		in.Coordinator = inst.coord.Load()
	}
	var sub inbound.Subscriber = c
	inst.mu.Lock()
	if inst.broker != nil && len(urls) == 1 {
		// The broker is in this process: the site's heartbeats are taken as
		// they pass through it (see inbound.Split).
		sub = inbound.Split{Conn: c, Inline: inst.broker.SubscribeInline, Heartbeats: topics.AllHeartbeats(), Own: topics.Heartbeat(inst.opts.Self), Log: inst.log}
	}
	inst.mu.Unlock()
	inbound.Install(sub, topics, inbound.Routes(topics, inst.opts.Self, in), inst.drops, inst.auth)
	inst.bus.Store(c)
	c.Connect()
	return c
}

// takeCoordinatorInfo keeps the coordinator's word of itself, unless an
// older term's (a retained message of a coordinator before).
func (inst *Instance) takeCoordinatorInfo(ci bus.CoordinatorInfo) {
	if !inst.site.IsCandidate(ci.Member) {
		if inst.drops != nil {
			topic := (bus.Topics{Site: inst.site.Name}).CoordinatorInfo()
			inst.drops.Drop(ci.Member, topic, -1, fmt.Errorf("%w: %q says it coordinates, and is no coordinator candidate", bus.ErrUnknownMember, ci.Member))
		}
		return
	}
	for {
		old := inst.coordinatorInfo.Load()
		if old != nil && (ci.Term < old.Term || ci.Term == old.Term && ci.Since.Before(old.Since)) {
			return
		}
		if inst.coordinatorInfo.CompareAndSwap(old, &ci) {
			return
		}
	}
}

// coordinatorName is the member that coordinates, as far as this instance
// knows: the one site.yaml names, or the elected one ("" while unknown).
func (inst *Instance) coordinatorName() string {
	switch {
	case inst.election != nil && inst.election.leader() != "":
		return inst.election.leader()
	case !inst.site.Elected():
		return inst.site.Coordinator
	}
	if ci := inst.coordinatorInfo.Load(); ci != nil {
		return ci.Member
	}
	return ""
}

// builtinSteps are what the instance itself does for a command before the
// member's own hooks: a "config" command writes the site's newest
// configuration bundle into place (then the config hook may reload the
// application).
func (inst *Instance) builtinSteps(verb string, args map[string]any) ([]hooks.Step, func(error), error) {
	if verb != config.HookConfig || inst.config == nil {
		return nil, nil, nil
	}
	content, _ := args["config"].(string)
	version, _ := args["version"].(float64)
	if version < 1 {
		return nil, nil, nil
	}
	if err := inst.config.Accept(uint64(version), content); err != nil {
		return nil, nil, err
	}
	step := hooks.Step{Write: &hooks.Write{Path: inst.member.Duties.Config.File, Content: "{{.config}}"}}
	return []hooks.Step{step}, func(err error) { inst.config.Done(content, err) }, nil
}

// publishAbout publishes this instance's description of itself (retained).
func (inst *Instance) publishAbout() {
	if !inst.opts.Described {
		return
	}
	payload, err := json.Marshal(inst.member)
	if err != nil {
		inst.log.Error("description not encoded", "error", err)
		return
	}
	if err := (publisher{inst}).Publish((bus.Topics{Site: inst.site.Name}).About(inst.opts.Self), 1, true, payload); err != nil {
		inst.log.Debug("description not published yet", "error", err)
	}
}

// reportHealth publishes this instance's disk health (retained) when it changes.
func (inst *Instance) reportHealth(r diskhealth.Report) {
	h := bus.Health{Member: inst.opts.Self, Broken: r.AllFailed()}
	for _, d := range r.Disks {
		h.Disks = append(h.Disks, bus.DiskHealth{Path: d.Path, OK: d.OK, Error: d.Error})
	}
	payload, err := json.Marshal(h)
	if err != nil {
		return
	}
	if h.Broken {
		inst.log.Error("every material disk has failed: this member is broken", "disks", h.Disks)
	} else {
		inst.log.Info("material disks", "disks", h.Disks)
	}
	inst.health.Store(&payload)
	inst.publishHealth()
}

func (inst *Instance) publishHealth() {
	p := inst.health.Load()
	c := inst.bus.Load()
	if p == nil || c == nil {
		return
	}
	if err := c.Publish((bus.Topics{Site: inst.site.Name}).Health(inst.opts.Self), 1, true, *p); err != nil {
		inst.log.Debug("health not published yet", "error", err)
	}
}

// publishCovering publishes (retained) the members this instance covers, as
// its agent recorded them: on every connect, and each time that changes
// (changed). A member that is no standby and covers nothing says nothing
// on connect. The coordinator rebuilds who covers whom from these reports
// when its state was lost.
func (inst *Instance) publishCovering(changed bool) {
	inst.coveringMu.Lock()
	defer inst.coveringMu.Unlock()
	c := inst.bus.Load()
	if c == nil {
		return
	}
	covering := inst.agent.Covering()
	if !changed && len(covering) == 0 && !inst.member.Standby {
		return
	}
	payload, err := json.Marshal(bus.Covering{Member: inst.opts.Self, Covering: covering})
	if err != nil {
		inst.log.Error("covering report not encoded", "error", err)
		return
	}
	if err := c.Publish((bus.Topics{Site: inst.site.Name}).Covering(inst.opts.Self), 1, true, payload); err != nil {
		inst.log.Debug("covering report not published yet", "error", err)
	}
}

// mdnsLoop advertises this instance and browses for its peers.
func (inst *Instance) mdnsLoop(ctx context.Context) {
	if adv := inst.advertiseAPI(); adv != nil {
		defer adv.Close()
	}
	match := func(e mdns.Entry) bool { return e.TXT["site"] == inst.site.Name && e.TXT["member"] != inst.opts.Self }
	round := time.Second
	for {
		entries, err := mdns.Browse(ctx, ServiceInstance, round, match, inst.log)
		if err != nil && ctx.Err() == nil {
			inst.log.Debug("mDNS browse failed", "error", err)
		}
		for _, e := range entries {
			inst.mu.Lock()
			_, known := inst.peers[e.TXT["member"]]
			inst.peers[e.TXT["member"]] = e
			inst.mu.Unlock()
			if !known {
				inst.log.Info("peer found by mDNS", "peer", e.TXT["member"], "address", e.HostPort(), "roles", e.TXT["roles"])
			}
		}
		// Browse often at first, then settle to every 30s.
		wait := min(round*2, 30*time.Second)
		round = min(round*2, 3*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (inst *Instance) serveAPI(ctx context.Context) {
	srv := &http.Server{Handler: inst.guard(inst.handler()), ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(inst.feed.close) // dashboard streams end; requests finish
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	inst.log.Info("status API listening", "address", "http://"+inst.api.Addr().String()+"/status")
	if err := srv.Serve(inst.api); err != nil && !errors.Is(err, http.ErrServerClosed) {
		inst.log.Error("status API stopped", "error", err)
	}
}

// busTLS reads bus.tls's files (nil without bus.tls).
func busTLS(t *config.BusTLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("bus.tls.ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bus.tls.ca %s: no PEM certificate in it", t.CA)
		}
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("bus.tls cert and key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
