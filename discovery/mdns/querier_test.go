package mdns

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// legacyQuerier is a querier on the link asking from an ephemeral port.
func legacyQuerier() packetInfo {
	in := peerQM()
	in.src.Port = 40000
	return in
}

// answerTo is the zone's answer to the collector's questions, as a legacy
// querier on eth0 gets it.
func answerTo(t *testing.T, z *zone, c *collector, qs []dns.Question) []byte {
	t.Helper()
	p := z.answer(query(t, c.id, qs...), legacyQuerier())
	if p.unicast == nil {
		t.Fatalf("no unicast answer to %v", qs)
	}
	return pack(t, p.unicast)
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func response(t *testing.T, id uint16, rrs ...string) []byte {
	t.Helper()
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: id, Response: true, Authoritative: true}}
	for _, s := range rrs {
		m.Answer = append(m.Answer, rr(t, s))
	}
	return pack(t, m)
}

// Our responder's answer to the first question holds everything: no
// follow-up, one entry.
func TestCollectorTakesAResponderAnswer(t *testing.T) {
	z := testZone(t, nil)
	c := newCollector("_understudy._tcp", 321, []iface{*testIface()})
	if qs := c.add(answerTo(t, z, c, c.start())); len(qs) != 0 {
		t.Fatalf("follow-up questions %v after a complete answer", qs)
	}
	entries, skipped := c.entries()
	if len(entries) != 1 || len(skipped) != 0 {
		t.Fatalf("entries %+v, skipped %v", entries, skipped)
	}
	e := entries[0]
	if e.Instance != "a b" || e.Host != "vm.local." || !e.Addr.Equal(net.IPv4(198, 18, 0, 1)) || len(e.Addr) != net.IPv4len || e.Port != 7000 || e.TXT["site"] != "north" {
		t.Fatalf("entry %+v", e)
	}
}

// An answer with the PTR record alone is followed by questions for the SRV
// and TXT records, one with the SRV record by one for the target's address;
// each is asked once.
func TestCollectorAsksForWhatIsMissing(t *testing.T) {
	z := testZone(t, nil)
	c := newCollector("_understudy._tcp", 9, []iface{*testIface()})
	qs := c.add(response(t, 9, "_understudy._tcp.local. 10 IN PTR "+instName))
	if got := fmt.Sprint(qs); got != fmt.Sprint([]dns.Question{q(instName, dns.TypeSRV, false), q(instName, dns.TypeTXT, false)}) {
		t.Fatalf("after a PTR alone: %s", got)
	}
	if again := c.add(response(t, 9, "_understudy._tcp.local. 10 IN PTR "+instName)); len(again) != 0 {
		t.Fatalf("asked again: %v", again)
	}
	qs = c.add(response(t, 9, instName+" 10 IN SRV 0 0 7000 vm.local."))
	if len(qs) != 1 || qs[0].Name != "vm.local." || qs[0].Qtype != dns.TypeA {
		t.Fatalf("after the SRV record: %v", qs)
	}
	if entries, _ := c.entries(); len(entries) != 0 {
		t.Fatalf("an entry without an address: %+v", entries)
	}
	// The zone answers the follow-up questions.
	c.add(answerTo(t, z, c, qs))
	entries, _ := c.entries()
	if len(entries) != 1 || !entries[0].Addr.Equal(net.IPv4(198, 18, 0, 1)) || entries[0].Port != 7000 {
		t.Fatalf("entries %+v", entries)
	}
}

func TestCollectorIgnores(t *testing.T) {
	c := newCollector("_understudy._tcp", 5, []iface{*testIface()})
	complete := []string{
		"_understudy._tcp.local. 10 IN PTR x._understudy._tcp.local.",
		"x._understudy._tcp.local. 10 IN SRV 0 0 7000 h.local.",
		`x._understudy._tcp.local. 10 IN TXT "site=north"`,
		"h.local. 10 IN A 198.18.0.9",
	}
	// Another id (not an answer to this round), a query.
	c.add(response(t, 6, complete...))
	query := &dns.Msg{MsgHdr: dns.MsgHdr{Id: 5}, Answer: []dns.RR{rr(t, complete[0])}}
	c.add(pack(t, query))
	c.add([]byte("not dns"))
	if entries, skipped := c.entries(); len(entries)+len(skipped) != 0 {
		t.Fatalf("kept %+v %v", entries, skipped)
	}
	// Other services, names that are not one label, goodbyes, no IPv4.
	c.add(response(t, 5,
		"_mqtt._tcp.local. 10 IN PTR b._mqtt._tcp.local.",
		"b._mqtt._tcp.local. 10 IN SRV 0 0 1883 h.local.",
		"_understudy._tcp.local. 10 IN PTR a.b._understudy._tcp.local.",
		"a.b._understudy._tcp.local. 10 IN SRV 0 0 7000 h.local.",
		"_understudy._tcp.local. 0 IN PTR gone._understudy._tcp.local.",
		"_understudy._tcp.local. 10 IN PTR v6._understudy._tcp.local.",
		"v6._understudy._tcp.local. 10 IN SRV 0 0 7000 v6.local.",
		"v6.local. 10 IN AAAA ::1",
		"_understudy._tcp.local. 10 IN SRV 0 0 7000 h.local.",
		"h.local. 10 IN A 198.18.0.9",
	))
	entries, skipped := c.entries()
	if len(entries) != 0 || strings.Join(skipped, " ") != "a.b._understudy._tcp.local. v6._understudy._tcp.local." {
		t.Fatalf("entries %+v, skipped %v", entries, skipped)
	}
	// Names compare without regard to case.
	c.add(response(t, 5,
		"_UNDERSTUDY._tcp.local. 10 IN PTR x._understudy._TCP.local.",
		"X._Understudy._tcp.local. 10 IN SRV 0 0 7000 h.local.",
		"H.LOCAL. 10 IN A 198.18.0.9",
	))
	if entries, _ := c.entries(); len(entries) != 1 || entries[0].Instance != "x" || !entries[0].Addr.Equal(net.IPv4(198, 18, 0, 9)) {
		t.Fatalf("entries %+v", entries)
	}
}

// Of a host's addresses, the last one on the link of an interface asked on
// counts; without one, the last.
func TestCollectorPrefersAnAddressOnTheLink(t *testing.T) {
	for _, tc := range []struct{ addrs, want string }{
		{"198.18.0.7 10.1.0.1", "198.18.0.7"},
		{"10.1.0.1 198.18.0.7", "198.18.0.7"},
		{"10.1.0.1 10.2.0.1", "10.2.0.1"},
	} {
		c := newCollector("_understudy._tcp", 1, []iface{*testIface()})
		rrs := []string{"x._understudy._tcp.local. 10 IN SRV 0 0 7000 h.local."}
		for _, a := range strings.Fields(tc.addrs) {
			rrs = append(rrs, "h.local. 10 IN A "+a)
		}
		c.add(response(t, 1, rrs...))
		if entries, _ := c.entries(); len(entries) != 1 || entries[0].Addr.String() != tc.want {
			t.Errorf("addresses %s: entries %+v, want %s", tc.addrs, entries, tc.want)
		}
	}
}

// Answers from a hostile or broken responder are bounded.
func TestCollectorBounds(t *testing.T) {
	c := newCollector("_understudy._tcp", 1, nil)
	var rrs []string
	for i := range maxInstances + 10 {
		rrs = append(rrs, fmt.Sprintf("_understudy._tcp.local. 10 IN PTR i%d._understudy._tcp.local.", i))
	}
	for i := range maxHostAddrs + 10 {
		rrs = append(rrs, fmt.Sprintf("h.local. 10 IN A 10.0.0.%d", i+1))
	}
	qs := c.add(response(t, 1, rrs...))
	if len(c.instances) != maxInstances || len(c.hosts["h.local."]) != maxHostAddrs || len(qs) != 2*maxInstances {
		t.Fatalf("%d instances, %d addresses, %d questions", len(c.instances), len(c.hosts["h.local."]), len(qs))
	}
}
