package main

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/mosquitto"
)

// A fire drill, dry run and real, on every surface: the CLI's dry run shows
// the decisions and sends nothing; a real drill commanded over MQTT takes
// over for real and shows on the retained drill and state topics, in
// status and in /metrics; ending it fails the member back.
func TestFireDrillOnEverySurface(t *testing.T) {
	mq := mosquitto.Start(t)
	u, _ := url.Parse(mq.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	peer := mqttPeer{host: host, port: port}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitcher(t, l)
	name := "drill"
	site := writeSite(t, siteParams{Name: name, Bus: "url: " + mq.URL, Router: l.Addr().String()})
	backup := runIn(t, nil, site, "backup")
	runIn(t, nil, site, "main")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")
	cli := cliOf(t, site, "backup")
	retained := func(topic string) string {
		t.Helper()
		out, err := exec.Command("mosquitto_sub", peer.args("-t", topic, "-C", "1", "-W", "10")...).Output()
		if err != nil {
			t.Fatalf("mosquitto_sub %s: %v", topic, err)
		}
		return string(out)
	}

	// Dry run (the default): what the policy would do, nothing sent.
	out := cli(0, "drill", "--revert", "2m", "main")
	for _, want := range []string{"DRY-RUN DRILL: main lost", "nothing was sent", "→ route router output 1 ← input 3", "→ route router output 1 ← input 1", "failback_done main"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, out)
		}
	}
	sw.expectNoRoutes(t)
	if st := cli(0, "status"); strings.Contains(st, "FIRE DRILL") {
		t.Fatalf("a dry run left a drill running:\n%s", st)
	}
	cli(1, "drill", "--real", "backup") // the coordinator cannot drill itself

	// A real drill from show control.
	r := mqttCommand(t, peer, name, "drill", `"member": "main", "dry_run": false, "revert_after": "1h", `)
	if r["ok"] != true {
		t.Fatalf("real drill over MQTT: %v", r)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	if d := retained("understudy/" + name + "/drill"); !strings.Contains(d, `"active":true`) || !strings.Contains(d, `"member":"main"`) {
		t.Fatalf("retained drill topic: %s", d)
	}
	if s := retained("understudy/" + name + "/member/main/state"); !strings.Contains(s, `"drill":"lost"`) || !strings.Contains(s, `"covered_by":"backup"`) {
		t.Fatalf("main's retained state: %s", s)
	}
	if st := cli(0, "status"); !strings.Contains(st, "FIRE DRILL: main lost") || !strings.Contains(st, "[FIRE DRILL: lost]") {
		t.Fatalf("status during the drill:\n%s", st)
	}
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `understudy_drill_active{fault="lost",member="main"} 1`) {
		t.Fatalf("/metrics has no drill")
	}

	// Ended from the CLI: main is back and failed back.
	if out := cli(0, "drill", "--end", "main"); !strings.Contains(out, "drill_ended main") {
		t.Fatalf("drill --end:\n%s", out)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 1}, [2]int{2, 2})
	backup.wait(10*time.Second, "msg", "failback_done", "member", "main")
	if d := retained("understudy/" + name + "/drill"); !strings.Contains(d, `"active":false`) {
		t.Fatalf("retained drill topic after the drill: %s", d)
	}
}
