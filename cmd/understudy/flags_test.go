package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

// Flags go before, between or after the positional arguments; -- ends them.
func TestParseFlagsTakesFlagsAnywhere(t *testing.T) {
	for _, c := range []struct {
		args    []string
		pos     []string
		site    string
		standby string
		verbose bool
		err     bool
	}{
		{args: []string{"manual", "-c", "s.yaml"}, pos: []string{"manual"}, site: "s.yaml"},
		{args: []string{"-c", "s.yaml", "manual"}, pos: []string{"manual"}, site: "s.yaml"},
		{args: []string{"main", "--standby=sb", "-v", "x", "--c", "t.yaml"}, pos: []string{"main", "x"}, site: "t.yaml", standby: "sb", verbose: true},
		{args: []string{"-v=false", "a", "--standby", "sb"}, pos: []string{"a"}, standby: "sb"},
		{args: []string{"-v", "--", "-c", "y"}, pos: []string{"-c", "y"}, verbose: true},
		{args: []string{"a", "--", "b", "--"}, pos: []string{"a", "b", "--"}},
		{args: []string{"-", "-c", "--"}, pos: []string{"-"}, site: "--"},
		{args: []string{}, pos: []string{}},
		{args: []string{"a", "-c"}, err: true},
		{args: []string{"a", "--nope"}, err: true},
		{args: []string{"-h"}, err: true},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		site := fs.String("c", "", "")
		standby := fs.String("standby", "", "")
		verbose := fs.Bool("v", false, "")
		err := parseFlags(fs, c.args)
		if (err != nil) != c.err {
			t.Errorf("%q: error %v, want error %v", c.args, err, c.err)
			continue
		}
		if c.err {
			continue
		}
		if got := fs.Args(); !slices.Equal(got, c.pos) || *site != c.site || *standby != c.standby || *verbose != c.verbose {
			t.Errorf("%q: positional %q, -c %q, --standby %q, -v %v; want %q, %q, %q, %v", c.args, got, *site, *standby, *verbose, c.pos, c.site, c.standby, c.verbose)
		}
	}
}
