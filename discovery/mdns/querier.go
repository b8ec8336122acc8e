package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// Bounds on what one query round keeps from the answers it receives: a
// site has a few instances of a service, and hosts with a few addresses.
const (
	maxInstances = 256 // instances of the service
	maxHosts     = 256 // host names with A records
	maxHostAddrs = 16  // A records per host name
	// maxAsk bounds the questions of one query packet: it stays far below
	// an Ethernet frame and the questions a responder reads (maxQuestions).
	maxAsk = 16
)

// queryRound runs one round of length d: a one-shot query for svc's PTR
// records, and the answers that come back, until d has passed or ctx ends.
//
// It asks as a legacy querier (RFC 6762 §6.7): from a socket on an ephemeral
// port, which joins no group, without the unicast-response bit. Every
// responder (this package's, Avahi, Bonjour) answers such a query by unicast
// to that port, so the answer reaches this socket alone, also when the
// responder runs on this host: port 5353, which the host's mDNS stacks
// share, is not involved (RFC 6762 §15.1).
//
// The query goes out on each interface that is up, multicast-capable, not
// loopback and has an IPv4 address, chosen by index, as the responder sends:
// the interfaces the responders of this host and of its links answer on. It
// does not follow the routing table: a host whose route for 224.0.0.0/4
// points elsewhere (at lo, say) or that has none still asks on its links,
// and responders on this host hear the copy the kernel loops back.
//
// An answer that names an instance without its SRV or TXT record, or an SRV
// target without an A record, is followed by a query for them. The socket is
// created on the calling thread, so in its network namespace.
func queryRound(ctx context.Context, svc string, d time.Duration, logger *slog.Logger) ([]Entry, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "mdns")
	ifaces, err := queryInterfaces()
	if err != nil {
		return nil, fmt.Errorf("mdns: browse %s: %w", svc, err)
	}
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return nil, fmt.Errorf("mdns: browse %s: %w", svc, err)
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	// Responders on this host hear the query by the kernel's loopback copy.
	for _, err := range []error{pc.SetMulticastLoopback(true), pc.SetMulticastTTL(255)} {
		if err != nil {
			return nil, fmt.Errorf("mdns: browse %s: query socket: %w", svc, err)
		}
	}
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, fmt.Errorf("mdns: browse %s: %w", svc, err)
	}
	// A cancelled ctx ends the round at once.
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()

	if len(ifaces) == 0 {
		logger.Debug("mdns: no up, multicast-capable interface with an IPv4 address to ask on", "service", svc)
	}
	send := func(qs []dns.Question, id uint16) {
		for chunk := range slices.Chunk(qs, maxAsk) {
			sendQuery(pc, ifaces, &dns.Msg{MsgHdr: dns.MsgHdr{Id: id}, Question: chunk}, logger)
		}
	}
	col := newCollector(svc, uint16(rand.N(0xffff))+1, ifaces)
	send(col.start(), col.id)

	buf := make([]byte, maxPacket+1)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				break
			}
			logger.Debug("mdns: read answer", "error", err)
			continue
		}
		if n > maxPacket {
			continue
		}
		if qs := col.add(buf[:n]); len(qs) > 0 {
			send(qs, col.id)
		}
	}
	entries, skipped := col.entries()
	for _, name := range skipped {
		logger.Debug("mdns: ignoring answer", "service", svc, "name", name)
	}
	return entries, nil
}

// sendQuery multicasts m out of each interface.
func sendQuery(pc *ipv4.PacketConn, ifaces []iface, m *dns.Msg, logger *slog.Logger) {
	b, err := m.Pack()
	if err != nil {
		logger.Debug("mdns: pack query", "error", err)
		return
	}
	for i := range ifaces {
		ifc := &ifaces[i]
		if err := pc.SetMulticastInterface(netInterface(ifc)); err != nil {
			logger.Debug("mdns: query", "interface", ifc.name, "error", err)
			continue
		}
		if _, err := pc.WriteTo(b, nil, mdnsGroup()); err != nil {
			logger.Debug("mdns: query", "interface", ifc.name, "error", err)
		}
	}
}

// queryInterfaces lists the interfaces a query goes out on (in the network
// namespace of the calling thread): up, multicast-capable, not loopback,
// with an IPv4 address.
func queryInterfaces() ([]iface, error) {
	sc, err := newScanner()
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	links, err := sc.scan()
	if err != nil {
		return nil, err
	}
	var out []iface
	for _, ifc := range newIfaceTable(links).ifaces {
		if len(ifc.nets) > 0 {
			out = append(out, ifc)
		}
	}
	return out, nil
}

// collector gathers the records of the answers to one round's queries.
type collector struct {
	svc    string  // "_understudy._tcp"
	suffix string  // "._understudy._tcp.local."
	id     uint16  // the queries' id, which legacy answers repeat
	ifaces []iface // the interfaces asked on: an address on their links is preferred

	instances map[string]*instance // by lower-case instance name
	order     []string             // instance keys in the order first seen
	hosts     map[string][]net.IP  // A records by lower-case host name
	asked     map[string]bool      // follow-up questions sent: lower-case name and type
}

// instance is what the answers said of one service instance.
type instance struct {
	name   string // "<escaped instance>._understudy._tcp.local."
	target string // the SRV target, "" before an SRV record
	port   uint16
	txt    []string
	hasTXT bool
}

func newCollector(svc string, id uint16, ifaces []iface) *collector {
	return &collector{
		svc: svc, suffix: "." + svc + "." + domain, id: id, ifaces: ifaces,
		instances: map[string]*instance{}, hosts: map[string][]net.IP{}, asked: map[string]bool{},
	}
}

// start returns the round's first question: the service's PTR records.
func (c *collector) start() []dns.Question {
	return []dns.Question{{Name: c.svc + "." + domain, Qtype: dns.TypePTR, Qclass: dns.ClassINET}}
}

// add reads one packet and returns the questions to ask next: the SRV and
// TXT records of instances named without them, the A records of SRV targets
// without one; each once a round. A packet that is not a response to this
// round's queries is ignored.
func (c *collector) add(pkt []byte) []dns.Question {
	var m dns.Msg
	if err := m.Unpack(pkt); err != nil || !m.Response || m.Id != c.id || m.Opcode != dns.OpcodeQuery || m.Rcode != dns.RcodeSuccess {
		return nil
	}
	for _, rr := range append(m.Answer, m.Extra...) {
		c.record(rr)
	}
	var qs []dns.Question
	ask := func(name string, qtype uint16) {
		key := strings.ToLower(name) + "/" + dns.TypeToString[qtype]
		if !c.asked[key] {
			c.asked[key] = true
			qs = append(qs, dns.Question{Name: name, Qtype: qtype, Qclass: dns.ClassINET})
		}
	}
	for _, k := range c.order {
		in := c.instances[k]
		if in.target == "" {
			ask(in.name, dns.TypeSRV)
		}
		if !in.hasTXT {
			ask(in.name, dns.TypeTXT)
		}
		if in.target != "" && len(c.hosts[strings.ToLower(in.target)]) == 0 {
			ask(in.target, dns.TypeA)
		}
	}
	return qs
}

// record keeps one record of an answer: the service's PTR records, SRV and
// TXT records of its instances, A records. Records with TTL 0 (goodbyes)
// and of other classes are skipped.
func (c *collector) record(rr dns.RR) {
	h := rr.Header()
	if h.Ttl == 0 || h.Class&^cacheFlush != dns.ClassINET {
		return
	}
	switch r := rr.(type) {
	case *dns.PTR:
		if equalName(h.Name, c.svc+"."+domain) {
			c.instance(r.Ptr)
		}
	case *dns.SRV:
		if in := c.instance(h.Name); in != nil {
			in.target, in.port = r.Target, r.Port
		}
	case *dns.TXT:
		if in := c.instance(h.Name); in != nil {
			in.txt, in.hasTXT = r.Txt, true
		}
	case *dns.A:
		key := strings.ToLower(h.Name)
		addrs, known := c.hosts[key]
		ip := r.A.To4()
		if ip == nil || (!known && len(c.hosts) >= maxHosts) || len(addrs) >= maxHostAddrs {
			return
		}
		// Seen again: it moves to the end (the last one counts, see entries).
		addrs = slices.DeleteFunc(addrs, ip.Equal)
		c.hosts[key] = append(addrs, slices.Clone(ip))
	}
}

// instance returns the instance called name, added if new; nil when name is
// not an instance of the service or there are too many.
func (c *collector) instance(name string) *instance {
	if len(name) <= len(c.suffix) || !strings.EqualFold(name[len(name)-len(c.suffix):], c.suffix) {
		return nil
	}
	key := strings.ToLower(name)
	if in := c.instances[key]; in != nil {
		return in
	}
	if len(c.instances) >= maxInstances {
		return nil
	}
	in := &instance{name: name}
	c.instances[key] = in
	c.order = append(c.order, key)
	return in
}

// entries returns the instances with an SRV record, a port and an IPv4
// address of their SRV target, and the names of the others. Of a host's
// addresses the last one on the link of an interface asked on is taken,
// else the last one (a responder answering a querier puts the addresses of
// the querier's subnet last).
func (c *collector) entries() (entries []Entry, skipped []string) {
	for _, k := range c.order {
		in := c.instances[k]
		label, err := unescapeLabel(in.name[:len(in.name)-len(c.suffix)])
		addrs := c.hosts[strings.ToLower(in.target)]
		if err != nil || in.target == "" || in.port == 0 || len(addrs) == 0 {
			skipped = append(skipped, in.name)
			continue
		}
		addr := addrs[len(addrs)-1]
		for _, ip := range slices.Backward(addrs) {
			if c.onLink(ip) {
				addr = ip
				break
			}
		}
		entries = append(entries, Entry{
			Instance: label,
			Host:     in.target,
			Addr:     addr,
			Port:     int(in.port),
			TXT:      decodeTXT(in.txt),
		})
	}
	return entries, skipped
}

// onLink reports whether ip is in the subnet of an interface asked on.
func (c *collector) onLink(ip net.IP) bool {
	for i := range c.ifaces {
		for _, n := range c.ifaces[i].nets {
			if n.Contains(ip) {
				return true
			}
		}
	}
	return false
}
