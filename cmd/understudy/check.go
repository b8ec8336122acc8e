package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"understudy/runtime/coordinator"

	"understudy/drivers/builtin"
	"understudy/runtime/config"
	"understudy/runtime/policy"
	"understudy/sitekey"
)

// cmdCheck validates site.yaml, builds the drivers (without connecting),
// reviews the site as commissioning would (members no standby can cover,
// pools too small for their worst case, timings at odds: config.Commission),
// loads the policy and looks for calls to functions the module does not
// have. Problems are printed as file:line: message; exit 1 on any but
// warnings.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "site.yaml", "the site file")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "understudy check: unexpected argument %q: name the site with -c site.yaml\n", fs.Arg(0))
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
	failed := false
	for _, e := range site.Commission() {
		fmt.Fprintln(stderr, e)
		failed = failed || !e.Warning
	}
	authLine := ""
	if mode := site.AuthMode(); mode == config.AuthOff {
		hint := fmt.Sprintf("make a site key with `understudy keys new -c %s`", site.File)
		if site.Auth.Mode == config.AuthOff {
			hint = "auth.mode is off"
		}
		if site.Elected() {
			// The candidates authenticate each other with the key: run
			// refuses to start without it.
			fmt.Fprintf(stderr, "%s: error: the candidates elect the coordinator and authenticate each other with the site key, and there is none (%s)\n", site.File, hint)
			failed = true
		} else {
			fmt.Fprintf(stderr, "%s: warning: auth is off: anyone on the bus can speak for a member (%s)\n", site.File, hint)
		}
	} else if ring, err := sitekey.Load(site.KeyPath()); err != nil {
		fmt.Fprintf(stderr, "%s: auth: %s: %v\n", site.File, mode, err)
		failed = true
	} else {
		authLine = fmt.Sprintf(", auth %s (key %s of %v)", mode, ring.Signer(), ring.IDs())
	}
	handlers, err := coordinator.CheckPolicy(site, drvs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if site.PolicyPath() != "" {
		problems, err := policy.Lint(filepath.Dir(site.PolicyPath()))
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		for _, p := range problems {
			fmt.Fprintln(stderr, p)
			failed = true
		}
		if site.Elected() {
			// Another candidate's policy starts with a fresh Lua state.
			globals, err := policy.Globals(filepath.Dir(site.PolicyPath()))
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			for _, p := range globals {
				fmt.Fprintf(stderr, "%s:%d: warning: %s\n", p.File, p.Line, p.Msg)
			}
		}
	}
	if failed {
		return 1
	}
	var kinds []string
	for _, name := range site.DriverNames() {
		kinds = append(kinds, name+" ("+site.Drivers[name].Kind+")")
	}
	fmt.Fprintf(stdout, "%s: ok — site %s, %d members (%s), drivers: %s%s\n", site.File, site.Name, len(site.Members), coordinatorLine(site), orNone(kinds), authLine)
	if site.PolicyPath() != "" {
		var hs []string
		for _, h := range handlers {
			hs = append(hs, h.Event)
		}
		fmt.Fprintf(stdout, "%s: ok — handles %s\n", site.PolicyPath(), orNone(hs))
	}
	return 0
}

// coordinatorLine says who coordinates: the one member, or the candidates
// that elect it, witnesses marked.
func coordinatorLine(site *config.Site) string {
	if !site.Elected() {
		return "coordinator " + site.Coordinator
	}
	var names []string
	for _, id := range site.Candidates {
		if m, ok := site.Member(id); ok && m.Witness {
			id += " (witness)"
		}
		names = append(names, id)
	}
	return "coordinator elected among " + strings.Join(names, ", ")
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
