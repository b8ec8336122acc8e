//go:build linux

package faults

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"understudy/fixtures/testhost"
)

// ipTimeout bounds one ip command.
const ipTimeout = 10 * time.Second

// netFaults cuts and heals paths between test hosts with blackhole routes
// inside each namespace (there is no iptables or nft here): a route
// `blackhole ADDR/32` makes the host drop everything it would send to ADDR,
// so with one on each side no packet goes either way, on new connections
// and established ones alike.
type netFaults struct {
	ip string
}

func newNetFaults() (*netFaults, error) {
	ip, err := testhost.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("network faults: %w", err)
	}
	return &netFaults{ip: ip}, nil
}

func (n *netFaults) run(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cut makes every host of a unable to reach every host of b and back.
// What was added before an error is removed again.
func (n *netFaults) cut(a, b []*testhost.Host) error {
	var done [][2]*testhost.Host
	for _, x := range a {
		for _, y := range b {
			for _, p := range [][2]*testhost.Host{{x, y}, {y, x}} {
				if err := n.run("-n", p[0].Name, "route", "add", "blackhole", p[1].Addr.String()+"/32"); err != nil {
					return errors.Join(err, n.remove(done))
				}
				done = append(done, p)
			}
		}
	}
	return nil
}

// heal removes what cut added.
func (n *netFaults) heal(a, b []*testhost.Host) error {
	var all [][2]*testhost.Host
	for _, x := range a {
		for _, y := range b {
			all = append(all, [2]*testhost.Host{x, y}, [2]*testhost.Host{y, x})
		}
	}
	return n.remove(all)
}

func (n *netFaults) remove(pairs [][2]*testhost.Host) error {
	var errs []error
	for _, p := range pairs {
		if err := n.run("-n", p[0].Name, "route", "del", "blackhole", p[1].Addr.String()+"/32"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
