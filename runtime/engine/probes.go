package engine

import (
	"context"
	"fmt"
	"sync"

	"understudy/discovery/members"
	"understudy/discovery/probes"
	"understudy/drivers/builtin"
	"understudy/runtime/config"
)

// probeOf builds the probe of a member that runs no understudy (nil if it has none).
func (e *Engine) probeOf(m *config.Member) probes.Probe {
	p := m.Probe
	switch {
	case p == nil:
		return nil
	case p.TCP != "":
		return probes.TCP(p.TCP)
	case p.HTTP != "":
		return probes.HTTP(p.HTTP, p.Expect)
	case p.Driver != "":
		d, ok := e.opts.Drivers[p.Driver]
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
		k, ok := builtin.Registry().Kind(p.Kind)
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
func (e *Engine) startProbes(ctx context.Context) {
	ctx, e.probeStop = context.WithCancel(ctx)
	e.probeWG = &sync.WaitGroup{}
	for i := range e.site.Members {
		m := &e.site.Members[i]
		p := e.probeOf(m)
		if p == nil {
			continue
		}
		id, interval, timeout := m.ID, m.Probe.Interval.D(), m.Probe.Timeout.D()
		e.log.Info("probing a member", "member", id, "probe", p.String(), "interval", interval)
		e.probeWG.Add(1)
		go func() {
			defer e.probeWG.Done()
			var last string
			probes.Run(ctx, p, interval, timeout,
				func() {
					last = ""
					e.Post(func() {
						e.table.Heartbeat(members.Heartbeat{ID: id, Boot: "probe", Conn: 1, Interval: interval})
					})
				},
				func(err error) {
					if err.Error() != last {
						last = err.Error()
						e.log.Debug("probe failed", "member", id, "error", err)
					}
				})
		}()
	}
}

func (e *Engine) stopProbes() {
	if e.probeStop != nil {
		e.probeStop()
		e.probeWG.Wait()
		e.probeStop = nil
	}
}
