package kramersim

import "understudy/drivers"

// The simulator speaks the shared fault vocabulary, and can drop every
// connection at once.
var _ drivers.SwitcherSim = (*Sim)(nil)
var _ drivers.ConnDropper = (*Sim)(nil)

// Simulate starts a simulator of size ports listening on addr and returns
// it with the address it listens on: the simulator kramer.Kind registers.
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

// AppliedRoutes returns the routes applied so far on the first layer (the
// one Routing shows) with the connection each came over, oldest first
// (drivers.RouteLog).
func (s *Sim) AppliedRoutes() []drivers.AppliedRoute {
	var out []drivers.AppliedRoute
	for _, r := range s.Routes() {
		if r.Layer == s.opts.Layers[0] {
			out = append(out, drivers.AppliedRoute{Time: r.Time, Output: r.Output, Input: r.Input, Remote: r.Remote})
		}
	}
	return out
}
