package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/fixtures/mosquitto"
)

// configSite is a coordinator and two processing peers that share one
// configuration bundle (Pixometry-style coordinated peers).
const configSite = `site: %s
coordinator: manager
mdns: false
bus: {url: "%s"}
heartbeat: {interval: 100ms, lost_after: 500ms, startup_grace: 3s}
members:
  - id: manager
    roles: [manager]
    api: 127.0.0.1:0
  - id: p1
    roles: [processor]
    api: 127.0.0.1:0
    duties: {config: {file: %s, bundle: processing}}
  - id: p2
    roles: [processor]
    api: 127.0.0.1:0
    duties: {config: {file: %s, bundle: processing}}
`

type configPeers struct {
	t               *testing.T
	site            string
	file1, file2    string
	manager, p1, p2 *daemon
}

func (c *configPeers) stop(d *daemon) { c.t.Helper(); stopDaemon(c.t, d) }

// stopDaemon stops a daemon gracefully (SIGTERM) and waits for it to exit.
func stopDaemon(t *testing.T, d *daemon) {
	t.Helper()
	if err := d.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop", d.id)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".edit"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFile waits until path holds want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	eventually.True(t, 20*time.Second, fmt.Sprintf("%s holds %q", path, want), func() (bool, string) {
		got, _ := os.ReadFile(path)
		return string(got) == want, fmt.Sprintf("%q", got)
	})
}

func TestAnOlderConfigurationStartedFirstNeverOverwritesANewerOne(t *testing.T) {
	// Debian's mosquitto: these tests publish and subscribe to retained
	// topics at the same moment, which the embedded broker's library
	// (mochi-mqtt v2.7.9) races on (its issue #200) under -race.
	mq := mosquitto.Start(t)
	dir := t.TempDir()
	c := &configPeers{t: t, file1: filepath.Join(dir, "p1.conf"), file2: filepath.Join(dir, "p2.conf")}
	c.site = filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(c.site, fmt.Appendf(nil, configSite, "cfg", mq.URL, c.file1, c.file2), 0o644); err != nil {
		t.Fatal(err)
	}
	write(t, c.file1, "threads=4\n")
	write(t, c.file2, "threads=4\n")

	// Everybody up with the same settings: version 1.
	c.manager = runIn(t, nil, c.site, "manager")
	c.p1 = runIn(t, nil, c.site, "p1")
	c.p2 = runIn(t, nil, c.site, "p2")
	c.manager.wait(20*time.Second, "msg", "configuration accepted", "bundle", "processing")

	// p1 goes away; meanwhile the settings are changed twice on p2.
	c.stop(c.p1)
	write(t, c.file2, "threads=8\n")
	c.manager.wait(20*time.Second, "msg", "configuration accepted", "from", "p2", "version", "2")
	write(t, c.file2, "threads=16\n")
	c.manager.wait(20*time.Second, "msg", "configuration accepted", "from", "p2", "version", "3")
	c.stop(c.p2)
	c.stop(c.manager)

	// The old p1 starts first, with the coordinator: it must receive the
	// newer settings, not spread its old ones.
	c.manager = runIn(t, nil, c.site, "manager")
	c.p1 = runIn(t, nil, c.site, "p1")
	c.manager.wait(20*time.Second, "msg", "member has an older configuration; sending it the newest", "member", "p1")
	waitFile(t, c.file1, "threads=16\n")
	c.p2 = runIn(t, nil, c.site, "p2")
	c.p2.wait(20*time.Second, "msg", "bus connected")
	c.manager.wait(20*time.Second, "msg", "status API listening")
	waitFile(t, c.file2, "threads=16\n")
	if c.manager.has("msg", "configuration accepted", "from", "p1") {
		t.Fatal("the coordinator accepted p1's old settings")
	}
	c.stop(c.p1)
	c.stop(c.p2)
	c.stop(c.manager)

	// Even when the coordinator has lost its state, the versions the members
	// carry decide: p1 with an old version first, then p2 with the newest.
	write(t, c.file1, "threads=4\n") // p1's file edited back locally: version 4 based on 3
	if err := os.RemoveAll(filepath.Join(dir, ".understudy", "cfg-manager.db")); err != nil {
		t.Fatal(err)
	}
	write(t, c.file2, "threads=32\n") // and p2's, later: version 4 based on 3 too
	c.manager = runIn(t, nil, c.site, "manager")
	c.p2 = runIn(t, nil, c.site, "p2")
	c.manager.wait(20*time.Second, "msg", "configuration accepted", "from", "p2", "version", "4")
	c.p1 = runIn(t, nil, c.site, "p1")
	// p1's edit is based on version 3; the site has p2's 4 since: p1 receives it.
	c.manager.wait(20*time.Second, "msg", "member has an older configuration; sending it the newest", "member", "p1")
	waitFile(t, c.file1, "threads=32\n")
	waitFile(t, c.file2, "threads=32\n")
}
