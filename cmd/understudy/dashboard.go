package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"

	"understudy/runtime/instance"
)

// cmdDashboard prints the address of the dashboard of the instance on this
// machine, with its API token in the fragment (#token=…): the browser keeps
// the fragment to itself, and the page reads the token from it to unlock its
// actions. With --read-only the token is the read token: the page shows
// everything (also where the API is not on loopback) and its buttons are
// refused.
func cmdDashboard(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a apiFlags
	a.register(fs)
	readOnly := fs.Bool("read-only", false, "a link with the read token: it shows everything, its buttons are refused")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: understudy dashboard [--read-only] [flags]\n\nPrints the address of the operator's dashboard of this machine's instance,\nwith the token that unlocks its actions (--read-only: the read token, for\na link that may only watch). Open it in a browser.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	tokenPath, warning := instance.TokenPath, "The link carries the instance's API token: whoever has it may command the site."
	if *readOnly {
		tokenPath, warning = instance.ReadTokenPath, "The link carries the instance's read token: whoever has it may watch the site (its commands are refused)."
	}
	base, token, err := a.clientWith(tokenPath)
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
	fmt.Fprintln(stderr, warning)
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
