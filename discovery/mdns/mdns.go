package mdns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
)

// ErrLoopback is returned, wrapped, by Advertise for a service that hosts on
// the network could not reach: its listener is bound to a loopback address
// (Service.Bound), or Service.IPs holds one.
var ErrLoopback = errors.New("a loopback address, which other hosts cannot reach")

// maxTXT bounds a TXT record's size (RFC 6763 §6.2: it should fit an
// Ethernet frame with the rest of an answer).
const maxTXT = 1300

// Service is a DNS-SD service instance to advertise.
type Service struct {
	// Instance is the instance name, e.g. the member id. Up to 63 bytes of
	// UTF-8 without control characters; spaces and dots are allowed.
	Instance string
	// Service is the service type, e.g. "_understudy._tcp".
	Service string
	// Port is the service's port.
	Port int
	// TXT holds the TXT record's attributes, encoded as key=value. Keys are
	// compared without regard to case by browsers; use lower case.
	TXT map[string]string
	// Bound is the address the service's listener is bound to (the host part
	// of its net.Listener's address). Nil or unspecified (0.0.0.0, ::): it
	// listens on every interface, and the answer on each interface carries
	// that interface's own IPv4 addresses. A loopback address: Advertise
	// refuses with ErrLoopback. Any other IPv4 address: answered only on the
	// interface that has it, with that address.
	Bound net.IP
	// IPs, when set, are the addresses published for Host on every
	// interface instead of the interface's own (for example an address that
	// a NAT maps to this host). Loopback addresses are refused (ErrLoopback).
	IPs []net.IP
	// Host is the host's name, published as "<Host>.local." and used as the
	// SRV target: one label of letters, digits and '-', optionally followed
	// by ".local." ("vm", "vm.local."). Empty: the machine's host name up to
	// its first dot, other characters replaced by '-'.
	Host string
}

// Advertisement is an advertised service. It answers mDNS queries until
// Close.
type Advertisement struct {
	r    *responder
	once sync.Once
	err  error
}

// Advertise announces svc and starts answering mDNS queries for it (see the
// package documentation). Its sockets are created before it returns, in the
// network namespace of the calling thread, and stay there (so a test can
// advertise from inside a test host). A nil logger discards the
// advertisement's debug lines.
func Advertise(svc Service, logger *slog.Logger) (*Advertisement, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	z, err := newZone(svc)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Advertisement, error) {
		return nil, fmt.Errorf("mdns: advertise %q: %w", svc.Instance, err)
	}
	sc, err := newScanner()
	if err != nil {
		return fail(err)
	}
	links, err := sc.scan()
	if err != nil {
		sc.Close()
		return fail(err)
	}
	table := newIfaceTable(links)
	if z.bound != nil && !table.isOwn(z.bound) {
		sc.Close()
		return fail(fmt.Errorf("listener bound to %v, which no up, multicast-capable interface has", z.bound))
	}
	if !slices.ContainsFunc(table.ifaces, func(ifc iface) bool { return len(ifc.nets) > 0 }) {
		logger.Info("mdns: no up, multicast-capable interface with an IPv4 address yet; announcing when one appears", "instance", svc.Instance)
	}
	conn, err := listenMDNS()
	if err != nil {
		sc.Close()
		return fail(err)
	}
	r := newResponder(z, conn, sc, table, logger.With("component", "mdns", "instance", svc.Instance))
	r.start()
	return &Advertisement{r: r}, nil
}

// newZone checks svc and builds the records it publishes.
func newZone(svc Service) (*zone, error) {
	service, err := normalizeService(svc.Service)
	if err != nil {
		return nil, err
	}
	if err := validateInstance(svc.Instance); err != nil {
		return nil, err
	}
	fail := func(err error) (*zone, error) {
		return nil, fmt.Errorf("mdns: advertise %q: %w", svc.Instance, err)
	}
	if svc.Port < 1 || svc.Port > 65535 {
		return fail(fmt.Errorf("port %d out of range 1..65535", svc.Port))
	}
	host, err := hostName(svc.Host)
	if err != nil {
		return fail(err)
	}
	txt, err := encodeTXT(svc.TXT)
	if err != nil {
		return fail(err)
	}
	size := 0
	for _, s := range txt {
		size += 1 + len(s)
	}
	if size > maxTXT {
		return fail(fmt.Errorf("TXT record of %d bytes, more than %d", size, maxTXT))
	}
	z := &zone{
		service:  service + "." + domain,
		instance: escapeLabel(svc.Instance) + "." + service + "." + domain,
		host:     host,
		port:     uint16(svc.Port),
		txt:      txt,
	}
	switch b := svc.Bound; {
	case b == nil || b.IsUnspecified():
	case b.IsLoopback():
		return fail(fmt.Errorf("listener bound to %v, %w", b, ErrLoopback))
	case b.To4() == nil:
		return fail(fmt.Errorf("listener bound to %v: only IPv4 addresses are announced", b))
	default:
		z.bound = b.To4()
	}
	for _, ip := range svc.IPs {
		switch {
		case ip.To4() == nil:
			return fail(fmt.Errorf("address %v is not IPv4", ip))
		case ip.IsLoopback():
			return fail(fmt.Errorf("address %v is %w", ip, ErrLoopback))
		case ip.IsUnspecified() || ip.IsMulticast():
			return fail(fmt.Errorf("address %v cannot be a host's", ip))
		}
		z.ips = append(z.ips, ip.To4())
	}
	return z, nil
}

// Close multicasts goodbyes (the records with TTL 0) on every interface, so
// that other hosts drop the service from their caches at once, stops
// answering, and returns once its goroutines have ended. Further calls do
// nothing and return the first call's result.
func (a *Advertisement) Close() error {
	a.once.Do(func() {
		if err := a.r.close(); err != nil {
			a.err = fmt.Errorf("mdns: close advertisement: %w", err)
		}
	})
	return a.err
}
