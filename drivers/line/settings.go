package line

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.bug.st/serial"

	"understudy/drivers"
	"understudy/drivers/command"
	"understudy/units"
)

// Kind registers the driver as `kind: line`.
var Kind = drivers.Kind{
	Name:    "line",
	Summary: "generic line-protocol control (projectors, displays, players, DSPs) over TCP, UDP or a serial port",
	New:     New,
}

// Transports.
const (
	TCP    = "tcp"
	UDP    = "udp"
	Serial = "serial"
)

// Default settings.
const (
	DefaultTerminator = `\r\n`
	DefaultTimeout    = 2 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	DefaultBaud       = 9600
	DefaultDataBits   = 8
	DefaultParity     = "none"
	DefaultStopBits   = 1
)

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Transport is tcp (one persistent connection), udp (a datagram per
	// command) or serial. Default tcp.
	Transport string `yaml:"transport"`
	// Address is host:port for tcp and udp, the device path (/dev/ttyUSB0)
	// for serial.
	Address string `yaml:"address"`
	// Terminator ends each reply line, with escapes (\r, \n, \xHH).
	// Default \r\n.
	Terminator string `yaml:"terminator"`
	// Greeting (tcp only), when set, is a regexp the device's greeting line
	// matches: after connecting, the driver reads lines until one matches
	// (within Timeout) before sending anything.
	Greeting string `yaml:"greeting"`
	// Timeout bounds connecting and each command's reply. Default 2s.
	Timeout units.Duration `yaml:"timeout"`
	// BackoffMin and BackoffMax bound the delay before connecting again
	// after a failure, which doubles from BackoffMin up to BackoffMax, with
	// jitter. Defaults 100ms and 5s.
	BackoffMin units.Duration `yaml:"backoff_min"`
	BackoffMax units.Duration `yaml:"backoff_max"`
	// Raw allows a policy to send text of its own ({send = "…"}) besides
	// the named commands. Default false.
	Raw bool `yaml:"raw"`
	// Serial port settings (transport serial only). Defaults 9600 baud, 8
	// data bits, no parity, 1 stop bit.
	Baud     int    `yaml:"baud"`
	DataBits int    `yaml:"data_bits"`
	Parity   string `yaml:"parity"` // none, odd, even, mark, space
	StopBits int    `yaml:"stop_bits"`
	// Commands maps a command name to what is sent and what reply is
	// expected.
	Commands map[string]Command `yaml:"commands"`
}

// Command is one named command.
type Command struct {
	// Send is what is written to the device: escapes as in Terminator, then
	// a Go text/template over the policy's args ({{.n}}). It carries its own
	// line ending ("PWR ON\r").
	Send string `yaml:"send"`
	// Expect is a regexp the reply line must match. Empty: no reply is
	// awaited. Named groups ((?P<power>\d)) become fields of the result.
	Expect string `yaml:"expect"`
	// Error is a regexp that marks the reply as the device's refusal; its
	// text becomes the error. Needs Expect.
	Error string `yaml:"error"`
	// Timeout overrides the driver's timeout for this command's reply.
	Timeout units.Duration `yaml:"timeout"`
}

// compiled is a Command compiled.
type compiled struct {
	name    string
	send    *command.Template // named for the command, after the escapes
	expect  *regexp.Regexp    // nil: no reply awaited
	refuse  *regexp.Regexp    // nil: none
	timeout time.Duration
}

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("line: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O.
func FromSettings(s Settings) (*Line, error) {
	d := &Line{reqs: make(chan *request), done: make(chan struct{})}
	s.Transport = strings.ToLower(strings.TrimSpace(s.Transport))
	if s.Transport == "" {
		s.Transport = TCP
	}
	s.Address = strings.TrimSpace(s.Address)
	switch s.Transport {
	case TCP, UDP:
		if err := checkHostPort(s.Address); err != nil {
			return nil, err
		}
	case Serial:
		if s.Address == "" {
			return nil, errors.New("address is required (the serial device, like /dev/ttyUSB0)")
		}
	default:
		return nil, fmt.Errorf("transport: want tcp, udp or serial, not %q", s.Transport)
	}

	if s.Terminator == "" {
		s.Terminator = DefaultTerminator
	}
	term, err := Unescape(s.Terminator)
	if err != nil {
		return nil, fmt.Errorf("terminator: %v", err)
	}
	if term == "" {
		return nil, errors.New("terminator: empty")
	}
	d.term = []byte(term)

	for _, f := range []struct {
		name string
		v    *units.Duration
		def  time.Duration
	}{
		{"timeout", &s.Timeout, DefaultTimeout},
		{"backoff_min", &s.BackoffMin, DefaultBackoffMin},
		{"backoff_max", &s.BackoffMax, DefaultBackoffMax},
	} {
		if *f.v < 0 {
			return nil, fmt.Errorf("%s: %s is negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = units.Duration(f.def)
		}
	}
	if s.BackoffMax < s.BackoffMin {
		return nil, fmt.Errorf("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}

	if s.Greeting != "" {
		if s.Transport != TCP {
			return nil, errors.New("greeting: only for transport tcp")
		}
		if d.greeting, err = regexp.Compile(s.Greeting); err != nil {
			return nil, fmt.Errorf("greeting: %v", err)
		}
	}

	if s.Transport == Serial {
		if d.mode, err = serialMode(&s); err != nil {
			return nil, err
		}
	} else {
		for _, f := range []struct {
			name string
			set  bool
		}{{"baud", s.Baud != 0}, {"data_bits", s.DataBits != 0}, {"parity", s.Parity != ""}, {"stop_bits", s.StopBits != 0}} {
			if f.set {
				return nil, fmt.Errorf("%s: only for transport serial", f.name)
			}
		}
	}

	if len(s.Commands) == 0 && !s.Raw {
		return nil, errors.New("commands: none defined (and raw sends are off)")
	}
	d.commands = make(map[string]*compiled, len(s.Commands))
	for _, name := range slices.Sorted(maps.Keys(s.Commands)) {
		if strings.TrimSpace(name) == "" {
			return nil, errors.New("commands: a command has an empty name")
		}
		c, err := compile(name, s.Commands[name])
		if err != nil {
			return nil, fmt.Errorf("commands.%s.%v", name, err)
		}
		d.commands[name] = c
	}
	d.names = slices.Sorted(maps.Keys(d.commands))
	d.set = s
	d.status.Address = s.Address
	return d, nil
}

// fieldError is an error about one field of a command: "send: …".
func fieldError(field string, err error) error { return fmt.Errorf("%s: %w", field, err) }

func compile(name string, c Command) (*compiled, error) {
	if c.Send == "" {
		return nil, errors.New("send: required (what to write to the device)")
	}
	text, err := Unescape(c.Send)
	if err != nil {
		return nil, fieldError("send", err)
	}
	out := &compiled{name: name, timeout: c.Timeout.D()}
	if out.send, err = command.ParseTemplate(name, text); err != nil {
		// text/template's own message ("template: on:1: …"): the
		// field is named already.
		return nil, fieldError("send", errors.Unwrap(err))
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("timeout: %s is negative", c.Timeout)
	}
	if c.Expect != "" {
		if out.expect, err = regexp.Compile(c.Expect); err != nil {
			return nil, fieldError("expect", err)
		}
		if slices.Contains(out.expect.SubexpNames(), "reply") {
			return nil, errors.New("expect: a group may not be named reply (the result's reply field holds the whole line)")
		}
	}
	if c.Error != "" {
		if out.expect == nil {
			return nil, errors.New("error: needs expect (a reply is read only when expect is set; expect: '.*' accepts any reply)")
		}
		if out.refuse, err = regexp.Compile(c.Error); err != nil {
			return nil, fieldError("error", err)
		}
	}
	return out, nil
}

// checkHostPort checks a tcp or udp address: host:port.
func checkHostPort(a string) error {
	if a == "" {
		return errors.New("address is required (host:port)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.ContainsAny(host, " /\t") {
		return fmt.Errorf("address %q: want host:port", a)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: port must be a number from 1 to 65535", a)
	}
	return nil
}

var parities = map[string]serial.Parity{
	"none":  serial.NoParity,
	"odd":   serial.OddParity,
	"even":  serial.EvenParity,
	"mark":  serial.MarkParity,
	"space": serial.SpaceParity,
}

// serialMode validates the serial settings, fills in defaults and returns
// the port mode.
func serialMode(s *Settings) (*serial.Mode, error) {
	if s.Baud == 0 {
		s.Baud = DefaultBaud
	}
	if s.DataBits == 0 {
		s.DataBits = DefaultDataBits
	}
	if s.Parity == "" {
		s.Parity = DefaultParity
	}
	if s.StopBits == 0 {
		s.StopBits = DefaultStopBits
	}
	s.Parity = strings.ToLower(s.Parity)
	m := &serial.Mode{BaudRate: s.Baud, DataBits: s.DataBits}
	if s.Baud < 0 || s.Baud > 4_000_000 {
		return nil, fmt.Errorf("baud: %d is not a baud rate", s.Baud)
	}
	if s.DataBits < 5 || s.DataBits > 8 {
		return nil, fmt.Errorf("data_bits: want 5, 6, 7 or 8, not %d", s.DataBits)
	}
	p, ok := parities[s.Parity]
	if !ok {
		return nil, fmt.Errorf("parity: want none, odd, even, mark or space, not %q", s.Parity)
	}
	m.Parity = p
	switch s.StopBits {
	case 1:
		m.StopBits = serial.OneStopBit
	case 2:
		m.StopBits = serial.TwoStopBits
	default:
		return nil, fmt.Errorf("stop_bits: want 1 or 2, not %d", s.StopBits)
	}
	return m, nil
}
