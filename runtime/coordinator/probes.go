package coordinator

import (
	"context"
	"fmt"
	"sync"

	"understudy/discovery/members"
	"understudy/discovery/probes"
	"understudy/runtime/config"
)

// probeOf builds the probe of a member that runs no understudy (nil if it has none).
func (c *Coordinator) probeOf(m *config.Member) probes.Probe {
	p := m.Probe
	switch {
	case p == nil:
		return nil
	case p.TCP != "":
		return probes.TCP(p.TCP)
	case p.HTTP != "":
		return probes.HTTP(p.HTTP, p.Expect)
	case p.Driver != "":
		d, ok := c.opts.Drivers[p.Driver]
		if !ok {
			return nil
		}
		return probes.Func("driver "+p.Driver, func(context.Context) error {
			if st := d.Status(); !st.Connected {
				return fmt.Errorf("driver %s is not connected: %s", p.Driver, st.LastError)
			}
			return nil
		})
	case p.Kind != "":
		if c.opts.Registry == nil {
			c.log.Warn("probe not started: no driver registry to check a "+p.Kind+" with", "member", m.ID)
			return nil
		}
		k, ok := c.opts.Registry.Kind(p.Kind)
		if !ok || k.Alive == nil {
			return nil
		}
		return probes.Func(p.Kind+" "+p.Address, func(ctx context.Context) error { return k.Alive(ctx, p.Address) })
	}
	return nil
}

// startProbes checks, from the coordinator, every member that has a probe:
// each success is a heartbeat in the member table, so such members are lost,
// restored and taken over like any other.
func (c *Coordinator) startProbes(ctx context.Context) {
	ctx, c.probeStop = context.WithCancel(ctx)
	c.probeWG = &sync.WaitGroup{}
	for i := range c.site.Members {
		m := &c.site.Members[i]
		p := c.probeOf(m)
		if p == nil {
			continue
		}
		id, interval, timeout := m.ID, m.Probe.Interval.D(), m.Probe.Timeout.D()
		c.log.Info("probing a member", "member", id, "probe", p.String(), "interval", interval)
		c.probeWG.Add(1)
		go func() {
			defer c.probeWG.Done()
			var last string
			probes.Run(ctx, p, interval, timeout,
				func() {
					last = ""
					c.Post(func() {
						c.table.Heartbeat(members.Heartbeat{ID: id, Boot: "probe", Conn: 1, Interval: interval})
					})
				},
				func(err error) {
					if err.Error() != last {
						last = err.Error()
						c.log.Debug("probe failed", "member", id, "error", err)
					}
				})
		}()
	}
}

func (c *Coordinator) stopProbes() {
	if c.probeStop != nil {
		c.probeStop()
		c.probeWG.Wait()
		c.probeStop = nil
	}
}
