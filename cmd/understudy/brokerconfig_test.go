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
// member may publish only its own topics, and the site's instances (with
// their key-derived accounts) fail over through it.
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
	b, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(site, bytes.Replace(b, []byte("tcp://127.0.0.1:1"), []byte(broker.URL), 1), 0o644); err != nil {
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
	// mosquitto denied the instances nothing they needed.
	if log := broker.Process.Output(); strings.Contains(log, "Denied PUBLISH") && strings.Contains(log, "understudy-") {
		t.Errorf("mosquitto denied an instance a publish:\n%s", log)
	}
}
