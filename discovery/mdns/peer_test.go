//go:build linux

package mdns_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"understudy/fixtures/testhost"
)

// group is the mDNS group and port.
var group = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}

// peer is a test's own mDNS socket inside a test host, written here with
// x/net and miekg/dns rather than with the package under test: a querier
// (bound to port 5353, or to a random port as a legacy querier) and a
// listener that sees every mDNS packet on the host's link.
type peer struct {
	h       *testhost.Host
	pc      *ipv4.PacketConn
	packets chan packet
}

// packet is a DNS message the peer received.
type packet struct {
	msg *dns.Msg
	src *net.UDPAddr
	dst net.IP // the destination address: the group, or the peer's own
	at  time.Time
}

// multicast reports whether the packet was sent to the group.
func (p packet) multicast() bool { return p.dst.Equal(group.IP) }

// listenPeer opens a peer in h on port (0: a random one), joined to the
// group on h's interface (ifname: another interface of h). It is closed in
// t.Cleanup.
func listenPeer(t *testing.T, h *testhost.Host, port int, ifname ...string) *peer {
	t.Helper()
	name := h.Iface
	if len(ifname) > 0 {
		name = ifname[0]
	}
	var c net.PacketConn
	var pc *ipv4.PacketConn
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		}}
		if c, err = lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port)); err != nil {
			return err
		}
		pc = ipv4.NewPacketConn(c)
		return errors.Join(
			pc.JoinGroup(ifi, group),
			pc.SetMulticastInterface(ifi),
			pc.SetMulticastTTL(255),
			pc.SetControlMessage(ipv4.FlagDst, true),
		)
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		t.Fatalf("mDNS socket in %s on %s: %v", h.Name, name, err)
	}
	p := &peer{h: h, pc: pc, packets: make(chan packet, 256)}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 9000)
		for {
			n, cm, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) != nil || cm == nil {
				continue
			}
			select {
			case p.packets <- packet{msg: m, src: src.(*net.UDPAddr), dst: cm.Dst, at: time.Now()}:
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		c.Close()
		<-stopped
	})
	return p
}

// send sends m to dst (nil: the group).
func (p *peer) send(t *testing.T, m *dns.Msg, dst *net.UDPAddr) {
	t.Helper()
	if dst == nil {
		dst = group
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.pc.WriteTo(b, nil, dst); err != nil {
		t.Fatalf("send from %s: %v", p.h.Name, err)
	}
}

// next returns the next packet from src (nil: any) that match accepts, or
// fails the test at ctx's end. Packets passed over are dropped.
func (p *peer) next(t *testing.T, ctx context.Context, src net.IP, what string, match func(packet) bool) packet {
	t.Helper()
	pk, err := p.nextErr(ctx, src, match)
	if err != nil {
		t.Fatalf("%s: waiting for %s: %v", p.h.Name, what, err)
	}
	return pk
}

func (p *peer) nextErr(ctx context.Context, src net.IP, match func(packet) bool) (packet, error) {
	for {
		select {
		case pk := <-p.packets:
			if (src == nil || pk.src.IP.Equal(src)) && match(pk) {
				return pk, nil
			}
		case <-ctx.Done():
			return packet{}, ctx.Err()
		}
	}
}

// response reports whether a packet is an mDNS response (from port 5353).
func response(pk packet) bool { return pk.msg.Response && pk.src.Port == 5353 }

// announcement reports whether a packet is an unsolicited announcement:
// every record of the instance in the answer section.
func announcement(pk packet) bool {
	return response(pk) && hasRR(pk.msg.Answer, dns.TypePTR) && hasRR(pk.msg.Answer, dns.TypeSRV) &&
		hasRR(pk.msg.Answer, dns.TypeTXT) && hasRR(pk.msg.Answer, dns.TypeA)
}

// answerTo reports whether a packet is a response with records of qtype in
// its answer section and is not an announcement.
func answerTo(qtype uint16) func(packet) bool {
	return func(pk packet) bool {
		return response(pk) && hasRR(pk.msg.Answer, qtype) && !announcement(pk)
	}
}

func hasRR(rrs []dns.RR, typ uint16) bool { return findRR(rrs, typ) != nil }

func findRR(rrs []dns.RR, typ uint16) dns.RR {
	for _, rr := range rrs {
		if rr.Header().Rrtype == typ {
			return rr
		}
	}
	return nil
}

// question is a query for name and qtype; qu sets the unicast-response bit.
func question(name string, qtype uint16, qu bool) *dns.Msg {
	class := uint16(dns.ClassINET)
	if qu {
		class |= 1 << 15
	}
	return &dns.Msg{Question: []dns.Question{{Name: name, Qtype: qtype, Qclass: class}}}
}

// flush reports whether a record has the cache-flush bit.
func flush(rr dns.RR) bool { return rr.Header().Class&(1<<15) != 0 }

// describeMsg is a one-line summary for failure messages.
func describeMsg(m *dns.Msg) string {
	return strings.Join(strings.Fields(m.String()), " ")
}
