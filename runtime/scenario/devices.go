package scenario

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"understudy/drivers"
	"understudy/runtime/config"
)

// device is a switcher simulator as a scenario drives it.
type device struct {
	kind       string
	routing    func() []int
	setRoute   func(output, input int) error
	refuse     func() // the next command is refused
	drop       func() // the connection drops on the next command
	disconnect func() // every connection drops now; nil for a device without a connection (HTTP)
	restart    func() // a power cycle: connections drop, the routing goes back to the default
	close      func() error
}

// startDevice starts the simulator the switcher kind registers, on
// loopback, and returns it with its address, or ok false for a kind that
// is not a switcher (it has no simulator).
func startDevice(reg *drivers.Registry, kind string, size Device) (*device, string, bool, error) {
	k, ok := reg.Kind(kind)
	if !ok || k.Simulate == nil {
		return nil, "", false, nil
	}
	s, addr, err := k.Simulate("127.0.0.1:0", drivers.Size{Inputs: size.Inputs, Outputs: size.Outputs})
	if err != nil {
		return nil, "", true, fmt.Errorf("%s simulator: %w", kind, err)
	}
	d := &device{
		kind: kind, routing: s.Routing, setRoute: s.SetRoute,
		refuse: func() { s.RefuseNext(1) }, drop: func() { s.DropNext(1) },
		restart: s.Restart, close: s.Close,
	}
	if c, ok := s.(drivers.ConnDropper); ok {
		d.disconnect = c.DropConnections
	}
	return d, addr, true, nil
}

// buildDrivers builds the site's drivers for a simulation: switchers talk to
// the in-process simulators their kinds register, control drivers only
// record. The members' probes are checked against the registry as the
// coordinator checks them.
func buildDrivers(site *config.Site, reg *drivers.Registry, sizes map[string]Device) (map[string]drivers.Driver, func() (map[string]drivers.Driver, error), map[string]*device, func(), error) {
	if errs := site.CheckProbes(reg); len(errs) > 0 {
		return nil, nil, nil, nil, errs
	}
	devs := map[string]*device{}
	cleanup := func() {
		for _, d := range devs {
			d.close()
		}
	}
	// makers build each driver afresh (a coordinator closes its drivers
	// when it stops; the next one, after a restart or an election, has
	// new ones); a control driver's recorder is kept, with what it sent.
	makers := map[string]func() (drivers.Driver, error){}
	for _, name := range site.DriverNames() {
		cd := site.Drivers[name]
		dev, addr, switcher, err := startDevice(reg, cd.Kind, sizes[name])
		if err != nil {
			cleanup()
			return nil, nil, nil, nil, err
		}
		decode := cd.Decode
		if switcher {
			devs[name] = dev
			decode = func(v any) error {
				if err := cd.Decode(v); err != nil {
					return err
				}
				return setField(v, "address", addr)
			}
		}
		var rec *recorder
		makers[name] = func() (drivers.Driver, error) {
			if rec != nil {
				return rec, nil
			}
			drv, err := reg.New(cd.Kind, drivers.Config{Name: name, Decode: decode})
			if err != nil {
				return nil, fmt.Errorf("%s: driver %s: %w", site.File, name, err)
			}
			if c, ok := drv.(drivers.Controller); ok && !switcher {
				rec = &recorder{name: name, real: c}
				return rec, nil
			}
			return drv, nil
		}
	}
	build := func() (map[string]drivers.Driver, error) {
		drvs := map[string]drivers.Driver{}
		for _, name := range site.DriverNames() {
			drv, err := makers[name]()
			if err != nil {
				return nil, err
			}
			drvs[name] = drv
		}
		return drvs, nil
	}
	drvs, err := build()
	if err != nil {
		cleanup()
		return nil, nil, nil, nil, err
	}
	return drvs, build, devs, cleanup, nil
}

// setField sets the string field tagged yaml:"name" of the struct v points
// to (a driver's settings).
func setField(v any, name, value string) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("settings are a %T, not a struct", v)
	}
	rv = rv.Elem()
	for i := range rv.NumField() {
		f := rv.Type().Field(i)
		if f.Tag.Get("yaml") == name && f.Type.Kind() == reflect.String {
			rv.Field(i).SetString(value)
			return nil
		}
	}
	return fmt.Errorf("settings have no %s", name)
}

// recorder stands in for a control driver in a simulation: arguments are
// checked by the real driver, and nothing is sent (no packet, no program).
type recorder struct {
	name string
	real drivers.Controller

	mu   sync.Mutex
	sent []map[string]any
}

var _ drivers.Controller = (*recorder)(nil)

func (r *recorder) Start(context.Context, drivers.Emitter) {}
func (r *recorder) Close() error                           { return nil }
func (r *recorder) Status() drivers.Status {
	return drivers.Status{Connected: true, Address: "simulated"}
}
func (r *recorder) Check(args map[string]any) error { return r.real.Check(args) }

// Do records args and answers as if the device had done it.
func (r *recorder) Do(_ context.Context, args map[string]any) (any, error) {
	if err := r.real.Check(args); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.sent = append(r.sent, args)
	r.mu.Unlock()
	return map[string]any{"simulated": true}, nil
}
