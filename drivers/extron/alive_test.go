package extron_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"understudy/drivers/drivertest"
	"understudy/drivers/extron"
	"understudy/drivers/extron/extronsim"
)

func TestAliveAgainstTheSimulator(t *testing.T) {
	for name, opts := range map[string]extronsim.Options{
		"banner":          {},
		"password prompt": {AdminPassword: "secret"},
		"no banner":       {NoBanner: true},
	} {
		t.Run(name, func(t *testing.T) {
			s, addr := extronsim.StartLoopback(t, opts)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := extron.Alive(ctx, addr); err != nil {
				t.Fatalf("Alive(%s) = %v", addr, err)
			}
			// Q only when the device says nothing; never a password guess.
			var sent []string
			for _, c := range s.Commands() {
				sent = append(sent, c.Text)
			}
			if want := map[bool]string{true: "Q", false: ""}[opts.NoBanner]; strings.Join(sent, ",") != want {
				t.Fatalf("the probe sent %q, want %q", sent, want)
			}
		})
	}
}

func TestAliveRefusesWhatIsNotAnExtron(t *testing.T) {
	l := drivertest.Listen(t)
	go func() {
		c := l.Accept()
		c.Write([]byte("220 ftp.example.com ready\r\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := extron.Alive(ctx, l.Addr)
	if err == nil || !strings.Contains(err.Error(), "no answer to Q") {
		t.Fatalf("Alive = %v, want no answer to Q", err)
	}
}
