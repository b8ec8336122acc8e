//go:build linux

package mdns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// netlinkScanner lists interfaces over one rtnetlink socket, opened when the
// advertisement starts. The socket belongs to the network namespace it was
// opened in, so later scans (from the responder's goroutine, on any thread)
// see that namespace, as the advertisement's UDP socket does. net.Interfaces
// opens a socket per call, in the namespace of the calling thread.
type netlinkScanner struct {
	fd  int
	seq uint32
	buf []byte
}

// netlinkTimeout bounds a wait for the kernel's reply to a dump request.
const netlinkTimeout = 2 // seconds

func newScanner() (scanner, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	tv := unix.Timeval{Sec: netlinkTimeout}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rtnetlink socket timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink socket: %w", err)
	}
	return &netlinkScanner{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (s *netlinkScanner) Close() error { return unix.Close(s.fd) }

func (s *netlinkScanner) scan() ([]linkInfo, error) {
	links, err := s.dump(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	addrs, err := s.dump(unix.RTM_GETADDR, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []linkInfo
	byIndex := map[int]int{}
	for _, m := range links {
		l, ok := parseLink(m)
		if ok {
			byIndex[l.index] = len(out)
			out = append(out, l)
		}
	}
	for _, m := range addrs {
		index, n, ok := parseAddr(m)
		if i, known := byIndex[index]; ok && known {
			out[i].nets = append(out[i].nets, n)
		}
	}
	return out, nil
}

// dump sends one dump request and collects its replies up to NLMSG_DONE.
func (s *netlinkScanner) dump(typ uint16, family uint8) ([]syscall.NetlinkMessage, error) {
	s.seq++
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofRtGenmsg)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], typ)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:12], s.seq)
	req[unix.NLMSG_HDRLEN] = family
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("rtnetlink request: %w", err)
	}
	var out []syscall.NetlinkMessage
	for {
		n, from, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			return nil, fmt.Errorf("rtnetlink reply: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		// The messages keep slices of what they are parsed from: a copy,
		// as the buffer is read into again.
		msgs, err := syscall.ParseNetlinkMessage(append([]byte(nil), s.buf[:n]...))
		if err != nil {
			return nil, fmt.Errorf("rtnetlink reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != s.seq {
				continue // a late reply to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
						return nil, fmt.Errorf("rtnetlink: %w", syscall.Errno(-code))
					}
				}
				return nil, errors.New("rtnetlink: error reply")
			}
			out = append(out, m)
		}
	}
}

// parseLink reads an RTM_NEWLINK message: struct ifinfomsg (family, pad,
// type, index, flags, change) and the IFLA_IFNAME attribute.
func parseLink(m syscall.NetlinkMessage) (linkInfo, bool) {
	if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
		return linkInfo{}, false
	}
	l := linkInfo{
		index: int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))),
		flags: linkFlags(binary.NativeEndian.Uint32(m.Data[8:12])),
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil {
		return linkInfo{}, false
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_IFNAME {
			name := a.Value
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			l.name = string(name)
		}
	}
	return l, true
}

func linkFlags(raw uint32) net.Flags {
	var f net.Flags
	if raw&unix.IFF_UP != 0 {
		f |= net.FlagUp
	}
	if raw&unix.IFF_LOOPBACK != 0 {
		f |= net.FlagLoopback
	}
	if raw&unix.IFF_MULTICAST != 0 {
		f |= net.FlagMulticast
	}
	if raw&unix.IFF_RUNNING != 0 {
		f |= net.FlagRunning
	}
	return f
}

// parseAddr reads an RTM_NEWADDR message of family AF_INET: struct
// ifaddrmsg (family, prefix length, flags, scope, index) and IFA_LOCAL (the
// interface's own address; IFA_ADDRESS is the peer's on point-to-point links).
func parseAddr(m syscall.NetlinkMessage) (int, net.IPNet, bool) {
	if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg || m.Data[0] != unix.AF_INET {
		return 0, net.IPNet{}, false
	}
	prefix := int(m.Data[1])
	index := int(binary.NativeEndian.Uint32(m.Data[4:8]))
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil || prefix > 32 {
		return 0, net.IPNet{}, false
	}
	var local, address net.IP
	for _, a := range attrs {
		if len(a.Value) != net.IPv4len {
			continue
		}
		switch a.Attr.Type {
		case unix.IFA_LOCAL:
			local = net.IP(append([]byte(nil), a.Value...))
		case unix.IFA_ADDRESS:
			address = net.IP(append([]byte(nil), a.Value...))
		}
	}
	ip := local
	if ip == nil {
		ip = address
	}
	if ip == nil {
		return 0, net.IPNet{}, false
	}
	return index, net.IPNet{IP: ip, Mask: net.CIDRMask(prefix, 32)}, true
}
