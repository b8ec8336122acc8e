//go:build linux

package mdns_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"understudy/discovery/mdns"
	"understudy/fixtures/testhost"
)

// The responder seen from the wire: raw mDNS packets between test hosts.

const (
	askedInstance = `asked._understudy._tcp.local.`
	serviceName   = "_understudy._tcp.local."
	enumName      = "_services._dns-sd._udp.local."
)

func askedService() mdns.Service {
	return mdns.Service{Instance: "asked", Service: "_understudy._tcp", Port: 7000, Host: "a-host.local.", TXT: map[string]string{"site": "north"}}
}

// RFC 6762 §8.3: two unsolicited announcements a second apart on start;
// §10.1: goodbyes (TTL 0) on Close. Close also ends the responder's
// goroutines.
func TestAnnouncementsOnStartAndGoodbyeOnClose(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	listener := listenPeer(t, b, 5353)
	adv := advertiseIn(t, a, askedService())

	first := listener.next(t, ctx, a.Addr, "the first announcement", announcement)
	second := listener.next(t, ctx, a.Addr, "the second announcement", announcement)
	if d := second.at.Sub(first.at); d < 900*time.Millisecond {
		t.Errorf("announcements %v apart, want a second", d)
	}
	for _, pk := range []packet{first, second} {
		m := pk.msg
		if !pk.multicast() || m.Id != 0 || len(m.Question) != 0 || !m.Authoritative {
			t.Fatalf("announcement to %v, id %d, %d questions, AA %v: %s", pk.dst, m.Id, len(m.Question), m.Authoritative, describeMsg(m))
		}
		for _, rr := range m.Answer {
			h := rr.Header()
			unique := h.Rrtype != dns.TypePTR
			if h.Ttl != 120 || flush(rr) != unique {
				t.Errorf("announced %v: want TTL 120 and the cache-flush bit on unique records only", rr)
			}
		}
		srv := findRR(m.Answer, dns.TypeSRV).(*dns.SRV)
		a4 := findRR(m.Answer, dns.TypeA).(*dns.A)
		if srv.Target != "a-host.local." || srv.Port != 7000 || a4.Hdr.Name != "a-host.local." || !a4.A.Equal(a.Addr) {
			t.Fatalf("announced %v and %v", srv, a4)
		}
		enum := false
		for _, rr := range m.Answer {
			if p, ok := rr.(*dns.PTR); ok && p.Hdr.Name == enumName && p.Ptr == serviceName {
				enum = true
			}
		}
		if !enum {
			t.Errorf("no service type enumeration PTR in %s", describeMsg(m))
		}
	}

	if err := adv.Close(); err != nil {
		t.Fatal(err)
	}
	bye := listener.next(t, ctx, a.Addr, "the goodbye", func(pk packet) bool {
		return response(pk) && len(pk.msg.Answer) > 0 && pk.msg.Answer[0].Header().Ttl == 0
	})
	var kinds []string
	for _, rr := range bye.msg.Answer {
		if rr.Header().Ttl != 0 {
			t.Errorf("goodbye record with TTL %d: %v", rr.Header().Ttl, rr)
		}
		kinds = append(kinds, dns.TypeToString[rr.Header().Rrtype])
	}
	if got := strings.Join(kinds, " "); got != "PTR SRV TXT" || !bye.multicast() {
		t.Errorf("goodbye with %s to %v, want PTR SRV TXT (the host's A records stay) by multicast", got, bye.dst)
	}
	// Close returned after its goroutines' last work: what may remain is a
	// goroutine past its deferred calls that the scheduler has not yet
	// retired, so the stacks are read until they are gone (as goleak does).
	if stacks := responderGoroutinesAfter(5 * time.Second); stacks != "" {
		t.Fatalf("responder goroutines left after Close:\n%s", stacks)
	}
}

// responderGoroutinesAfter returns every goroutine's stack if a responder
// goroutine is still there after wait, or "" as soon as none is.
func responderGoroutinesAfter(wait time.Duration) string {
	buf := make([]byte, 1<<20)
	end := time.Now().Add(wait)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "discovery/mdns.(*responder)") {
			return ""
		}
		if time.Now().After(end) {
			return stacks
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// RFC 6762 §5.4, §6, §6.7: a question with the unicast-response bit is
// answered to the querier alone, one without by multicast (every host on
// the link hears it), a legacy query from another port by unicast to that
// port with its id and question.
func TestQueryAnsweredByMulticastOrUnicast(t *testing.T) {
	nw := testhost.NewNetwork(t, 3)
	a, b, c := nw.Hosts[0], nw.Hosts[1], nw.Hosts[2]
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	querier := listenPeer(t, b, 5353)
	bystander := listenPeer(t, c, 5353)
	advertiseIn(t, a, askedService())

	// QU: to b only.
	querier.send(t, question(askedInstance, dns.TypeSRV, true), nil)
	uni := querier.next(t, ctx, a.Addr, "the answer to a QU question", answerTo(dns.TypeSRV))
	if uni.multicast() || !uni.dst.Equal(b.Addr) {
		t.Fatalf("QU question answered to %v, want %v (unicast)", uni.dst, b.Addr)
	}
	srv := uni.msg.Answer[0]
	if srv.(*dns.SRV).Port != 7000 || srv.Header().Ttl != 120 || !flush(srv) || !hasRR(uni.msg.Extra, dns.TypeA) {
		t.Fatalf("QU answer %s", describeMsg(uni.msg))
	}

	// QM: by multicast, heard by c too. The TXT record may have been
	// announced less than a second ago, and is multicast at most once a
	// second, so the question is repeated until answered, as a querier does.
	// (Announcements hold every record: they are no answer to one question.)
	var heard packet
	for heard.msg == nil {
		querier.send(t, question(askedInstance, dns.TypeTXT, false), nil)
		wait, stop := context.WithTimeout(ctx, 300*time.Millisecond)
		pk, err := bystander.nextErr(wait, a.Addr, func(pk packet) bool { return answerTo(dns.TypeSRV)(pk) || answerTo(dns.TypeTXT)(pk) })
		stop()
		switch {
		case err == nil && answerTo(dns.TypeSRV)(pk):
			t.Fatalf("%s overheard the answer to %s's QU question: %s", c.Name, b.Name, describeMsg(pk.msg))
		case err == nil:
			heard = pk
		case ctx.Err() != nil:
			t.Fatalf("%s never heard an answer to %s's multicast question", c.Name, b.Name)
		}
	}
	if !heard.multicast() || heard.msg.Id != 0 || len(heard.msg.Question) != 0 || !flush(heard.msg.Answer[0]) {
		t.Fatalf("multicast answer to %v: %s", heard.dst, describeMsg(heard.msg))
	}
	querier.next(t, ctx, a.Addr, "the multicast answer at the querier", func(pk packet) bool { return answerTo(dns.TypeTXT)(pk) && pk.multicast() })

	// Legacy: from a random port, answered there.
	legacy := listenPeer(t, b, 0)
	ask := question(serviceName, dns.TypePTR, false)
	ask.Id = 4242
	legacy.send(t, ask, nil)
	reply := legacy.next(t, ctx, a.Addr, "the answer to a legacy query", func(pk packet) bool { return pk.msg.Response && pk.msg.Id == 4242 })
	m := reply.msg
	if reply.multicast() || len(m.Question) != 1 || m.Question[0] != ask.Question[0] {
		t.Fatalf("legacy answer to %v with questions %v, want unicast with the question repeated", reply.dst, m.Question)
	}
	for _, rr := range append(m.Answer, m.Extra...) {
		if rr.Header().Ttl > 10 || flush(rr) {
			t.Errorf("legacy answer record %v: want TTL <= 10 and no cache-flush bit", rr)
		}
	}
	if p, ok := m.Answer[0].(*dns.PTR); !ok || p.Ptr != askedInstance || !hasRR(m.Extra, dns.TypeSRV) || !hasRR(m.Extra, dns.TypeA) {
		t.Fatalf("legacy answer %s", describeMsg(m))
	}
}

// RFC 6762 §6: a record is multicast at most once a second on an interface,
// however often it is asked for.
func TestMulticastAnswersAtMostOncePerSecond(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	querier := listenPeer(t, b, 5353)
	advertiseIn(t, a, askedService())

	isServicePTR := func(pk packet) bool {
		return answerTo(dns.TypePTR)(pk) && hasPTRTo(pk.msg.Answer, askedInstance)
	}
	isEnumPTR := func(pk packet) bool { return answerTo(dns.TypePTR)(pk) && hasPTRTo(pk.msg.Answer, serviceName) }
	askUntilAnswered := func(what string) packet {
		for {
			querier.send(t, question(serviceName, dns.TypePTR, false), nil)
			wait, stop := context.WithTimeout(ctx, 300*time.Millisecond)
			pk, err := querier.nextErr(wait, a.Addr, isServicePTR)
			stop()
			if err == nil {
				return pk
			}
			if ctx.Err() != nil {
				t.Fatalf("no multicast answer: %s", what)
			}
		}
	}
	first := askUntilAnswered("first")

	// Asked again at once, then a marker question answered with another
	// record: the answer to the marker comes alone (both wait 20-120 ms and
	// would share one packet); the PTR is not repeated within the second.
	querier.send(t, question(serviceName, dns.TypePTR, false), nil)
	querier.send(t, question(enumName, dns.TypePTR, false), nil)
	querier.next(t, ctx, a.Addr, "the answer to the marker question", func(pk packet) bool {
		if d := pk.at.Sub(first.at); d < 950*time.Millisecond && hasPTRTo(pk.msg.Answer, askedInstance) {
			t.Fatalf("the PTR was multicast again %v after the last time: %s", d, describeMsg(pk.msg))
		}
		return isEnumPTR(pk)
	})
	again := askUntilAnswered("a second later")
	if d := again.at.Sub(first.at); d < 950*time.Millisecond {
		t.Fatalf("PTR multicast again after %v", d)
	}
}

func hasPTRTo(rrs []dns.RR, target string) bool {
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok && p.Ptr == target {
			return true
		}
	}
	return false
}

// With two interfaces, a query is answered with the address of the
// interface it came in on; a listener bound to one address is announced
// only on that address's interface.
func TestAnswerCarriesTheInterfaceAddress(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	// A second network between a and b: 198.19.0.1 and 198.19.0.2.
	aIf, bIf := addLink(t, a, b, "198.19.0.1", "198.19.0.2")
	onFirst := listenPeer(t, b, 5353)
	onSecond := listenPeer(t, b, 5353, bIf)

	bound := mdns.Service{Instance: "bound", Service: "_understudy._tcp", Port: 7001, Host: "a-host.local.", Bound: net.IPv4(198, 19, 0, 1)}
	advertiseIn(t, a, bound)
	every := askedService() // bound to 0.0.0.0: every interface
	every.Bound = net.IPv4zero
	advertiseIn(t, a, every)

	// A legacy query on each network is answered with its address.
	for _, tc := range []struct {
		ifname string
		want   string
	}{{b.Iface, "198.18.0.1"}, {bIf, "198.19.0.1"}} {
		p := listenPeer(t, b, 0, tc.ifname)
		ask := question(askedInstance, dns.TypeSRV, false)
		ask.Id = 99
		p.send(t, ask, nil)
		reply := p.next(t, ctx, nil, "the answer on "+tc.ifname, func(pk packet) bool { return pk.msg.Response && pk.msg.Id == 99 })
		if got := addrsOf(reply.msg); got != tc.want {
			t.Fatalf("answer on %s carries %s, want %s", tc.ifname, got, tc.want)
		}
	}

	isAnnouncementOf := func(instance string) func(packet) bool {
		return func(pk packet) bool { return announcement(pk) && hasPTRTo(pk.msg.Answer, instance) }
	}
	// The bound one first (started first): on the second network only.
	pk := onSecond.next(t, ctx, net.IPv4(198, 19, 0, 1), "the bound listener's announcement", isAnnouncementOf(`bound._understudy._tcp.local.`))
	if got := findRR(pk.msg.Answer, dns.TypeA).(*dns.A).A; !got.Equal(net.IPv4(198, 19, 0, 1)) {
		t.Fatalf("bound listener announced with %v", got)
	}
	// Each network hears the announcements with its own address. Both
	// came after the bound listener's two (started first), had it sent any
	// on the first network.
	for i := range 2 {
		pk := onFirst.next(t, ctx, a.Addr, "the announcement on the first network", func(pk packet) bool {
			if hasPTRTo(pk.msg.Answer, `bound._understudy._tcp.local.`) {
				t.Fatalf("the bound listener was announced on %s: %s", a.Iface, describeMsg(pk.msg))
			}
			return isAnnouncementOf(askedInstance)(pk)
		})
		if got := addrsOf(pk.msg); got != "198.18.0.1" {
			t.Fatalf("announcement %d on %s carries %s, want 198.18.0.1", i+1, a.Iface, got)
		}
	}
	pk = onSecond.next(t, ctx, net.IPv4(198, 19, 0, 1), "the announcement on the second network", isAnnouncementOf(askedInstance))
	if got := addrsOf(pk.msg); got != "198.19.0.1" {
		t.Fatalf("announcement on %s carries %s, want 198.19.0.1", aIf, got)
	}
}

// addrsOf lists a message's A records' addresses.
func addrsOf(m *dns.Msg) string {
	var out []string
	for _, rr := range append(m.Answer, m.Extra...) {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return strings.Join(out, ",")
}

// addLink connects hosts a and b directly by a second link, with addresses
// ipA/24 and ipB/24, and returns the interface names. The link goes with the
// namespaces (testhost removes them).
func addLink(t *testing.T, a, b *testhost.Host, ipA, ipB string) (string, string) {
	t.Helper()
	ip, err := testhost.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	aIf, bIf := a.Iface+"m", b.Iface+"m"
	run := func(args ...string) string {
		out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("link", "add", aIf, "netns", a.Name, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	for _, end := range []struct{ ns, ifname, addr string }{{a.Name, aIf, ipA}, {b.Name, bIf, ipB}} {
		run("-n", end.ns, "addr", "add", end.addr+"/24", "dev", end.ifname)
		run("-n", end.ns, "link", "set", end.ifname, "up")
	}
	for _, end := range []struct{ ns, ifname string }{{a.Name, aIf}, {b.Name, bIf}} {
		for !strings.Contains(run("-n", end.ns, "-o", "link", "show", "dev", end.ifname), "LOWER_UP") {
			select {
			case <-ctx.Done():
				t.Fatalf("link %s in %s did not come up", end.ifname, end.ns)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return aIf, bIf
}

// A listener bound to loopback cannot be reached from the network: it is
// not advertised.
func TestLoopbackListenerIsNotAdvertised(t *testing.T) {
	nw := testhost.NewNetwork(t, 1)
	h := nw.Hosts[0]
	for name, svc := range map[string]mdns.Service{
		"bound to 127.0.0.1":  {Bound: net.IPv4(127, 0, 0, 1)},
		"bound to ::1":        {Bound: net.IPv6loopback},
		"published 127.0.0.1": {IPs: []net.IP{net.IPv4(127, 0, 0, 1)}},
	} {
		svc.Instance, svc.Service, svc.Port = "api", "_understudy._tcp", 7901
		err := h.Do(func() error {
			adv, err := mdns.Advertise(svc, nil)
			if err == nil {
				adv.Close()
				return errors.New("advertised")
			}
			if !errors.Is(err, mdns.ErrLoopback) || !strings.Contains(err.Error(), "loopback") {
				return err
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v; want an error matching mdns.ErrLoopback", name, err)
		}
	}
}
