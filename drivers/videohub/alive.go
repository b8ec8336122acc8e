package videohub

import (
	"context"
	"errors"
	"fmt"
	"net"

	"understudy/drivers/videohub/wire"

	"understudy/drivers/switcher"
)

// Alive checks that a Videohub answers at addr (host, or host:port; the
// port defaults to 9990), for a switcher that is a member of the site but
// not one of its drivers: it reads the protocol preamble the device sends on
// connect, sends PING and waits for the ACK. A device that reports no
// hardware present (Device present: false or needs_update) is not alive.
func Alive(ctx context.Context, addr string) error {
	addr, err := switcher.NormalizeAddress(addr, wire.DefaultPort)
	if err != nil {
		return fmt.Errorf("videohub: %w", err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("videohub %s: %w", addr, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c := wire.NewConn(nc)
	pinged := false
	for {
		m, err := c.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			if !pinged {
				return fmt.Errorf("videohub %s: no protocol preamble: %w", addr, err)
			}
			return fmt.Errorf("videohub %s: no answer to PING: %w", addr, err)
		}
		switch m := m.(type) {
		case wire.Preamble:
			if !pinged {
				if err := c.WriteMessage(wire.Ping{}); err != nil {
					return fmt.Errorf("videohub %s: sending PING: %w", addr, err)
				}
				pinged = true
			}
		case wire.Device:
			if m.Present != "true" {
				return fmt.Errorf("videohub %s: %w (Device present: %s)", addr, errNotPresent, m.Present)
			}
		case wire.Ack:
			if pinged {
				return nil
			}
		case wire.Nak:
			if pinged {
				return fmt.Errorf("videohub %s: PING answered NAK", addr)
			}
		}
	}
}

var errNotPresent = errors.New("the device reports no video hardware present")
