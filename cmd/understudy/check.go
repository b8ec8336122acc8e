package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"understudy/drivers/builtin"
	"understudy/runtime/config"
	"understudy/runtime/engine"
)

// cmdCheck validates site.yaml, builds the drivers (without connecting) and
// loads the policy. Problems are printed as file:line: message; exit 1.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "site.yaml", "the site file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	site, err := config.Load(*sitePath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	drvs, err := site.BuildDrivers(builtin.Registry())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	handlers, err := engine.CheckPolicy(site, drvs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var kinds []string
	for _, name := range site.DriverNames() {
		kinds = append(kinds, name+" ("+site.Drivers[name].Kind+")")
	}
	fmt.Fprintf(stdout, "%s: ok — site %s, %d members (coordinator %s), drivers: %s\n", site.File, site.Name, len(site.Members), site.Coordinator, orNone(kinds))
	if site.PolicyPath() != "" {
		var hs []string
		for _, h := range handlers {
			hs = append(hs, h.Event)
		}
		fmt.Fprintf(stdout, "%s: ok — handles %s\n", site.PolicyPath(), orNone(hs))
	}
	return 0
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
