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
// embedded broker: each command gets its reply on the reply topic, with the
// request id, and a refused one says why.
func TestShowControlCommandsOverMQTT(t *testing.T) {
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Fatalf("mosquitto_pub is missing (Debian package mosquitto-clients; .ci/deps installs it): %v", err)
	}
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Fatal(err)
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
			startSwitcher(t, l)
			siteName := "show-" + name
			site := writeSite(t, siteParams{Name: siteName, Bus: "url: " + busURL, Router: l.Addr().String()})
			backup := runIn(t, nil, site, "backup")
			runIn(t, nil, site, "main")
			backup.wait(20*time.Second, "msg", "member alive", "member", "main")

			// command publishes a command until its reply arrives.
			command := func(verb, fields string) map[string]any {
				t.Helper()
				replyTopic := fmt.Sprintf("understudy/%s/command/%s/reply", siteName, verb)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				listener := testhost.StartProcess(t, exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-t", replyTopic, "-C", "1"))
				for i := 0; ; i++ {
					id := fmt.Sprintf("%s-%d", verb, i)
					payload := fmt.Sprintf(`{%s"request_id": %q}`, fields, id)
					if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "understudy/"+siteName+"/command/"+verb, "-m", payload).CombinedOutput(); err != nil {
						t.Fatalf("mosquitto_pub: %v %s", err, out)
					}
					select {
					case <-listener.Exited():
						var reply map[string]any
						line := strings.TrimSpace(listener.Output())
						if err := json.Unmarshal([]byte(line), &reply); err != nil {
							t.Fatalf("reply %q: %v", line, err)
						}
						if !strings.HasPrefix(fmt.Sprint(reply["request_id"]), verb+"-") {
							t.Fatalf("reply without the request id: %s", line)
						}
						return reply
					case <-time.After(200 * time.Millisecond):
					case <-ctx.Done():
						t.Fatalf("no reply on %s within 20s", replyTopic)
					}
				}
			}

			if r := command("mode", `"mode": "manual", `); r["ok"] != true || r["verb"] != "mode" {
				t.Fatalf("mode manual: %v", r)
			}
			backup.wait(10*time.Second, "msg", "mode_changed")
			r := command("confirm", `"proposal": "p99", `)
			if r["ok"] != false || !strings.Contains(fmt.Sprint(r["error"]), `no proposal "p99"`) {
				t.Fatalf("confirm of an unknown proposal: %v", r)
			}
		})
	}
}
