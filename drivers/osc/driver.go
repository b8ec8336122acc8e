// Package osc is the `kind: osc` driver: named Open Sound Control 1.0
// messages sent over UDP to show-control software and devices (QLab,
// disguise, Resolume, ETC Eos, Millumin, a lighting desk, a DSP).
//
// The package holds the OSC codec too (Message, Marshal, Parse). See
// README.md for the configuration and behaviour.
package osc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml/ast"

	"understudy/drivers"
	"understudy/drivers/command"
	"understudy/units"
	"understudy/yamlerr"
)

// Kind registers the driver as `kind: osc`.
var Kind = drivers.Kind{
	Name:    "osc",
	Summary: "named Open Sound Control 1.0 messages over UDP (QLab, disguise, Resolume, Eos, …)",
	New:     New,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Address is where messages go: "host:port" (UDP).
	Address string `yaml:"address"`
	// Timeout bounds resolving the host name and sending one message.
	// Default 2s.
	Timeout units.Duration `yaml:"timeout"`
	// Messages are the commands a policy can send, by name.
	Messages map[string]MessageSettings `yaml:"messages"`
}

// MessageSettings is one named message.
type MessageSettings struct {
	// Address is the OSC address pattern, a template: "/cue/{{.cue}}/start".
	Address string `yaml:"address"`
	// Args are the typed arguments, in order.
	Args []Arg `yaml:"args"`
}

// Arg is one typed argument of a message. In YAML it is written as a
// mapping from its type to its value, which is a template: {i: 3},
// {f: "{{.level}}"}, {s: "{{.name}}"}, {b: "raw bytes"}, {bool: "{{.on}}"};
// or as one of the scalars T (true), F (false) and N (nil).
type Arg struct {
	// Type is the OSC type tag: 'i' int32, 'f' float32, 's' string, 'b'
	// blob, 'T' true, 'F' false, 'N' nil, or 'B' for a template that
	// expands to true or false (sent as T or F).
	Type byte
	// Value is the template of an i, f, s, b or B argument.
	Value string
}

// argKeys maps the YAML keys of typed arguments to their type.
var argKeys = map[string]byte{"i": 'i', "f": 'f', "s": 's', "b": 'b', "bool": 'B'}

// UnmarshalYAML reads an argument: a scalar T, F or N (true and false too),
// or a one-key mapping {i: …}, {f: …}, {s: …}, {b: …}, {bool: …}.
func (a *Arg) UnmarshalYAML(node ast.Node) error {
	bad := yamlerr.At
	const want = "an OSC argument is T, F, N or one of {i: 1}, {f: 0.5}, {s: text}, {b: bytes}, {bool: true}"
	var pair *ast.MappingValueNode
	switch n := node.(type) {
	case *ast.BoolNode:
		*a = Arg{Type: 'F'}
		if n.Value {
			a.Type = 'T'
		}
		return nil
	case *ast.StringNode:
		switch n.Value {
		case "T", "F", "N":
			*a = Arg{Type: n.Value[0]}
			return nil
		}
		return bad(n, "%q: %s", n.Value, want)
	case *ast.MappingValueNode:
		pair = n
	case *ast.MappingNode:
		if len(n.Values) != 1 {
			return bad(n, "%s (one type and value per argument)", want)
		}
		pair = n.Values[0]
	default:
		return bad(node, "%s", want)
	}
	key := pair.Key.String()
	t, ok := argKeys[key]
	if !ok {
		return bad(pair.Key, "%q is not an OSC argument type: %s", key, want)
	}
	var v string
	switch n := pair.Value.(type) {
	case *ast.StringNode:
		v = n.Value
	case *ast.IntegerNode:
		v = fmt.Sprint(n.Value)
	case *ast.FloatNode:
		v = strconv.FormatFloat(n.Value, 'g', -1, 64)
	case *ast.BoolNode:
		v = strconv.FormatBool(n.Value)
	default:
		return bad(pair.Value, "the value of %s must be a number, text or a template", key)
	}
	*a = Arg{Type: t, Value: v}
	return nil
}

// Default settings.
const DefaultTimeout = 2 * time.Second

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("driver closed")

var _ drivers.Controller = (*Sender)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("osc: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// message is a configured message, its templates parsed.
type message struct {
	name    string
	address *command.Template
	args    []arg
}

type arg struct {
	typ   byte
	val   *command.Template // nil for T, F and N
	field string            // messages.NAME.args[i]
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O. All problems found are reported together.
func FromSettings(s Settings) (*Sender, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s.Address = strings.TrimSpace(s.Address)
	if err := checkHostPort(s.Address); err != nil {
		errs = append(errs, err)
	}
	if s.Timeout < 0 {
		add("timeout: %s is negative", s.Timeout)
	}
	if s.Timeout == 0 {
		s.Timeout = units.Duration(DefaultTimeout)
	}
	if len(s.Messages) == 0 {
		add("messages: none configured (name each message a policy may send, with its OSC address)")
	}
	o := &Sender{set: s, msgs: map[string]*message{}, status: drivers.Status{Address: s.Address}}
	for _, name := range slices.Sorted(maps.Keys(s.Messages)) {
		ms := s.Messages[name]
		field := "messages." + name
		m := &message{name: name}
		var err error
		if strings.TrimSpace(ms.Address) == "" {
			add("%s.address: missing (the OSC address, like /cue/go)", field)
		} else if m.address, err = command.ParseTemplate(field+".address", ms.Address); err != nil {
			errs = append(errs, err)
		} else if m.address.Literal() {
			if err := CheckAddress(ms.Address); err != nil {
				add("%s.address: %v", field, err)
			}
		}
		for i, a := range ms.Args {
			af := fmt.Sprintf("%s.args[%d]", field, i)
			ar := arg{typ: a.Type, field: af}
			switch a.Type {
			case 'T', 'F', 'N':
			case 'i', 'f', 's', 'b', 'B':
				if ar.val, err = command.ParseTemplate(af, a.Value); err != nil {
					errs = append(errs, err)
				} else if ar.val.Literal() {
					if _, err := convert(ar.typ, a.Value); err != nil {
						add("%s: %v", af, err)
					}
				}
			default:
				add("%s: no argument type given", af)
			}
			m.args = append(m.args, ar)
		}
		o.msgs[name] = m
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

func checkHostPort(a string) error {
	if a == "" {
		return errors.New("address is required: host:port of the OSC receiver (UDP)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.ContainsAny(host, " /\t") {
		return fmt.Errorf("address %q: want host:port (OSC has no standard port)", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: port must be a number from 1 to 65535", a)
	}
	return nil
}

// convert turns an expanded argument into its Go value for Message.
func convert(t byte, v string) (any, error) {
	switch t {
	case 'i':
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil {
			// A whole number written as a float (3.0, 1e3) is fine.
			f, ferr := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if ferr != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
				return nil, fmt.Errorf("%q is not a 32-bit integer (i)", v)
			}
			n = int64(f)
		}
		return int32(n), nil
	case 'f':
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 32)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%q is not a 32-bit float (f)", v)
		}
		return float32(f), nil
	case 's':
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("an OSC string cannot hold a NUL byte")
		}
		return v, nil
	case 'b':
		return []byte(v), nil
	case 'B':
		switch strings.TrimSpace(v) {
		case "true", "T", "1":
			return true, nil
		case "false", "F", "0":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not true or false (bool)", v)
	case 'T':
		return true, nil
	case 'F':
		return false, nil
	}
	return nil, nil // N
}

// Sender is the driver: it sends the configured messages. It implements
// drivers.Controller; its methods are safe for use from any goroutine.
type Sender struct {
	set  Settings
	msgs map[string]*message

	mu      sync.Mutex
	conn    net.Conn // UDP, connected to the receiver; nil until the first send or after an error
	status  drivers.Status
	emit    drivers.Emitter
	started bool
	closed  bool
}

// Settings returns the settings in use, defaults filled in.
func (o *Sender) Settings() Settings { return o.set }

// Start makes the driver ready and returns at once. UDP has no connection:
// the driver counts as connected until a send fails.
func (o *Sender) Start(_ context.Context, emit drivers.Emitter) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started || o.closed {
		return
	}
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	o.started, o.emit = true, emit
	o.status.Connected, o.status.Since = true, time.Now()
}

// Close closes the socket; Do fails with ErrClosed afterwards.
func (o *Sender) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.status.Connected {
		o.status.Connected, o.status.Since = false, time.Now()
	}
	if o.conn != nil {
		o.conn.Close()
		o.conn = nil
	}
	return nil
}

// Status reports whether the last send went out.
func (o *Sender) Status() drivers.Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.status
}

// Build returns the message the args make, without sending it.
func (o *Sender) Build(args map[string]any) (Message, error) {
	name, data, err := command.Parse(args)
	if err != nil {
		return Message{}, err
	}
	m, ok := o.msgs[name]
	if !ok {
		return Message{}, command.Unknown("message", name, slices.Collect(maps.Keys(o.msgs)))
	}
	var out Message
	if out.Address, err = m.address.Expand(data); err != nil {
		return Message{}, err
	}
	if err := CheckAddress(out.Address); err != nil {
		return Message{}, fmt.Errorf("%s: %w", m.address.Field(), err)
	}
	for _, a := range m.args {
		text := ""
		if a.val != nil {
			if text, err = a.val.Expand(data); err != nil {
				return Message{}, err
			}
		}
		v, err := convert(a.typ, text)
		if err != nil {
			return Message{}, fmt.Errorf("%s: %w", a.field, err)
		}
		out.Args = append(out.Args, v)
	}
	return out, nil
}

// Check validates args without sending anything: the message is configured,
// its templates expand with the args, every argument converts to its type
// and the packet fits in a datagram.
func (o *Sender) Check(args map[string]any) error {
	m, err := o.Build(args)
	if err != nil {
		return err
	}
	_, err = m.Marshal()
	return err
}

// Do sends the message as one UDP datagram and returns {bytes = n}. A send
// that fails (no route, the receiver's port closed as reported by the
// network for an earlier datagram) wraps drivers.ErrNotConnected. UDP
// carries no acknowledgement: a datagram sent is not known to have arrived.
func (o *Sender) Do(ctx context.Context, args map[string]any) (any, error) {
	m, err := o.Build(args)
	if err != nil {
		return nil, err
	}
	pkt, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("osc %s %s", o.set.Address, m.Address)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: not sent: %w", what, err)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, o.set.Timeout.D())
	defer cancel()

	// No lock is held while resolving or sending: Status stays quick.
	o.mu.Lock()
	c, closed := o.conn, o.closed
	o.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	if c == nil {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "udp", o.set.Address) // resolves the name; sends nothing
		if err != nil {
			if parent.Err() != nil {
				return nil, fmt.Errorf("%s: not sent: %w", what, parent.Err())
			}
			return nil, o.failed(what, nil, err)
		}
		o.mu.Lock()
		switch {
		case o.closed:
			o.mu.Unlock()
			nc.Close()
			return nil, fmt.Errorf("%s: %w", what, ErrClosed)
		case o.conn != nil: // another send opened one meanwhile
			nc.Close()
		default:
			o.conn = nc
		}
		c = o.conn
		o.mu.Unlock()
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	n, err := c.Write(pkt)
	if err != nil {
		return nil, o.failed(what, c, err)
	}
	o.up()
	return map[string]any{"bytes": n}, nil
}

// failed records a failed send on c (nil: no socket was opened), drops
// the socket, and returns the error.
func (o *Sender) failed(what string, c net.Conn, err error) error {
	why := err.Error()
	o.mu.Lock()
	defer o.mu.Unlock()
	if c != nil && o.conn == c {
		o.conn.Close()
		o.conn = nil
	}
	if o.closed {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	if o.started && o.status.Connected {
		o.status.Connected, o.status.Since = false, time.Now()
		o.emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{"address": o.set.Address, "error": why}})
	}
	o.status.LastError = why
	return fmt.Errorf("%s: not sent: %v: %w", what, err, drivers.ErrNotConnected)
}

// up records a successful send.
func (o *Sender) up() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.status.LastError = ""
	if o.started && !o.closed && !o.status.Connected {
		o.status.Connected, o.status.Since = true, time.Now()
		o.emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": o.set.Address}})
	}
}
