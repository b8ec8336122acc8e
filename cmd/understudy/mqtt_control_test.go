package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
			slowRelease(t, site, "0.5") // a backup takes a moment to let go, as a real one does
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
			peer := mqttPeer{host: host, port: port}
			// The backup has taken main's duties over (its takeover hook
			// answered): only then may it fail back.
			toBackup := func() {
				sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
				waitMessage(t, peer, "understudy/"+siteName+"/member/main/state", `"coverage_phase":"covering"`)
			}
			// The projectors go back to main as soon as it is ready, before
			// the backup has let go: the next command waits until nobody
			// covers main any more, as a show-control system would read it.
			toMain := func() {
				sw.expectRoutes(t, 10*time.Second, [2]int{1, 1}, [2]int{2, 2})
				waitMessage(t, peer, "understudy/"+siteName+"/takeover", `"coverage":[]`)
			}

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

// waitMessage waits (20s) until a message on topic (a retained one, or one
// published meanwhile) contains want.
func waitMessage(t *testing.T, p mqttPeer, topic, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := testhost.StartProcess(t, exec.CommandContext(ctx, "stdbuf", append([]string{"-oL", "mosquitto_sub"}, p.args("-t", topic)...)...))
	defer sub.Kill()
	if err := sub.WaitOutput(ctx, want); err != nil {
		t.Fatalf("no %s on %s within 20s: %v\n%s", want, topic, err, sub.Output())
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
// mode already set) and answer differently. Each has a request_id of its
// own, as show control gives them: the same command with the same id
// within seconds is taken for a copy of the first.
func mqttCommand(t *testing.T, p mqttPeer, siteName, verb, fields string) map[string]any {
	t.Helper()
	id := fmt.Sprintf("%s-%d", verb, time.Now().UnixNano())
	payload := fmt.Sprintf(`{%s"request_id": %q}`, fields, id)
	replyTopic := fmt.Sprintf("understudy/%s/command/%s/reply", siteName, verb)
	raw := mqttExchange(t, p, "understudy/"+siteName+"/command/"+verb, []byte(payload), replyTopic)
	var reply map[string]any
	if err := json.Unmarshal([]byte(raw), &reply); err != nil {
		t.Fatalf("reply %q: %v", raw, err)
	}
	if reply["request_id"] != id {
		t.Fatalf("reply without the request id %s: %s", id, raw)
	}
	return reply
}

// mqttExchange publishes payload on topic, once replyTopic is subscribed,
// and returns the first message on replyTopic (20s at most).
func mqttExchange(t *testing.T, p mqttPeer, topic string, payload []byte, replyTopic string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// -d says when the subscription is in place; stdbuf lets it say so at once.
	listener := testhost.StartProcess(t, exec.CommandContext(ctx, "stdbuf", append([]string{"-oL", "mosquitto_sub"}, p.args("-t", replyTopic, "-C", "1", "-d")...)...))
	if err := listener.WaitOutput(ctx, "received SUBACK"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mosquitto_pub", p.args("-q", "1", "-t", topic, "-f", file)...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	select {
	case <-listener.Exited():
	case <-ctx.Done():
		t.Fatalf("no reply on %s within 20s", replyTopic)
	}
	// The reply is the JSON line among mosquitto_sub's debug lines.
	for _, line := range strings.Split(listener.Output(), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "{") {
			return line
		}
	}
	t.Fatalf("no reply in mosquitto_sub's output:\n%s", listener.Output())
	return ""
}

// Show control gets a truthful answer to every command over MQTT: one that
// cannot be carried out is refused with the reason; a malformed one (bad
// JSON, a field of the wrong type, too large, a reply_to it may not use) is
// refused too, on the default reply topic when its own cannot be used, and
// counted as a dropped payload; request_id comes back exactly as sent, and
// a good reply_to under understudy/<site>/reply/ gets the answer.
func TestShowControlGetsATruthfulReplyToEveryCommand(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian package mosquitto-clients; .ci/deps installs it): %v", tool, err)
		}
	}
	site, busURL, sw := localSite(t, "truth")
	backup := runIn(t, nil, site, "backup")
	runIn(t, nil, site, "main")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	u, _ := url.Parse(busURL)
	host, port, _ := net.SplitHostPort(u.Host)
	peer := mqttPeer{host: host, port: port}
	command := func(verb string) string { return "understudy/truth/command/" + verb }
	reply := func(verb string) string { return command(verb) + "/reply" }

	type testCase struct {
		name, verb, payload, replyTopic, want, id string
	}
	var cases []testCase
	for i, r := range refusals {
		id := []string{`"r-` + strconv.Itoa(i) + `"`, `12345678901234567890`, `true`, `-0.5`}[i%4]
		payload := `{"request_id": ` + id + `, ` + strings.TrimPrefix(r.fields, "{")
		payload = strings.Replace(payload, ", }", "}", 1)
		cases = append(cases, testCase{r.name, r.verb, payload, reply(r.verb), r.want, id})
	}
	cases = append(cases,
		testCase{"not JSON", "takeover", `{"member": `, reply("takeover"), "bad command: malformed JSON", ""},
		testCase{"member is a number", "takeover", `{"member": 5, "request_id": "m5"}`, reply("takeover"), "bad command: invalid field: member: want a string, not 5", `"m5"`},
		testCase{"request_id is a list", "mode", `{"mode": "manual", "request_id": [1]}`, reply("mode"), "request_id: want a string, a number or a boolean", ""},
		testCase{"too large", "flash", `{"pad": "` + strings.Repeat("x", 64<<10) + `"}`, reply("flash"), "bad command: payload too large", ""},
		testCase{"reply_to a member's command topic", "takeover", `{"member": "ghost", "request_id": 1, "reply_to": "understudy/truth/member/main/command"}`, reply("takeover"),
			`bad command: invalid field: reply_to "understudy/truth/member/main/command": replies go under understudy/truth/reply/`, "1"},
		testCase{"reply_to with a wild card", "takeover", `{"member": "ghost", "request_id": 2, "reply_to": "understudy/truth/reply/#"}`, reply("takeover"), "a topic to publish on has no wild cards", "2"},
		testCase{"reply_to empty", "takeover", `{"member": "ghost", "request_id": 3, "reply_to": ""}`, reply("takeover"), "reply_to is empty", "3"},
		testCase{"reply_to a number", "takeover", `{"member": "ghost", "request_id": 4, "reply_to": 5}`, reply("takeover"), "reply_to: want a topic (a string)", "4"},
		testCase{"a good reply_to", "takeover", `{"member": "ghost", "request_id": 5, "reply_to": "understudy/truth/reply/companion/5"}`, "understudy/truth/reply/companion/5", `no member "ghost"`, "5"},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := mqttExchange(t, peer, command(c.verb), []byte(c.payload), c.replyTopic)
			r := decodeReply(t, []byte(raw))
			if r["ok"] != false || !strings.Contains(fmt.Sprint(r["error"]), c.want) || r["verb"] != c.verb {
				t.Fatalf("reply %s\nwant ok false, verb %s, error with %q", raw, c.verb, c.want)
			}
			if c.id != "" && !strings.Contains(raw, `"request_id":`+c.id) {
				t.Fatalf("request_id %s did not come back as sent: %s", c.id, raw)
			}
		})
	}
	sw.expectNoRoutes(t)

	// The malformed ones were counted, and the made-up verb ("dance").
	want := map[string]uint64{"malformed_JSON": 1, "invalid_field": 6, "payload_too_large": 1, "unknown_command": 1}
	var st struct {
		Bus struct {
			Dropped map[string]uint64 `json:"dropped_payloads"`
		}
	}
	getJSON(t, api+"/status", &st)
	for reason, n := range want {
		if st.Bus.Dropped[reason] != n {
			t.Errorf("dropped %s = %d, want %d (all: %v)", reason, st.Bus.Dropped[reason], n, st.Bus.Dropped)
		}
	}
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

// Show control with a topic tree of its own gets its replies there: a bus
// user's reply_prefix (showctl/replies/) lets a command name a reply_to
// under it, and the embedded broker lets the coordinator publish there,
// with a site key (the coordinator's key-derived account) and without (the
// instances' account of bus.users). A reply_to beside or above the prefix,
// with a wild card, a $ topic or one of the site's own topics is refused
// on the default reply topic, with the reason naming where replies may go.
func TestRepliesGoUnderAShowControlReplyPrefix(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian package mosquitto-clients; .ci/deps installs it): %v", tool, err)
		}
	}
	for _, keyed := range []bool{true, false} {
		name := map[bool]string{true: "site key", false: "accounts"}[keyed]
		t.Run(name, func(t *testing.T) {
			port := freePort(t)
			host, portNum, _ := net.SplitHostPort(port)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			startSwitcher(t, l)
			siteName := map[bool]string{true: "prefix-key", false: "prefix-acc"}[keyed]
			show := fmt.Sprintf(`{username: showctl, password: show-pass, reply_prefix: showctl/replies/, publish: ["understudy/%[1]s/command/+"], `+
				`subscribe: ["showctl/replies/#", "understudy/%[1]s/command/+/reply"]}`, siteName)
			bus := fmt.Sprintf(`listen: %q, users: [%s]`, port, show)
			if !keyed {
				bus = fmt.Sprintf(`listen: %q, username: understudy, password: inst-pass, users: [{username: understudy, password: inst-pass}, %s]`, port, show)
			}
			site := writeSite(t, siteParams{Name: siteName, Bus: bus, Router: l.Addr().String()})
			if keyed {
				// keys new loads the site, which without a key needs an
				// account for the instances among the users: the users come after.
				writeBus := func(bus string) {
					b, err := os.ReadFile(site)
					if err != nil {
						t.Fatal(err)
					}
					b = regexp.MustCompile(`(?m)^bus: \{.*\}$`).ReplaceAll(b, []byte("bus: {"+bus+"}"))
					if err := os.WriteFile(site, b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				writeBus(fmt.Sprintf(`listen: %q`, port))
				var out, errs bytes.Buffer
				if code := run([]string{"keys", "new", "-c", site}, &out, &errs); code != 0 {
					t.Fatalf("keys new: %s", errs.String())
				}
				writeBus(bus)
			}
			backup := runIn(t, nil, site, "backup")
			backup.wait(20*time.Second, "msg", "bus connected")
			if keyed {
				backup.wait(5*time.Second, "msg", "messages between instances are authenticated")
			}

			peer := mqttPeer{host: host, port: portNum, user: "showctl", password: "show-pass"}
			command := "understudy/" + siteName + "/command/mode"
			raw := mqttExchange(t, peer, command, []byte(`{"mode": "manual", "request_id": "p-1", "reply_to": "showctl/replies/x"}`), "showctl/replies/x")
			if r := decodeReply(t, []byte(raw)); r["ok"] != true || r["verb"] != "mode" || r["request_id"] != "p-1" || recordOf(r, "mode_changed") == nil {
				t.Fatalf("reply under the prefix: %s", raw)
			}
			for i, replyTo := range []string{"showctl/repliesX", "showctl/replies/#", "showctl/replies/", "$SYS/x", "understudy/" + siteName + "/command/takeover", "lights/stage"} {
				id := fmt.Sprintf("bad-%d", i)
				payload, _ := json.Marshal(map[string]string{"mode": "manual", "request_id": id, "reply_to": replyTo})
				raw := mqttExchange(t, peer, command, payload, command+"/reply")
				r := decodeReply(t, []byte(raw))
				if r["ok"] != false || r["request_id"] != id || !strings.Contains(fmt.Sprint(r["error"]), "bad command: invalid field: reply_to") {
					t.Fatalf("reply_to %q: answered on the default topic with %s", replyTo, raw)
				}
				if wild := strings.ContainsAny(replyTo, "#"); !wild && !strings.Contains(fmt.Sprint(r["error"]), "replies go under understudy/"+siteName+"/reply/… or showctl/replies/…") {
					t.Errorf("reply_to %q: the reason does not name the prefixes: %s", replyTo, raw)
				}
			}
			// Still on the bus, and still answering under the prefix.
			raw = mqttExchange(t, peer, command, []byte(`{"mode": "auto", "request_id": 2, "reply_to": "showctl/replies/companion/2"}`), "showctl/replies/companion/2")
			if r := decodeReply(t, []byte(raw)); r["ok"] != true || fmt.Sprint(r["request_id"]) != "2" {
				t.Fatalf("second reply under the prefix: %s", raw)
			}
			// The broker refused nobody anything: the coordinator may publish there.
			if backup.has("msg", "client refused a topic") || backup.has("msg", "command reply not published") {
				t.Errorf("a publish or subscription was refused:\n%s", backup.p.Output())
			}
		})
	}
}
