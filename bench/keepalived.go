//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"understudy/bench/proc"
	"understudy/fixtures/testhost"
)

// The reference for the elected coordinator: Debian's keepalived moving a
// virtual IP between two network-namespace hosts by VRRP, the tool a site
// without understudy would use to keep "the" address of a service alive.
// keepalived only moves an address: it keeps no state, has no quorum and
// fences nothing (two hosts that cannot hear each other both take the
// address).

// keepalivedVIP is the virtual address the hosts pass between them.
const keepalivedVIP = "198.18.0.100"

// keepalivedTrials kills the keepalived that holds the virtual address
// (parent and VRRP child, as a host dying) n times, at VRRP advertisement
// interval advert, and returns how long the other host took to add the
// address to its interface each time (ms). The killed one is started again
// (without preemption it stays backup) and the next trial kills the other.
func keepalivedTrials(ctx context.Context, e *env, advert string, n int) ([]float64, error) {
	bin, err := testhost.LookPath("keepalived")
	if err != nil {
		return nil, err
	}
	nw, err := testhost.New(2)
	if err != nil {
		return nil, err
	}
	defer nw.Close()
	dir, err := os.MkdirTemp("", "understudy-keepalived-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	procs := make([]*proc.Process, 2)
	pidFile := func(i int, s string) string { return filepath.Join(dir, fmt.Sprintf("h%d-%s.pid", i, s)) }
	// kill ends host i's keepalived as a host dying would: its VRRP child
	// runs in a process group of its own, so it is killed by its pid file.
	// Its pid files go too: the killed child may stay a zombie here (no
	// init reaps it), which a new keepalived takes for one still running.
	kill := func(i int) error {
		for _, f := range []string{"vrrp", "checkers"} {
			if b, err := os.ReadFile(pidFile(i, f)); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		err := procs[i].Kill()
		for _, f := range []string{"main", "vrrp", "checkers"} {
			os.Remove(pidFile(i, f))
		}
		return err
	}
	defer func() {
		for i, p := range procs {
			if p != nil {
				kill(i)
			}
		}
	}()
	start := func(i int) error {
		h := nw.Hosts[i]
		conf := filepath.Join(dir, fmt.Sprintf("h%d.conf", i))
		// Both start as backup; the higher priority becomes master first,
		// and nopreempt keeps whoever holds the address holding it.
		text := fmt.Sprintf(`global_defs {
  router_id understudy-bench-%d
  vrrp_version 3
}
vrrp_instance bench {
  state BACKUP
  interface %s
  virtual_router_id 51
  priority %d
  advert_int %s
  nopreempt
  virtual_ipaddress { %s/24 }
}
`, i, h.Iface, 150-50*i, advert, keepalivedVIP)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return err
		}
		p, err := proc.Start(h.Command(e.ctx, bin, "--dont-fork", "--log-console", "--vrrp", "-f", conf,
			"-p", pidFile(i, "main"), "-r", pidFile(i, "vrrp"), "-c", pidFile(i, "checkers")))
		if err != nil {
			return err
		}
		procs[i] = p
		return nil
	}
	for i := range procs {
		if err := start(i); err != nil {
			return nil, err
		}
	}
	holder := -1
	for holder < 0 {
		for i, h := range nw.Hosts {
			if has, err := hasAddr(h, keepalivedVIP); err != nil {
				return nil, err
			} else if has {
				holder = i
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no host took the virtual address: %w; keepalived's output:\n%s", ctx.Err(), proc.Tail(procs[0].Output(), 10))
		case <-time.After(10 * time.Millisecond):
		}
	}

	var took []float64
	for range n {
		other := 1 - holder
		time.Sleep(time.Second) // a few advertisements of steady state
		t0 := time.Now()
		if err := kill(holder); err != nil {
			return nil, err
		}
		at, err := waitAddr(ctx, nw.Hosts[other], keepalivedVIP)
		if err != nil {
			return nil, fmt.Errorf("the backup never took the address: %w; its output:\n%s", err, proc.Tail(procs[other].Output(), 10))
		}
		took = append(took, ms(at.Sub(t0)))
		// keepalived killed leaves the address on its interface: the host
		// "comes back" without it, as a rebooted one would.
		if err := delAddr(e.ctx, nw.Hosts[holder], keepalivedVIP); err != nil {
			return nil, err
		}
		if err := start(holder); err != nil {
			return nil, err
		}
		holder = other
	}
	return took, nil
}

// hasAddr reports whether host h's interface has address a.
func hasAddr(h *testhost.Host, a string) (bool, error) {
	var has bool
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, x := range addrs {
			if strings.HasPrefix(x.String(), a+"/") {
				has = true
			}
		}
		return nil
	})
	return has, err
}

// waitAddr polls host h's interface (every millisecond, in its namespace)
// until it has address a, and returns when it was seen.
func waitAddr(ctx context.Context, h *testhost.Host, a string) (time.Time, error) {
	var at time.Time
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		for {
			addrs, err := ifi.Addrs()
			if err != nil {
				return err
			}
			for _, x := range addrs {
				if strings.HasPrefix(x.String(), a+"/") {
					at = time.Now()
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	})
	return at, err
}

// delAddr removes address a (a /24) from host h's interface, if it is
// there.
func delAddr(ctx context.Context, h *testhost.Host, a string) error {
	ip, err := testhost.LookPath("ip")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, ip, "-n", h.Name, "addr", "del", a+"/24", "dev", h.Iface).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Cannot assign requested address") {
		return fmt.Errorf("ip addr del %s on %s: %w: %s", a, h.Name, err, out)
	}
	return nil
}
