package bus

import "time"

// OnTick is onTick, for the tests.
func (c *Client) OnTick(now, last time.Time) { c.onTick(now, last) }
