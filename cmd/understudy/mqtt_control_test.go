package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"understudy/discovery/broker"
	"understudy/fixtures/mosquitto"
	"understudy/fixtures/testhost"
)

// Show control commands the site over MQTT, with mosquitto_pub and
// mosquitto_sub as the outside client, against Debian's mosquitto and the
// embedded broker: takeover, failback, take over all, mode, a fire drill
// (real, then dry run), confirm of the drill's proposal; each command gets
// its reply on the reply topic with the request id and what followed, the
// switcher shows each takeover and failback, and a refused one says why.
func TestShowControlCommandsOverMQTT(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian package mosquitto-clients; .ci/deps installs it): %v", tool, err)
		}
	}
	brokers := map[string]func(t *testing.T) string{
		"mosquitto": func(t *testing.T) string { return mosquitto.Start(t).URL },
		"embedded": func(t *testing.T) string {
			b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return "tcp://" + b.Addr()
		},
	}
	for name, start := range brokers {
		t.Run(name, func(t *testing.T) {
			busURL := start(t)
			u, _ := url.Parse(busURL)
			host, port, _ := net.SplitHostPort(u.Host)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			sw := startSwitcher(t, l)
			siteName := "show-" + name
			site := writeSite(t, siteParams{Name: siteName, Bus: "url: " + busURL, Router: l.Addr().String(), Failback: "1h"})
			backup := runIn(t, nil, site, "backup")
			runIn(t, nil, site, "main")
			backup.wait(20*time.Second, "msg", "member alive", "member", "main")
			backup.wait(20*time.Second, "msg", "driver connected")

			command := func(verb, fields string) map[string]any {
				t.Helper()
				r := mqttCommand(t, mqttPeer{host: host, port: port}, siteName, verb, fields)
				if r["verb"] != verb {
					t.Fatalf("%s: reply %v", verb, r)
				}
				return r
			}
			ok := func(verb, fields string, want ...string) map[string]any {
				t.Helper()
				r := command(verb, fields)
				if r["ok"] != true {
					t.Fatalf("%s: refused: %v", verb, r)
				}
				for _, typ := range want {
					if recordOf(r, typ) == nil {
						t.Fatalf("%s: the reply has no %s: %v", verb, typ, r)
					}
				}
				return r
			}
			toBackup := func() { sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4}) }
			toMain := func() { sw.expectRoutes(t, 10*time.Second, [2]int{1, 1}, [2]int{2, 2}) }

			ok("takeover", `"member": "main", `, "takeover_started")
			toBackup()
			ok("failback", `"member": "main", `, "failback_started")
			toMain()
			ok("takeover_all", `"standby": "backup", `, "takeover_started")
			toBackup()
			ok("failback", `"member": "main", `, "failback_started")
			toMain()

			// Manual mode: a real fire drill on main becomes a proposal,
			// confirmed over MQTT; ending the drill fails main back.
			ok("mode", `"mode": "manual", `, "mode_changed")
			r := ok("drill", `"member": "main", "dry_run": false, "revert_after": "1h", `, "drill_started", "takeover_proposed")
			proposal := fmt.Sprint(recordOf(r, "takeover_proposed")["fields"].(map[string]any)["proposal"])
			sw.expectNoRoutes(t)
			ok("confirm", `"proposal": "`+proposal+`", `, "proposal_confirmed", "takeover_started")
			toBackup()
			r = command("confirm", `"proposal": "p99", `)
			if r["ok"] != false || !strings.Contains(fmt.Sprint(r["error"]), `no proposal "p99"`) {
				t.Fatalf("confirm of an unknown proposal: %v", r)
			}
			ok("drill_end", `"member": "main", `, "drill_ended")
			toMain()
			r = ok("drill", `"member": "main", `, "drill_dry_run")
			if d := recordOf(r, "drill_dry_run")["fields"].(map[string]any); len(d["events"].([]any)) == 0 {
				t.Fatalf("dry run found nothing: %v", d)
			}
			sw.expectNoRoutes(t)
		})
	}
}

// recordOf is the first record of type typ in a command's reply, or nil.
func recordOf(reply map[string]any, typ string) map[string]any {
	records, _ := reply["records"].([]any)
	for _, r := range records {
		if m, _ := r.(map[string]any); m["type"] == typ {
			return m
		}
	}
	return nil
}

// mqttPeer is an outside MQTT client: mosquitto_pub and mosquitto_sub with
// a broker address and credentials.
type mqttPeer struct {
	host, port, user, password string
}

func (p mqttPeer) args(extra ...string) []string {
	a := []string{"-h", p.host, "-p", p.port}
	if p.user != "" {
		a = append(a, "-u", p.user, "-P", p.password)
	}
	return append(a, extra...)
}

// mqttCommand publishes a command (fields: JSON members followed by a
// comma, or "") once its reply topic is subscribed, and returns the reply.
// It is published once: a command sent again would find its work done (a
// mode already set) and answer differently.
func mqttCommand(t *testing.T, p mqttPeer, siteName, verb, fields string) map[string]any {
	t.Helper()
	replyTopic := fmt.Sprintf("understudy/%s/command/%s/reply", siteName, verb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// -d says when the subscription is in place; stdbuf lets it say so at once.
	listener := testhost.StartProcess(t, exec.CommandContext(ctx, "stdbuf", append([]string{"-oL", "mosquitto_sub"}, p.args("-t", replyTopic, "-C", "1", "-d")...)...))
	if err := listener.WaitOutput(ctx, "received SUBACK"); err != nil {
		t.Fatal(err)
	}
	id := verb + "-0"
	payload := fmt.Sprintf(`{%s"request_id": %q}`, fields, id)
	if out, err := exec.Command("mosquitto_pub", p.args("-q", "1", "-t", "understudy/"+siteName+"/command/"+verb, "-m", payload)...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	select {
	case <-listener.Exited():
	case <-ctx.Done():
		t.Fatalf("no reply on %s within 20s", replyTopic)
	}
	// The reply is the JSON line among mosquitto_sub's debug lines.
	for _, line := range strings.Split(listener.Output(), "\n") {
		if line = strings.TrimSpace(line); !strings.HasPrefix(line, "{") {
			continue
		}
		var reply map[string]any
		if err := json.Unmarshal([]byte(line), &reply); err != nil {
			t.Fatalf("reply %q: %v", line, err)
		}
		if reply["request_id"] != id {
			t.Fatalf("reply without the request id %s: %s", id, line)
		}
		return reply
	}
	t.Fatalf("no reply in mosquitto_sub's output:\n%s", listener.Output())
	return nil
}

// With users in site.yaml, the embedded broker lets show control command,
// and refuses a client without an account or without the right to command.
func TestEmbeddedBrokerUsersDecideWhoMayCommand(t *testing.T) {
	port := freePort(t)
	host, portNum, _ := net.SplitHostPort(port)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startSwitcher(t, l)
	name := "acl"
	bus := fmt.Sprintf(`listen: %q, username: understudy, password: inst-pass, users: [{username: understudy, password: inst-pass}, `+
		`{username: showctl, password: show-pass, publish: ["understudy/%[2]s/command/+"], subscribe: ["understudy/%[2]s/#"]}, `+
		`{username: viewer, password: view-pass, publish: ["understudy/%[2]s/ping"], subscribe: ["understudy/%[2]s/member/+/state"]}]`, port, name)
	site := writeSite(t, siteParams{Name: name, Bus: bus, Router: l.Addr().String()})
	backup := runIn(t, nil, site, "backup")
	backup.wait(20*time.Second, "msg", "bus connected")

	show := mqttPeer{host: host, port: portNum, user: "showctl", password: "show-pass"}
	if r := mqttCommand(t, show, name, "mode", `"mode": "manual", `); r["ok"] != true {
		t.Fatalf("showctl's mode manual: %v", r)
	}
	// No account: refused at the door.
	out, err := exec.Command("mosquitto_pub", mqttPeer{host: host, port: portNum}.args("-t", "understudy/"+name+"/command/mode", "-m", `{"mode":"auto"}`)...).CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "not authori") {
		t.Fatalf("anonymous mosquitto_pub: %v %s", err, out)
	}
	// An account without the right to command: its command goes nowhere.
	viewer := mqttPeer{host: host, port: portNum, user: "viewer", password: "view-pass"}
	exec.Command("mosquitto_pub", viewer.args("-q", "1", "-t", "understudy/"+name+"/command/mode", "-m", `{"mode":"auto"}`)...).Run()
	backup.wait(10*time.Second, "msg", "client refused a topic", "username", "viewer")
	// Show control sees the mode still manual.
	r := mqttCommand(t, show, name, "confirm", `"proposal": "p99", `)
	if r["ok"] != false {
		t.Fatalf("confirm p99: %v", r)
	}
	state, err := exec.Command("mosquitto_sub", show.args("-t", "understudy/"+name+"/takeover", "-C", "1", "-W", "10")...).Output()
	if err != nil || !strings.Contains(string(state), `"mode":"manual"`) {
		t.Fatalf("takeover state after the viewer's attempt: %v %s", err, state)
	}
}
