//go:build !linux

package mdns

import (
	"fmt"
	"net"
)

// netScanner lists interfaces with the net package (no network namespaces
// outside Linux).
type netScanner struct{}

func newScanner() (scanner, error) { return netScanner{}, nil }

func (netScanner) Close() error { return nil }

func (netScanner) scan() ([]linkInfo, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make([]linkInfo, 0, len(ifs))
	for _, ifi := range ifs {
		l := linkInfo{index: ifi.Index, name: ifi.Name, flags: ifi.Flags}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				l.nets = append(l.nets, net.IPNet{IP: n.IP.To4(), Mask: n.Mask})
			}
		}
		out = append(out, l)
	}
	return out, nil
}
