package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
)

// cmdDashboard prints the address of the dashboard of the instance on this
// machine, with its API token in the fragment (#token=…): the browser keeps
// the fragment to itself, and the page reads the token from it to unlock its
// actions.
func cmdDashboard(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a apiFlags
	a.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: understudy dashboard [flags]\n\nPrints the address of the operator's dashboard of this machine's instance,\nwith the token that unlocks its actions. Open it in a browser.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	base, token, err := a.client()
	if err != nil {
		fmt.Fprintln(stderr, "understudy dashboard:", err)
		return 1
	}
	link, err := dashboardURL(base, token)
	if err != nil {
		fmt.Fprintln(stderr, "understudy dashboard:", err)
		return 1
	}
	fmt.Fprintln(stdout, link)
	fmt.Fprintln(stderr, "The link carries the instance's API token: whoever has it may command the site.")
	return 0
}

// dashboardURL is the dashboard's address on the API at base, with the token
// in the fragment.
func dashboardURL(base, token string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("API address %q: %w", base, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("API address %q: want http://host:port", base)
	}
	u.Path, u.RawQuery = "/dashboard/", ""
	u.Fragment = "token=" + token
	return u.String(), nil
}
