package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keyedCopy copies a fixture's files to a temporary folder and makes the
// site key there (a key file's mode does not survive git).
func keyedCopy(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errs bytes.Buffer
	if code := run([]string{"keys", "new", "-c", filepath.Join(to, "site.yaml")}, &out, &errs); code != 0 {
		t.Fatalf("keys new: %s", errs.String())
	}
	return to
}

// Each folder of testdata/check is a site made to contain one mistake;
// its want file lists what check must say about it, with file:line:col
// (relative to the folder), and an optional want-stdout file what it
// prints on standard output (its ok lines); a file named keyed gives the
// site its key first. Adding a case needs no Go code.
func TestCheckFindsEachMistake(t *testing.T) {
	dirs, err := filepath.Glob("testdata/check/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no check fixtures: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, "want"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "keyed")); err == nil {
				dir = keyedCopy(t, dir) // a file keyed: the site has its key
			}
			var out, errs bytes.Buffer
			code := run([]string{"check", "-c", filepath.Join(dir, "site.yaml")}, &out, &errs)
			got := strings.ReplaceAll(errs.String(), dir+string(filepath.Separator), "")
			onlyWarnings := true
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(got, line+"\n") {
					t.Errorf("check does not say\n  %s\nit says:\n%s", line, got)
				}
				onlyWarnings = onlyWarnings && strings.Contains(line, ": warning: ")
			}
			if wantCode := map[bool]int{true: 0, false: 1}[onlyWarnings]; code != wantCode {
				t.Errorf("exit %d, want %d\n%s%s", code, wantCode, out.String(), got)
			}
			wantOut, err := os.ReadFile(filepath.Join(dir, "want-stdout"))
			if errors.Is(err, fs.ErrNotExist) {
				return
			} else if err != nil {
				t.Fatal(err)
			}
			gotOut := strings.ReplaceAll(out.String(), dir+string(filepath.Separator), "")
			for _, line := range strings.Split(strings.TrimSpace(string(wantOut)), "\n") {
				if !strings.Contains(gotOut, line+"\n") {
					t.Errorf("check does not print\n  %s\nit prints:\n%s", line, gotOut)
				}
			}
		})
	}
	// The shipped examples are clean once they have a site key; without
	// one, check says that anyone on the bus could speak for a member.
	for _, example := range []string{"manager-backup", "recorder-standby", "vms-pool"} {
		var out, errs bytes.Buffer
		site := filepath.Join("../../scripts", example, "site.yaml")
		if code := run([]string{"check", "-c", site}, &out, &errs); code != 0 || !strings.Contains(errs.String(), "warning: auth is off") {
			t.Errorf("check %s without a key: exit %d\n%s", site, code, errs.String())
		}
		dir := filepath.Join(t.TempDir(), example)
		if err := os.CopyFS(dir, os.DirFS(filepath.Dir(site))); err != nil {
			t.Fatal(err)
		}
		site = filepath.Join(dir, "site.yaml")
		out.Reset()
		errs.Reset()
		if code := run([]string{"keys", "new", "-c", site}, &out, &errs); code != 0 {
			t.Fatalf("keys new: exit %d\n%s", code, errs.String())
		}
		if code := run([]string{"check", "-c", site}, &out, &errs); code != 0 || errs.Len() > 0 {
			t.Errorf("check %s: exit %d\n%s", site, code, errs.String())
		}
	}
}
