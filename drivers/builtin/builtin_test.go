package builtin_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"understudy/drivers"
	"understudy/drivers/builtin"
	"understudy/drivers/drivertest"
)

// A switcher kind is whole: every registered kind whose driver is a
// drivers.Router registers a simulator and a liveness check, and every kind
// that registers a simulator is a switcher.
func TestEverySwitcherKindRegistersItsSimulatorAndLivenessCheck(t *testing.T) {
	reg := builtin.Registry()
	var routers []string
	for _, name := range reg.Kinds() {
		k, _ := reg.Kind(name)
		// A switcher's settings need only its address; a control kind's
		// need more, and are refused here without a connection.
		d, err := k.New(drivertest.Config("router", "address: 127.0.0.1:1\n"))
		if err != nil {
			continue
		}
		if _, ok := d.(drivers.Router); ok {
			routers = append(routers, name)
			if k.Simulate == nil || k.Alive == nil {
				t.Errorf("%s is a switcher kind without a simulator (Simulate) or a liveness check (Alive)", name)
			}
		}
	}
	if len(routers) == 0 {
		t.Fatal("no switcher kind is registered")
	}
	if got := reg.Switchers(); !slices.Equal(got, routers) {
		t.Errorf("Switchers() = %v; the kinds whose drivers are routers are %v", got, routers)
	}
	for _, name := range reg.Switchers() {
		if !slices.Contains(reg.Probes(), name) {
			t.Errorf("Probes() = %v lacks the switcher %s", reg.Probes(), name)
		}
	}
}

// Every registered switcher kind's simulator, started at an address with a
// size, is a device its real driver connects to, reads and routes on; the
// faults of the shared vocabulary reach the driver as a device's would (a
// refusal, a dropped connection, a power cycle); and the kind's liveness
// check finds the simulator alive, and not once it is gone.
func TestEverySwitcherKindsDriverRoutesOnItsSimulator(t *testing.T) {
	reg := builtin.Registry()
	for _, name := range reg.Switchers() {
		t.Run(name, func(t *testing.T) {
			k, _ := reg.Kind(name)
			ctx := drivertest.Context(t)
			sim, addr, err := k.Simulate("127.0.0.1:0", drivers.Size{Inputs: 12, Outputs: 6})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			if err := k.Alive(ctx, addr); err != nil {
				t.Errorf("Alive(%s) = %v", addr, err)
			}

			r, ev := drivertest.Start[drivers.Router](t, k.New, "address: "+addr+"\n")
			ev.WaitFor(drivers.EventConnected)
			if in, out := r.Size(); in != 12 || out != 6 {
				t.Errorf("the driver reads a %d×%d device, want the simulator's 12×6", in, out)
			}
			if got, want := r.Routing(), sim.Routing(); !slices.Equal(got, want) {
				t.Errorf("the driver reads routing %v, the simulator has %v", got, want)
			}
			if err := r.Route(ctx, 1, 3); err != nil {
				t.Fatalf("Route(1, 3): %v", err)
			}
			if got := sim.Routing()[0]; got != 3 {
				t.Fatalf("after Route(1, 3) the simulator shows input %d on output 1", got)
			}

			sim.RefuseNext(1)
			if err := r.Route(ctx, 2, 4); !errors.Is(err, drivers.ErrRefused) {
				t.Errorf("a refused route: %v, want ErrRefused", err)
			}
			if got := sim.Routing()[1]; got == 4 {
				t.Error("the refused route was applied")
			}

			sim.DropNext(1)
			if err := r.Route(ctx, 2, 4); err == nil || errors.Is(err, drivers.ErrRefused) {
				t.Errorf("a route whose connection dropped: %v, want the connection lost", err)
			}
			ev.WaitFor(drivers.EventDisconnected)
			ev.WaitFor(drivers.EventConnected)
			if err := r.Route(ctx, 2, 4); err != nil {
				t.Fatalf("Route(2, 4) after reconnecting: %v", err)
			}
			if got := sim.Routing()[1]; got != 4 {
				t.Fatalf("after Route(2, 4) the simulator shows input %d on output 2", got)
			}

			drivertest.RouterSeesADeviceRestart(t, r, ev, sim)

			if err := sim.Close(); err != nil {
				t.Fatal(err)
			}
			gone, cancel := context.WithTimeout(ctx, drivertest.Deadline/10)
			defer cancel()
			if err := k.Alive(gone, addr); err == nil {
				t.Error("Alive succeeds once the simulator is closed")
			}
		})
	}
}
