//go:build linux

package faults

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"understudy/fixtures/testhost"
)

// Blackhole routes on both sides block TCP both ways: no new connection in
// either direction, and nothing sent on an established one arrives; healing
// restores both, and the established connection delivers what waited.
func TestBlackholeRoutesBlockTCPBothWays(t *testing.T) {
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	nf, err := newNetFaults()
	if err != nil {
		t.Fatal(err)
	}
	listen := func(h *testhost.Host) net.Listener {
		l, err := h.Listen("tcp", h.Addr.String()+":7000")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }() // echo
			}
		}()
		return l
	}
	listen(a)
	listen(b)
	dial := func(from, to *testhost.Host, timeout time.Duration) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return from.Dial(ctx, "tcp", to.Addr.String()+":7000")
	}
	echo := func(c net.Conn, timeout time.Duration) error {
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}
	established, err := dial(a, b, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()
	if err := echo(established, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	if err := nf.cut([]*testhost.Host{a}, []*testhost.Host{b}); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]*testhost.Host{{a, b}, {b, a}} {
		if c, err := dial(p[0], p[1], time.Second); err == nil {
			c.Close()
			t.Errorf("%s reached %s through the partition", p[0].Name, p[1].Name)
		}
	}
	if err := echo(established, time.Second); err == nil {
		t.Error("an established connection still carried data through the partition")
	}

	if err := nf.heal([]*testhost.Host{a}, []*testhost.Host{b}); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]*testhost.Host{{a, b}, {b, a}} {
		c, err := dial(p[0], p[1], 5*time.Second)
		if err != nil {
			t.Fatalf("%s cannot reach %s after the heal: %v", p[0].Name, p[1].Name, err)
		}
		c.Close()
	}
	// What waited is retransmitted: the echo of the byte sent during the
	// partition arrives (TCP's backoff may take a few seconds).
	established.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(established, make([]byte, 1)); err != nil {
		t.Errorf("the established connection did not recover after the heal: %v", err)
	}
}
