package kumo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"understudy/drivers/kumo/wire"
)

// Alive checks that a KUMO answers at addr (host, host:port or
// http://host[:port]; the port defaults to 80), for a router that is a
// member of the site but not one of its drivers: it asks for the product
// id, as the driver does first, and takes the KUMO's reply as alive. A
// KUMO protected by a password answers every request without a session
// with 404 Not Found (AJA documents it so), and that answer counts too,
// as an Extron's password prompt does: the probe has no password to log
// in with. Any other answer, or none within ctx, is not alive.
func Alive(ctx context.Context, addr string) error {
	addr, err := normalizeAddress(addr)
	if err != nil {
		return fmt.Errorf("kumo: %w", err)
	}
	timeout := DefaultTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	c := NewClient(addr, timeout)
	defer c.Close()
	_, err = c.Get(ctx, wire.ParamProductID)
	var se *wire.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kumo %s: %w", addr, err)
	}
	return nil
}
