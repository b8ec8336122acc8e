package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/fixtures/eventually"
	"understudy/fixtures/mqtttest"
)

// With a site key beside site.yaml, the embedded broker is closed (each
// instance logs in with an account derived from the key) and the instances
// sign what they send each other: a client with an operator account can
// neither declare a live main lost nor command a
// member, and a real kill still fails over.
func TestWithASiteKeyForgedMessagesAreRefusedAndFailoverStillWorks(t *testing.T) {
	ts := newTakeoverSite(t, "auth", false)
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", ts.coordSite}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
	}
	for _, site := range []string{ts.coordSite, ts.peerSite} {
		b, err := os.ReadFile(site)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("broker_on: manager"), []byte("broker_on: manager, users: [{username: showctl, password: show-pw}]"), 1)
		if err := os.WriteFile(site, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mgr, main, backup := ts.startAll()
	mgr.wait(5*time.Second, "msg", "messages between instances are authenticated", "mode", "required")
	api := apiAddress(t, mgr)
	backupAPI := apiAddress(t, backup)

	peers, err := os.ReadFile(ts.peerSite)
	if err != nil {
		t.Fatal(err)
	}
	url := "tcp://" + regexp.MustCompile(`127\.0\.0\.1:\d+`).FindString(string(peers))
	topics := bus.Topics{Site: "auth"}
	// The broker is closed: no account, no connection.
	if _, err := mqtttest.TryConnect(t, url, "anonymous", mqtttest.Options{}); err == nil {
		t.Fatal("the embedded broker of a site with a key let an anonymous client in")
	}
	if _, err := mqtttest.TryConnect(t, url, "guesser", mqtttest.Options{Username: "understudy-main", Password: "guess"}); err == nil {
		t.Fatal("a member's account with a guessed password was let in")
	}
	// An operator account (show control) may publish anywhere in the tree,
	// but cannot make a site key's code. It reads main's heartbeat (boot and
	// conn are public) ...
	forger := mqtttest.Connect(t, url, "forger", mqtttest.Options{Username: "showctl", Password: "show-pw"})
	beats := mqtttest.Subscribe(t, forger, topics.Heartbeat("main"))
	var hb bus.Heartbeat
	select {
	case m := <-beats:
		if hb, err = bus.DecodeHeartbeat("main", []byte(m.Payload)); err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no heartbeat of main")
	}
	// ... and forges its Last Will and a takeover command to the backup.
	gone := fmt.Sprintf(`{"member":"main","state":"gone","boot":%q,"conn":%d}`, hb.Boot, hb.Conn)
	mqtttest.Publish(t, forger, topics.Presence("main"), gone, false)
	forged := `{"id":"forged-1","epoch":99,"from":"manager","verb":"takeover","args":{"member":"main"}}`
	mqtttest.Publish(t, forger, topics.Command("backup"), forged, false)
	for _, where := range []string{api, backupAPI} {
		var st struct {
			Bus struct {
				Auth    string
				Dropped map[string]uint64 `json:"dropped_payloads"`
			}
		}
		eventually.True(t, 20*time.Second, where+" refused the forgery", func() (bool, string) {
			getJSON(t, where+"/status", &st)
			return st.Bus.Dropped["unauthenticated"] >= 1, fmt.Sprint(st.Bus.Dropped)
		})
		if st.Bus.Auth != "required" {
			t.Errorf("%s/status says auth %q", where, st.Bus.Auth)
		}
	}
	if mgr.has("msg", "member lost", "member", "main") {
		t.Fatal("a forged Last Will made main lost")
	}
	if backup.has("msg", "command received", "verb", "takeover") {
		t.Fatal("the backup obeyed a forged command")
	}

	// A real kill is still a failover.
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "member lost", "member", "main", "reason", "Last Will")
	mgr.wait(30*time.Second, "msg", "takeover_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 3, 2: 4})
	// The instances' own accounts allowed all they did: the broker refused
	// none of their topics.
	if mgr.has("msg", "client refused a topic") {
		t.Error("the broker refused an instance a topic (see the log)")
	}
}
