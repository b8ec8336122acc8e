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
