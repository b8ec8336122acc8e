package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/discovery/broker"
	"understudy/fixtures/mqtttest"
	"understudy/fixtures/testhost"
)

// Six clients publish 2 MiB each on a heartbeat topic at once, to the broker
// the coordinator embeds (before, six of 64 MB killed it, and the bus with
// it): each is disconnected at its packet's header, logged; the coordinator
// stays up, nobody else is disconnected, no member is lost, and a real
// failover happens right after.
func TestMalformedOversizedPublishesDisconnectOnlyTheirSenders(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	l, err := b.Listen("tcp", net.JoinHostPort(b.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitcher(t, l)
	site := writeSite(t, siteParams{Name: "bigpkt", MDNS: true, Bus: "discover: 2s", Router: l.Addr().String(), MainAPI: "0.0.0.0:0", BackupAPI: "0.0.0.0:0"})
	backup := runIn(t, b, site, "backup")
	main := runIn(t, a, site, "main")
	api := apiAddress(t, backup)
	if u, err := url.Parse(api); err == nil {
		api = "http://" + net.JoinHostPort(b.Addr.String(), u.Port())
	}
	backup.wait(30*time.Second, "msg", "embedded broker started")
	backup.wait(30*time.Second, "msg", "member alive", "member", "main", "event", "member_seen")
	backup.wait(30*time.Second, "msg", "driver connected")

	backup.mark()
	main.mark()
	big := strings.Repeat("x", 2<<20)
	if len(big) <= broker.DefaultMaxPacket {
		t.Fatalf("%d bytes is not over the limit", len(big))
	}
	var wg sync.WaitGroup
	lost := make([]error, 6)
	for i := range lost {
		c := mqtttest.Connect(t, "tcp://"+net.JoinHostPort(b.Addr.String(), "1883"), fmt.Sprintf("flooder-%d", i), mqtttest.Options{Dial: func(ctx context.Context, addr string) (net.Conn, error) { return a.Dial(ctx, "tcp", addr) }})
		wg.Go(func() {
			c.Publish("understudy/bigpkt/member/main/heartbeat", 0, false, big)
			select {
			case lost[i] = <-c.Lost:
			case <-time.After(mqtttest.Deadline):
			}
		})
	}
	wg.Wait()
	for i, err := range lost {
		if err == nil {
			t.Errorf("flooder-%d was not disconnected after publishing %d bytes", i, len(big))
		}
	}
	for i := range lost {
		backup.wait(10*time.Second, "msg", "client disconnected: packet over the size limit", "client", fmt.Sprintf("flooder-%d", i))
	}
	client := &http.Client{Transport: &http.Transport{DialContext: b.Dial}, Timeout: 10 * time.Second}
	// The API is not on loopback: it answers with the read token.
	readToken, err := os.ReadFile(filepath.Join(filepath.Dir(site), ".understudy", "bigpkt-backup.read-token"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, api+"/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(readToken)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Bus struct {
			Oversized int `json:"embedded_broker_oversized"`
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Bus.Oversized != 6 {
		t.Errorf("/status bus.embedded_broker_oversized = %d (%v), want 6", st.Bus.Oversized, err)
	}
	if backup.has("msg", "member lost") || backup.has("msg", "bus connection lost") || main.has("msg", "bus connection lost") {
		t.Fatal("the oversized publishes cost someone else its connection or a member")
	}

	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	backup.wait(5*time.Second, "msg", "member lost", "member", "main")
}
