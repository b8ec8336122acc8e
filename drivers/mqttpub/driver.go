// Package mqttpub is the `kind: mqtt` driver: named MQTT messages published
// to any broker — a show-control system's (Companion, Node-RED, a PLC
// gateway), a building's, or the site's own bus — as control actions.
//
// The driver keeps one connection to the broker (paho, MQTT 3.1.1) and
// reconnects with backoff. Each message is configured by name with a topic
// and payload, both text/template templates over the send's args. See
// README.md.
package mqttpub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"understudy/drivers"
	"understudy/drivers/command"
	"understudy/units"
)

// Kind registers the driver as `kind: mqtt`.
var Kind = drivers.Kind{
	Name:    "mqtt",
	Summary: "named MQTT messages published to any broker (topic and payload from templates)",
	New:     New,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// URL is the broker: tcp://host:1883 (also mqtt://), ssl://host:8883
	// (also tls://, mqtts://), ws://host:port/path or wss://…; "host" or
	// "host:port" alone means tcp. The port is 1883 (8883 for TLS) unless
	// given.
	URL string `yaml:"url"`
	// ClientID identifies the connection to the broker. Default
	// understudy-<driver name>-<host name>-<process id>.
	ClientID string `yaml:"client_id"`
	// Username and Password authenticate to the broker, when it asks.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLSSkipVerify accepts any certificate from a TLS broker.
	TLSSkipVerify bool `yaml:"tls_skip_verify"`
	// QoS is the default quality of service of messages: 0, 1 (default) or 2.
	QoS *int `yaml:"qos"`
	// Retain is whether messages are retained by default.
	Retain bool `yaml:"retain"`
	// Timeout bounds connecting and each publish, until the broker's
	// acknowledgement. Default 5s.
	Timeout units.Duration `yaml:"timeout"`
	// KeepAlive is the MQTT keep-alive: with nothing else to send, the
	// driver pings the broker this often, and a broker that does not answer
	// within Timeout is taken as lost. Default 10s.
	KeepAlive units.Duration `yaml:"keepalive"`
	// BackoffMin and BackoffMax bound the delay between connection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin units.Duration `yaml:"backoff_min"`
	BackoffMax units.Duration `yaml:"backoff_max"`
	// Messages are the commands a policy can send, by name.
	Messages map[string]MessageSettings `yaml:"messages"`
}

// MessageSettings is one named message.
type MessageSettings struct {
	// Topic is where it is published (a template); no wildcards.
	Topic string `yaml:"topic"`
	// Payload is the message (a template); may be empty.
	Payload string `yaml:"payload"`
	// QoS and Retain override the driver's defaults for this message.
	QoS    *int  `yaml:"qos"`
	Retain *bool `yaml:"retain"`
}

// Defaults and limits.
const (
	DefaultQoS        = 1
	DefaultTimeout    = 5 * time.Second
	DefaultKeepAlive  = 10 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second

	// MaxTopic is the longest topic MQTT can carry, in bytes.
	MaxTopic = 65535
	// MaxPayload bounds a payload (MQTT allows 256 MB; devices far less).
	MaxPayload = 1 << 20
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("driver closed")

var _ drivers.Controller = (*Publisher)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("mqtt: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	if s.ClientID == "" {
		s.ClientID = defaultClientID(cfg.Name)
	}
	return FromSettings(s)
}

// defaultClientID is understudy-<name>-<host>-<pid>, with anything but
// letters, digits, '-' and '_' made '-'.
func defaultClientID(name string) string {
	host, _ := os.Hostname()
	if i := strings.IndexByte(host, '.'); i > 0 {
		host = host[:i]
	}
	id := fmt.Sprintf("understudy-%s-%s-%d", name, host, os.Getpid())
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '-'
	}, id)
}

// message is a configured message, its templates parsed.
type message struct {
	name    string
	topic   *command.Template
	payload *command.Template
	qos     byte
	retain  bool
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O. All problems found are reported together.
func FromSettings(s Settings) (*Publisher, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	u, err := normalizeURL(s.URL)
	if err != nil {
		errs = append(errs, err)
	} else {
		s.URL = u.String()
	}
	if s.ClientID == "" {
		add("client_id: empty")
	} else if len(s.ClientID) > 65535 || !utf8.ValidString(s.ClientID) || strings.ContainsRune(s.ClientID, 0) {
		add("client_id: %q is not a valid MQTT client identifier", s.ClientID)
	}
	if s.Password != "" && s.Username == "" {
		add("password: given without a username (MQTT 3.1.1 sends a password only with a username)")
	}
	qos := DefaultQoS
	if s.QoS != nil {
		qos = *s.QoS
		if qos < 0 || qos > 2 {
			add("qos: %d is not 0, 1 or 2", qos)
		}
	}
	for _, d := range []struct {
		name string
		v    *units.Duration
		def  time.Duration
	}{
		{"timeout", &s.Timeout, DefaultTimeout},
		{"keepalive", &s.KeepAlive, DefaultKeepAlive},
		{"backoff_min", &s.BackoffMin, DefaultBackoffMin},
		{"backoff_max", &s.BackoffMax, DefaultBackoffMax},
	} {
		if *d.v < 0 {
			add("%s: %s is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = units.Duration(d.def)
		}
	}
	if s.KeepAlive > 0 && s.KeepAlive.D() < time.Second {
		add("keepalive: %s is less than 1s (MQTT counts it in whole seconds)", s.KeepAlive)
	}
	if s.BackoffMax < s.BackoffMin {
		add("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}
	if len(s.Messages) == 0 {
		add("messages: none configured (name each message a policy may publish, with its topic)")
	}
	p := &Publisher{set: s, msgs: map[string]*message{}, lost: make(chan error, 1)}
	for _, name := range slices.Sorted(maps.Keys(s.Messages)) {
		ms := s.Messages[name]
		field := "messages." + name
		m := &message{name: name, qos: byte(qos), retain: s.Retain}
		if ms.QoS != nil {
			if *ms.QoS < 0 || *ms.QoS > 2 {
				add("%s.qos: %d is not 0, 1 or 2", field, *ms.QoS)
			}
			m.qos = byte(*ms.QoS)
		}
		if ms.Retain != nil {
			m.retain = *ms.Retain
		}
		if strings.TrimSpace(ms.Topic) == "" {
			add("%s.topic: missing", field)
		} else if m.topic, err = command.ParseTemplate(field+".topic", ms.Topic); err != nil {
			errs = append(errs, err)
		} else if m.topic.Literal() {
			if err := CheckTopic(ms.Topic); err != nil {
				add("%s.topic: %v", field, err)
			}
		}
		if m.payload, err = command.ParseTemplate(field+".payload", ms.Payload); err != nil {
			errs = append(errs, err)
		}
		p.msgs[name] = m
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.addr = redacted(s.URL)
	p.status.Address = p.addr
	return p, nil
}

// normalizeURL checks the broker URL and fills in the scheme and port.
func normalizeURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("url is required: the broker, like tcp://192.168.10.5:1883")
	}
	if !strings.Contains(raw, "://") {
		raw = "tcp://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url %q is not a URL: %v", raw, errors.Unwrap(err))
	}
	port := ""
	switch u.Scheme {
	case "tcp", "mqtt":
		port = "1883"
	case "ssl", "tls", "mqtts":
		port = "8883"
	case "ws", "wss":
	default:
		return nil, fmt.Errorf("url %q: scheme %s is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url %q has no host", u.Redacted())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("url %q: port must be a number from 1 to 65535", u.Redacted())
		}
	} else if port != "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if port != "" && (u.Path != "" && u.Path != "/" || u.RawQuery != "") {
		return nil, fmt.Errorf("url %q: a %s URL has no path or query", u.Redacted(), u.Scheme)
	}
	return u, nil
}

func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

// CheckTopic reports whether t can be published to: not empty, no
// wildcards (+ #), no NUL, valid UTF-8, at most 65535 bytes, and not a
// broker's own topic (starting with $).
func CheckTopic(t string) error {
	switch {
	case t == "":
		return errors.New("the topic is empty")
	case len(t) > MaxTopic:
		return fmt.Errorf("the topic is %d bytes long, more than %d", len(t), MaxTopic)
	case !utf8.ValidString(t):
		return fmt.Errorf("topic %q is not valid UTF-8", t)
	case strings.ContainsAny(t, "+#\x00"):
		return fmt.Errorf("topic %q has a wildcard (+ #) or NUL: messages are published to one topic", t)
	case strings.HasPrefix(t, "$"):
		return fmt.Errorf("topic %q starts with $: such topics belong to the broker", t)
	}
	return nil
}

// Publisher is the driver: a connection to the broker that publishes the
// configured messages. It implements drivers.Controller; its methods are
// safe for use from any goroutine.
type Publisher struct {
	set  Settings
	addr string // the broker's URL, without a password
	msgs map[string]*message
	lost chan error // the connection-lost handler's report, taken by run

	mu      sync.Mutex
	client  paho.Client
	conn    *session // the connection, nil while there is none
	status  drivers.Status
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// session is one connection to the broker.
type session struct {
	done chan struct{} // closed when the connection ends
}

// Settings returns the settings in use, defaults filled in.
func (p *Publisher) Settings() Settings { return p.set }

// Start begins connecting in the background and returns at once. The
// driver reconnects with backoff until Close.
func (p *Publisher) Start(ctx context.Context, emit drivers.Emitter) {
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	p.status.Since = time.Now()
	s := p.set
	opts := paho.NewClientOptions().
		AddBroker(s.URL).
		SetClientID(s.ClientID).
		SetCleanSession(true).
		SetAutoReconnect(false). // run reconnects, with backoff and events
		SetConnectRetry(false).
		SetConnectTimeout(s.Timeout.D()).
		SetWriteTimeout(s.Timeout.D()).
		SetKeepAlive(s.KeepAlive.D()).
		SetPingTimeout(s.Timeout.D()).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case p.lost <- err:
			default:
			}
		})
	if s.Username != "" {
		opts.SetUsername(s.Username).SetPassword(s.Password)
	}
	if s.TLSSkipVerify {
		opts.SetTLSConfig(&tls.Config{InsecureSkipVerify: true})
	}
	p.client = paho.NewClient(opts)
	ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.run(ctx, emit)
	}()
}

// Close disconnects from the broker and waits for the driver's goroutine
// (at most about the timeout, if a connection attempt is under way).
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
	return nil
}

// Status reports the connection to the broker.
func (p *Publisher) Status() drivers.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// run connects, waits for the connection to end, and reconnects with
// backoff until ctx ends.
func (p *Publisher) run(ctx context.Context, emit drivers.Emitter) {
	const (
		unreported = iota
		reportedUp
		reportedDown
	)
	reported := unreported
	attempt := 0
	for {
		select { // a report left from an earlier connection
		case <-p.lost:
		default:
		}
		tok := p.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			// Closing while connecting: abort the attempt and wait for it
			// (bounded by the connect timeout).
			p.client.Disconnect(0)
			<-tok.Done()
			p.client.Disconnect(0) // in case it got through meanwhile
			p.setDown(nil, ErrClosed.Error())
			return
		}
		if err := tok.Error(); err != nil {
			p.setDown(nil, err.Error())
			if reported != reportedDown {
				reported = reportedDown
				emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{"address": p.addr, "error": err.Error()}})
			}
		} else {
			sess := &session{done: make(chan struct{})}
			p.setUp(sess)
			reported, attempt = reportedUp, 0
			emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": p.addr}})
			var why string
			select {
			case err := <-p.lost:
				why = "connection lost: " + err.Error()
			case <-ctx.Done():
				p.client.Disconnect(250)
				p.setDown(sess, ErrClosed.Error())
				return
			}
			p.setDown(sess, why)
			reported = reportedDown
			emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{"address": p.addr, "error": why}})
		}
		t := time.NewTimer(p.backoff(attempt))
		attempt++
		select {
		case <-ctx.Done():
			t.Stop()
			p.setDown(nil, ErrClosed.Error())
			return
		case <-t.C:
		}
	}
}

func (p *Publisher) setUp(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn = s
	p.status.Connected, p.status.Since, p.status.LastError = true, time.Now(), ""
}

// setDown records that the connection s (if any) ended, and why.
func (p *Publisher) setDown(s *session, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s != nil {
		close(s.done)
	}
	p.conn = nil
	if p.status.Connected {
		p.status.Connected, p.status.Since = false, time.Now()
	}
	p.status.LastError = why
}

// backoff returns the delay before connection attempt n (from 0): it
// doubles from BackoffMin up to BackoffMax, drawn at random from its upper
// half but never below BackoffMin.
func (p *Publisher) backoff(n int) time.Duration {
	lo, hi := p.set.BackoffMin.D(), p.set.BackoffMax.D()
	d := lo
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	floor := max(d/2, lo)
	if d > floor {
		d = floor + rand.N(d-floor+1)
	}
	return d
}

// Publication is a message with its templates expanded.
type Publication struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
}

// Build returns what the args publish, without publishing it.
func (p *Publisher) Build(args map[string]any) (Publication, error) {
	name, data, err := command.Parse(args)
	if err != nil {
		return Publication{}, err
	}
	m, ok := p.msgs[name]
	if !ok {
		return Publication{}, command.Unknown("message", name, slices.Collect(maps.Keys(p.msgs)))
	}
	pub := Publication{QoS: m.qos, Retain: m.retain}
	if pub.Topic, err = m.topic.Expand(data); err != nil {
		return Publication{}, err
	}
	if err := CheckTopic(pub.Topic); err != nil {
		return Publication{}, fmt.Errorf("%s: %w", m.topic.Field(), err)
	}
	if pub.Payload, err = m.payload.Expand(data); err != nil {
		return Publication{}, err
	}
	if len(pub.Payload) > MaxPayload {
		return Publication{}, fmt.Errorf("%s: %d bytes, more than %d", m.payload.Field(), len(pub.Payload), MaxPayload)
	}
	return pub, nil
}

// Check validates args without publishing: the message is configured and
// its templates expand with the args to a valid topic.
func (p *Publisher) Check(args map[string]any) error {
	_, err := p.Build(args)
	return err
}

// Do publishes the message and returns {topic = …, bytes = payload size}
// once the broker acknowledged it (QoS 1: PUBACK; QoS 2: PUBCOMP) or, at
// QoS 0, once it was written to the connection.
//
// Not connected, or the connection lost before a QoS 0 or 1 message was
// acknowledged, wraps drivers.ErrNotConnected: the runtime publishes again
// (QoS 1 is "at least once" anyway). A QoS 2 message whose connection was
// lost is not published again (it may have arrived), nor is one that got no
// acknowledgement within the timeout.
func (p *Publisher) Do(ctx context.Context, args map[string]any) (any, error) {
	pub, err := p.Build(args)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("mqtt %s: publish %s", p.addr, pub.Topic)
	p.mu.Lock()
	sess, client, closed, lastErr := p.conn, p.client, p.closed, p.status.LastError
	p.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	case sess == nil || !client.IsConnectionOpen():
		if lastErr != "" {
			return nil, fmt.Errorf("%s: %w (%s)", what, drivers.ErrNotConnected, lastErr)
		}
		return nil, fmt.Errorf("%s: %w", what, drivers.ErrNotConnected)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: not sent: %w", what, err)
	}
	timeout := p.set.Timeout.D()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tok := client.Publish(pub.Topic, pub.QoS, pub.Retain, pub.Payload)
	lost := func() error {
		if pub.QoS == 2 {
			return fmt.Errorf("%s: connection lost before the broker acknowledged it (QoS 2: not published again, it may have arrived)", what)
		}
		return fmt.Errorf("%s: connection lost before the broker acknowledged it: %w", what, drivers.ErrNotConnected)
	}
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			if errors.Is(err, paho.ErrNotConnected) || strings.Contains(err.Error(), "connection lost") {
				return nil, lost()
			}
			return nil, fmt.Errorf("%s: %v", what, err)
		}
	case <-sess.done:
		return nil, lost()
	case <-tctx.Done():
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return nil, fmt.Errorf("%s: no acknowledgement from the broker within %s (not published again, it may have arrived)", what, timeout)
	}
	return map[string]any{"topic": pub.Topic, "bytes": len(pub.Payload)}, nil
}
