package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/mosquitto"
	"understudy/fixtures/mqtttest"
)

// Debian's mosquitto with the files broker-config writes enforces what the
// embedded broker enforces on a site with a key: no anonymous client, a
// member may publish only its own topics, the site's instances (with
// their key-derived accounts) fail over through it, and show control with a
// reply_prefix of its own gets the coordinator's replies there.
func TestMosquittoWithTheGeneratedConfigurationIsClosedAndFailsOver(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sw := startSwitcher(t, l)
	site := writeSite(t, siteParams{Name: "mosq", Bus: "url: tcp://127.0.0.1:1", Router: l.Addr().String()})
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", site}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
	}
	// keys new loads the site, which without a key needs an account for
	// the instances among the users: show control's comes after the key.
	const showctl = `users: [{username: showctl, password: show-pass, reply_prefix: showctl/replies/, publish: ["understudy/mosq/command/+"], subscribe: ["showctl/replies/#", "understudy/mosq/#"]}]`
	b, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(site, bytes.Replace(b, []byte("url: tcp://127.0.0.1:1"), []byte("url: tcp://127.0.0.1:1, "+showctl), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	files := t.TempDir()
	broker := mosquitto.StartConfigured(t, func(host string, port int) string {
		out.Reset()
		errs.Reset()
		if code := run([]string{"broker-config", "--mosquitto", "-c", site, "--out", files, "--listen", fmt.Sprintf("%d %s", port, host)}, &out, &errs); code != 0 {
			t.Fatalf("broker-config: %s", errs.String())
		}
		conf, err := os.ReadFile(filepath.Join(files, "understudy.conf"))
		if err != nil {
			t.Fatal(err)
		}
		// The test runs as root: mosquitto would drop to its own user, who
		// cannot read the test's folders.
		return string(conf) + "user root\npersistence false\nlog_dest stderr\nlog_type all\nconnection_messages true\n"
	})
	if fi, err := os.Stat(filepath.Join(files, "understudy.passwd")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the password file: %v %v", fi.Mode(), err)
	}
	if err := os.WriteFile(site, bytes.Replace(b, []byte("url: tcp://127.0.0.1:1"), []byte("url: "+broker.URL+", "+showctl), 1), 0o644); err != nil {
		t.Fatal(err)
	}

	if _, err := mqtttest.TryConnect(t, broker.URL, "anonymous", mqtttest.Options{}); err == nil {
		t.Fatal("mosquitto let an anonymous client in")
	}
	backup := runIn(t, nil, site, "backup")
	main := runIn(t, nil, site, "main")
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	runIn(t, nil, site, "main")
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})
	// Show control asks for its reply under its reply_prefix, and gets it.
	host, port, _ := net.SplitHostPort(broker.Addr)
	show := mqttPeer{host: host, port: port, user: "showctl", password: "show-pass"}
	raw := mqttExchange(t, show, "understudy/mosq/command/mode", []byte(`{"mode": "auto", "request_id": "m-1", "reply_to": "showctl/replies/cue/1"}`), "showctl/replies/cue/1")
	if r := decodeReply(t, []byte(raw)); r["ok"] != true || r["request_id"] != "m-1" {
		t.Errorf("reply under showctl/replies/: %s", raw)
	}
	// mosquitto denied the instances nothing they needed.
	if log := broker.Process.Output(); strings.Contains(log, "Denied PUBLISH") && strings.Contains(log, "understudy-") {
		t.Errorf("mosquitto denied an instance a publish:\n%s", log)
	}
}

// broker-config prints the command that lets mosquitto read the password
// file: started as root, it reads its files as its own user, and a
// password file of root's (mode 0600) stops it with `Error: Unable to open
// pwfile`.
func TestBrokerConfigPrintsTheChownOfThePasswordFile(t *testing.T) {
	site := writeSite(t, siteParams{Name: "chown", Bus: "url: tcp://127.0.0.1:1", Router: "127.0.0.1:9"})
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", site}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
	}
	files := t.TempDir()
	out.Reset()
	if code := run([]string{"broker-config", "--mosquitto", "-c", site, "--out", files, "--listen", "21883 127.0.0.1"}, &out, &errs); code != 0 {
		t.Fatalf("broker-config: exit %d\n%s", code, errs.String())
	}
	passwd := filepath.Join(files, "understudy.passwd")
	for _, want := range []string{
		passwd + "\n",
		"reads these files as the user mosquitto",
		"\n  chown mosquitto: " + passwd + "\n",
		"\n  systemctl reload mosquitto\n",
		"Include " + filepath.Join(files, "understudy.conf") + " from mosquitto.conf",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("broker-config does not say %q:\n%s", want, out.String())
		}
	}
	if fi, err := os.Stat(passwd); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the password file: %v %v", fi.Mode(), err)
	}
}
