package mdns

import (
	"net"
	"slices"
)

// linkInfo is one network interface as a scanner reports it.
type linkInfo struct {
	index int
	name  string
	flags net.Flags
	nets  []net.IPNet // its IPv4 addresses (4-byte form) with their masks
}

// scanner lists the network interfaces. Its scans see the network namespace
// the scanner was created in, whichever thread runs them.
type scanner interface {
	scan() ([]linkInfo, error)
	Close() error
}

// iface is an interface the responder answers on: up, multicast-capable, not
// loopback.
type iface struct {
	index int
	name  string
	nets  []net.IPNet
}

// addrs returns the interface's IPv4 addresses.
func (ifc *iface) addrs() []net.IP {
	out := make([]net.IP, 0, len(ifc.nets))
	for _, n := range ifc.nets {
		out = append(out, n.IP)
	}
	return out
}

// has reports whether ip is one of the interface's addresses.
func (ifc *iface) has(ip net.IP) bool {
	for _, n := range ifc.nets {
		if n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// onLink reports whether ip is in one of the interface's subnets, or an IPv4
// link-local address (RFC 6762 §11: only queries from the local link are
// answered).
func (ifc *iface) onLink(ip net.IP) bool {
	if ip.IsLinkLocalUnicast() {
		return true
	}
	for _, n := range ifc.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// ifaceTable is one scan's interfaces; it is not changed after it is built
// (the reader and the scheduler share it).
type ifaceTable struct {
	ifaces []iface // by index
}

// newIfaceTable keeps the interfaces that are up, multicast-capable and not
// loopback, with their IPv4 addresses that are not loopback.
func newIfaceTable(links []linkInfo) *ifaceTable {
	t := &ifaceTable{}
	for _, l := range links {
		if l.flags&net.FlagUp == 0 || l.flags&net.FlagMulticast == 0 || l.flags&net.FlagLoopback != 0 {
			continue
		}
		ifc := iface{index: l.index, name: l.name}
		for _, n := range l.nets {
			if ip := n.IP.To4(); ip != nil && !ip.IsLoopback() {
				ifc.nets = append(ifc.nets, net.IPNet{IP: ip, Mask: n.Mask})
			}
		}
		t.ifaces = append(t.ifaces, ifc)
	}
	slices.SortFunc(t.ifaces, func(a, b iface) int { return a.index - b.index })
	return t
}

// byIndex returns the interface with index i, or nil.
func (t *ifaceTable) byIndex(i int) *iface {
	n, ok := slices.BinarySearchFunc(t.ifaces, i, func(ifc iface, i int) int { return ifc.index - i })
	if !ok {
		return nil
	}
	return &t.ifaces[n]
}

// isOwn reports whether ip is an address of one of the interfaces.
func (t *ifaceTable) isOwn(ip net.IP) bool {
	for i := range t.ifaces {
		if t.ifaces[i].has(ip) {
			return true
		}
	}
	return false
}
