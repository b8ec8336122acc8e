// Package broker runs the MQTT broker embedded in understudy
// (github.com/mochi-mqtt/server/v2), so that a single machine needs no other
// broker. Larger sites point the bus at an existing broker instead.
//
// The broker serves MQTT 3.1, 3.1.1 and 5 over plain TCP. Without users every
// client may connect and use every topic; with users (Options.Users) a client
// must log in as one and may publish and subscribe only where its lists
// allow. The hooks are installed in one place (installHooks).
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// listenerID names the broker's one listener inside mochi.
const listenerID = "tcp"

// Options configure Start. Exactly one of Listen and Listener must be set.
type Options struct {
	// Listen is the TCP address to listen on, "host:port"; "127.0.0.1:0" picks a
	// free port (read it back with Addr).
	Listen string
	// Listener is an alternative to Listen: an existing listener, for example one
	// created inside a test host. The broker closes it on Close.
	Listener net.Listener
	// Logger receives the broker's own log records of level Warn and above. Nil
	// discards them.
	Logger *slog.Logger
	// Users are the accounts clients log in with; none: anyone may connect
	// and use every topic.
	Users []User
}

// Broker is a running embedded MQTT broker.
type Broker struct {
	server *mqtt.Server
	ln     net.Listener

	closeOnce sync.Once
	closeErr  error
}

// Start starts a broker and returns once it is serving: the listener is bound
// and connections are accepted.
func Start(opts Options) (*Broker, error) {
	ln := opts.Listener
	switch {
	case ln != nil && opts.Listen != "":
		return nil, errors.New("broker: set Options.Listen or Options.Listener, not both")
	case ln == nil && opts.Listen == "":
		return nil, errors.New("broker: no address to listen on (Options.Listen or Options.Listener)")
	case ln == nil:
		var err error
		if ln, err = net.Listen("tcp", opts.Listen); err != nil {
			return nil, fmt.Errorf("broker: listen on %s: %w", opts.Listen, err)
		}
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	server := mqtt.New(&mqtt.Options{
		// mochi logs connection details at Info; keep only problems.
		Logger: slog.New(minLevel{Handler: logger.Handler(), min: slog.LevelWarn}).With("component", "mqtt-broker"),
	})
	if err := installHooks(server, opts.Users); err != nil {
		ln.Close()
		return nil, err
	}
	if err := server.AddListener(listeners.NewNet(listenerID, ln)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("broker: add listener %s: %w", ln.Addr(), err)
	}
	if err := server.Serve(); err != nil {
		server.Close()
		return nil, fmt.Errorf("broker: serve on %s: %w", ln.Addr(), err)
	}
	return &Broker{server: server, ln: ln}, nil
}

// installHooks installs the broker's authentication and ACL hooks. This is the
// one place that decides who may connect and publish or subscribe where.
func installHooks(server *mqtt.Server, users []User) error {
	var hook mqtt.Hook = new(allowAll)
	if len(users) > 0 {
		for _, u := range users {
			for _, f := range append(append([]string(nil), u.Publish...), u.Subscribe...) {
				if err := CheckFilter(f); err != nil {
					return fmt.Errorf("broker: user %s: %w", u.Username, err)
				}
			}
		}
		hook = newAccessHook(users)
	}
	if err := server.AddHook(hook, nil); err != nil {
		return fmt.Errorf("broker: add hook %s: %w", hook.ID(), err)
	}
	return nil
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
// the listener (so with port 0 it has the port picked).
func (b *Broker) Addr() string { return b.ln.Addr().String() }

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
		b.ln.Close()
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
// the point). Both would otherwise fill the log of every site.
func (h minLevel) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "client keepalive is below minimum") {
		return nil
	}
	if r.Message == "" {
		quiet := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" {
				msg := a.Value.String()
				quiet = msg == "EOF" || strings.Contains(msg, "connection reset") || strings.Contains(msg, "use of closed network connection")
			}
			return true
		})
		if quiet {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
