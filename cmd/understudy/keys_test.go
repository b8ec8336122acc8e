package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A key change in three steps: add (everyone accepts it), use (it signs),
// remove (the old one is gone); the site keeps one key at least.
func TestKeysRotateInThreeSteps(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(site, []byte("site: keys\ncoordinator: a\nmdns: false\nmembers:\n  - id: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := func(args ...string) (int, string) {
		var out, errs bytes.Buffer
		code := run(append([]string{"keys", "-c", site}, args...), &out, &errs)
		return code, out.String() + errs.String()
	}
	for _, step := range []struct {
		args []string
		code int
		list string // keys list afterwards
	}{
		{[]string{"new"}, 0, "k1\tsigns and verifies\n"},
		{[]string{"new"}, 1, "k1\tsigns and verifies\n"},
		{[]string{"add", "k2"}, 0, "k1\tsigns and verifies\nk2\tverifies\n"},
		{[]string{"add", "k2"}, 1, "k1\tsigns and verifies\nk2\tverifies\n"},
		{[]string{"use", "k2"}, 0, "k2\tsigns and verifies\nk1\tverifies\n"},
		{[]string{"remove", "k1"}, 0, "k2\tsigns and verifies\n"},
		{[]string{"remove", "k2"}, 1, "k2\tsigns and verifies\n"},
		{[]string{"use", "k9"}, 1, "k2\tsigns and verifies\n"},
	} {
		if code, out := keys(step.args...); code != step.code {
			t.Errorf("keys %v: exit %d, want %d: %s", step.args, code, step.code, out)
		}
		if _, list := keys("list"); list != step.list {
			t.Errorf("after keys %v the list is %q, want %q", step.args, list, step.list)
		}
	}
	key := filepath.Join(dir, "site.key")
	if runtime.GOOS == "windows" {
		return
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("site.key: %v %v", fi.Mode(), err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"check", "-c", site}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "chmod 600") {
		t.Errorf("check with a key others can read: exit %d\n%s", code, errs.String())
	}
}

// The key that signs is never removed: the instances sign with it until
// another is made the signer and every machine has that file. keys remove
// of it is refused, says what to do instead, and leaves the file as it was.
func TestKeysRemoveRefusesTheSigningKey(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(site, []byte("site: keys\ncoordinator: a\nmdns: false\nmembers:\n  - id: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := func(args ...string) (int, string, string) {
		var out, errs bytes.Buffer
		code := run(append([]string{"keys", "-c", site}, args...), &out, &errs)
		return code, out.String(), errs.String()
	}
	for _, step := range [][]string{{"new"}, {"add", "k2"}, {"use", "k2"}, {"remove", "k1"}, {"add", "k3"}} {
		if code, _, errs := keys(step...); code != 0 {
			t.Fatalf("keys %v: exit %d: %s", step, code, errs)
		}
	}
	key := filepath.Join(dir, "site.key")
	before, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := keys("remove", "k2")
	if code == 0 {
		t.Fatalf("keys remove of the signing key k2: exit 0: %s", out)
	}
	for _, want := range []string{"k2 signs", "understudy keys use k3", "every machine", "restart", "then remove k2"} {
		if !strings.Contains(errs, want) {
			t.Errorf("the refusal does not say %q: %s", want, errs)
		}
	}
	if after, err := os.ReadFile(key); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the refused remove changed %s (%v)", key, err)
	}
	if _, list, _ := keys("list"); list != "k2\tsigns and verifies\nk3\tverifies\n" {
		t.Errorf("keys after the refused remove: %q", list)
	}
	// The way it says: k3 signs, then k2 goes.
	if code, _, errs := keys("use", "k3"); code != 0 {
		t.Fatalf("keys use k3: %s", errs)
	}
	if code, out, errs := keys("remove", "k2"); code != 0 || !strings.Contains(out, "keys [k3] (k3 signs)") {
		t.Fatalf("keys remove k2 after keys use k3: exit %d: %s%s", code, out, errs)
	}
}
