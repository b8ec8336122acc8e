package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"slices"

	"understudy/runtime/config"
	"understudy/sitekey"
)

// cmdKeys manages the site key (the file auth.key names, site.key beside
// site.yaml by default):
//
//	keys new            make the site's key (refuses to replace one)
//	keys add ID         add a new key, second: every instance accepts it
//	keys use ID         make ID the key that signs (first)
//	keys remove ID      remove a key no instance signs with any more (never
//	                    the signing key: use another one first)
//	keys list           the ids, the signing key first
//
// A change is made on one machine and copied to every machine with
// site.yaml; add, use and remove are three steps so that no instance ever
// receives a code it cannot check.
func cmdKeys(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "site.yaml", "the site file")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	site, err := config.Load(*sitePath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	path := site.KeyPath()
	verb, arg := fs.Arg(0), fs.Arg(1)
	want := map[string]int{"new": 0, "list": 0, "add": 1, "use": 1, "remove": 1}
	n, known := want[verb]
	if !known || fs.NArg() != n+1 {
		fmt.Fprintln(stderr, "usage: understudy keys new | list | add ID | use ID | remove ID  [-c site.yaml]")
		return 2
	}
	if verb == "new" {
		k, err := sitekey.NewKey("k1")
		if err == nil {
			var r *sitekey.Ring
			if r, err = sitekey.NewRing(k); err == nil {
				err = r.Write(path, false)
			}
		}
		if errors.Is(err, iofs.ErrExist) {
			err = fmt.Errorf("%s exists already: to change keys use add, use and remove", path)
		}
		if err != nil {
			fmt.Fprintln(stderr, "understudy keys:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: made key k1. Copy it with site.yaml to every machine of the site (mode 0600).\n", path)
		return 0
	}
	ring, err := sitekey.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, "understudy keys:", err)
		return 1
	}
	ids := ring.IDs()
	var keys []sitekey.Key
	switch verb {
	case "list":
		for i, id := range ids {
			role := "verifies"
			if i == 0 {
				role = "signs and verifies"
			}
			fmt.Fprintf(stdout, "%s\t%s\n", id, role)
		}
		return 0
	case "add":
		if slices.Contains(ids, arg) {
			fmt.Fprintf(stderr, "understudy keys: %s has a key %s already\n", path, arg)
			return 1
		}
		k, err := sitekey.NewKey(arg)
		if err != nil {
			fmt.Fprintln(stderr, "understudy keys:", err)
			return 1
		}
		keys = append(ring.Keys()[:1], append([]sitekey.Key{k}, ring.Keys()[1:]...)...)
	case "use", "remove":
		i := slices.Index(ids, arg)
		if i < 0 {
			fmt.Fprintf(stderr, "understudy keys: %s has no key %s (it has %v)\n", path, arg, ids)
			return 1
		}
		all := ring.Keys()
		k := all[i]
		rest := slices.Delete(all, i, i+1)
		switch {
		case verb == "use":
			keys = append([]sitekey.Key{k}, rest...)
		case len(rest) == 0:
			fmt.Fprintf(stderr, "understudy keys: %s is the only key; a site needs one\n", arg)
			return 1
		case i == 0:
			// The instances sign with it. Without it the ring's next key
			// would sign at once, and the machines that already have the
			// new file would refuse the messages of those that still sign
			// with this one: another key signs everywhere first.
			fmt.Fprintf(stderr, "understudy keys: %s signs, so it cannot be removed yet: run `understudy keys use %s -c %s` first, copy %s to every machine and restart every instance, then remove %s\n",
				arg, rest[0].ID, *sitePath, path, arg)
			return 1
		default:
			keys = rest
		}
	}
	next, err := sitekey.NewRing(keys...)
	if err == nil {
		err = next.Write(path, true)
	}
	if err != nil {
		fmt.Fprintln(stderr, "understudy keys:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: keys %v (%s signs). Copy it to every machine of the site.\n", path, next.IDs(), next.Signer())
	return 0
}
