//go:build linux

package mdns

import (
	"fmt"
	"net"
	"slices"
	"testing"

	"understudy/fixtures/testhost"
)

// The scanner sees what net.Interfaces sees, in the namespace it was
// opened in, whichever thread scans later, and scan after scan.
func TestScannerListsTheInterfacesOfItsNamespace(t *testing.T) {
	h := testhost.NewNetwork(t, 1).Hosts[0]
	var sc scanner
	var want string
	err := h.Do(func() error {
		var err error
		if sc, err = newScanner(); err != nil {
			return err
		}
		want, err = describeNetInterfaces()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for i := range 3 { // from this goroutine: outside the namespace
		links, err := sc.scan()
		if err != nil {
			t.Fatal(err)
		}
		if got := describeLinks(links); got != want {
			t.Fatalf("scan %d:\n got %s\nwant %s", i+1, got, want)
		}
	}
	table := newIfaceTable(mustScan(t, sc))
	if len(table.ifaces) != 1 || table.ifaces[0].name != h.Iface || !table.isOwn(h.Addr) || table.isOwn(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("interfaces to answer on: %+v, want %s (%v) only", table.ifaces, h.Iface, h.Addr)
	}
}

func mustScan(t *testing.T, sc scanner) []linkInfo {
	t.Helper()
	links, err := sc.scan()
	if err != nil {
		t.Fatal(err)
	}
	return links
}

func describeLinks(links []linkInfo) string {
	var out []string
	for _, l := range links {
		var nets []string
		for _, n := range l.nets {
			nets = append(nets, n.String())
		}
		out = append(out, fmt.Sprintf("%d %s %v %v", l.index, l.name, l.flags&(net.FlagUp|net.FlagLoopback|net.FlagMulticast), nets))
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}

func describeNetInterfaces() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	var links []linkInfo
	for _, ifi := range ifs {
		l := linkInfo{index: ifi.Index, name: ifi.Name, flags: ifi.Flags}
		addrs, err := ifi.Addrs()
		if err != nil {
			return "", err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				l.nets = append(l.nets, net.IPNet{IP: n.IP.To4(), Mask: n.Mask})
			}
		}
		links = append(links, l)
	}
	return describeLinks(links), nil
}
