package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The CLI commands the running daemon through its local API: takeover,
// failback, mode, confirm; status shows the result; a request without the
// token is refused.
func TestCLIControlsTheRunningSite(t *testing.T) {
	site, _, sw := localSite(t, "cli")
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
	if out := cli(0, "status"); !strings.Contains(out, "main covered by backup") {
		t.Fatalf("status after the takeover:\n%s", out)
	}
	out = cli(0, "failback", "main")
	if !strings.Contains(out, "failback_started main") {
		t.Fatalf("failback output:\n%s", out)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 1}, [2]int{2, 2})
	if out := cli(0, "takeover", "--all", "backup"); !strings.Contains(out, "takeover_started main (standby: backup") {
		t.Fatalf("takeover --all output:\n%s", out)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
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
	if code := run([]string{"mode", "-c", site, "--member", "main", "auto"}, &outMain, &errs); code != 0 || !strings.Contains(outMain.String(), "passed to the coordinator backup") {
		t.Fatalf("mode auto through main: exit %d\n%s%s", code, outMain.String(), errs.String())
	}
	backup.wait(10*time.Second, "msg", "mode_changed")
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
