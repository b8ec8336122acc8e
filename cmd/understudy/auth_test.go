package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/fixtures/eventually"
)

// With a site key beside site.yaml, the instances sign what they send each
// other and refuse what is not signed: an anonymous client on the bus can
// neither declare a live main lost (finding 7 of issue 16) nor command a
// member, and a real kill still fails over.
func TestWithASiteKeyForgedMessagesAreRefusedAndFailoverStillWorks(t *testing.T) {
	ts := newTakeoverSite(t, "auth", false)
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", ts.coordSite}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
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
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// The forger reads main's heartbeat (boot and conn are public) ...
	beats := make(chan bus.Heartbeat, 1)
	obs, err := bus.Observe(ctx, url, "forger", []string{topics.Heartbeat("main")}, func(m bus.Message) {
		if hb, err := bus.DecodeHeartbeat("main", m.Payload); err == nil {
			select {
			case beats <- hb:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	var hb bus.Heartbeat
	select {
	case hb = <-beats:
	case <-ctx.Done():
		t.Fatal("no heartbeat of main")
	}
	// ... and forges its Last Will and a takeover command to the backup.
	gone := fmt.Sprintf(`{"member":"main","state":"gone","boot":%q,"conn":%d}`, hb.Boot, hb.Conn)
	if err := obs.Publish(topics.Presence("main"), false, []byte(gone)); err != nil {
		t.Fatal(err)
	}
	forged := `{"id":"forged-1","epoch":99,"from":"manager","verb":"takeover","args":{"member":"main"}}`
	if err := obs.Publish(topics.Command("backup"), false, []byte(forged)); err != nil {
		t.Fatal(err)
	}
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
}
