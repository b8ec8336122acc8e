package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"understudy/fixtures/eventually"
	"understudy/runtime/instance"
)

// The CLI commands the running daemon through its local API: takeover,
// failback, mode, confirm; status shows the result; a request without the
// token is refused.
func TestCLIControlsTheRunningSite(t *testing.T) {
	site, _, sw := localSite(t, "cli")
	slowRelease(t, site, "0.5") // a backup takes a moment to let go, as a real one does
	backup := runIn(t, nil, site, "backup")
	runIn(t, nil, site, "main")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")
	cli := cliOf(t, site, "backup")

	out := cli(0, "takeover", "main")
	if !strings.Contains(out, "takeover_started main (standby: backup; reason: operator)") || !strings.Contains(out, "→ route router output 1 ← input 3") {
		t.Fatalf("takeover output:\n%s", out)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	waitCovering(t, cli)
	out = cli(0, "failback", "main")
	if !strings.Contains(out, "failback_started main") {
		t.Fatalf("failback output:\n%s", out)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 1}, [2]int{2, 2})
	waitUncovered(t, cli) // the routes go back before the backup has let go
	if out := cli(0, "takeover", "--all", "backup"); !strings.Contains(out, "takeover_started main (standby: backup") {
		t.Fatalf("takeover --all output:\n%s", out)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	waitCovering(t, cli)
	cli(0, "failback", "main")
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 1}, [2]int{2, 2})

	cli(0, "mode", "manual")
	if out := cli(0, "status"); !strings.Contains(out, "mode manual") {
		t.Fatalf("status after mode manual:\n%s", out)
	}
	if out := cli(1, "confirm", "p99"); !strings.Contains(out, `refused: no proposal "p99"`) {
		t.Fatalf("confirm of an unknown proposal:\n%s", out)
	}
	cli(2, "mode", "sometimes")

	// Without the token, or with a wrong one, nothing is carried out.
	for _, token := range []string{"", "Bearer 0123456789abcdef0123456789abcdef"} {
		req, _ := http.NewRequest(http.MethodPost, api+"/command/mode", strings.NewReader(`{"mode":"auto"}`))
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("command with token %q: %s", token, resp.Status)
		}
	}
	if out := cli(0, "status"); !strings.Contains(out, "mode manual") {
		t.Fatalf("an unauthorised command changed the mode:\n%s", out)
	}

	// A command given to a member's instance goes to the coordinator.
	var outMain, errs bytes.Buffer
	if code := run([]string{"mode", "-c", site, "--member", "main", "auto"}, &outMain, &errs); code != 0 || !strings.Contains(outMain.String(), "mode: done by the coordinator backup") {
		t.Fatalf("mode auto through main: exit %d\n%s%s", code, outMain.String(), errs.String())
	}
	backup.wait(10*time.Second, "msg", "mode_changed")
}

// waitUncovered waits (20s) until status shows nobody covering main: its
// failback is over.
func waitUncovered(t *testing.T, cli func(want int, args ...string) string) {
	t.Helper()
	eventually.True(t, 20*time.Second, "nobody covers main", func() (bool, string) {
		out := cli(0, "status")
		return !strings.Contains(out, "main covered by"), out
	})
}

// waitCovering waits until main is covered by backup and the takeover
// finished (a failback is refused before).
func waitCovering(t *testing.T, cli func(want int, args ...string) string) {
	t.Helper()
	eventually.True(t, 20*time.Second, "main covered by backup", func() (bool, string) {
		out := cli(0, "status")
		return strings.Contains(out, "main covered by backup") && strings.Contains(out, "(covering)"), out
	})
}

// cliOf runs understudy control commands against member's instance of site:
// the returned func runs one (its first argument the command), checks its
// exit code and returns what it printed.
func cliOf(t *testing.T, site, member string) func(want int, args ...string) string {
	return func(want int, args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		args = append(args[:1], append([]string{"-c", site, "--member", member}, args[1:]...)...)
		if code := run(args, &out, &errs); code != want {
			t.Fatalf("understudy %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out.String(), errs.String())
		}
		return out.String() + errs.String()
	}
}

// refusals are operator commands that cannot be carried out as asked, with
// the words the refusal must contain. The site is writeSite's: main, and
// backup (the coordinator, a standby) running the manager-backup policy.
var refusals = []struct {
	name, verb, fields, want string
}{
	{"unknown verb", "dance", `{}`, `unknown command "dance": the known commands are confirm, drill, drill_end, failback, mode, reassert, reject, takeover, takeover_all`},
	{"takeover without a member", "takeover", `{}`, "takeover: which member? (member)"},
	{"takeover of an unknown member", "takeover", `{"member": "ghost"}`, `takeover: no member "ghost" (members: main, backup)`},
	{"takeover of a standby", "takeover", `{"member": "backup"}`, "takeover: backup is a standby: a standby covers others and is never covered itself"},
	{"a standby taking over itself", "takeover", `{"member": "backup", "standby": "backup"}`, "takeover: backup cannot take over itself"},
	{"takeover by an unknown standby", "takeover", `{"member": "main", "standby": "ghost"}`, `takeover: no member "ghost"`},
	{"a member taking over itself", "takeover", `{"member": "main", "standby": "main"}`, "takeover: main cannot take over itself"},
	{"failback of an unknown member", "failback", `{"member": "ghost"}`, `failback: no member "ghost"`},
	{"failback of a member nobody covers", "failback", `{"member": "main"}`, "failback: main is not covered by any standby"},
	{"failback of a standby", "failback", `{"member": "backup"}`, "failback: backup is a standby"},
	{"takeover_all without a standby", "takeover_all", `{}`, "takeover_all: which standby? (standby)"},
	{"takeover_all by an unknown member", "takeover_all", `{"standby": "ghost"}`, `takeover_all: no member "ghost"`},
	{"takeover_all by a member that is no standby", "takeover_all", `{"standby": "main"}`, "takeover_all: main is not a standby (standbys: backup)"},
}

// Through the local API every command gets a truthful answer: a command
// that cannot be carried out is refused with the reason (409), a malformed
// one is a bad request (400, 413 when too large), each as a JSON reply with
// ok false and the request_id as sent; nothing reaches the switcher.
func TestAPIRefusesCommandsThatCannotBeCarriedOut(t *testing.T) {
	site, _, sw := localSite(t, "refuse")
	backup := runIn(t, nil, site, "backup")
	runIn(t, nil, site, "main")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	token, err := instance.ReadToken(instance.TokenPath(filepath.Join(filepath.Dir(site), ".understudy"), "refuse", "backup"))
	if err != nil {
		t.Fatal(err)
	}
	type testCase struct {
		name, verb, body string
		status           int
		want             string
	}
	var cases []testCase
	for _, r := range refusals {
		cases = append(cases, testCase{r.name, r.verb, r.fields, http.StatusConflict, r.want})
	}
	cases = append(cases,
		testCase{"not JSON", "takeover", `{"member": `, http.StatusBadRequest, "bad command: malformed JSON"},
		testCase{"not an object", "mode", `["manual"]`, http.StatusBadRequest, "bad command: malformed JSON"},
		testCase{"member is a number", "takeover", `{"member": 5}`, http.StatusBadRequest, "bad command: invalid field: member: want a string, not 5"},
		testCase{"request_id is an object", "mode", `{"mode": "manual", "request_id": {}}`, http.StatusBadRequest, "request_id: want a string, a number or a boolean"},
		testCase{"too large", "flash", `{"pad": "` + strings.Repeat("x", 64<<10) + `"}`, http.StatusRequestEntityTooLarge, "bad command: payload too large"},
	)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each gets a request_id of another JSON type, echoed as sent.
			id := []string{`"r-` + strconv.Itoa(i) + `"`, `12345678901234567890`, `true`, `-0.5`}[i%4]
			body := c.body
			if c.status != http.StatusRequestEntityTooLarge && strings.HasPrefix(body, "{") && !strings.Contains(body, "request_id") && json.Valid([]byte(body)) {
				body = `{"request_id": ` + id + `, ` + strings.TrimPrefix(body, "{")
				body = strings.Replace(body, ", }", "}", 1)
			} else {
				id = ""
			}
			req, _ := http.NewRequest(http.MethodPost, api+"/command/"+c.verb, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s: %s (%s) %s, want %d with a JSON reply", c.verb, body[:min(len(body), 80)], resp.Status, resp.Header.Get("Content-Type"), raw, c.status)
			}
			reply := decodeReply(t, raw)
			if reply["ok"] != false || !strings.Contains(fmt.Sprint(reply["error"]), c.want) || reply["verb"] != c.verb {
				t.Fatalf("reply %s\nwant ok false, verb %s, error with %q", raw, c.verb, c.want)
			}
			if got := fmt.Sprint(reply["request_id"]); id != "" && got != strings.Trim(id, `"`) {
				t.Fatalf("request_id %s came back as %s (%s)", id, got, raw)
			}
		})
	}
	sw.expectNoRoutes(t)
}

// decodeReply decodes a command reply keeping numbers as written.
func decodeReply(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var reply map[string]any
	if err := dec.Decode(&reply); err != nil {
		t.Fatalf("reply %q: %v", raw, err)
	}
	return reply
}

// Every command takes its flags before or after its arguments, and -- ends
// the flags.
func TestCLIFlagsGoBeforeOrAfterTheArguments(t *testing.T) {
	site, _, sw := localSite(t, "flags")
	backup := runIn(t, nil, site, "backup")
	runIn(t, nil, site, "main")
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		if code := run(args, &out, &errs); code != want {
			t.Fatalf("understudy %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out.String(), errs.String())
		}
		return out.String() + errs.String()
	}
	expect := func(out, want string) {
		t.Helper()
		if !strings.Contains(out, want) {
			t.Fatalf("output does not say %q:\n%s", want, out)
		}
	}
	expect(cli(0, "mode", "manual", "-c", site, "--member", "backup"), "mode_changed")
	expect(cli(0, "mode", "-c", site, "--member", "backup", "auto"), "mode_changed")
	expect(cli(0, "takeover", "main", "-c", site, "--standby", "backup", "--member", "backup"), "takeover_started main (standby: backup")
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	waitCovering(t, cliOf(t, site, "backup"))
	expect(cli(0, "failback", "-c", site, "main", "--member", "backup"), "failback_started main")
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 1}, [2]int{2, 2})
	expect(cli(0, "status", "--member", "backup", "-c", site), "site flags, seen from backup")
	expect(cli(0, "dashboard", "--member", "backup", "-c", site), "/dashboard/#token=")
	expect(cli(0, "drill", "--fault", "broken", "main", "-c", site, "--member", "backup"), "DRY-RUN DRILL: main broken")
	expect(cli(1, "confirm", "p99", "-c", site, "--member", "backup"), `no proposal "p99"`)
	// After --, "-c" is an argument: a member of that name, which there is not.
	expect(cli(1, "takeover", "-c", site, "--member", "backup", "--", "-c"), `no member "-c"`)
	// Commands that take only flags say so when given an argument.
	expect(cli(2, "check", site), "unexpected argument")
	expect(cli(2, "run", "-c", site, "main"), "unexpected argument")
	expect(cli(0, "check", "-c", site), "ok — site flags")

	scenario := "../../scripts/manager-backup/scenarios/main-crashes.yaml"
	wall := regexp.MustCompile(`site time in .*`) // the wall time it took differs
	before := wall.ReplaceAllString(cli(0, "simulate", "-q", scenario), "")
	if after := wall.ReplaceAllString(cli(0, "simulate", scenario, "-q"), ""); after != before || strings.Contains(after, "member_lost") {
		t.Fatalf("simulate with -q after the scenario:\n%s\nbefore it:\n%s", after, before)
	}
	expect(cli(0, "test", "../../scripts/manager-backup", "-v"), "member_lost main")
}
