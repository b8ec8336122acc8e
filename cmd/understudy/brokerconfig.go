package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"understudy/runtime/brokerconf"
	"understudy/runtime/config"
	"understudy/sitekey"
)

// cmdBrokerConfig writes an external broker's configuration for a site with
// a key (today: Debian's mosquitto): accounts, ACLs, listener.
func cmdBrokerConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "site.yaml", "the site file")
	mosquitto := fs.Bool("mosquitto", false, "write the files for Debian's mosquitto (2.0 or later)")
	out := fs.String("out", ".", "the `folder` to write them to (where mosquitto will read them)")
	listen := fs.String("listen", "1883", "the listener: `port [address]`")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if !*mosquitto || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: understudy broker-config --mosquitto [-c site.yaml] [--out DIR] [--listen \"1883 0.0.0.0\"]")
		return 2
	}
	site, err := config.Load(*sitePath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ring, err := sitekey.Load(site.KeyPath())
	if err != nil {
		fmt.Fprintln(stderr, "understudy broker-config:", err)
		return 1
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintln(stderr, "understudy broker-config:", err)
		return 1
	}
	files, err := brokerconf.Mosquitto(site, ring, dir, *listen)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		mode := os.FileMode(0o644)
		if name == brokerconf.PasswordFile {
			mode = 0o600
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, files[name], mode); err != nil {
			fmt.Fprintln(stderr, "understudy broker-config:", err)
			return 1
		}
		if err := os.Chmod(path, mode); err != nil {
			fmt.Fprintln(stderr, "understudy broker-config:", err)
			return 1
		}
		fmt.Fprintln(stdout, path)
	}
	// mosquitto started as root (Debian's service) reads its files as its
	// own user: a password file of root's, mode 0600, stops it with
	// `Error: Unable to open pwfile`. Written again, the file keeps its owner.
	fmt.Fprintf(stdout, `mosquitto started as root (as Debian's service is) reads these files as the user mosquitto: give it the password file, then reload:
  chown mosquitto: %s
  systemctl reload mosquitto
Include %s from mosquitto.conf (Debian's reads every *.conf in /etc/mosquitto/conf.d). Run this again, and reload, when site.yaml or the key changes.
`, filepath.Join(dir, brokerconf.PasswordFile), filepath.Join(dir, brokerconf.ConfFile))
	return 0
}
