// Command understudy is the one binary of an understudy site: every machine
// runs `understudy run`; installers use `check` and `demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	_ "time/tzdata" // site time zones work on machines without tzdata

	"understudy/drivers/builtin"
	"understudy/runtime/config"
	"understudy/runtime/instance"
	"understudy/runtime/policy"
)

// usageFormat is the usage text; %s is the switcher kinds.
const usageFormat = `understudy — failover automation for AV, media-server and recording sites

Usage:
  understudy run   -c site.yaml [--member ID]   run this machine's instance
  understudy check -c site.yaml                 check site.yaml and the policy (exit 1 on errors)
  understudy keys new|list|add|use|remove [ID]  the site key: made once, copied with site.yaml
  understudy broker-config --mosquitto          accounts, ACLs and listener for Debian's mosquitto
  understudy status                             the site as this machine's instance sees it
  understudy dashboard [--read-only]            the address of this machine's dashboard, with its token (or the read token)
  understudy takeover MEMBER | --all STANDBY    operator commands, carried out by the coordinator
  understudy failback MEMBER                      (through this machine's instance; its token in
  understudy mode auto|manual                      the state folder authorises them)
  understudy confirm|reject PROPOSAL
  understudy reassert [DRIVER [OUTPUT]]          route a switcher's duty outputs again as the site says
  understudy leader transfer [MEMBER]            hand the elected coordinator's lead on (maintenance)
  understudy candidates admit|remove MEMBER      admit a candidate to the coordinator group as the raft server
                                                 it is now (its raft state was lost, or it is new), or take it out
  understudy command VERB [KEY=VALUE ...]        any command, the policy's own too (VALUE: JSON, else text)
  understudy drill [--real] MEMBER | --end MEMBER  fire drill: a dry run (what the policy would do, nothing
                                                 sent), or --real with automatic revert (--revert 5m)
  understudy simulate [-c site.yaml] FILE       run a scenario on the virtual clock (exit 1 if an expectation fails)
  understudy test [DIR]                         run every scenario under DIR (scenarios/*.yaml beside the policies)
  understudy replay [-c site.yaml] JOURNAL [P]  run a recorded journal through the policy (or P) and show changed decisions
  understudy defs                               print the Lua editor definitions (LuaLS) of the policy API
  understudy demo                               a whole simulated site on this machine
  understudy faults -c site.yaml [--schedules N] [--seed S] [--duration D]
                                                seeded fault schedules against the site's real instances on
                                                test hosts, with a checker (Linux, root; exit 1 on a violation)
  understudy switcher-sim KIND [--listen ADDR]  a switcher simulator (%s) to try a site against
  understudy version                            print the version

Flags may come before or after a command's arguments (understudy mode manual
-c site.yaml); -- ends them. Run "understudy COMMAND -h" for the options of a
command.
`

// usage returns the usage text, with the switcher kinds of the registry.
func usage() string {
	return fmt.Sprintf(usageFormat, strings.Join(builtin.Registry().Switchers(), ", "))
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "keys":
		return cmdKeys(args[1:], stdout, stderr)
	case "broker-config":
		return cmdBrokerConfig(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "dashboard":
		return cmdDashboard(args[1:], stdout, stderr)
	case "switcher-sim":
		return cmdSwitcherSim(args[1:], stdout, stderr)
	case "takeover", "failback", "mode", "confirm", "reject", "drill", "reassert", "command", "leader", "candidates":
		return cmdControl(args[0], args[1:], stdout, stderr)
	case "simulate":
		return cmdSimulate(args[1:], stdout, stderr)
	case "test":
		return cmdTest(args[1:], stdout, stderr)
	case "replay":
		return cmdReplay(args[1:], stdout, stderr)
	case "defs":
		fmt.Fprint(stdout, policy.Definitions())
		return 0
	case "faults":
		return cmdFaults(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "understudy", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	default:
		fmt.Fprintf(stderr, "understudy: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
}

// version is the module version stamped by the Go toolchain, or the VCS
// revision of a development build.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sitePath := fs.String("c", "site.yaml", "the site file")
	member := fs.String("member", "", "this machine's member id (default: $UNDERSTUDY_MEMBER, else the host name)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	describe := fs.String("describe", "", "a file describing this member (a members: entry of site.yaml); it replaces or adds its entry, and the other instances learn it over the bus")
	stateDir := fs.String("state", "", "folder of this instance's state file (default: $STATE_DIRECTORY, else site.yaml's state_dir)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` when it stops on SIGTERM or Ctrl-C (for go tool pprof)")
	memProfile := fs.String("memprofile", "", "write a heap profile to `file` when it stops on SIGTERM or Ctrl-C (for go tool pprof)")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "understudy run: unexpected argument %q: run takes only flags (understudy run -h)\n", fs.Arg(0))
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "understudy run: cpu profile:", err)
			return 2
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		defer func() {
			f, err := os.Create(*memProfile)
			if err == nil {
				err = errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
			}
			if err != nil {
				fmt.Fprintln(stderr, "understudy run: heap profile:", err)
			}
		}()
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "understudy run:", err)
		return 2
	}
	if *stateDir == "" {
		*stateDir = os.Getenv("STATE_DIRECTORY") // set by systemd's StateDirectory=
	}
	site, err := config.Load(*sitePath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *describe != "" {
		m, err := config.LoadMember(*describe)
		if err == nil {
			_, err = site.Describe(m)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if *member == "" {
			*member = m.ID
		}
	}
	self, err := whoAmI(site, *member)
	if err != nil {
		fmt.Fprintln(stderr, "understudy run:", err)
		return 1
	}
	logger = logger.With("instance", self)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	err = instance.Run(ctx, instance.Options{Site: site, Self: self, Registry: builtin.Registry(), Logger: logger, Version: version(), Reload: reload, StateDir: *stateDir, Described: *describe != ""})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// whoAmI picks this machine's member id: the flag, $UNDERSTUDY_MEMBER, or the
// host name (without domain) when it is a member id.
func whoAmI(site *config.Site, flagValue string) (string, error) {
	candidates := []struct{ value, from string }{{flagValue, "--member"}, {os.Getenv("UNDERSTUDY_MEMBER"), "UNDERSTUDY_MEMBER"}}
	for _, c := range candidates {
		if c.value == "" {
			continue
		}
		if _, ok := site.Member(c.value); !ok {
			return "", fmt.Errorf("%s %q is not a member of %s (members: %s)", c.from, c.value, site.File, strings.Join(site.MemberIDs(), ", "))
		}
		return c.value, nil
	}
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	if _, ok := site.Member(host); ok {
		return host, nil
	}
	return "", fmt.Errorf("which member is this machine? Pass --member ID or set UNDERSTUDY_MEMBER (members: %s; host name %q is none of them)", strings.Join(site.MemberIDs(), ", "), host)
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, errors.New("log format: want text or json")
	}
}
