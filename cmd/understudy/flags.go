package main

import (
	"flag"
	"strings"
)

// parseFlags parses a subcommand's arguments with fs, taking flags before,
// between and after the positional arguments (`understudy mode manual -c
// site.yaml` as `understudy mode -c site.yaml manual`); "--" ends the flags
// (what follows is positional, even if it starts with -). Go's flag package
// alone stops at the first positional argument. Afterwards fs.Args() (and
// fs.Arg, fs.NArg) are the positional arguments, in order.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var positional []string
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			positional = append(positional, args[1:]...)
			args = nil
			continue
		case a == "-" || !strings.HasPrefix(a, "-"):
			positional = append(positional, a)
			args = args[1:]
			continue
		}
		// One flag, and its value when it takes one and is not written
		// -name=value: the flag package parses it, errors and -h included.
		n := 1
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) && len(args) > 1 {
			n = 2
		}
		if err := fs.Parse(args[:n]); err != nil {
			return err
		}
		args = args[n:]
	}
	// Leave the positional arguments where fs.Args finds them.
	return fs.Parse(append([]string{"--"}, positional...))
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
