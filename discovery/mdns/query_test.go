package mdns

import (
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// testZone is "a b._understudy._tcp.local." on "vm.local.", port 7000.
func testZone(t testing.TB, edit func(*Service)) *zone {
	t.Helper()
	svc := Service{Instance: "a b", Service: "_understudy._tcp", Port: 7000, Host: "vm", TXT: map[string]string{"site": "north"}}
	if edit != nil {
		edit(&svc)
	}
	z, err := newZone(svc)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// testIface is eth0 with 198.18.0.1/24.
func testIface() *iface {
	return &iface{index: 2, name: "eth0", nets: []net.IPNet{{IP: net.IPv4(198, 18, 0, 1).To4(), Mask: net.CIDRMask(24, 32)}}}
}

// peerQM is a querier on the link asking from port 5353, to the group.
func peerQM() packetInfo {
	return packetInfo{src: &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: mdnsPort}, toGroup: true, ifc: testIface()}
}

func query(t testing.TB, id uint16, qs ...dns.Question) []byte {
	t.Helper()
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: id}, Question: qs}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func q(name string, typ uint16, qu bool) dns.Question {
	class := uint16(dns.ClassINET)
	if qu {
		class |= cacheFlush
	}
	return dns.Question{Name: name, Qtype: typ, Qclass: class}
}

const (
	svcName  = "_understudy._tcp.local."
	instName = `a\ b._understudy._tcp.local.`
)

func TestMulticastQueryIsAnsweredByMulticast(t *testing.T) {
	z := testZone(t, nil)
	p := z.answer(query(t, 0, q(svcName, dns.TypePTR, false)), peerQM())
	if p.unicast != nil || p.multicast != recPTR || p.multicastExtra != recSRV|recTXT|recA || p.delay != delayShared {
		t.Fatalf("plan %+v: want PTR multicast with SRV, TXT, A, after the shared-record delay", p)
	}
	// Unique records alone: at once.
	p = z.answer(query(t, 0, q(instName, dns.TypeSRV, false)), peerQM())
	if p.multicast != recSRV || p.multicastExtra != recA || p.delay != delayNone {
		t.Fatalf("SRV question: plan %+v", p)
	}
	// Names compare without regard to case.
	p = z.answer(query(t, 0, q(strings.ToUpper(instName), dns.TypeTXT, false)), peerQM())
	if p.multicast != recTXT {
		t.Fatalf("TXT question in upper case: plan %+v", p)
	}
}

func TestQUQuestionIsAnsweredByUnicast(t *testing.T) {
	z := testZone(t, nil)
	p := z.answer(query(t, 77, q(svcName, dns.TypePTR, true)), peerQM())
	if p.multicast != 0 || p.unicast == nil {
		t.Fatalf("plan %+v: want a unicast answer only", p)
	}
	m := p.unicast
	if !m.Response || !m.Authoritative || len(m.Question) != 0 || m.Id != 77 {
		t.Fatalf("unicast answer header %+v, %d questions", m.MsgHdr, len(m.Question))
	}
	checkRRs(t, "answer", m.Answer, "PTR "+instName+" 120")
	checkRRs(t, "additional", m.Extra, "SRV vm.local. 7000 120 flush", `TXT "site=north" 120 flush`, "A 198.18.0.1 120 flush")

	// The same question from this host itself: multicast (a unicast to port
	// 5353 would reach one of the host's mDNS stacks only).
	self := peerQM()
	self.src.IP, self.fromSelf = net.IPv4(198, 18, 0, 1), true
	if p := z.answer(query(t, 0, q(svcName, dns.TypePTR, true)), self); p.unicast != nil || p.multicast != recPTR {
		t.Fatalf("QU from this host: plan %+v, want multicast", p)
	}
	// A query sent to this host's address, not the group: unicast.
	direct := peerQM()
	direct.toGroup = false
	if p := z.answer(query(t, 0, q(svcName, dns.TypePTR, false)), direct); p.unicast == nil || p.multicast != 0 {
		t.Fatalf("direct query: plan %+v, want unicast", p)
	}
}

func TestLegacyQueryGetsLegacyUnicastAnswer(t *testing.T) {
	z := testZone(t, nil)
	in := peerQM()
	in.src.Port = 41234
	question := q(svcName, dns.TypePTR, false)
	p := z.answer(query(t, 4242, question), in)
	if p.multicast != 0 || p.unicast == nil {
		t.Fatalf("plan %+v: want a unicast answer only", p)
	}
	m := p.unicast
	if m.Id != 4242 || len(m.Question) != 1 || m.Question[0] != question {
		t.Fatalf("legacy answer: id %d, question %v; want the query's", m.Id, m.Question)
	}
	checkRRs(t, "answer", m.Answer, "PTR "+instName+" 10")
	checkRRs(t, "additional", m.Extra, "SRV vm.local. 7000 10", `TXT "site=north" 10`, "A 198.18.0.1 10")
	// A legacy query with known answers or authority records is not one.
	withAnswer := &dns.Msg{Question: []dns.Question{question}, Answer: []dns.RR{ptr(z, 120)}}
	if p := z.answer(pack(t, withAnswer), in); p.unicast != nil {
		t.Fatalf("legacy query with answers answered: %+v", p)
	}
}

func TestQuestionsAndTheirAnswers(t *testing.T) {
	z := testZone(t, nil)
	for _, tc := range []struct {
		q             dns.Question
		answer, extra recordSet
	}{
		{q(svcName, dns.TypeANY, false), recPTR, recSRV | recTXT | recA},
		{q(instName, dns.TypeANY, false), recSRV | recTXT, recA},
		{q("vm.local.", dns.TypeA, false), recA, 0},
		{q("VM.LOCAL.", dns.TypeANY, false), recA, 0},
		{q(enumName, dns.TypePTR, false), recEnum, 0},
		{q("vm.local.", dns.TypeAAAA, false), 0, 0},
		{q(svcName, dns.TypeSRV, false), 0, 0},
		{q("_mqtt._tcp.local.", dns.TypePTR, false), 0, 0},
		{q("other.local.", dns.TypeA, false), 0, 0},
		{dns.Question{Name: svcName, Qtype: dns.TypePTR, Qclass: dns.ClassCHAOS}, 0, 0},
		{dns.Question{Name: svcName, Qtype: dns.TypePTR, Qclass: dns.ClassANY}, recPTR, recSRV | recTXT | recA},
	} {
		p := z.answer(query(t, 0, tc.q), peerQM())
		if p.multicast != tc.answer || p.multicastExtra != tc.extra && tc.answer != 0 {
			t.Errorf("%v: plan %+v, want answers %b extra %b", tc.q, p, tc.answer, tc.extra)
		}
	}
}

func TestHostileOrForeignPacketsAreIgnored(t *testing.T) {
	z := testZone(t, nil)
	ask := q(svcName, dns.TypePTR, false)
	response := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Question: []dns.Question{ask}}
	update := &dns.Msg{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeUpdate}, Question: []dns.Question{ask}}
	rcode := &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeServerFailure}, Question: []dns.Question{ask}}
	many := &dns.Msg{}
	for range maxQuestions + 1 {
		many.Question = append(many.Question, ask)
	}
	knownFlood := &dns.Msg{Question: []dns.Question{ask}}
	for i := range maxKnownAnswers + 1 {
		knownFlood.Answer = append(knownFlood.Answer, &dns.A{Hdr: dns.RR_Header{Name: "x.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(10, 0, byte(i>>8), byte(i))})
	}
	valid := query(t, 0, ask)
	for name, pkt := range map[string][]byte{
		"response":           pack(t, response),
		"update":             pack(t, update),
		"rcode":              pack(t, rcode),
		"too many questions": pack(t, many),
		"too many answers":   pack(t, knownFlood),
		"no question":        pack(t, &dns.Msg{}),
		"short":              valid[:11],
		"truncated name":     valid[:len(valid)-6],
		"too long":           append(slices.Clone(valid), make([]byte, maxPacket)...),
		"pointer loop":       {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 12, 0, 1},
	} {
		if p := z.answer(pkt, peerQM()); p != (plan{}) {
			t.Errorf("%s: plan %+v, want nothing", name, p)
		}
	}
	// From off the link: nothing; from a link-local address: answered.
	off := peerQM()
	off.src.IP = net.IPv4(192, 0, 2, 7)
	if p := z.answer(valid, off); p != (plan{}) {
		t.Errorf("query from off the link answered: %+v", p)
	}
	ll := peerQM()
	ll.src.IP = net.IPv4(169, 254, 3, 4)
	if p := z.answer(valid, ll); p.multicast != recPTR {
		t.Errorf("query from a link-local address: plan %+v", p)
	}
	// However often a packet asks, each record is answered once.
	many.Question = many.Question[:maxQuestions]
	in := peerQM()
	in.src.Port = 40000
	p := z.answer(pack(t, many), in)
	if p.unicast == nil || len(p.unicast.Answer) != 1 || len(p.unicast.Extra) != 3 {
		t.Fatalf("%d identical questions: answer %v", maxQuestions, p.unicast)
	}
}

func TestKnownAnswersAreNotRepeated(t *testing.T) {
	z := testZone(t, nil)
	ask := q(svcName, dns.TypePTR, false)
	// With more than half its TTL left, the known PTR is not sent again.
	fresh := &dns.Msg{Question: []dns.Question{ask}, Answer: []dns.RR{ptr(z, 100)}}
	if p := z.answer(pack(t, fresh), peerQM()); p.multicast != 0 || p.unicast != nil {
		t.Fatalf("known answer repeated: %+v", p)
	}
	stale := &dns.Msg{Question: []dns.Question{ask}, Answer: []dns.RR{ptr(z, 59)}}
	if p := z.answer(pack(t, stale), peerQM()); p.multicast != recPTR {
		t.Fatalf("known answer with less than half its TTL not refreshed: %+v", p)
	}
	// A known PTR to another instance suppresses nothing.
	other := ptr(z, 120)
	other.(*dns.PTR).Ptr = "other._understudy._tcp.local."
	if p := z.answer(pack(t, &dns.Msg{Question: []dns.Question{ask}, Answer: []dns.RR{other}}), peerQM()); p.multicast != recPTR {
		t.Fatalf("foreign known answer suppressed ours: %+v", p)
	}
	// Known SRV (with the cache-flush bit, as caches repeat it) and A:
	// not sent as additional records either.
	srv := z.rrs(recSRV|recA, []net.IP{net.IPv4(198, 18, 0, 1).To4()}, 120, true)
	p := z.answer(pack(t, &dns.Msg{Question: []dns.Question{ask}, Answer: srv}), peerQM())
	if p.multicast != recPTR || p.multicastExtra != recTXT {
		t.Fatalf("known SRV and A: plan %+v, want PTR with TXT", p)
	}
}

func TestTruncatedQueryWaitsLonger(t *testing.T) {
	z := testZone(t, nil)
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Truncated: true}, Question: []dns.Question{q(instName, dns.TypeSRV, false)}}
	if p := z.answer(pack(t, m), peerQM()); p.delay != delayTruncated {
		t.Fatalf("plan %+v, want the truncated-query delay", p)
	}
}

func TestAddressesPerInterface(t *testing.T) {
	eth0 := testIface()
	eth1 := &iface{index: 3, name: "eth1", nets: []net.IPNet{{IP: net.IPv4(198, 19, 0, 1).To4(), Mask: net.CIDRMask(24, 32)}}}
	bare := &iface{index: 4, name: "eth2"}
	any := testZone(t, nil)
	bound := testZone(t, func(s *Service) { s.Bound = net.IPv4(198, 19, 0, 1) })
	fixed := testZone(t, func(s *Service) { s.IPs = []net.IP{net.IPv4(203, 0, 113, 5)} })
	for _, tc := range []struct {
		name string
		z    *zone
		ifc  *iface
		want string
	}{
		{"any on eth0", any, eth0, "[198.18.0.1]"},
		{"any on eth1", any, eth1, "[198.19.0.1]"},
		{"any on an interface without address", any, bare, "[]"},
		{"bound to eth1, on eth0", bound, eth0, "[]"},
		{"bound to eth1, on eth1", bound, eth1, "[198.19.0.1]"},
		{"fixed IPs", fixed, eth0, "[203.0.113.5]"},
	} {
		if got := ipsString(tc.z.addrsFor(tc.ifc)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	// An interface the service cannot be reached through gets no answer.
	in := peerQM()
	if p := bound.answer(query(t, 0, q(svcName, dns.TypePTR, false)), in); p != (plan{}) {
		t.Errorf("bound to eth1, asked on eth0: plan %+v", p)
	}
}

func TestZoneRefusesLoopbackAndBadServices(t *testing.T) {
	for name, edit := range map[string]func(*Service){
		"bound to 127.0.0.1": func(s *Service) { s.Bound = net.IPv4(127, 0, 0, 1) },
		"bound to 127.1.2.3": func(s *Service) { s.Bound = net.IPv4(127, 1, 2, 3) },
		"bound to ::1":       func(s *Service) { s.Bound = net.IPv6loopback },
		"loopback in IPs":    func(s *Service) { s.IPs = []net.IP{net.IPv4(198, 18, 0, 1), net.IPv4(127, 0, 0, 1)} },
	} {
		svc := Service{Instance: "x", Service: "_understudy._tcp", Port: 7901}
		edit(&svc)
		if _, err := newZone(svc); !errors.Is(err, ErrLoopback) {
			t.Errorf("%s: %v, want ErrLoopback", name, err)
		}
	}
	for name, edit := range map[string]func(*Service){
		"bound to IPv6":  func(s *Service) { s.Bound = net.ParseIP("2001:db8::1") },
		"IPv6 in IPs":    func(s *Service) { s.IPs = []net.IP{net.ParseIP("2001:db8::1")} },
		"port 0":         func(s *Service) { s.Port = 0 },
		"bare host name": func(s *Service) { s.Host = "vm." },
		"dotted host":    func(s *Service) { s.Host = "vm.example.com" },
		"TXT over 1300 B": func(s *Service) {
			s.TXT = map[string]string{"a": strings.Repeat("x", 250), "b": strings.Repeat("x", 250), "c": strings.Repeat("x", 250), "d": strings.Repeat("x", 250), "e": strings.Repeat("x", 250), "f": strings.Repeat("x", 250)}
		},
	} {
		svc := Service{Instance: "x", Service: "_understudy._tcp", Port: 7901}
		edit(&svc)
		if _, err := newZone(svc); err == nil || errors.Is(err, ErrLoopback) {
			t.Errorf("%s: %v, want an error other than ErrLoopback", name, err)
		}
	}
	for name, b := range map[string]net.IP{"nil": nil, "0.0.0.0": net.IPv4zero, "::": net.IPv6unspecified} {
		if z, err := newZone(Service{Instance: "x", Service: "_understudy._tcp", Port: 7901, Bound: b}); err != nil || z.bound != nil {
			t.Errorf("bound %s: %v, bound %v; want every interface", name, err, z.bound)
		}
	}
}

func ptr(z *zone, ttl uint32) dns.RR {
	return &dns.PTR{Hdr: dns.RR_Header{Name: z.service, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: z.instance}
}

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkRRs compares records with short descriptions: "TYPE data TTL
// [flush]".
func checkRRs(t *testing.T, section string, rrs []dns.RR, want ...string) {
	t.Helper()
	var got []string
	for _, rr := range rrs {
		got = append(got, describe(rr))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s section:\n got %q\nwant %q", section, got, want)
	}
}

func describe(rr dns.RR) string {
	h := rr.Header()
	var data string
	switch r := rr.(type) {
	case *dns.PTR:
		data = "PTR " + r.Ptr
	case *dns.SRV:
		data = "SRV " + r.Target + " " + strconv.Itoa(int(r.Port))
	case *dns.TXT:
		data = `TXT "` + strings.Join(r.Txt, `" "`) + `"`
	case *dns.A:
		data = "A " + r.A.String()
	default:
		data = dns.TypeToString[h.Rrtype]
	}
	s := data + " " + strconv.Itoa(int(h.Ttl))
	if h.Class&cacheFlush != 0 {
		s += " flush"
	}
	return s
}

func ipsString(ips []net.IP) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// A probe (a query with an authority section) for the host name is answered
// at once and is not held back by the once-a-second limit (RFC 6762 §6).
func TestProbeIsAnswered(t *testing.T) {
	z := testZone(t, nil)
	probe := &dns.Msg{
		Question: []dns.Question{q("vm.local.", dns.TypeANY, false)},
		Ns:       []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "vm.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.IPv4(198, 18, 0, 2)}},
	}
	if p := z.answer(pack(t, probe), peerQM()); p.multicast != recA || !p.probe || p.delay != delayNone {
		t.Fatalf("probe: plan %+v, want A at once, unlimited", p)
	}
	if p := z.answer(query(t, 0, q("vm.local.", dns.TypeANY, false)), peerQM()); p.probe {
		t.Fatalf("query without authority section taken for a probe: %+v", p)
	}
}

// A legacy querier (hashicorp/mdns keeps the last A record) gets the address
// of its own subnet last, on an interface with several.
func TestUnicastAnswerPutsTheQueriersSubnetLast(t *testing.T) {
	z := testZone(t, nil)
	in := peerQM()
	in.ifc.nets = append(in.ifc.nets, net.IPNet{IP: net.IPv4(10, 1, 0, 1).To4(), Mask: net.CIDRMask(16, 32)})
	for src, want := range map[string]string{"198.18.0.2": "[10.1.0.1 198.18.0.1]", "10.1.7.7": "[198.18.0.1 10.1.0.1]"} {
		in.src = &net.UDPAddr{IP: net.ParseIP(src), Port: 40000}
		p := z.answer(query(t, 1, q("vm.local.", dns.TypeA, false)), in)
		if p.unicast == nil {
			t.Fatalf("from %s: no answer", src)
		}
		var got []net.IP
		for _, rr := range p.unicast.Answer {
			got = append(got, rr.(*dns.A).A)
		}
		if ipsString(got) != want {
			t.Errorf("from %s: %s, want %s", src, ipsString(got), want)
		}
	}
}
