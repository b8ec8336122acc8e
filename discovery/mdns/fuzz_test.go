package mdns

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// maxAnswerRRs is the most records any answer of testZone may hold: PTR,
// SRV, TXT, the enumeration PTR and one A record.
const maxAnswerRRs = 5

// FuzzAnswer feeds hostile packets to the query handler: it must not panic,
// and whatever it answers stays bounded (no amplification): each record at
// most once, a legacy answer no larger than the question it echoes plus the
// zone, only the zone's own records.
func FuzzAnswer(f *testing.F) {
	z := testZone(f, nil)
	ask := q(svcName, dns.TypePTR, false)
	seeds := []*dns.Msg{
		{Question: []dns.Question{ask}},                                                                // Avahi, Bonjour (QM)
		{Question: []dns.Question{q(svcName, dns.TypePTR, true)}},                                      // QU
		{Question: []dns.Question{q(instName, dns.TypeANY, false)}},                                    // a resolver
		{Question: []dns.Question{q("vm.local.", dns.TypeA, false)}},                                   // the host's address
		{Question: []dns.Question{q(enumName, dns.TypePTR, false)}},                                    // service types
		{Question: []dns.Question{ask}, Answer: []dns.RR{ptr(z, 4500)}},                                // with a known answer
		{MsgHdr: dns.MsgHdr{Truncated: true}, Question: []dns.Question{ask}},                           // more known answers follow
		{Question: []dns.Question{q(instName, dns.TypeANY, true)}, Ns: z.rrs(recSRV, nil, 120, false)}, // a probe
	}
	for _, m := range seeds {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		for _, port := range []uint16{mdnsPort, 49152} {
			f.Add(b, port, true, false)
		}
	}
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 12, 0, 1}, uint16(mdnsPort), true, false)  // pointer loop
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint16(mdnsPort), true, false) // counts without data

	f.Fuzz(func(t *testing.T, pkt []byte, port uint16, toGroup, fromSelf bool) {
		in := peerQM()
		in.src.Port, in.toGroup, in.fromSelf = int(port), toGroup, fromSelf
		p := z.answer(pkt, in)
		if p.multicast&^recAll != 0 || p.multicastExtra&^recAll != 0 {
			t.Fatalf("unknown record kinds in %+v", p)
		}
		if p.multicast == 0 && p.multicastExtra != 0 {
			t.Fatalf("additional records without an answer: %+v", p)
		}
		if p.unicast == nil {
			return
		}
		m := p.unicast
		if len(m.Answer) == 0 || len(m.Answer)+len(m.Extra) > maxAnswerRRs {
			t.Fatalf("answer with %d + %d records", len(m.Answer), len(m.Extra))
		}
		for _, rr := range append(m.Answer, m.Extra...) {
			if !ours(z, rr) {
				t.Fatalf("answer holds a record not of the zone: %v", rr)
			}
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
		if zoneOnly := len(b) - questionBytes(m.Question); zoneOnly > 600 {
			t.Fatalf("answer of %d bytes (%d without the echoed question) to a packet of %d", len(b), zoneOnly, len(pkt))
		}
		if len(m.Question) > 0 && len(m.Question) > maxQuestions {
			t.Fatalf("echoed %d questions", len(m.Question))
		}
	})
}

// ours reports whether rr is one of the zone's records (any TTL, class bit).
func ours(z *zone, rr dns.RR) bool {
	for _, own := range z.rrs(recAll, []net.IP{net.IPv4(198, 18, 0, 1).To4()}, rr.Header().Ttl, rr.Header().Class&cacheFlush != 0) {
		if dns.IsDuplicate(own, rr) {
			return true
		}
	}
	return false
}

// questionBytes is the wire size of questions without compression.
func questionBytes(qs []dns.Question) int {
	n := 0
	for _, q := range qs {
		n += len(q.Name) + 2 + 4
	}
	return n
}
