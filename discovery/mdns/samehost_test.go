//go:build linux

package mdns_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"understudy/discovery/mdns"
	"understudy/fixtures/testhost"
)

// advertiserEnv, set to "instance service port", makes the test binary an
// advertiser (see TestMain): another program on the same host.
const advertiserEnv = "UNDERSTUDY_MDNS_TEST_ADVERTISER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(advertiserEnv); spec != "" {
		os.Exit(runAdvertiser(spec))
	}
	os.Exit(m.Run())
}

// runAdvertiser advertises the service described by spec until SIGTERM or
// SIGKILL, saying "advertising" once it does.
func runAdvertiser(spec string) int {
	var svc mdns.Service
	if _, err := fmt.Sscan(spec, &svc.Instance, &svc.Service, &svc.Port); err != nil {
		fmt.Fprintln(os.Stderr, "advertiser:", err)
		return 2
	}
	svc.TXT = map[string]string{"site": "hall", "member": "backup"}
	adv, err := mdns.Advertise(svc, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "advertiser:", err)
		return 1
	}
	fmt.Println("advertising")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	adv.Close()
	return 0
}

// Two programs on one machine: a broker's advertisement in one that started
// first and stays, and a member in another that looks for it once the
// announcements are over (so only an answer to its own query can tell it),
// then again as if restarted. Browse asks on the host's interfaces, not
// where the routing table sends 224.0.0.0/4: with that route on lo, or
// with none, it used to find nothing (a query out of lo, where no responder
// answers) or to fail (joining the group needed the route).
func TestBrowseFromTheAdvertisersHost(t *testing.T) {
	for _, tc := range []struct{ name, route string }{
		{"route on lo", "replace 224.0.0.0/4 dev lo"},
		{"no route", "del 224.0.0.0/4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testhost.NewNetwork(t, 1).Hosts[0]
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			args := append([]string{"route"}, strings.Fields(tc.route)...)
			if out, err := h.Command(ctx, "ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
			listener := listenPeer(t, h, 5353)
			cmd := h.Command(ctx, os.Args[0])
			cmd.Env = append(os.Environ(), advertiserEnv+"=hall-broker _mqtt._tcp "+strconv.Itoa(21883))
			adv := h.Start(t, cmd)
			if err := adv.WaitOutput(ctx, "advertising"); err != nil {
				t.Fatal(err)
			}
			// Both announcements (RFC 6762 §8.3) are over.
			for range 2 {
				listener.next(t, ctx, h.Addr, "an announcement", announcement)
			}

			for _, attempt := range []string{"first", "restarted"} {
				var found mdns.Entry
				start := time.Now()
				err := h.Do(func() error {
					fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					var err error
					found, err = mdns.Find(fctx, "_mqtt._tcp", time.Second, func(e mdns.Entry) bool { return e.TXT["site"] == "hall" }, testLogger(t))
					return err
				})
				if err != nil {
					t.Fatalf("%s browser: %v", attempt, err)
				}
				if found.Instance != "hall-broker" || !found.Addr.Equal(h.Addr) || found.Port != 21883 || found.TXT["member"] != "backup" {
					t.Fatalf("%s browser found %+v", attempt, found)
				}
				// Found in its first round (a second).
				if took := time.Since(start); took > 1500*time.Millisecond {
					t.Errorf("%s browser took %v", attempt, took)
				}
			}
		})
	}
}
