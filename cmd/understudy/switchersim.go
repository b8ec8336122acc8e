package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"understudy/drivers"
	"understudy/drivers/builtin"
)

// cmdSwitcherSim runs a switcher simulator on its own, speaking the device's
// real protocol, so that a site can be commissioned and tried without the
// hardware: understudy switcher-sim KIND [--listen ADDR] [--inputs N]
// [--outputs N]. It prints where it listens, then every route as it changes,
// until Ctrl-C or SIGTERM.
func cmdSwitcherSim(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switcher-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "where it listens (host:port; port 0: any free one)")
	inputs := fs.Int("inputs", 16, "inputs of the matrix")
	outputs := fs.Int("outputs", 16, "outputs of the matrix")
	reg := builtin.Registry()
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: understudy switcher-sim [flags] %s\n", strings.Join(reg.Switchers(), "|"))
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || !slices.Contains(reg.Switchers(), fs.Arg(0)) {
		fs.Usage()
		return 2
	}
	kind, _ := reg.Kind(fs.Arg(0))
	sim, addr, err := kind.Simulate(*listen, drivers.Size{Inputs: *inputs, Outputs: *outputs})
	if err != nil {
		fmt.Fprintf(stderr, "understudy switcher-sim: %s simulator: %v\n", kind.Name, err)
		return 1
	}
	defer sim.Close()
	fmt.Fprintf(stdout, "%s simulator on %s (%d×%d); in site.yaml: drivers: {router: {kind: %s, address: %q}}\n", kind.Name, addr, *inputs, *outputs, kind.Name, addr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var shown []int
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		now := sim.Routing()
		for i, in := range now {
			if i >= len(shown) || shown[i] != in {
				fmt.Fprintf(stdout, "%s  output %d ← input %d\n", time.Now().Format("15:04:05.000"), i+1, in)
			}
		}
		shown = now
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}
