package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"understudy/fixtures/eventually"
	"understudy/fixtures/testhost"
)

// previousRelease is the last commit before messages were authenticated:
// the binary an upgrade starts from.
const previousRelease = "efa17fc95f418a723496971fbb31b4bed74bcbaa"

// buildPrevious builds the understudy binary of previousRelease from this
// repository's history.
func buildPrevious(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if exec.Command("git", "-C", "../..", "cat-file", "-e", previousRelease+"^{commit}").Run() != nil {
		// A shallow clone: fetch that one commit from where it came from.
		if out, err := exec.Command("git", "-C", "../..", "fetch", "--quiet", "--depth=1", "origin", previousRelease).CombinedOutput(); err != nil {
			t.Fatalf("the previous release %s is not in this clone and could not be fetched: %v\n%s", previousRelease, err, out)
		}
	}
	archive := exec.Command("git", "-C", "../..", "archive", "--format=tar", previousRelease)
	untar := exec.Command("tar", "-x", "-C", src)
	var err error
	if untar.Stdin, err = archive.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	var errs, untarErrs bytes.Buffer
	archive.Stderr, untar.Stderr = &errs, &untarErrs
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s (the test needs the repository's history): %v\n%s", previousRelease, err, errs.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar: %v\n%s", err, untarErrs.String())
	}
	bin := filepath.Join(src, "understudy-previous")
	build := exec.Command("go", "build", "-o", bin, "./cmd/understudy")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the previous release: %v\n%s", err, out)
	}
	return bin
}

// An upgrade without a flag day: the coordinator and the backup run this
// release with the site key in permissive mode, main still runs the
// previous release (its site.yaml as it was). Nobody is taken for lost, the
// coordinator takes main's unsigned messages (and counts them), main obeys
// the signed commands of a failback, and a kill is a failover.
func TestAnUpgradeInPermissiveModeLosesNobodyAndRefusesNoCommand(t *testing.T) {
	previous := buildPrevious(t)
	ts := newTakeoverSite(t, "upgrade", false)
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", ts.coordSite}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
	}
	oldSite := filepath.Join(filepath.Dir(ts.peerSite), "site-previous.yaml")
	peers, err := os.ReadFile(ts.peerSite)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldSite, peers, 0o644); err != nil {
		t.Fatal(err)
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
	runPrevious := func() *daemon {
		return &daemon{t: t, id: "main", p: testhost.StartProcess(t, exec.Command(previous, "run", "-c", oldSite, "--member", "main", "--log-format", "json", "--log-level", "debug"))}
	}
	mgr := ts.run("manager")
	mgr.wait(20*time.Second, "msg", "embedded broker started")
	mgr.wait(5*time.Second, "msg", "messages between instances are authenticated", "mode", "permissive")
	main := runPrevious()
	backup := ts.run("backup")
	mgr.wait(20*time.Second, "msg", "member alive", "member", "main")
	mgr.wait(20*time.Second, "msg", "member alive", "member", "backup")
	api := apiAddress(t, mgr)
	var st struct {
		Bus struct {
			Auth     string
			Unsigned uint64            `json:"unsigned_taken"`
			Dropped  map[string]uint64 `json:"dropped_payloads"`
		}
	}
	eventually.True(t, 20*time.Second, "the coordinator takes main's unsigned heartbeats", func() (bool, string) {
		getJSON(t, api+"/status", &st)
		return st.Bus.Auth == "permissive" && st.Bus.Unsigned >= 10, fmt.Sprintf("%+v", st.Bus)
	})
	if len(st.Bus.Dropped) > 0 {
		t.Errorf("the coordinator dropped messages during the upgrade: %v", st.Bus.Dropped)
	}

	// A kill is a failover, and the previous release's main, back, is
	// failed back by signed commands it takes as before.
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "member lost", "member", "main")
	mgr.wait(30*time.Second, "msg", "takeover_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 3, 2: 4})
	backup.wait(20*time.Second, "msg", "command received", "verb", "takeover")
	main = runPrevious()
	mgr.wait(30*time.Second, "msg", "failback_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 1, 2: 2})
	if main.has("msg", "command refused") || main.has("msg", "bad command") {
		t.Error("the previous release refused a command of this one")
	}
}
