package kramer

import (
	"context"
	"errors"
	"fmt"
	"net"

	"understudy/drivers/kramer/wire"
	"understudy/drivers/switcher"
)

// Alive checks that a Kramer matrix answers Protocol 3000 at addr (host, or
// host:port; the port defaults to 5000), for a switcher that is a member of
// the site but not one of its drivers: it sends the handshake ("#") and
// waits for the OK of whichever machine answers. Lines that are not device
// messages (a banner, an echo) are passed over; an error code in answer is
// not alive.
func Alive(ctx context.Context, addr string) error {
	addr, err := normalizeAddress(addr)
	if err != nil {
		return fmt.Errorf("kramer: %w", err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("kramer %s: %w", addr, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c := wire.NewConn(nc)
	if err := c.WriteCommand(0, wire.Handshake{}); err != nil {
		return fmt.Errorf("kramer %s: sending the handshake: %w", addr, err)
	}
	for {
		f, err := c.ReadFrame()
		switch {
		case errors.Is(err, wire.ErrMalformed):
			continue
		case err != nil:
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("kramer %s: no answer to the handshake: %w", addr, switcher.ReadError(err))
		case !f.Reply:
			continue
		}
		r, err := wire.DecodeReply(f)
		if err != nil {
			continue
		}
		switch r := r.(type) {
		case wire.OK:
			return nil
		case wire.Err:
			return fmt.Errorf("kramer %s: the handshake was answered %w", addr, deviceError(wire.Handshake{}, r))
		}
	}
}
