package bus

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"understudy/sitekey"
)

// Options configure a Client.
type Options struct {
	URL string // tcp://host:port
	// URLs are the site's brokers, one connection to each (Paths); empty:
	// URL alone.
	URLs      []string
	Topics    Topics
	Member    string        // this instance's member id
	Interval  time.Duration // heartbeat interval
	KeepAlive time.Duration // MQTT keep-alive (whole seconds); the broker is declared dead after about 1.5×
	Version   string
	Logger    *slog.Logger
	// Username and Password log in to the broker (none: anonymous); TLS is
	// used for ssl://, tls:// and mqtts:// URLs.
	Username string
	Password string
	// Alternates are other passwords of the same account, tried in turn
	// when the broker refuses one (during a site key change an external
	// broker may still know the old key's).
	Alternates []string
	TLS        *tls.Config
	// OnConnected and OnDisconnected report the bus connection going up and
	// down; OnConnectError why an attempt to make the first connection
	// failed. They are called from paho's goroutines (or the client's) and
	// must not block.
	OnConnected    func()
	OnDisconnected func(error)
	OnConnectError func(error)
	// OnPath reports one of several paths (Paths) going up or down, before
	// OnConnected or OnDisconnected.
	OnPath func(path int, up bool)
	// Ring, when it has a key, seals every message this client publishes
	// (Seal), the Last Will included; BootCount is this instance's boot
	// counter (persisted, one more at every start), the first number of its
	// stamps.
	Ring      *sitekey.Ring
	BootCount uint64
	// DeafAfter, when set, is how long the client may be connected and
	// receive nothing at all — the instance subscribes to its own
	// heartbeats, so a working connection receives one every Interval —
	// before it drops the connection and makes a new one (RunHeartbeats
	// checks it). A broker can lose a client's subscriptions or its place
	// in the broker's table while still taking what the client sends: the
	// embedded broker does when a client's new connection races the
	// clean-up of its old one, as after the broker's process was paused.
	// Such a member would hear nothing, and answer no command, until it
	// restarted.
	DeafAfter time.Duration
	// Path is this connection's broker among the site's (Paths): the
	// messages it receives carry it (Message.Path).
	Path int
}

// Message is a message received from the bus.
type Message struct {
	Topic   string
	Payload []byte
	// Retained is set when the broker delivers a message it kept, because of
	// a new subscription: it tells of the past, not of now.
	Retained bool
	// SignedBy is the instance whose site key's code an operator command
	// carried (one a member's instance passed on from its local API), set
	// by the inbound table once the code is checked and the auth member
	// taken off; empty for a command without one (show control's).
	SignedBy string
	// Path is the broker it came through: its index in Paths (0 on a
	// site with one broker).
	Path int
}

// Handler receives a message. It is called from paho's goroutine, in order,
// and must not block: decode, enqueue, return.
type Handler func(Message)

// Client is an instance's connection to the bus. It reconnects by itself.
//
// Each connection has a number (Conn) within the process's boot id; the Last
// Will and every heartbeat carry both, so a Will the broker publishes late for
// an already replaced connection can be told apart from a real loss.
type Client struct {
	opts Options
	log  *slog.Logger
	mqtt mqtt.Client
	*shared
	// several: one of an instance's connections to several brokers
	// (Paths), whose messages are sealed once for all of them: their
	// stamps carry connection 0, so that the sequence alone orders them
	// whichever connection carried them.
	several bool

	attempt atomic.Uint64 // connection number of the latest connect attempt
	conn    atomic.Uint64 // connection number of the current connection
	// passwordTry counts the connection attempts since the last success;
	// passwordOK is the index (into Password, Alternates…) that worked.
	passwordTry, passwordOK atomic.Uint64

	mu   sync.Mutex
	subs []subscription

	// netConn is the current network connection (dial); heard and
	// connectedAt (UnixNano) are when a message last arrived and when the
	// connection was made: the deafness watchdog (checkDeaf).
	netMu       sync.Mutex
	netConn     net.Conn
	heard       atomic.Int64
	connectedAt atomic.Int64

	// closed ends with Close: stop trying to connect and to subscribe.
	closed context.Context
	close  context.CancelFunc
}

// shared is what an instance's connections to the site's brokers share:
// its boot id, the numbers of its connections (one sequence over all of
// them, so that no two have the same client id or Will) and of its
// heartbeats and sealed messages.
type shared struct {
	boot    string
	next    atomic.Uint64 // the last connection number given out
	seq     atomic.Uint64 // heartbeats
	sealSeq atomic.Uint64 // every sealed message of the boot
	// beatMu keeps the heartbeats in the order of their stamps from the
	// timer's goroutine and Probe's (receivers drop one older than the
	// newest taken on the topic as a replay).
	beatMu sync.Mutex
}

func newShared() *shared { return &shared{boot: NewBoot()} }

type subscription struct {
	filter  string
	qos     byte
	handler Handler
}

// NewBoot returns a random boot id.
func NewBoot() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// New prepares a client; Connect starts it.
func New(opts Options) *Client { return newClient(opts, newShared(), false) }

func newClient(opts Options, sh *shared, several bool) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KeepAlive < time.Second {
		opts.KeepAlive = 2 * time.Second
	}
	c := &Client{opts: opts, log: opts.Logger, shared: sh, several: several}
	c.closed, c.close = context.WithCancel(context.Background())
	first := sh.next.Add(1)
	c.attempt.Store(first)

	mo := mqtt.NewClientOptions().
		AddBroker(opts.URL).
		SetClientID(c.clientID(first)).
		SetCleanSession(true).
		SetStore(noStore{}).
		SetOrderMatters(true).
		SetKeepAlive(opts.KeepAlive).
		SetPingTimeout(max(opts.KeepAlive/2, time.Second)).
		SetConnectTimeout(3*time.Second).
		SetWriteTimeout(3*time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(false). // Connect retries itself, to say why it cannot connect
		SetMaxReconnectInterval(2*time.Second).
		SetBinaryWill(opts.Topics.Presence(opts.Member), c.presence("gone", first), 1, true).
		SetReconnectingHandler(func(_ mqtt.Client, o *mqtt.ClientOptions) {
			// A new connection gets a new number, a client ID of its own
			// and a Will that names it.
			n := sh.next.Add(1)
			c.attempt.Store(n)
			o.SetClientID(c.clientID(n))
			o.SetBinaryWill(opts.Topics.Presence(opts.Member), c.presence("gone", n), 1, true)
		}).
		SetOnConnectHandler(func(mqtt.Client) { c.onConnect() }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn("bus connection lost; reconnecting", "broker", opts.URL, "error", err)
			if opts.OnDisconnected != nil {
				opts.OnDisconnected(err)
			}
		})
	if opts.Username != "" {
		mo.SetUsername(opts.Username).SetPassword(opts.Password)
		if len(opts.Alternates) > 0 {
			// Each attempt after a failed one tries the next password; one
			// that worked is tried first next time.
			passwords := append([]string{opts.Password}, opts.Alternates...)
			mo.SetCredentialsProvider(func() (string, string) {
				i := c.passwordTry.Add(1) - 1
				return opts.Username, passwords[(c.passwordOK.Load()+i)%uint64(len(passwords))]
			})
		}
	}
	if opts.TLS != nil {
		mo.SetTLSConfig(opts.TLS)
	}
	mo.SetCustomOpenConnectionFn(c.dial)
	c.mqtt = mqtt.NewClient(mo)
	return c
}

// clientID is the MQTT client ID of connection n: one per connection, never
// reused, so a broker never takes a new connection's session over from the
// one it replaces. A takeover races the old connection's clean-up in the
// embedded broker (mochi-mqtt 2.7.9 may remove the new connection from its
// client table when the old one ends at the same moment, and the new one then
// receives nothing); with its own ID the old connection ends alone, and its
// Will, which names its number, is history to everyone.
func (c *Client) clientID(n uint64) string {
	return fmt.Sprintf("understudy-%s-%s-%s-%d", c.opts.Topics.Site, c.opts.Member, c.boot, n)
}

// Boot returns this process's boot id.
func (c *Client) Boot() string { return c.boot }

// Conn returns the number of the current bus connection.
func (c *Client) Conn() uint64 { return c.conn.Load() }

// Connect starts connecting in the background and returns at once; the client
// keeps retrying until Close. Use WaitConnected to wait for the first
// connection.
func (c *Client) Connect() {
	go c.connectLoop()
}

// connectLoop makes the first connection, trying again every 0.5–2s until it
// succeeds or Close, and logs why it cannot connect (once per reason: a
// wrong address, a refused password, an untrusted certificate). After that,
// paho reconnects by itself.
func (c *Client) connectLoop() {
	wait := 500 * time.Millisecond
	last := ""
	for {
		tok := c.mqtt.Connect()
		tok.Wait() // bounded by the connect timeout
		err := tok.Error()
		if err == nil {
			return
		}
		select {
		case <-c.closed.Done():
			return
		default:
		}
		if c.opts.OnConnectError != nil {
			c.opts.OnConnectError(err)
		}
		if msg := err.Error(); msg != last {
			last = msg
			c.log.Warn("cannot connect to the broker; trying again", "broker", c.opts.URL, "error", err)
		}
		select {
		case <-c.closed.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// WaitConnected waits until the client is connected or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !c.mqtt.IsConnectionOpen() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to %s: %w", c.opts.URL, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Connected reports whether the connection is up now.
func (c *Client) Connected() bool { return c.mqtt.IsConnectionOpen() }

func (c *Client) onConnect() {
	if n := len(c.opts.Alternates) + 1; n > 1 {
		tried := c.passwordTry.Swap(0)
		if tried > 0 {
			c.passwordOK.Store((c.passwordOK.Load() + tried - 1) % uint64(n))
		}
	}
	n := c.attempt.Load()
	c.conn.Store(n)
	c.connectedAt.Store(time.Now().UnixNano())
	c.log.Info("bus connected", "broker", c.opts.URL, "conn", n)
	c.publish(c.opts.Topics.Presence(c.opts.Member), 1, true, c.presence("online", n))
	c.mu.Lock()
	subs := append([]subscription(nil), c.subs...)
	c.mu.Unlock()
	for _, s := range subs {
		c.subscribe(s)
	}
	if c.opts.OnConnected != nil {
		c.opts.OnConnected()
	}
}

func (c *Client) presence(state string, conn uint64) []byte {
	b, _ := json.Marshal(Presence{Member: c.opts.Member, State: state, Boot: c.boot, Conn: conn})
	if state == "gone" {
		// The Will: sealed now, for the moment the broker publishes it.
		return c.sealAs(c.opts.Topics.Presence(c.opts.Member), b, conn, WillSeq)
	}
	return b
}

// Subscribe adds a subscription that is renewed on every reconnect.
func (c *Client) Subscribe(filter string, qos byte, h Handler) {
	s := subscription{filter: filter, qos: qos, handler: h}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()
	if c.mqtt.IsConnectionOpen() {
		c.subscribe(s)
	}
}

// subscribe subscribes in the background, checking the broker's answer
// (see subscribeChecked); onConnect must not wait for it.
func (c *Client) subscribe(s subscription) {
	go func() {
		err := subscribeChecked(c.closed, c.mqtt, s.filter, s.qos, func(_ mqtt.Client, m mqtt.Message) {
			c.heard.Store(time.Now().UnixNano())
			s.handler(Message{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained(), Path: c.opts.Path})
		})
		if err != nil {
			c.log.Error("subscribe failed", "filter", s.filter, "error", err)
		}
	}()
}

// Publish sends a message without waiting for it to be delivered. A topic
// that is not a plain topic name (CheckTopic) or a payload over MaxPublish
// is refused here, before it is sent: the broker would end the connection
// for it, and paho sends an unacknowledged QoS 1 message again on every
// reconnect, so one such publish would keep the client off the bus for good.
func (c *Client) Publish(topic string, qos byte, retained bool, payload []byte) error {
	if err := CheckPublish(topic, payload); err != nil {
		return err
	}
	if !c.mqtt.IsConnectionOpen() {
		return errors.New("bus not connected")
	}
	c.publish(topic, qos, retained, payload)
	return nil
}

func (c *Client) publish(topic string, qos byte, retained bool, payload []byte) mqtt.Token {
	if len(payload) > 0 {
		payload = c.sealAs(topic, payload, c.stampConn(), c.sealSeq.Add(1))
	}
	return c.mqtt.Publish(topic, qos, retained, payload)
}

// stampConn is the connection number the stamps of this client's messages
// carry: its connection's, or 0 for one of several paths (see several).
func (c *Client) stampConn() uint64 {
	if c.several {
		return 0
	}
	return c.conn.Load()
}

// sealAs seals payload for topic with this client's stamp (conn, seq), when
// it has a site key; a payload that is not a JSON object (an operator's
// reply in another form) goes as it is.
func (c *Client) sealAs(topic string, payload []byte, conn, seq uint64) []byte {
	if c.opts.Ring.Empty() {
		return payload
	}
	sealed, err := Seal(c.opts.Ring, topic, payload, Stamp{From: c.opts.Member, Boot: c.opts.BootCount, Conn: conn, Seq: seq})
	if err != nil {
		c.log.Debug("published without a code", "topic", topic, "error", err)
		return payload
	}
	return sealed
}

// Beats is how many heartbeats this client has published.
func (c *Client) Beats() uint64 { return c.seq.Load() }

// Beat publishes one heartbeat (skipped while disconnected).
func (c *Client) Beat() { c.Probe() }

// Probe publishes one heartbeat now, out of turn, and returns it; false
// when the connection is down (nothing is sent). It is a round trip through
// the broker: the instance's own heartbeats come back to it, so when this
// one (or a later one of the same boot and connection: Seq counts up) is
// received, the broker carried it after the moment of the call.
func (c *Client) Probe() (Heartbeat, bool) {
	if !c.mqtt.IsConnectionOpen() {
		return Heartbeat{}, false
	}
	c.beatMu.Lock()
	defer c.beatMu.Unlock()
	hb := Heartbeat{
		Member: c.opts.Member, Boot: c.boot, Conn: c.conn.Load(), Seq: c.seq.Add(1),
		IntervalMS: c.opts.Interval.Milliseconds(), Version: c.opts.Version,
	}
	b, _ := json.Marshal(hb)
	c.publish(c.opts.Topics.Heartbeat(c.opts.Member), 0, false, b)
	return hb, true
}

// RunHeartbeats publishes a heartbeat every interval until ctx ends, and
// makes a new connection when this one has been deaf for DeafAfter.
func (c *Client) RunHeartbeats(ctx context.Context) {
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	c.Beat()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			now := time.Now()
			c.onTick(now, last)
			last = now
		}
	}
}

// onTick is a heartbeat tick at now, the one before it at last.
func (c *Client) onTick(now, last time.Time) {
	c.noteStall(now, last)
	c.Beat()
	c.checkDeaf(now)
}

// noteStall restarts the deafness watchdog when the tick at now comes
// long after the one at last.
func (c *Client) noteStall(now, last time.Time) {
	if now.Sub(last) > 2*c.opts.Interval+stallGap {
		// This process did not run for a while (stopped, a paused VM):
		// what it did not hear meanwhile is its own stall, not a deaf
		// connection, and what arrived waits to be read. The watchdog
		// counts from now.
		c.connectedAt.Store(now.UnixNano())
	}
}

// stallGap is how late a heartbeat tick may come before the process is
// taken to have stalled.
const stallGap = 100 * time.Millisecond

// checkDeaf drops a connection that has received nothing for DeafAfter
// (its own heartbeats included) since it was made: paho then connects
// again as after any lost connection, with a new number and Will.
func (c *Client) checkDeaf(now time.Time) {
	if c.opts.DeafAfter <= 0 || !c.mqtt.IsConnectionOpen() {
		return
	}
	last := max(c.heard.Load(), c.connectedAt.Load())
	if last == 0 {
		return
	}
	silent := now.Sub(time.Unix(0, last))
	if silent < c.opts.DeafAfter {
		return
	}
	c.netMu.Lock()
	conn := c.netConn
	c.netMu.Unlock()
	if conn == nil {
		return
	}
	c.log.Warn("connected to the broker but nothing arrives, not even this instance's own heartbeats: making a new connection", "broker", c.opts.URL, "conn", c.conn.Load(), "silent", silent.Round(time.Millisecond))
	c.connectedAt.Store(now.UnixNano()) // one try per DeafAfter
	// Its reader fails at once: paho takes that for a lost connection and
	// connects again. (Closing the connection would not do: paho ignores a
	// read on a closed connection, which it takes for its own closing, and
	// went on until its keep-alive ping went unanswered.)
	if err := conn.SetReadDeadline(time.Now()); err != nil {
		conn.Close()
	}
}

// dial opens the network connection as paho would (tcp and mqtt; ssl, tls
// and mqtts with the TLS configuration; ws and wss) and keeps it, for
// checkDeaf to close.
func (c *Client) dial(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		conn, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts":
		conn, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	case "ws", "wss":
		u := *uri
		u.User = nil
		var tlsc *tls.Config
		if uri.Scheme == "wss" {
			tlsc = o.TLSConfig
		}
		conn, err = mqtt.NewWebsocket(u.String(), tlsc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	default:
		return nil, fmt.Errorf("bus URL %s: unknown scheme %q", uri.Redacted(), uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	c.netMu.Lock()
	c.netConn = conn
	c.netMu.Unlock()
	return conn, nil
}

// Close ends the connection. With graceful set it first publishes "closed" on
// the presence topic, so the site sees a shutdown rather than a loss.
func (c *Client) Close(graceful bool) {
	c.close()
	if graceful && c.mqtt.IsConnectionOpen() {
		tok := c.publish(c.opts.Topics.Presence(c.opts.Member), 1, true, c.presence("closed", c.conn.Load()))
		if !tok.WaitTimeout(time.Second) {
			c.log.Warn("closing: the broker did not confirm the closed message in time")
		}
	}
	c.mqtt.Disconnect(250)
}
