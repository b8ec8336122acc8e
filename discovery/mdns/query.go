package mdns

import (
	"encoding/binary"
	"net"

	"github.com/miekg/dns"
)

// Bounds on what a query may hold before it is answered at all. A packet
// beyond them is dropped unread: no legitimate querier asks that much of one
// host, and the work per packet stays small whatever arrives.
const (
	// maxPacket is the largest mDNS message (RFC 6762 §17).
	maxPacket = 9000
	// maxQuestions bounds the questions of one query.
	maxQuestions = 32
	// maxKnownAnswers bounds the known answers (answer section) of a query;
	// only they are read, never the authority or additional sections.
	maxKnownAnswers = 128
)

// mdnsPort is the mDNS port; a query from any other source port comes from a
// legacy (one-shot) querier (RFC 6762 §6.7).
const mdnsPort = 5353

// Delays before a multicast answer (RFC 6762 §6).
type delayKind uint8

const (
	delayNone      delayKind = iota // only unique records: answer at once
	delayShared                     // shared records (PTR): 20-120 ms, so that responders do not collide
	delayTruncated                  // the query continues in further packets: 400-500 ms
)

// packetInfo is where a query came from.
type packetInfo struct {
	src      *net.UDPAddr
	toGroup  bool   // sent to 224.0.0.251, not to one of this host's addresses
	ifc      *iface // the interface it arrived on
	fromSelf bool   // src is an address of this host
}

// plan is what to do about a query: records to multicast on the interface
// it arrived on, and a response to send back to its source by unicast.
type plan struct {
	multicast, multicastExtra recordSet
	delay                     delayKind
	// probe: the query is a probe (it has an authority section, RFC 6762
	// §8.1); its answer is not held back by the once-a-second limit (§6).
	probe   bool
	unicast *dns.Msg
}

// answer decides how the zone answers the packet pkt. It never fails: a
// packet that is not a well-formed query within the bounds above, or that
// comes from off the link, gets no answer.
//
// Questions with the unicast-response bit (QU), and queries sent to this
// host's address rather than the group, are answered by unicast to the
// querier, others by multicast; a query from a port other than 5353 is
// answered by unicast in the legacy form (query id and question echoed, TTL
// at most 10 s, no cache-flush bit). A QU question from this host itself is
// answered by multicast: port 5353 is shared by every mDNS stack on the host
// and a unicast to it reaches only one of them (RFC 6762 §15.1). Known
// answers with at least half their TTL left are not repeated (§7.1).
func (z *zone) answer(pkt []byte, in packetInfo) plan {
	if len(pkt) < 12 || len(pkt) > maxPacket || in.ifc == nil || in.src == nil || in.src.Port == 0 {
		return plan{}
	}
	// Header: id, flags, then the four section counts.
	flags := binary.BigEndian.Uint16(pkt[2:4])
	qd := int(binary.BigEndian.Uint16(pkt[4:6]))
	an := int(binary.BigEndian.Uint16(pkt[6:8]))
	ns := int(binary.BigEndian.Uint16(pkt[8:10]))
	const qr, opcode, rcode, tc = 1 << 15, 0xf << 11, 0xf, 1 << 9
	if flags&(qr|opcode|rcode) != 0 || qd == 0 || qd > maxQuestions || an > maxKnownAnswers {
		return plan{} // a response, another opcode, or out of bounds
	}
	legacy := in.src.Port != mdnsPort
	if legacy && (an != 0 || ns != 0) {
		return plan{} // not a one-shot query (RFC 6762 §6.7; Avahi drops these too)
	}
	if !in.fromSelf && !in.ifc.onLink(in.src.IP) {
		return plan{} // RFC 6762 §11: from off the link
	}
	addrs := z.addrsFor(in.ifc)
	if len(addrs) == 0 {
		return plan{} // not reachable through this interface
	}

	questions, off, ok := readQuestions(pkt, qd)
	if !ok {
		return plan{}
	}
	var uni, uniExtra, multi, multiExtra recordSet
	for _, q := range questions {
		class := q.Qclass &^ cacheFlush
		if class != dns.ClassINET && class != dns.ClassANY {
			continue
		}
		a, x := z.match(q.Name, q.Qtype)
		if a == 0 {
			continue
		}
		if legacy || !in.toGroup || q.Qclass&cacheFlush != 0 {
			uni, uniExtra = uni|a, uniExtra|x
		} else {
			multi, multiExtra = multi|a, multiExtra|x
		}
	}
	if uni|multi == 0 {
		return plan{}
	}
	if !legacy && an > 0 {
		known := z.known(readRecords(pkt, off, an), addrs)
		uni, uniExtra, multi, multiExtra = uni&^known, uniExtra&^known, multi&^known, multiExtra&^known
	}
	if !legacy && in.fromSelf {
		multi, multiExtra, uni, uniExtra = multi|uni, multiExtra|uniExtra, 0, 0
	}

	var p plan
	if uni != 0 {
		// Browsers keep the last A record (hashicorp/mdns; Browse, of
		// those on its link): the querier's subnet last.
		addrs := lastOnLink(addrs, in.ifc, in.src.IP)
		var m *dns.Msg
		if legacy {
			m = z.response(uni, uniExtra, addrs, legacyTTL, false)
			m.Question = questions
		} else {
			m = z.response(uni, uniExtra, addrs, recordTTL, true)
		}
		m.Id = binary.BigEndian.Uint16(pkt[0:2])
		p.unicast = m
	}
	if multi != 0 {
		p.multicast, p.multicastExtra, p.probe = multi, multiExtra, ns > 0
		switch {
		case flags&tc != 0:
			p.delay = delayTruncated
		case multi&recShared != 0:
			p.delay = delayShared
		}
	}
	return p
}

// readQuestions reads qd questions after the 12-byte header and returns them
// with the offset that follows.
func readQuestions(pkt []byte, qd int) ([]dns.Question, int, bool) {
	off := 12
	questions := make([]dns.Question, 0, qd)
	for range qd {
		name, next, err := dns.UnpackDomainName(pkt, off)
		if err != nil || next+4 > len(pkt) {
			return nil, 0, false
		}
		questions = append(questions, dns.Question{
			Name:   name,
			Qtype:  binary.BigEndian.Uint16(pkt[next:]),
			Qclass: binary.BigEndian.Uint16(pkt[next+2:]),
		})
		off = next + 4
	}
	return questions, off, true
}

// readRecords reads up to n records from off; it stops at the first it
// cannot read (the known answers read so far still count).
func readRecords(pkt []byte, off, n int) []dns.RR {
	var out []dns.RR
	for range n {
		rr, next, err := dns.UnpackRR(pkt, off)
		if err != nil || next <= off {
			break
		}
		if rr != nil {
			out = append(out, rr)
		}
		off = next
	}
	return out
}

// lastOnLink returns addrs with those in a subnet of ifc that holds peer
// moved to the end (keeping their order otherwise).
func lastOnLink(addrs []net.IP, ifc *iface, peer net.IP) []net.IP {
	shares := func(ip net.IP) bool {
		for _, n := range ifc.nets {
			if n.IP.Equal(ip) && n.Contains(peer) {
				return true
			}
		}
		return false
	}
	out := make([]net.IP, 0, len(addrs))
	for _, ip := range addrs {
		if !shares(ip) {
			out = append(out, ip)
		}
	}
	for _, ip := range addrs {
		if shares(ip) {
			out = append(out, ip)
		}
	}
	return out
}
