package videohubsim

import "understudy/drivers"

// The simulator speaks the shared fault vocabulary, and can drop every
// connection at once.
var _ drivers.SwitcherSim = (*Sim)(nil)
var _ drivers.ConnDropper = (*Sim)(nil)

// Simulate starts a simulator of size ports listening on addr and returns
// it with the address it listens on: the simulator videohub.Kind registers.
func Simulate(addr string, size drivers.Size) (drivers.SwitcherSim, string, error) {
	s := New(Options{Inputs: size.Inputs, Outputs: size.Outputs})
	a, err := s.Listen(addr)
	if err != nil {
		s.Close()
		return nil, "", err
	}
	return s, a.String(), nil
}
