// Package mdns advertises and browses DNS-SD services over multicast DNS
// (github.com/hashicorp/mdns), in the domain "local.".
//
// understudy uses two service types: "_understudy._tcp" for each instance
// (TXT site=<site>, member=<id>, version=<version>) and "_mqtt._tcp" for an
// embedded broker (TXT site=<site>, member=<id>, and tls=<port> when it has
// a TLS listener).
//
// mDNS finds peers and brokers; it is not a liveness signal. What a user of
// this package must know:
//   - An Advertisement answers queries only while it is open; it announces
//     nothing unsolicited and sends no goodbye on Close. Browse and Find send
//     fresh queries and keep no cache, so a closed advertisement is simply not
//     found any more; other stacks (Avahi, Bonjour) that cached its records
//     keep them until their TTL (120 s) runs out.
//   - Advertisements of this package answer at once, by unicast to the
//     querier (other hosts do not overhear answers), with a TTL of 120 s;
//     Avahi answers after 20-120 ms. Browse collects answers for whole rounds
//     and returns after its timeout, not at the first answer: a timeout of a
//     second is plenty on a LAN; Find returns at the end of the first round
//     that saw a match.
//   - The advertiser listens on the interface of the system's default
//     multicast route. On a machine with several networks, set Service.IPs to
//     the address on the site network: a browser using this package takes one
//     address per instance.
//   - Instance names must be unique per service type on the network: mDNS
//     probing and conflict resolution are not implemented.
package mdns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	hmdns "github.com/hashicorp/mdns"
)

// domain is the only mDNS domain.
const domain = "local."

// mdnsGroup returns the IPv4 mDNS multicast group and port.
func mdnsGroup() *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353} }

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
	// IPs are the addresses published for Host. Nil: the IPv4 addresses of all
	// up, non-loopback, multicast-capable interfaces, the one on the default
	// multicast interface last (the one this package's browsers pick).
	IPs []net.IP
	// Host is the host's DNS name, a fully qualified name ending in ".". Empty:
	// os.Hostname() + ".".
	Host string
}

// Advertisement is an advertised service. It answers mDNS queries until
// Close.
type Advertisement struct {
	server *hmdns.Server
	once   sync.Once
}

// Advertise starts answering mDNS queries for svc. Its sockets are created
// before it returns, in the network namespace of the calling thread, and stay
// there (so a test can advertise from inside a test host).
func Advertise(svc Service, logger *slog.Logger) (*Advertisement, error) {
	service, err := normalizeService(svc.Service)
	if err != nil {
		return nil, err
	}
	if err := validateInstance(svc.Instance); err != nil {
		return nil, err
	}
	if svc.Port < 1 || svc.Port > 65535 {
		return nil, fmt.Errorf("mdns: advertise %q: port %d out of range 1..65535", svc.Instance, svc.Port)
	}
	host := svc.Host
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("mdns: advertise %q: host name: %w", svc.Instance, err)
		}
		host = h + "."
	}
	if err := validateHost(host); err != nil {
		return nil, fmt.Errorf("mdns: advertise %q: %w", svc.Instance, err)
	}
	txt, err := encodeTXT(svc.TXT)
	if err != nil {
		return nil, fmt.Errorf("mdns: advertise %q: %w", svc.Instance, err)
	}
	ips := svc.IPs
	if len(ips) == 0 {
		if ips, err = defaultIPs(); err != nil {
			return nil, fmt.Errorf("mdns: advertise %q: %w", svc.Instance, err)
		}
	}
	for _, ip := range ips {
		if ip.To16() == nil {
			return nil, fmt.Errorf("mdns: advertise %q: invalid IP address %v", svc.Instance, ip)
		}
	}

	// hashicorp/mdns hides why listening failed; try it once for a useful error
	// (typically "no such device" when there is no multicast route).
	probe, err := net.ListenMulticastUDP("udp4", nil, mdnsGroup())
	if err != nil {
		return nil, fmt.Errorf("mdns: advertise %q: join %v: %w", svc.Instance, mdnsGroup(), err)
	}
	probe.Close()

	zone, err := hmdns.NewMDNSService(escapeLabel(svc.Instance), service, domain, host, svc.Port, ips, txt)
	if err != nil {
		return nil, fmt.Errorf("mdns: advertise %q: %w", svc.Instance, err)
	}
	server, err := hmdns.NewServer(&hmdns.Config{Zone: zone, Logger: stdLogger(logger)})
	if err != nil {
		return nil, fmt.Errorf("mdns: advertise %q: %w", svc.Instance, err)
	}
	return &Advertisement{server: server}, nil
}

// Close stops answering queries. It sends no goodbye records. Further calls do
// nothing.
func (a *Advertisement) Close() error {
	var err error
	a.once.Do(func() {
		if e := a.server.Shutdown(); e != nil {
			err = fmt.Errorf("mdns: close advertisement: %w", e)
		}
	})
	return err
}

// Entry is a service instance found by Browse.
type Entry struct {
	Instance string            // the plain instance name (unescaped, without the service suffix)
	Host     string            // the host's DNS name (the SRV target), e.g. "vm.local."
	Addr     net.IP            // an IPv4 address of Host
	Port     int               // the service's port
	TXT      map[string]string // TXT attributes; keys in lower case, attributes without "=" map to ""
}

// HostPort returns Addr and Port as "host:port", ready to dial.
func (e Entry) HostPort() string {
	return net.JoinHostPort(e.Addr.String(), strconv.Itoa(e.Port))
}

// Query rounds: Browse queries in rounds of firstRound, then of at most
// maxRound, so that a lost query or answer is repeated. A remainder shorter
// than minRound is added to the round before.
const (
	firstRound = time.Second
	maxRound   = 2 * time.Second
	minRound   = 250 * time.Millisecond
)

// Browse queries for instances of service (e.g. "_understudy._tcp") for
// timeout and returns every instance that answered, deduplicated by instance
// name, sorted by instance name, filtered by match (nil: all). Entries without
// an IPv4 address are skipped.
//
// The query is repeated: the first round lasts a second, later rounds two;
// each round opens fresh sockets, in the network namespace of the calling
// thread. Browse returns after timeout, or when ctx ends: with a ctx deadline
// at that deadline, after a cancellation at the end of the current round. When
// ctx ends first, Browse returns the entries of the finished rounds with the
// context's error.
func Browse(ctx context.Context, service string, timeout time.Duration, match func(Entry) bool, logger *slog.Logger) ([]Entry, error) {
	svc, err := normalizeService(service)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("mdns: browse %s: timeout %v must be positive", svc, timeout)
	}
	end := time.Now().Add(timeout)
	found := map[string]Entry{}
	round := firstRound
	for {
		if err := ctx.Err(); err != nil {
			return sortedEntries(found), fmt.Errorf("mdns: browse %s: %w", svc, err)
		}
		remaining := time.Until(end)
		if remaining <= 0 {
			return sortedEntries(found), nil
		}
		d := min(round, remaining)
		if remaining-d < minRound {
			d = remaining
		}
		if dl, ok := ctx.Deadline(); ok {
			d = min(d, time.Until(dl))
		}
		if d <= 0 {
			<-ctx.Done() // its deadline has passed: reported at the top
			continue
		}
		entries, err := queryRound(ctx, svc, d, logger)
		if err != nil {
			return sortedEntries(found), err
		}
		for _, e := range entries {
			if match == nil || match(e) {
				found[strings.ToLower(e.Instance)] = e
			}
		}
		round = maxRound
	}
}

// queryRound runs one hashicorp/mdns query of length d.
//
// hashicorp/mdns hands out *ServiceEntry values and keeps updating them while
// further answers arrive; QueryContext runs its receive loop on the calling
// goroutine. The entries are therefore only read after QueryContext returned,
// on this goroutine. Its Entries channel send does not block, so a goroutine
// collects the pointers meanwhile.
func queryRound(ctx context.Context, svc string, d time.Duration, logger *slog.Logger) ([]Entry, error) {
	ch := make(chan *hmdns.ServiceEntry, 64)
	var raw []*hmdns.ServiceEntry
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for e := range ch {
			raw = append(raw, e)
		}
	}()
	params := &hmdns.QueryParam{
		Service:     svc,
		Domain:      domain,
		Timeout:     d,
		Entries:     ch,
		DisableIPv6: true, // only IPv4 addresses are used; IPv6 queries would double the traffic
		Logger:      stdLogger(logger),
	}
	err := hmdns.QueryContext(ctx, params)
	close(ch)
	<-collected
	if err != nil {
		return nil, fmt.Errorf("mdns: browse %s: %w", svc, err)
	}
	var entries []Entry
	for _, se := range raw {
		e, ok := toEntry(svc, se)
		if !ok {
			if logger != nil {
				logger.Debug("mdns: ignoring answer", "service", svc, "name", se.Name, "addr", se.AddrV4)
			}
			continue
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// toEntry converts a hashicorp/mdns entry; ok is false for answers about
// other services and for entries without an IPv4 address.
func toEntry(svc string, se *hmdns.ServiceEntry) (Entry, bool) {
	suffix := "." + svc + "." + domain
	name := se.Name
	if len(name) <= len(suffix) || !strings.EqualFold(name[len(name)-len(suffix):], suffix) {
		return Entry{}, false
	}
	instance, err := unescapeLabel(name[:len(name)-len(suffix)])
	if err != nil {
		return Entry{}, false
	}
	addr := se.AddrV4.To4()
	if addr == nil || se.Port <= 0 {
		return Entry{}, false
	}
	return Entry{
		Instance: instance,
		Host:     se.Host,
		Addr:     slices.Clone(addr),
		Port:     se.Port,
		TXT:      decodeTXT(se.InfoFields),
	}, true
}

func sortedEntries(found map[string]Entry) []Entry {
	entries := make([]Entry, 0, len(found))
	for _, e := range found {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Instance < entries[j].Instance })
	return entries
}

// Find browses in rounds of length round (<= 0: one second) until an entry
// matching match (nil: any) is found, and returns the first by instance name.
// It ends with ctx's error when ctx ends first: give ctx a deadline.
func Find(ctx context.Context, service string, round time.Duration, match func(Entry) bool, logger *slog.Logger) (Entry, error) {
	if round <= 0 {
		round = time.Second
	}
	for {
		entries, err := Browse(ctx, service, round, match, logger)
		if len(entries) > 0 {
			return entries[0], nil
		}
		if err != nil {
			return Entry{}, err
		}
	}
}

// normalizeService checks a DNS-SD service type such as "_understudy._tcp"
// (a trailing "." or ".local." is accepted) and returns it without them.
func normalizeService(s string) (string, error) {
	t := strings.TrimSuffix(s, ".")
	if strings.HasSuffix(strings.ToLower(t), ".local") {
		t = t[:len(t)-len(".local")]
	}
	labels := strings.Split(t, ".")
	if len(labels) != 2 {
		return "", fmt.Errorf("mdns: service type %q: want _name._tcp or _name._udp", s)
	}
	name, proto := labels[0], strings.ToLower(labels[1])
	if proto != "_tcp" && proto != "_udp" {
		return "", fmt.Errorf("mdns: service type %q: protocol must be _tcp or _udp", s)
	}
	if len(name) < 2 || len(name) > 16 || name[0] != '_' {
		return "", fmt.Errorf("mdns: service type %q: name must be _ and 1 to 15 characters", s)
	}
	for _, c := range name[1:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return "", fmt.Errorf("mdns: service type %q: name may contain only letters, digits and '-'", s)
		}
	}
	return name + "." + proto, nil
}

func validateInstance(s string) error {
	switch {
	case s == "":
		return errors.New("mdns: empty instance name")
	case len(s) > 63:
		return fmt.Errorf("mdns: instance name %q longer than 63 bytes", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("mdns: instance name %q is not valid UTF-8", s)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("mdns: instance name %q contains a control character", s)
		}
	}
	return nil
}

// validateHost checks a fully qualified host name ending in ".".
func validateHost(s string) error {
	if !strings.HasSuffix(s, ".") {
		return fmt.Errorf("host name %q is not fully qualified (must end in \".\")", s)
	}
	if len(s) > 254 {
		return fmt.Errorf("host name %q longer than 253 characters", s)
	}
	for _, label := range strings.Split(s[:len(s)-1], ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host name %q: empty label or label longer than 63 characters", s)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host name %q: label %q may contain only letters, digits, '-' and '_'", s, label)
			}
		}
	}
	return nil
}

// escapeLabel writes a DNS label in presentation format the way
// github.com/miekg/dns prints names it unpacks, so that names in questions
// compare equal to the advertised ones.
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' || c == ' ' || c == '\'' || c == '@' || c == ';' || c == '(' || c == ')' || c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeLabel reverses escapeLabel (\X and \DDD). It fails for an unescaped
// dot: the name has more labels than an instance name.
func unescapeLabel(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			return "", fmt.Errorf("mdns: %q is not a single label", s)
		case c != '\\':
			b.WriteByte(c)
		case i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]):
			n, _ := strconv.Atoi(s[i+1 : i+4])
			if n > 255 {
				return "", fmt.Errorf("mdns: bad escape in %q", s)
			}
			b.WriteByte(byte(n))
			i += 3
		case i+1 < len(s):
			b.WriteByte(s[i+1])
			i++
		default:
			return "", fmt.Errorf("mdns: trailing backslash in %q", s)
		}
	}
	return b.String(), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// encodeTXT encodes attributes as sorted key=value strings (RFC 6763 §6). An
// empty map gives the single empty string that an empty TXT record must hold.
func encodeTXT(m map[string]string) ([]string, error) {
	if len(m) == 0 {
		return []string{""}, nil
	}
	keys := make([]string, 0, len(m))
	seen := map[string]bool{}
	for k := range m {
		if k == "" || strings.ContainsRune(k, '=') {
			return nil, fmt.Errorf("TXT key %q: must be non-empty and without '='", k)
		}
		for _, c := range k {
			if c < 0x20 || c > 0x7e {
				return nil, fmt.Errorf("TXT key %q: must be printable ASCII", k)
			}
		}
		lk := strings.ToLower(k)
		if seen[lk] {
			return nil, fmt.Errorf("TXT key %q given twice (keys ignore case)", k)
		}
		seen[lk] = true
		keys = append(keys, k)
	}
	sort.Strings(keys)
	txt := make([]string, 0, len(keys))
	for _, k := range keys {
		s := k + "=" + m[k]
		if len(s) > 255 {
			return nil, fmt.Errorf("TXT attribute %q longer than 255 bytes", k)
		}
		txt = append(txt, s)
	}
	return txt, nil
}

// decodeTXT decodes TXT strings: keys are lower-cased, "key" alone maps to "",
// empty strings are skipped, and of repeated keys the first counts (RFC 6763
// §6.4).
func decodeTXT(txt []string) map[string]string {
	m := map[string]string{}
	for _, s := range txt {
		if s == "" {
			continue
		}
		k, v, _ := strings.Cut(s, "=")
		if k == "" {
			continue
		}
		k = strings.ToLower(k)
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}

// defaultIPs returns the IPv4 addresses of all up, non-loopback,
// multicast-capable interfaces, with the address the kernel uses for
// multicast to the mDNS group last: hashicorp/mdns browsers keep the last A
// record they see.
func defaultIPs() ([]net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var ips []net.IP
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || ifi.Flags&net.FlagMulticast == 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				ips = append(ips, n.IP.To4())
			}
		}
	}
	if len(ips) == 0 {
		return nil, errors.New("no IPv4 address on any up, non-loopback, multicast interface")
	}
	// Connecting a UDP socket sends nothing; it only picks the source address.
	if c, err := net.DialUDP("udp4", nil, mdnsGroup()); err == nil {
		src := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		sort.SliceStable(ips, func(i, j int) bool { return !ips[i].Equal(src) && ips[j].Equal(src) })
	}
	return ips, nil
}

// stdLogger returns a *log.Logger for hashicorp/mdns that forwards its lines
// to logger at debug level (nil: discards them).
func stdLogger(logger *slog.Logger) *log.Logger {
	if logger == nil {
		return log.New(io.Discard, "", 0)
	}
	return log.New(slogWriter{logger.With("component", "mdns")}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
