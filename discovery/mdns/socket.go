package mdns

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/ipv4"
)

// mdnsGroup returns the IPv4 mDNS multicast group and port.
func mdnsGroup() *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: mdnsPort} }

// mconn is the responder's UDP socket: bound to 0.0.0.0:5353 (responses must
// come from port 5353, RFC 6762 §11), member of the mDNS group on each
// interface it answers on, reporting the interface and destination of each
// packet it receives.
type mconn struct {
	c  net.PacketConn
	pc *ipv4.PacketConn
}

// listenMDNS opens the socket in the network namespace of the calling thread.
//
// Other mDNS stacks on the host (Avahi, systemd-resolved, mDNSResponder, Go
// programs using net.ListenMulticastUDP) hold port 5353 too. Linux lets
// several UDP sockets bind the same port when all of them set SO_REUSEADDR,
// or all set SO_REUSEPORT and belong to the same user; this socket sets both,
// as Avahi does, so it shares the port with either kind. Every socket bound
// to the port receives each multicast packet; a unicast packet to the port
// reaches only one of them (see packetInfo.fromSelf).
func listenMDNS() (*mconn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = shareMDNSPort(fd) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", mdnsPort))
	if err != nil {
		return nil, fmt.Errorf("listen on udp port %d: %w", mdnsPort, err)
	}
	m := &mconn{c: c, pc: ipv4.NewPacketConn(c)}
	steps := []struct {
		what string
		do   func() error
	}{
		{"receive interface and destination", func() error { return m.pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true) }},
		// RFC 6762 §11: responses go out with IP TTL 255, unicast ones too.
		{"multicast TTL", func() error { return m.pc.SetMulticastTTL(255) }},
		{"unicast TTL", func() error { return m.pc.SetTTL(255) }},
		// Other mDNS stacks on this host hear what this socket multicasts.
		{"multicast loopback", func() error { return m.pc.SetMulticastLoopback(true) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			c.Close()
			return nil, fmt.Errorf("mdns socket: %s: %w", s.what, err)
		}
	}
	return m, nil
}

// join makes the socket a member of the mDNS group on interface index.
func (m *mconn) join(ifc *iface) error {
	if err := m.pc.JoinGroup(netInterface(ifc), mdnsGroup()); err != nil {
		return fmt.Errorf("join %v on %s: %w", mdnsGroup().IP, ifc.name, err)
	}
	return nil
}

// leave ends the membership on an interface that went away or down.
func (m *mconn) leave(ifc *iface) error {
	if err := m.pc.LeaveGroup(netInterface(ifc), mdnsGroup()); err != nil {
		return fmt.Errorf("leave %v on %s: %w", mdnsGroup().IP, ifc.name, err)
	}
	return nil
}

// sendMulticast sends b to the mDNS group out of interface ifc. Only one
// goroutine (the scheduler) sends multicast: the outgoing interface is a
// socket option.
func (m *mconn) sendMulticast(b []byte, ifc *iface) error {
	if err := m.pc.SetMulticastInterface(netInterface(ifc)); err != nil {
		return fmt.Errorf("select %s for multicast: %w", ifc.name, err)
	}
	if _, err := m.pc.WriteTo(b, nil, mdnsGroup()); err != nil {
		return fmt.Errorf("send to %v on %s: %w", mdnsGroup(), ifc.name, err)
	}
	return nil
}

// sendUnicast sends b to dst.
func (m *mconn) sendUnicast(b []byte, dst *net.UDPAddr) error {
	if _, err := m.pc.WriteTo(b, nil, dst); err != nil {
		return fmt.Errorf("send to %v: %w", dst, err)
	}
	return nil
}

func (m *mconn) Close() error { return m.c.Close() }

func netInterface(ifc *iface) *net.Interface {
	return &net.Interface{Index: ifc.index, Name: ifc.name, Flags: net.FlagUp | net.FlagMulticast}
}
