package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/discovery/broker"
	"understudy/discovery/bus"
)

// localSite runs a broker in the test process and a Videohub simulator, both
// on loopback, and writes a site that uses them.
func localSite(t *testing.T, name string) (site, url string, sw *switcher) {
	t.Helper()
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sw = startSwitcher(t, l)
	url = "tcp://" + b.Addr()
	return writeSite(t, siteParams{Name: name, Bus: "url: " + url, Router: l.Addr().String()}), url, sw
}

// apiAddress reads where an instance serves its status API from its log.
func apiAddress(t *testing.T, d *daemon) string {
	t.Helper()
	e := d.wait(20*time.Second, "msg", "status API listening")
	return strings.TrimSuffix(e.str("address"), "/status")
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", url, resp.Status, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// Bad input on the bus is dropped and counted, logged once per source and
// reason, and the instance goes on working.
func TestMalformedPayloadsAreDroppedAndCounted(t *testing.T) {
	site, url, _ := localSite(t, "garbage")
	backup := runIn(t, nil, site, "backup")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "bus connected")

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	obs, err := bus.Observe(ctx, url, "garbage-sender", nil, func(bus.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	topics := bus.Topics{Site: "garbage"}
	huge := `{"member":"main","boot":"b","conn":1,"seq":1,"interval_ms":100,"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	for _, m := range []struct{ topic, payload string }{
		{topics.Heartbeat("main"), "not json at all"},
		{topics.Heartbeat("main"), `{"member":"main","boot":"b","conn":"one","seq":1,"interval_ms":100}`},
		{topics.Heartbeat("main"), huge},
		{topics.Heartbeat("ghost"), `{"member":"ghost","boot":"b","conn":1,"seq":1,"interval_ms":100}`},
		{topics.Heartbeat("main"), `{"member":"backup","boot":"b","conn":1,"seq":1,"interval_ms":100}`},
		{topics.Presence("main"), `{"member":"main","state":"zombie","boot":"b","conn":1}`},
	} {
		if err := obs.Publish(m.topic, false, []byte(m.payload)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{"malformed_JSON": 2, "payload_too_large": 1, "unknown_member": 1, "member_does_not_match_topic": 1, "invalid_field": 1}
	var st struct {
		Bus struct {
			Dropped map[string]uint64 `json:"dropped_payloads"`
		}
		Members []statusMember
	}
	eventually.True(t, 20*time.Second, fmt.Sprintf("dropped %v", want), func() (bool, string) {
		getJSON(t, api+"/status", &st)
		var total uint64
		for _, n := range st.Bus.Dropped {
			total += n
		}
		return total >= 6, fmt.Sprint(st.Bus.Dropped)
	})
	for reason, n := range want {
		if st.Bus.Dropped[reason] != n {
			t.Errorf("dropped %s = %d, want %d (all: %v)", reason, st.Bus.Dropped[reason], n, st.Bus.Dropped)
		}
	}
	// Counted before logged: the log lines may reach the pipe a moment after
	// the counts reach the API.
	logged := func() int { return strings.Count(backup.p.Output(), `"msg":"dropped bad bus payload`) }
	eventually.True(t, 10*time.Second, "five drops logged", func() (bool, string) {
		return logged() >= 5, fmt.Sprint(logged(), " logged")
	})
	if n := logged(); n != 5 {
		t.Errorf("logged %d drops, want 5 (once per reason for main's topics: malformed, too large, another member, a bad field; once for ghost)", n)
	}
	// A good heartbeat still gets through.
	if err := obs.Publish(topics.Heartbeat("main"), false, []byte(`{"member":"main","boot":"b","conn":1,"seq":2,"interval_ms":100}`)); err != nil {
		t.Fatal(err)
	}
	backup.wait(10*time.Second, "msg", "member alive", "member", "main", "event", "member_seen")
	// Only that one counts as received: not the dropped ones, not the
	// instance's own.
	var received struct {
		Bus struct {
			Heartbeats uint64 `json:"heartbeats_received"`
		}
	}
	getJSON(t, api+"/status", &received)
	if received.Bus.Heartbeats != 1 {
		t.Errorf("heartbeats_received = %d, want 1", received.Bus.Heartbeats)
	}
}

// A policy edited into a syntax error keeps the old one running (failover
// still works); fixed, it is reloaded; SIGHUP reloads too.
func TestPolicyReloadInARunningDaemon(t *testing.T) {
	site, _, sw := localSite(t, "reload")
	policyPath := filepath.Join(filepath.Dir(site), "policy.lua")
	good, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	backup := runIn(t, nil, site, "backup")
	main := runIn(t, nil, site, "main")
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")

	backup.mark()
	if err := os.WriteFile(policyPath, []byte("local us = require 'understudy'\n\nus.on('member_lost', function(ev)\n  us.log.info(\nend)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failed := backup.wait(20*time.Second, "msg", "policy reload failed")
	if !strings.Contains(failed.str("error"), policyPath+":5:") {
		t.Fatalf("reload error %q does not name %s:5", failed.str("error"), policyPath)
	}

	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	runIn(t, nil, site, "main")
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})

	backup.mark()
	fixed := append(good, "\nus.on('coordinator', function(ev) us.log.info('policy v2 coordinating') end)\n"...)
	if err := os.WriteFile(policyPath, fixed, 0o644); err != nil {
		t.Fatal(err)
	}
	backup.wait(20*time.Second, "msg", "policy reloaded")
	backup.wait(5*time.Second, "msg", "policy v2 coordinating")

	backup.mark()
	if err := backup.p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	backup.wait(10*time.Second, "msg", "reload requested")
	backup.wait(10*time.Second, "msg", "policy reloaded")
	backup.wait(5*time.Second, "msg", "policy v2 coordinating")
}

// SIGTERM is a graceful shutdown: the site sees "closed", not "lost", and the
// manager-backup policy does not fail over for it.
func TestSIGTERMIsAGracefulClose(t *testing.T) {
	site, _, sw := localSite(t, "term")
	backup := runIn(t, nil, site, "backup")
	api := apiAddress(t, backup)
	main := runIn(t, nil, site, "main")
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.mark()
	if err := main.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := main.p.Wait(); err != nil {
		t.Fatalf("main exited with %v after SIGTERM, want 0", err)
	}
	main.wait(time.Second, "msg", "stopped")
	backup.wait(10*time.Second, "msg", "member closed", "member", "main", "reason", "shut down")
	// The loop has handled the close completely once it answers.
	resp, err := http.Get(api + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if backup.has("msg", "member lost") || backup.has("msg", "action") {
		t.Fatal("a graceful shutdown was treated as a loss")
	}
	sw.expectNoRoutes(t)
}

// understudy check: exit 0 and a summary for a good site; exit 1 and
// file:line for each kind of mistake.
func TestCheck(t *testing.T) {
	site := writeSite(t, siteParams{Name: "checked", Bus: "url: tcp://127.0.0.1:1883", Router: "127.0.0.1:9990"})
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "-c", site}, &out, &errOut); code != 0 {
		t.Fatalf("check of a good site: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "ok — site checked, 2 members (coordinator backup), drivers: router (videohub)") ||
		!strings.Contains(out.String(), "handles member_lost, member_closed, member_restored, timer:failback") {
		t.Errorf("check output:\n%s", out.String())
	}

	dir := filepath.Dir(site)
	policyPath := filepath.Join(dir, "policy.lua")
	siteYAML, _ := os.ReadFile(site)
	for _, tc := range []struct {
		name, file, content string
		want                *regexp.Regexp
	}{
		{"syntax error in the policy", "policy.lua", "local us = require 'understudy'\nus.on('member_lost', function(ev)\n  if ev then\nend)\n",
			regexp.MustCompile(regexp.QuoteMeta(policyPath) + `:4:\d+: syntax error near`)},
		{"unknown API function", "policy.lua", "local us = require 'understudy'\n\nus.on_lost(function() end)\n",
			regexp.MustCompile(regexp.QuoteMeta(policyPath) + `:3: attempt to call a non-function object`)},
		{"unknown driver in the policy", "policy.lua", "local us = require 'understudy'\nlocal r = us.driver('matrix')\n",
			regexp.MustCompile(regexp.QuoteMeta(policyPath) + `:2: no driver "matrix" in site.yaml \(drivers: router\)`)},
		{"unknown key in site.yaml", "site.yaml", strings.Replace(string(siteYAML), "standby: true", "stanby: true", 1),
			regexp.MustCompile(regexp.QuoteMeta(site) + `:\d+:5: unknown field "stanby"`)},
		{"bad driver setting", "site.yaml", strings.Replace(string(siteYAML), "timeout: 2s", "timeout: 2 sec", 1),
			regexp.MustCompile(regexp.QuoteMeta(site) + `:\d+:\d+: driver router: bad duration "2 sec"`)},
		{"unknown driver kind", "site.yaml", strings.Replace(string(siteYAML), "kind: videohub", "kind: videohug", 1),
			regexp.MustCompile(regexp.QuoteMeta(site) + `:\d+:\d+: unknown driver kind "videohug"`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			orig, _ := os.ReadFile(path)
			t.Cleanup(func() { os.WriteFile(path, orig, 0o644) })
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			if code := run([]string{"check", "-c", site}, &out, &errOut); code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errOut.String())
			}
			if !tc.want.MatchString(errOut.String()) {
				t.Errorf("check said\n%s\nwant a line matching %s", errOut.String(), tc.want)
			}
		})
	}
}

// run refuses a policy that does not load, at once, with file:line.
func TestRunRefusesABrokenPolicy(t *testing.T) {
	site, _, _ := localSite(t, "broken")
	policyPath := filepath.Join(filepath.Dir(site), "policy.lua")
	if err := os.WriteFile(policyPath, []byte("local us = require 'understudy'\nus.on('member_lost', function(ev)\n  route(\nend)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "run", "-c", site, "--member", "backup").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("run with a broken policy: %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), policyPath+":4:") || strings.Contains(string(out), "bus connected") {
		t.Fatalf("run said:\n%s\nwant %s:4: before joining the bus", out, policyPath)
	}
}

// A member that could never find the bus (no bus.url, mDNS off, the broker
// embedded on another member) is refused at once, saying why, instead of
// waiting silently for ever.
func TestRunRefusesAMemberThatCouldNeverFindTheBus(t *testing.T) {
	site := writeSite(t, siteParams{Name: "nobus", Router: "127.0.0.1:9990"})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "run", "-c", site, "--member", "main").CombinedOutput()
	var exit *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("run of a member that cannot find the bus: %v (%v), want exit 1 at once\n%s", err, ctx.Err(), out)
	}
	if !strings.Contains(string(out), "no way to the bus: site.yaml has no bus.url and mdns is false, so only backup (bus.broker_on)") {
		t.Fatalf("run said:\n%s", out)
	}
}

func TestVersionAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "understudy ") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := run(nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "understudy run") {
		t.Errorf("no command: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"fly"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "fly"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	site := writeSite(t, siteParams{Name: "who", Bus: "url: tcp://127.0.0.1:1", Router: "127.0.0.1:9990"})
	if code := run([]string{"run", "-c", site, "--member", "nobody"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), `--member "nobody" is not a member`) {
		t.Errorf("unknown member: exit %d, %q", code, errOut.String())
	}
}
