package extronsim

import (
	"understudy/drivers"
	"understudy/drivers/extron/wire"
)

// The simulator speaks the shared fault vocabulary, and can drop every
// connection at once.
var _ drivers.SwitcherSim = (*Sim)(nil)
var _ drivers.ConnDropper = (*Sim)(nil)

// Simulate starts a simulator of size ports listening on addr and returns
// it with the address it listens on: the simulator extron.Kind registers.
func Simulate(addr string, size drivers.Size) (drivers.SwitcherSim, string, error) {
	s := New(Options{Inputs: size.Inputs, Outputs: size.Outputs})
	a, err := s.Listen(addr)
	if err != nil {
		s.Close()
		return nil, "", err
	}
	return s, a.String(), nil
}

var _ drivers.RouteLog = (*Sim)(nil)

// AppliedRoutes returns the ties applied so far on the video plane (all or
// video: what Routing shows) with the connection each came over, oldest
// first (drivers.RouteLog).
func (s *Sim) AppliedRoutes() []drivers.AppliedRoute {
	var out []drivers.AppliedRoute
	for _, r := range s.Routes() {
		if r.Plane == wire.PlaneAll || r.Plane == wire.PlaneVideo {
			out = append(out, drivers.AppliedRoute{Time: r.Time, Output: r.Output, Input: r.Input, Remote: r.Remote})
		}
	}
	return out
}
