package main

import (
	"context"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/videohub"
	"understudy/fixtures/testhost"
)

// understudy switcher-sim runs a switcher that speaks the real protocol: the
// Videohub driver connects to the address it prints and routes on it, and the
// simulator prints the route; SIGTERM stops it.
func TestSwitcherSimIsARealSwitcherToTryASiteAgainst(t *testing.T) {
	p := testhost.StartProcess(t, exec.Command(binary, "switcher-sim", "--inputs", "8", "videohub", "--outputs", "4"))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.WaitOutput(ctx, "simulator on"); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	m := regexp.MustCompile(`videohub simulator on (127\.0\.0\.1:\d+) \(8×4\)`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("no address in %q", p.Output())
	}
	d, err := videohub.Kind.New(drivertest.Config("router", "address: "+m[1]))
	if err != nil {
		t.Fatal(err)
	}
	ev := drivertest.NewEvents(t)
	d.Start(ctx, ev.Emit)
	t.Cleanup(func() { d.Close() })
	ev.WaitFor(drivers.EventConnected)
	if err := d.(drivers.Router).Route(ctx, 2, 7); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput(ctx, "output 2 ← input 7"); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-ctx.Done():
		t.Fatal("switcher-sim did not stop on SIGTERM")
	}
}
