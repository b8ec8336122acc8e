package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/mosquitto"
	"understudy/fixtures/testhost"
)

const describeSite = `site: described
coordinator: manager
mdns: false
bus: {url: "%s"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 3s}
members:
  - id: manager
    roles: [manager]
    api: 127.0.0.1:0
`

const recorderDescription = `id: rec-9
roles: [recorder]
standby: true
pool: recorders
capacity: 2
disk_layout: 4x8TB
api: 127.0.0.1:0
`

func TestAnInstanceThatDescribesItselfJoinsTheSite(t *testing.T) {
	// Debian's mosquitto: these tests publish and subscribe to retained
	// topics at the same moment, which the embedded broker's library
	// (mochi-mqtt v2.7.9) races on (its issue #200) under -race.
	mq := mosquitto.Start(t)
	dir := t.TempDir()
	site := filepath.Join(dir, "site.yaml")
	os.WriteFile(site, fmt.Appendf(nil, describeSite, mq.URL), 0o644)
	desc := filepath.Join(dir, "rec-9.yaml")
	os.WriteFile(desc, []byte(recorderDescription), 0o644)

	mgr := runIn(t, nil, site, "manager")
	api := apiAddress(t, mgr)
	rec := &daemon{t: t, id: "rec-9", p: testhost.StartProcess(t, exec.Command(binary, "run", "-c", site, "--describe", desc, "--log-format", "json", "--log-level", "debug"))}
	rec.wait(20*time.Second, "msg", "bus connected")
	mgr.wait(20*time.Second, "msg", "member described itself", "member", "rec-9", "new", "true", "pool", "recorders")
	mgr.wait(20*time.Second, "msg", "member alive", "member", "rec-9")

	var st struct{ Members []statusMember }
	getJSON(t, api+"/status", &st)
	found := false
	for _, m := range st.Members {
		found = found || (m.ID == "rec-9" && m.State == "alive")
	}
	if !found {
		t.Fatalf("the coordinator's status does not list rec-9 alive: %+v", st.Members)
	}

	// It is a member like any other: its loss is noticed.
	if err := rec.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(20*time.Second, "msg", "member lost", "member", "rec-9")
}

func TestABadDescriptionIsRefusedWithItsLine(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "site.yaml")
	os.WriteFile(site, fmt.Appendf(nil, describeSite, "tcp://127.0.0.1:1"), 0o644)
	desc := filepath.Join(dir, "rec-9.yaml")
	os.WriteFile(desc, []byte("id: rec-9\nstandby: yes please\n"), 0o644)
	out, err := exec.Command(binary, "run", "-c", site, "--describe", desc).CombinedOutput()
	if err == nil || !strings.Contains(string(out), desc+":2:") {
		t.Fatalf("run with a bad description: %v\n%s", err, out)
	}
}
