package mdns

import (
	"math/bits"
	"net"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Record TTLs in seconds. RFC 6762 §10 recommends 120 s for records that
// carry a host name (A, SRV) and 75 minutes for the others (PTR, TXT). Every
// record here lives 120 s: understudy instances come and go with failures, and
// a crashed instance (no goodbye) should leave other stacks' caches within two
// minutes, not 75. The cost is a refresh query per record about every 100 s
// from each browser that caches them.
const (
	recordTTL = 120
	// legacyTTL caps TTLs in answers to legacy (one-shot) queriers, RFC 6762
	// §6.7.
	legacyTTL = 10
)

// cacheFlush is the top bit of the class of a unique record in a multicast
// response (RFC 6762 §10.2); the same bit in a question asks for a unicast
// response (§5.4).
const cacheFlush = 1 << 15

// recordSet is a set of the kinds of record an advertisement publishes.
type recordSet uint8

const (
	recPTR  recordSet = 1 << iota // service type → instance (shared)
	recSRV                        // instance → host and port (unique)
	recTXT                        // instance → attributes (unique)
	recA                          // host → the interface's IPv4 addresses (unique)
	recEnum                       // _services._dns-sd._udp → service type (shared)

	numKinds = iota

	recAll    = recPTR | recSRV | recTXT | recA | recEnum
	recShared = recPTR | recEnum
	// recGoodbye is what Close withdraws: not the host's addresses (another
	// advertisement of this host, or Avahi on it, may publish the same host
	// name) nor the service type enumeration (another instance of the type
	// may run on this host).
	recGoodbye = recPTR | recSRV | recTXT
)

// kinds returns the kinds in s, one bit each, in wire order.
func (s recordSet) kinds() []recordSet {
	var out []recordSet
	for _, k := range []recordSet{recEnum, recPTR, recSRV, recTXT, recA} {
		if s&k != 0 {
			out = append(out, k)
		}
	}
	return out
}

// index is the bit number of a single kind (for per-kind arrays).
func (s recordSet) index() int { return bits.TrailingZeros8(uint8(s)) }

// zone is what an advertisement publishes. It is immutable after Advertise.
type zone struct {
	service  string   // "_understudy._tcp.local."
	instance string   // "<escaped instance>._understudy._tcp.local."
	host     string   // "<label>.local."
	port     uint16   // the service's port
	txt      []string // encoded TXT attributes
	ips      []net.IP // Service.IPs in 4-byte form; nil: each interface's own
	bound    net.IP   // the listener's specific IPv4 address; nil: any
}

// addrsFor returns the IPv4 addresses to publish for the host on ifc; none
// means the advertisement does not answer on ifc (its listener is bound to
// an address of another interface, or ifc has no IPv4 address).
func (z *zone) addrsFor(ifc *iface) []net.IP {
	if z.bound != nil && !ifc.has(z.bound) {
		return nil
	}
	if z.ips != nil {
		return z.ips
	}
	if z.bound != nil {
		return []net.IP{z.bound}
	}
	return ifc.addrs()
}

// match returns the records that answer a question for name and qtype, and
// the records to add to the additional section with them (RFC 6763 §12).
func (z *zone) match(name string, qtype uint16) (answers, extra recordSet) {
	anyType := qtype == dns.TypeANY
	switch {
	case equalName(name, z.service):
		if qtype == dns.TypePTR || anyType {
			return recPTR, recSRV | recTXT | recA
		}
	case equalName(name, z.instance):
		switch {
		case anyType:
			return recSRV | recTXT, recA
		case qtype == dns.TypeSRV:
			return recSRV, recA
		case qtype == dns.TypeTXT:
			return recTXT, 0
		}
	case equalName(name, z.host):
		if qtype == dns.TypeA || anyType {
			return recA, 0
		}
	case equalName(name, enumName):
		if qtype == dns.TypePTR || anyType {
			return recEnum, 0
		}
	}
	return 0, 0
}

// equalName compares domain names in presentation format without regard to
// ASCII case (miekg/dns escapes every other byte).
func equalName(a, b string) bool { return strings.EqualFold(a, b) }

// rrs returns the records of set in wire order (SRV before A: hashicorp/mdns
// browsers attach an A record to the instance whose SRV target it is only
// after they saw that SRV). Unique records carry the cache-flush bit when
// flush is set.
func (z *zone) rrs(set recordSet, addrs []net.IP, ttl uint32, flush bool) []dns.RR {
	unique := uint16(dns.ClassINET)
	if flush {
		unique |= cacheFlush
	}
	hdr := func(name string, typ, class uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: typ, Class: class, Ttl: ttl}
	}
	var out []dns.RR
	for _, k := range set.kinds() {
		switch k {
		case recEnum:
			out = append(out, &dns.PTR{Hdr: hdr(enumName, dns.TypePTR, dns.ClassINET), Ptr: z.service})
		case recPTR:
			out = append(out, &dns.PTR{Hdr: hdr(z.service, dns.TypePTR, dns.ClassINET), Ptr: z.instance})
		case recSRV:
			out = append(out, &dns.SRV{Hdr: hdr(z.instance, dns.TypeSRV, unique), Port: z.port, Target: z.host})
		case recTXT:
			out = append(out, &dns.TXT{Hdr: hdr(z.instance, dns.TypeTXT, unique), Txt: z.txt})
		case recA:
			for _, ip := range addrs {
				out = append(out, &dns.A{Hdr: hdr(z.host, dns.TypeA, unique), A: ip})
			}
		}
	}
	return out
}

// response builds an mDNS response (RFC 6762 §18: id 0, QR and AA set, no
// question) with answers and, in the additional section, extra without what
// is already answered.
func (z *zone) response(answers, extra recordSet, addrs []net.IP, ttl uint32, flush bool) *dns.Msg {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Compress: true}
	m.Answer = z.rrs(answers, addrs, ttl, flush)
	m.Extra = z.rrs(extra&^answers, addrs, ttl, flush)
	return m
}

// known returns the records of the zone that a querier listed as known
// answers with at least half their TTL left (RFC 6762 §7.1); such records are
// not sent again. The A kind counts as known only when every address
// published on the interface was listed.
func (z *zone) known(answers []dns.RR, addrs []net.IP) recordSet {
	var set recordSet
	knownAddr := make([]bool, len(addrs))
	for _, rr := range answers {
		h := rr.Header()
		if h.Ttl < recordTTL/2 || h.Class&^cacheFlush != dns.ClassINET {
			continue
		}
		switch r := rr.(type) {
		case *dns.PTR:
			if equalName(h.Name, z.service) && equalName(r.Ptr, z.instance) {
				set |= recPTR
			}
			if equalName(h.Name, enumName) && equalName(r.Ptr, z.service) {
				set |= recEnum
			}
		case *dns.SRV:
			if equalName(h.Name, z.instance) && r.Port == z.port && r.Priority == 0 && r.Weight == 0 && equalName(r.Target, z.host) {
				set |= recSRV
			}
		case *dns.TXT:
			if equalName(h.Name, z.instance) && slices.Equal(r.Txt, z.txt) {
				set |= recTXT
			}
		case *dns.A:
			if equalName(h.Name, z.host) {
				for i, ip := range addrs {
					knownAddr[i] = knownAddr[i] || ip.Equal(r.A)
				}
			}
		}
	}
	if len(addrs) > 0 && !slices.Contains(knownAddr, false) {
		set |= recA
	}
	return set
}
