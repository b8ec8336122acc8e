// Package broker runs the MQTT broker embedded in understudy
// (github.com/mochi-mqtt/server/v2), so that a single machine needs no other
// broker. Larger sites point the bus at an existing broker instead.
//
// The broker serves MQTT 3.1, 3.1.1 and 5 over plain TCP, over TLS, or both
// (Options.Listen, Options.ListenTLS). Without users every client may connect
// and use every topic; with users (Options.Users) a client must log in as one
// and may publish and subscribe only where its lists allow. The hooks are
// installed in one place (installHooks). With a client CA in the TLS
// configuration (ServerTLS) a TLS client must also present a certificate
// signed by it.
//
// Behaviour that liveness logic depends on (see the tests):
//   - A client whose connection ends without a DISCONNECT packet (its process
//     died, the kernel closed the socket) has its Last Will published at once.
//   - A client whose connection just goes silent (cable pulled, power lost) is
//     noticed only by the MQTT keep-alive, which the broker checks in whole
//     seconds (1.5 × keep-alive); do not rely on it for fast detection.
//   - When a second connection uses the same client ID, it takes the session
//     over and the old connection's Last Will is published, although the
//     client (as seen by its ID) is still there.
//   - Closing the broker disconnects every client, which publishes their wills
//     to whoever is still connected at that moment.
package broker

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Listener IDs inside mochi: the plain one and the TLS one.
const (
	listenerID    = "tcp"
	tlsListenerID = "tls"
)

// Options configure Start. At most one of Listen and Listener may be set, and
// at least one of them or ListenTLS.
type Options struct {
	// Listen is the TCP address to listen on, "host:port"; "127.0.0.1:0" picks a
	// free port (read it back with Addr).
	Listen string
	// Listener is an alternative to Listen: an existing listener, for example one
	// created inside a test host. The broker closes it on Close.
	Listener net.Listener
	// ListenTLS is the address of a listener that speaks MQTT over TLS,
	// "host:port" (port 0 picks a free port: read it back with TLSAddr).
	// Empty: no TLS listener. It needs TLS.
	ListenTLS string
	// TLS is the TLS listener's configuration (see ServerTLS): its
	// certificate and, to require client certificates, ClientAuth and
	// ClientCAs.
	TLS *tls.Config
	// Logger receives the broker's own log records of level Warn and above. Nil
	// discards them.
	Logger *slog.Logger
	// Users are the accounts clients log in with; none: anyone may connect
	// and use every topic.
	Users []User
	// OwnTopics, when set, lets each user named UserPrefix+ID publish the
	// topics of ID's own (see OwnTopics), whatever its Publish list says.
	OwnTopics *OwnTopics
	// MaxPacket is the largest MQTT packet a client may send, in bytes;
	// 0: DefaultMaxPacket. A client that announces a larger one is
	// disconnected before the broker reads (or allocates) its body.
	MaxPacket int
}

// DefaultMaxPacket is the largest MQTT packet the broker takes by default:
// 1 MiB (the largest payload understudy sends, a command or configuration
// report carrying a bundle) and 64 KiB for the topic and the headers. A
// client that announces a larger packet is disconnected at its fixed header,
// so a burst of huge publishes costs the broker no more than this per
// connection.
const DefaultMaxPacket = 1<<20 + 64<<10

// Broker is a running embedded MQTT broker.
type Broker struct {
	server *mqtt.Server
	ln     net.Listener   // the plain listener, or nil
	tlsLn  *listeners.TCP // the TLS listener, or nil
	tls    *tls.Config    // its configuration
	limits limitsHook
	repair *takeoverRepair

	closeOnce sync.Once
	closeErr  error
}

// Start starts a broker and returns once it is serving: the listeners are
// bound and connections are accepted.
func Start(opts Options) (*Broker, error) {
	ln := opts.Listener
	switch {
	case ln != nil && opts.Listen != "":
		return nil, errors.New("broker: set Options.Listen or Options.Listener, not both")
	case ln == nil && opts.Listen == "" && opts.ListenTLS == "":
		return nil, errors.New("broker: no address to listen on (Options.Listen, Options.Listener or Options.ListenTLS)")
	case opts.ListenTLS != "" && opts.TLS == nil:
		return nil, fmt.Errorf("broker: TLS listener on %s without a TLS configuration (Options.TLS)", opts.ListenTLS)
	case opts.ListenTLS == "" && opts.TLS != nil:
		return nil, errors.New("broker: a TLS configuration but no address for the TLS listener (Options.ListenTLS)")
	case opts.TLS != nil && len(opts.TLS.Certificates) == 0 && opts.TLS.GetCertificate == nil:
		return nil, errors.New("broker: the TLS configuration has no certificate")
	}
	var tlsConf *tls.Config
	if opts.TLS != nil {
		tlsConf = opts.TLS.Clone()
		tlsConf.MinVersion = max(tlsConf.MinVersion, tls.VersionTLS12)
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxPacket < 0 || opts.MaxPacket > maxMQTTPacket {
		return nil, fmt.Errorf("broker: maximum packet size %d: want 0 (the default, %d) up to %d bytes", opts.MaxPacket, DefaultMaxPacket, maxMQTTPacket)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = writesPending
	caps.MaximumPacketSize = uint32(cmp.Or(opts.MaxPacket, DefaultMaxPacket))
	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true, // SubscribeInline
		// mochi logs connection details at Info; keep only problems.
		Logger: slog.New(minLevel{Handler: logger.Handler(), min: slog.LevelWarn}).With("component", "mqtt-broker"),
	})
	b := &Broker{server: server, tls: tlsConf}
	b.limits.max = int(caps.MaximumPacketSize)
	b.repair = newTakeoverRepair(server)
	if err := installHooks(server, opts.Users, opts.OwnTopics, &b.limits, b.repair); err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	// From here on, server.Close closes the listeners added to it.
	fail := func(err error) (*Broker, error) {
		server.Close()
		return nil, err
	}
	if ln == nil && opts.Listen != "" {
		var err error
		if ln, err = net.Listen("tcp", opts.Listen); err != nil {
			return fail(fmt.Errorf("broker: listen on %s: %w", opts.Listen, err))
		}
	}
	if ln != nil {
		if err := server.AddListener(listeners.NewNet(listenerID, ln)); err != nil {
			ln.Close()
			return fail(fmt.Errorf("broker: add listener %s: %w", ln.Addr(), err))
		}
		b.ln = ln
	}
	if opts.ListenTLS != "" {
		// mochi's own TLS support: the listener is a tls.Listen, bound here
		// (Init); each connection's handshake runs when mochi first reads it.
		l := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: tlsListenerID, Address: opts.ListenTLS, TLSConfig: tlsConf})
		if err := server.AddListener(l); err != nil {
			return fail(fmt.Errorf("broker: listen (TLS) on %s: %w", opts.ListenTLS, err))
		}
		b.tlsLn = l
	}
	if err := server.Serve(); err != nil {
		return fail(fmt.Errorf("broker: serve on %s: %w", b.Addr(), err))
	}
	return b, nil
}

// installHooks installs the broker's authentication and ACL hooks. This is the
// one place that decides who may connect and publish or subscribe where.
func installHooks(server *mqtt.Server, users []User, own *OwnTopics, limits *limitsHook, repair *takeoverRepair) error {
	if err := server.AddHook(new(reservedIDs), nil); err != nil {
		return fmt.Errorf("broker: add hook reserved-ids: %w", err)
	}
	if err := server.AddHook(limits, nil); err != nil {
		return fmt.Errorf("broker: add hook %s: %w", limits.ID(), err)
	}
	if err := server.AddHook(repair, nil); err != nil {
		return fmt.Errorf("broker: add hook takeover-repair: %w", err)
	}
	var hook mqtt.Hook = new(allowAll)
	if len(users) > 0 {
		for _, u := range users {
			if strings.ContainsRune(u.Username, 0) {
				return fmt.Errorf("broker: user %q: a user name may not hold the null character (MQTT forbids it)", u.Username)
			}
			for _, f := range append(append([]string(nil), u.Publish...), u.Subscribe...) {
				if err := CheckFilter(f); err != nil {
					return fmt.Errorf("broker: user %s: %w", u.Username, err)
				}
			}
		}
		hook = newAccessHook(users, own)
	}
	if err := server.AddHook(hook, nil); err != nil {
		return fmt.Errorf("broker: add hook %s: %w", hook.ID(), err)
	}
	return nil
}

// reservedIDs refuses a network client that takes the client ID of the
// broker's own inline client: it would take over that session.
type reservedIDs struct {
	mqtt.HookBase
}

func (*reservedIDs) ID() string { return "reserved-ids" }

func (*reservedIDs) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *reservedIDs) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if cl.ID != mqtt.InlineClientId {
		return nil
	}
	h.Log.Warn("client refused: its client ID is the broker's own", "client", cl.ID, "remote", cl.Net.Remote)
	return loggedRefusal{fmt.Errorf("client ID %q is reserved: %w", cl.ID, packets.ErrClientIdentifierNotValid)}
}

// limitsHook says why a client over the packet size limit was disconnected
// (mochi ends its connection at the fixed header) and counts them.
type limitsHook struct {
	mqtt.HookBase
	max       int
	oversized atomic.Int64
}

func (*limitsHook) ID() string { return "limits" }

func (*limitsHook) Provides(b byte) bool { return b == mqtt.OnDisconnect }

func (h *limitsHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if !errors.Is(err, packets.ErrPacketTooLarge) {
		return
	}
	h.oversized.Add(1)
	h.Log.Warn("client disconnected: packet over the size limit", "client", cl.ID, "username", string(cl.Properties.Username), "remote", cl.Net.Remote, "limit_bytes", h.max)
}

// allowAll lets every client connect, publish and subscribe. (mochi's
// hooks/auth.AllowHook does the same, but that package also pulls in YAML
// parsing for its ledger.)
type allowAll struct {
	mqtt.HookBase
}

func (*allowAll) ID() string { return "allow-all" }

func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (*allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// Addr returns the address the broker listens on, host:port, read back from
// the listener (so with port 0 it has the port picked): the plain listener's,
// or the TLS listener's when there is no plain one.
func (b *Broker) Addr() string {
	if b.ln == nil {
		return b.TLSAddr()
	}
	return b.ln.Addr().String()
}

// TLSAddr returns the address of the TLS listener, read back from it, or ""
// when the broker has none.
func (b *Broker) TLSAddr() string {
	if b.tlsLn == nil {
		return ""
	}
	return b.tlsLn.Address()
}

// PlainAddr returns the address of the plain listener, or "" when the broker
// listens only on TLS.
func (b *Broker) PlainAddr() string {
	if b.ln == nil {
		return ""
	}
	return b.ln.Addr().String()
}

// SubscribeInline delivers the messages published on filter to h inside this
// process, as they pass through the broker: no connection, no client
// library, no second copy through the loopback. The instance that embeds the
// broker takes the site's heartbeats this way (at 2,000 members, the TCP
// round trip to itself was a fifth of its CPU). h runs on the publishing
// client's goroutine, in order for that client, and must not block; payload
// must not be kept after h returns. Retained messages on filter are
// delivered at once, as to any subscriber, with retained set; retained is
// the packet's flag, so it is also set for a live publish made with retain
// (mochi does not tell the two apart).
func (b *Broker) SubscribeInline(filter string, h func(topic string, payload []byte, retained bool)) error {
	err := b.server.Subscribe(filter, 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
	})
	if err != nil {
		return fmt.Errorf("broker: subscribe inline to %s: %w", filter, err)
	}
	return nil
}

// Dropped is how many messages the broker dropped since it started because
// a client's queue was full (a client that reads slower than messages come
// for it; see writesPending).
func (b *Broker) Dropped() int64 { return atomic.LoadInt64(&b.server.Info.MessagesDropped) }

// Oversized is how many clients the broker disconnected since it started
// because they sent a packet over its limit (Options.MaxPacket).
func (b *Broker) Oversized() int64 { return b.limits.oversized.Load() }

// repairs is how many times a client that reconnected under its client ID
// was put back into the broker's tables (see takeoverRepair).
func (b *Broker) repairs() int64 { return b.repair.repaired.Load() }

// MaxPacket is the largest packet the broker takes, in bytes.
func (b *Broker) MaxPacket() int { return b.limits.max }

// Close disconnects all clients, stops listening and waits until the client
// connections have ended. Further calls do nothing and return the same result.
//
// mochi-mqtt v2.7.9 can deadlock in Server.Close when a client's session
// ends while Close lists the clients (a read lock taken twice while a writer
// waits: upstream issue #488). So the broker first stops accepting, ends
// every client and waits (up to closeWait) for their goroutines, and only
// then closes the server, when no session can end under it.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		if b.ln != nil {
			b.ln.Close()
		}
		if b.tlsLn != nil {
			// Stops accepting; the clients are ended below, and server.Close
			// (which closes the listener again) finds it already closed.
			b.tlsLn.Close(func(string) {})
		}
		for _, cl := range b.server.Clients.GetAll() {
			cl.Stop(errClosing)
		}
		done := make(chan struct{})
		go func() {
			b.server.Listeners.ClientsWg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeWait):
		}
		if err := b.server.Close(); err != nil {
			b.closeErr = fmt.Errorf("broker: close: %w", err)
		}
	})
	return b.closeErr
}

// writesPending is how many messages the broker queues for a client that
// reads slower than they come; more are dropped and counted (Dropped). It is
// mochi's default, and it costs 64 KiB a connection, allocated at once: a
// quarter of it (1,024) saved half the coordinator's memory at 2,000
// members but dropped messages in the dashboard's browser test, where a
// client is sent more than that at once.
const writesPending = 8192

// maxMQTTPacket is the largest packet MQTT can frame (a remaining length
// of 268,435,455 bytes and the fixed header).
const maxMQTTPacket = 268_435_455 + 5

// closeWait bounds how long Close waits for the clients' goroutines.
const closeWait = 3 * time.Second

var errClosing = errors.New("broker closing")

// minLevel passes on records of level min and above.
type minLevel struct {
	slog.Handler
	min slog.Level
}

// Handle drops the two warnings mochi gives for what understudy does on
// purpose: keep-alives below 5s (fast detection of a dead broker) and
// connections that end without DISCONNECT (a crashed member: its Last Will is
// the point). Both would otherwise fill the log of every site. Its listeners
// log a connection that ended in an error with no message at all: a refusal
// one of our hooks has logged already, with the client's name (a wrong
// password, a reserved client id, a packet over the limit), is dropped; any
// other is given a message.
func (h minLevel) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "client keepalive is below minimum") {
		return nil
	}
	if r.Message == "" {
		quiet, handshake := false, false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" {
				msg := a.Value.String()
				err, _ := a.Value.Any().(error)
				quiet = msg == "EOF" || strings.Contains(msg, "connection reset") || strings.Contains(msg, "use of closed network connection") ||
					saidByAHook(err, msg)
				handshake = strings.Contains(msg, "tls: ")
			}
			return true
		})
		switch {
		case quiet:
			return nil
		case handshake:
			// A client of the TLS listener that does not trust the broker's
			// certificate, has no client certificate, or does not speak TLS.
			r.Message = "client refused: TLS handshake failed"
		default:
			r.Message = "client connection ended in an error"
		}
	}
	return h.Handler.Handle(ctx, r)
}

// saidByAHook reports whether the error a connection ended in is one of our
// hooks' refusals, which they log themselves with the client's name and
// address: a wrong user or password (accessHook: mochi refuses with this code
// only when an authentication hook says no), a packet over the size limit
// (limitsHook), or any refusal a hook marked as logged (reservedIDs).
func saidByAHook(err error, msg string) bool {
	var l loggedRefusal
	return errors.As(err, &l) ||
		errors.Is(err, packets.ErrBadUsernameOrPassword) || msg == packets.ErrBadUsernameOrPassword.Error() ||
		errors.Is(err, packets.ErrPacketTooLarge) || msg == packets.ErrPacketTooLarge.Error()
}

// loggedRefusal is the error a hook refuses a client with after it has
// logged the refusal itself.
type loggedRefusal struct{ error }

func (l loggedRefusal) Unwrap() error { return l.error }

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
