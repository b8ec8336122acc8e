package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/fixtures/eventually"
	"understudy/fixtures/mqtttest"
	"understudy/runtime/instance"
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
	// ... and forges its Last Will and a takeover command to the backup.
	forgeWillOfMain(t, forger, topics)
	forged := `{"id":"forged-1","epoch":99,"from":"manager","verb":"takeover","args":{"member":"main"}}`
	mqtttest.Publish(t, forger, topics.Command("backup"), forged, false)
	for _, where := range []string{api, backupAPI} {
		var st struct {
			Bus struct {
				Auth     string
				AuthKey  string            `json:"auth_key"`
				AuthKeys []string          `json:"auth_keys"`
				Dropped  map[string]uint64 `json:"dropped_payloads"`
			}
		}
		eventually.True(t, 20*time.Second, where+" refused the forgery", func() (bool, string) {
			getJSON(t, where+"/status", &st)
			return st.Bus.Dropped["unauthenticated"] >= 1, fmt.Sprint(st.Bus.Dropped)
		})
		if st.Bus.Auth != "required" || st.Bus.AuthKey != "k1" || fmt.Sprint(st.Bus.AuthKeys) != "[k1]" {
			t.Errorf("%s/status says auth %q, key %q of %v; want required, k1 of [k1]", where, st.Bus.Auth, st.Bus.AuthKey, st.Bus.AuthKeys)
		}
	}
	if mgr.has("msg", "member lost", "member", "main") {
		t.Fatal("a forged Last Will made main lost")
	}
	if backup.has("msg", "command received", "verb", "takeover") {
		t.Fatal("the backup obeyed a forged command")
	}
	// understudy status says how the instance authenticates, with which
	// key, and what it dropped.
	cli := cliOf(t, ts.coordSite, "manager")
	if out := cli(0, "status"); !strings.Contains(out, "auth required (key k1 of [k1]), dropped payloads: ") || !regexp.MustCompile(`unauthenticated \d+`).MatchString(out) {
		t.Errorf("understudy status does not give the auth mode, the key and the drops:\n%s", out)
	}

	// A command given to main's instance (its local API) is passed on to
	// the coordinator, signed: the coordinator takes the auth member off
	// (its records never show it) and says it came through main's API.
	reply := postCommand(t, apiAddress(t, main), instance.TokenPath(ts.stateDir, "auth", "main"), "mode", `{"mode":"auto"}`)
	if !reply.OK || reply.Forwarded != "manager" || len(reply.Records) == 0 {
		t.Fatalf("mode auto through main's API: %+v", reply)
	}
	for _, rec := range reply.Records {
		recJSON, _ := json.Marshal(rec)
		if strings.Contains(string(recJSON), `"auth"`) {
			t.Errorf("a record of the passed-on command shows the auth member: %s", recJSON)
		}
		if rec.Type == events.Command {
			if args, _ := rec.Fields["args"].(map[string]any); args["by"] != "api@main" {
				t.Errorf("the command's record says it came by %v, want api@main: %s", args["by"], recJSON)
			}
		}
	}
	// An operator cannot sign: a command with a broken auth member is a
	// forgery, dropped and counted as bad_MAC.
	mqtttest.Publish(t, forger, topics.Control("mode"), `{"mode":"manual","auth":{"key":"k1","from":"main","n":[1,1,1],"mac":"AAAAAAAAAAAAAAAAAAAAAA"}}`, false)
	var after struct {
		Bus struct {
			Dropped map[string]uint64 `json:"dropped_payloads"`
		}
		Takeover struct{ Mode string }
	}
	eventually.True(t, 20*time.Second, "the coordinator refused the forged command", func() (bool, string) {
		getJSON(t, api+"/status", &after)
		return after.Bus.Dropped["bad_MAC"] >= 1, fmt.Sprint(after.Bus.Dropped)
	})
	if after.Takeover.Mode != "auto" {
		t.Fatalf("a forged command with a broken auth member made the mode %q", after.Takeover.Mode)
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

// postCommand gives an instance an operator command through its local API,
// with the token from tokenFile, and returns its reply.
func postCommand(t *testing.T, api, tokenFile, verb, body string) instance.CommandReply {
	t.Helper()
	token, err := instance.ReadToken(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, api+"/command/"+verb, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var reply instance.CommandReply
	if err := json.Unmarshal(data, &reply); err != nil {
		t.Fatalf("POST /command/%s: %s %s: %v", verb, resp.Status, data, err)
	}
	return reply
}

// In permissive mode (an upgrade under way) the broker is open and
// unsigned messages are taken, but only from members not yet upgraded: an
// anonymous client that republishes the presence of main, which runs this
// release and signs, without the auth member and as gone, is refused, and
// main is not taken over.
func TestPermissiveModeProtectsMembersAlreadyUpgraded(t *testing.T) {
	ts := newTakeoverSite(t, "permissive", false)
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", ts.coordSite}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
	}
	for _, site := range []string{ts.coordSite, ts.peerSite} {
		b, err := os.ReadFile(site)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(site, append(b, []byte("auth: {mode: permissive}\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mgr, _, _ := ts.startAll()
	mgr.wait(5*time.Second, "msg", "messages between instances are authenticated", "mode", "permissive")
	api := apiAddress(t, mgr)
	peers, err := os.ReadFile(ts.peerSite)
	if err != nil {
		t.Fatal(err)
	}
	url := "tcp://" + regexp.MustCompile(`127\.0\.0\.1:\d+`).FindString(string(peers))
	topics := bus.Topics{Site: "permissive"}
	forger := mqtttest.Connect(t, url, "forger", mqtttest.Options{})
	forgeWillOfMain(t, forger, topics)
	var st struct {
		Bus struct {
			Auth     string
			Unsigned uint64            `json:"unsigned_taken"`
			Dropped  map[string]uint64 `json:"dropped_payloads"`
		}
	}
	eventually.True(t, 20*time.Second, "the coordinator refused the unsigned presence", func() (bool, string) {
		getJSON(t, api+"/status", &st)
		return st.Bus.Dropped["unauthenticated"] >= 1, fmt.Sprintf("%+v", st.Bus)
	})
	if st.Bus.Auth != "permissive" || st.Bus.Unsigned != 0 {
		t.Errorf("status: auth %q, %d unsigned taken; want permissive, none (every instance signs)", st.Bus.Auth, st.Bus.Unsigned)
	}
	if mgr.has("msg", "member lost", "member", "main") {
		t.Fatal("an unsigned presence made main, which signs, lost")
	}
	mgr.wait(5*time.Second, "msg", "dropped bad bus payload (source is the member whose topic it came on, or the topic: not necessarily the sender, as MQTT does not say who published; further drops of this reason from this source are only counted)", "source", "main", "reason", "unauthenticated")
}

// forgeWillOfMain reads main's heartbeat (its boot and connection are
// public) and publishes, unsigned, the Last Will that connection would leave.
func forgeWillOfMain(t *testing.T, forger *mqtttest.Client, topics bus.Topics) {
	t.Helper()
	beats := mqtttest.Subscribe(t, forger, topics.Heartbeat("main"))
	var hb bus.Heartbeat
	select {
	case m := <-beats:
		var err error
		if hb, err = bus.DecodeHeartbeat("main", []byte(m.Payload)); err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no heartbeat of main")
	}
	gone := fmt.Sprintf(`{"member":"main","state":"gone","boot":%q,"conn":%d}`, hb.Boot, hb.Conn)
	mqtttest.Publish(t, forger, topics.Presence("main"), gone, false)
}
