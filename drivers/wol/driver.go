// Package wol is the `kind: wol` driver: Wake-on-LAN magic packets that
// switch on a machine (a standby server, a render node, a projector with a
// network standby) by its MAC address. See README.md.
package wol

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"understudy/drivers"
	"understudy/drivers/command"
	"understudy/units"
)

// Kind registers the driver as `kind: wol`.
var Kind = drivers.Kind{
	Name:    "wol",
	Summary: "Wake-on-LAN magic packets to named machines (UDP broadcast)",
	New:     New,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Broadcast is where magic packets are sent: "host:port" or "host"
	// (port 9). Default 255.255.255.255:9; a subnet's directed broadcast
	// address (192.168.10.255) reaches a machine on another subnet where
	// routers forward it.
	Broadcast string `yaml:"broadcast"`
	// Timeout bounds resolving the address and sending one packet. Default 2s.
	Timeout units.Duration `yaml:"timeout"`
	// Hosts maps the names a policy sends to MAC addresses.
	Hosts map[string]string `yaml:"hosts"`
}

// Defaults.
const (
	DefaultBroadcast = "255.255.255.255:9"
	DefaultPort      = 9
	DefaultTimeout   = 2 * time.Second
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("driver closed")

var _ drivers.Controller = (*Waker)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("wol: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O. All problems found are reported together.
func FromSettings(s Settings) (*Waker, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	addr, err := normalizeAddress(s.Broadcast)
	if err != nil {
		errs = append(errs, err)
	}
	s.Broadcast = addr
	if s.Timeout < 0 {
		add("timeout: %s is negative", s.Timeout)
	}
	if s.Timeout == 0 {
		s.Timeout = units.Duration(DefaultTimeout)
	}
	if len(s.Hosts) == 0 {
		add("hosts: none configured (name each machine a policy may wake, with its MAC address)")
	}
	w := &Waker{set: s, macs: map[string]net.HardwareAddr{}, status: drivers.Status{Address: addr}}
	hosts := make(map[string]string, len(s.Hosts))
	for _, name := range slices.Sorted(maps.Keys(s.Hosts)) {
		if strings.TrimSpace(name) == "" {
			add("hosts: a host has an empty name")
			continue
		}
		mac, err := ParseMAC(s.Hosts[name])
		if err != nil {
			add("hosts.%s: %v", name, err)
			continue
		}
		w.macs[name] = mac
		hosts[name] = mac.String()
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	w.set.Hosts = hosts
	return w, nil
}

func normalizeAddress(a string) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return DefaultBroadcast, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), strconv.Itoa(DefaultPort)
	}
	if host == "" || strings.ContainsAny(host, " /[]\t") {
		return "", fmt.Errorf("broadcast %q: want an address, host:port (port 9 unless given)", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("broadcast %q: port must be a number from 1 to 65535", a)
	}
	return net.JoinHostPort(host, port), nil
}

// ParseMAC reads a 6-byte MAC address written as 00:11:22:aa:bb:cc,
// 00-11-22-AA-BB-CC, 0011.22aa.bbcc or 001122aabbcc.
func ParseMAC(s string) (net.HardwareAddr, error) {
	s = strings.TrimSpace(s)
	mac, err := net.ParseMAC(s)
	if err != nil && len(s) == 12 {
		if b, herr := hex.DecodeString(s); herr == nil {
			mac, err = net.HardwareAddr(b), nil
		}
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("%q is not a MAC address (write it like 00:11:22:aa:bb:cc)", s)
	case len(mac) != 6:
		return nil, fmt.Errorf("%q is not a 6-byte (EUI-48) MAC address", s)
	case bytes.Equal(mac, make([]byte, 6)):
		return nil, fmt.Errorf("%q is all zeros", s)
	}
	return mac, nil
}

// MagicPacket returns the Wake-on-LAN magic packet for mac: six 0xFF bytes
// followed by the MAC address sixteen times (102 bytes).
func MagicPacket(mac net.HardwareAddr) []byte {
	p := make([]byte, 0, 6+16*6)
	p = append(p, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	for range 16 {
		p = append(p, mac...)
	}
	return p
}

// Waker is the driver: it sends magic packets. It implements
// drivers.Controller; its methods are safe for use from any goroutine.
type Waker struct {
	set  Settings
	macs map[string]net.HardwareAddr

	mu      sync.Mutex
	status  drivers.Status
	emit    drivers.Emitter
	started bool
	closed  bool
}

// Settings returns the settings in use, defaults filled in and MAC
// addresses in canonical form.
func (w *Waker) Settings() Settings { return w.set }

// Start makes the driver ready and returns at once. There is no
// connection: the driver counts as connected until a send fails.
func (w *Waker) Start(_ context.Context, emit drivers.Emitter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	w.started, w.emit = true, emit
	w.status.Connected, w.status.Since = true, time.Now()
}

// Close makes Do fail with ErrClosed.
func (w *Waker) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.status.Connected {
		w.status.Connected, w.status.Since = false, time.Now()
	}
	return nil
}

// Status reports whether the last send went out.
func (w *Waker) Status() drivers.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

func (w *Waker) host(args map[string]any) (string, net.HardwareAddr, error) {
	name, data, err := command.Parse(args)
	if err != nil {
		return "", nil, err
	}
	mac, ok := w.macs[name]
	if !ok {
		return "", nil, command.Unknown("host", name, slices.Collect(maps.Keys(w.macs)))
	}
	if len(data) > 0 {
		return "", nil, fmt.Errorf("waking %s takes no args", name)
	}
	return name, mac, nil
}

// Check validates args without sending anything: the command names a
// configured host.
func (w *Waker) Check(args map[string]any) error {
	_, _, err := w.host(args)
	return err
}

// Do sends the magic packet for the host named by the command and returns
// {mac = "00:11:22:aa:bb:cc"}. A send that fails (no route, the name does
// not resolve) wraps drivers.ErrNotConnected. Nothing confirms that the
// machine woke: watch it come back (member_restored, a probe).
func (w *Waker) Do(ctx context.Context, args map[string]any) (any, error) {
	name, mac, err := w.host(args)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("wol %s (%s) via %s", name, mac, w.set.Broadcast)
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: not sent: %w", what, err)
	}
	sctx, cancel := context.WithTimeout(ctx, w.set.Timeout.D())
	defer cancel()
	if err := send(sctx, w.set.Broadcast, MagicPacket(mac)); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: not sent: %w", what, ctx.Err())
		}
		w.reachable(false, err.Error())
		return nil, fmt.Errorf("%s: not sent: %v: %w", what, err, drivers.ErrNotConnected)
	}
	w.reachable(true, "")
	return map[string]any{"mac": mac.String()}, nil
}

// send sends one datagram to addr. Go enables SO_BROADCAST on UDP sockets,
// so addr may be a broadcast address.
func send(ctx context.Context, addr string, p []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	_, err = c.Write(p)
	return err
}

// reachable records whether a send went out and reports a change as
// driver_connected or driver_disconnected.
func (w *Waker) reachable(ok bool, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.LastError = why
	if !w.started || w.closed || w.status.Connected == ok {
		return
	}
	w.status.Connected, w.status.Since = ok, time.Now()
	if ok {
		w.emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": w.set.Broadcast}})
	} else {
		w.emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{"address": w.set.Broadcast, "error": why}})
	}
}
