package builtin

import (
	"testing"

	"understudy/drivers"
)

// Every switcher kind's simulator keeps the routes it applied with the
// connection each came over (the fault suite reads from it which elected
// coordinator routed what): a route set at the panel is there as "panel".
func TestEverySwitcherSimulatorKeepsItsRoutes(t *testing.T) {
	reg := Registry()
	for _, name := range reg.Switchers() {
		t.Run(name, func(t *testing.T) {
			k, _ := reg.Kind(name)
			sim, _, err := k.Simulate("127.0.0.1:0", drivers.Size{Inputs: 8, Outputs: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			rl, ok := sim.(drivers.RouteLog)
			if !ok {
				t.Fatalf("the %s simulator keeps no route log (drivers.RouteLog)", name)
			}
			if err := sim.SetRoute(3, 5); err != nil {
				t.Fatal(err)
			}
			got := rl.AppliedRoutes()
			if len(got) != 1 || got[0].Output != 3 || got[0].Input != 5 || got[0].Remote != "panel" || got[0].Time.IsZero() {
				t.Fatalf("applied routes %+v, want output 3 ← input 5 from the panel", got)
			}
		})
	}
}
