package materialcopy

import (
	"context"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A grant opens one member's subfolder of the served folders and nothing
// above or beside it: not the folder itself, not a sibling member's folder,
// not by "..", an absolute path, a symlink inside the subfolder, nor the
// subfolder itself made a symlink (before the grant or after it).
func TestGrantOpensOnlyItsSubfolder(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need privileges on Windows")
	}
	base := t.TempDir()
	folder := filepath.Join(base, "material")
	outside := filepath.Join(base, "state")
	writeFile(t, filepath.Join(outside, "api.token"), []byte("the API token"), old)
	writeFile(t, filepath.Join(folder, "top.ts"), []byte("the folder's own file"), old)
	writeFile(t, filepath.Join(folder, "rec1/cam1/mine.ts"), []byte("rec1's recording"), old)
	writeFile(t, filepath.Join(folder, "rec2/cam1/theirs.ts"), []byte("rec2's recording"), old)
	for link, to := range map[string]string{
		"rec1/sibling.ts": "../rec2/cam1/theirs.ts",
		"rec1/up.ts":      "../top.ts",
		"rec1/abs.ts":     filepath.Join(outside, "api.token"),
		"rec1/state":      outside,
		"rec3":            "rec2",   // a member's folder that is a sibling's
		"rec4":            outside,  // a member's folder that leads out
		"rec5":            "rec1/.", // even to the same place: not the folder itself
	} {
		if err := os.Symlink(to, filepath.Join(folder, link)); err != nil {
			t.Fatal(err)
		}
	}
	g := NewGrants(GrantsOptions{Folders: map[string]string{"1": folder}})
	mustAdd(t, g, Grant{Token: grantTokenA, Sub: "rec1", For: "rec1"})
	ts, _ := serveGrants(t, g)

	get := func(token, endpoint, path string) answer {
		t.Helper()
		return request(t, ts, "GET", "/material/"+endpoint, url.Values{"root": {"1"}, "path": {path}}, token, nil)
	}
	if a := get(grantTokenA, "file", "cam1/mine.ts"); a.code != http.StatusOK || a.body != "rec1's recording" {
		t.Fatalf("rec1's own file: %d %q", a.code, a.body)
	}
	secrets := []string{"the API token", "rec2's recording", "the folder's own file"}
	for _, p := range []string{
		"../top.ts", "../rec2/cam1/theirs.ts", "cam1/../../rec2/cam1/theirs.ts", "..%2ftop.ts",
		filepath.Join(outside, "api.token"), filepath.Join(folder, "top.ts"), "/etc/passwd",
		"sibling.ts", "up.ts", "abs.ts", "state/api.token",
	} {
		for _, endpoint := range []string{"file", "stat", "hash"} {
			a := get(grantTokenA, endpoint, p)
			if a.code == http.StatusOK {
				t.Errorf("%s %q: 200 %q", endpoint, p, a.body)
			}
			for _, s := range secrets {
				if strings.Contains(a.body, s) {
					t.Errorf("%s %q gave %q", endpoint, p, a.body)
				}
			}
		}
	}
	a := request(t, ts, "GET", "/material/list", url.Values{"root": {"1"}}, grantTokenA, nil)
	if a.code != http.StatusOK || !strings.Contains(a.body, "cam1/mine.ts") {
		t.Errorf("list: %d %q", a.code, a.body)
	}
	for _, leak := range []string{"theirs.ts", "top.ts", "api.token", "sibling.ts", "abs.ts"} {
		if strings.Contains(a.body, leak) {
			t.Errorf("list names %s: %s", leak, a.body)
		}
	}

	// A member's folder that is a symlink (to a sibling, out of the folder,
	// or back to its own) opens nothing.
	for i, sub := range []string{"rec3", "rec4", "rec5"} {
		token := grantTokenB + string(rune('0'+i))
		mustAdd(t, g, Grant{Token: token, Sub: sub, For: sub})
		for _, endpoint := range []string{"list", "file"} {
			a := get(token, endpoint, "cam1/theirs.ts")
			if a.code != http.StatusForbidden || !strings.Contains(a.body, ErrOutsideRoot.Error()) {
				t.Errorf("grant for %s (a symlink), %s: %d %q; want 403 outside the root", sub, endpoint, a.code, a.body)
			}
		}
		if a := get(token, "file", "api.token"); a.code == http.StatusOK {
			t.Errorf("grant for %s (a symlink) read api.token: %q", sub, a.body)
		}
	}

	// rec1's folder swapped for a symlink to rec2's after the grant.
	if err := os.Rename(filepath.Join(folder, "rec1"), filepath.Join(folder, "rec1-moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("rec2", filepath.Join(folder, "rec1")); err != nil {
		t.Fatal(err)
	}
	if a := get(grantTokenA, "file", "cam1/theirs.ts"); a.code != http.StatusForbidden || strings.Contains(a.body, "rec2's recording") {
		t.Errorf("after the swap: %d %q; want 403", a.code, a.body)
	}
	if a := request(t, ts, "GET", "/material/list", url.Values{"root": {"1"}}, grantTokenA, nil); a.code != http.StatusForbidden {
		t.Errorf("list after the swap: %d %q; want 403", a.code, a.body)
	}
}

// A copy never gives a file or a folder more permissions than the source's:
// a 0600 file stays 0600, nothing becomes writable by group or others, and
// setuid, setgid and sticky bits are dropped; also over a material server,
// and for a temporary file an earlier run left 0644.
func TestCopyNeverGainsPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no permission bits")
	}
	files := map[string][2]fs.FileMode{ // source mode, wanted mode
		"secret/api.token":  {0o600, 0o600},
		"shared/group.ts":   {0o640, 0o640},
		"shared/public.ts":  {0o644, 0o644},
		"shared/writable":   {0o666, 0o644},
		"shared/readonly":   {0o444, 0o444},
		"shared/setuid":     {0o755 | fs.ModeSetuid, 0o755},
		"shared/setgid":     {0o750 | fs.ModeSetgid, 0o750},
		"sticky/x/owner.ts": {0o400, 0o400},
		"resumed/part.ts":   {0o600, 0o600},
	}
	dirs := map[string][2]fs.FileMode{
		"secret":   {0o700, 0o700},
		"shared":   {0o775 | fs.ModeSetgid, 0o755},
		"sticky":   {0o777 | fs.ModeSticky, 0o755},
		"sticky/x": {0o750, 0o750},
		"resumed":  {0o755, 0o755},
	}
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			src, dest := t.TempDir(), t.TempDir()
			for rel := range files {
				writeFile(t, filepath.Join(src, rel), []byte("content of "+rel), old)
			}
			// An earlier run's temporary file, 0644 as earlier versions made it.
			if err := os.MkdirAll(filepath.Join(dest, "resumed"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tempOf(dest, "resumed/part.ts"), []byte("content"), 0o644); err != nil {
				t.Fatal(err)
			}
			for rel, m := range files {
				chmodT(t, filepath.Join(src, rel), m[0])
			}
			for rel, m := range dirs {
				chmodT(t, filepath.Join(src, rel), m[0])
			}
			rep, err := Copy(t.Context(), Job{Source: kind.make(t, src), Dest: dest})
			if err != nil || len(rep.Copied) != len(files) {
				t.Fatalf("copy: %v; %s", err, rep.Summary())
			}
			for rel, m := range files {
				checkMode(t, filepath.Join(dest, rel), m[1])
			}
			for rel, m := range dirs {
				if rel == "resumed" {
					continue // made by the test
				}
				checkMode(t, filepath.Join(dest, rel), m[1])
			}
		})
	}
}

// A source that says no mode (a material server of an earlier version)
// gives owner-only files and folders.
func TestCopyWithoutModesIsOwnerOnly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no permission bits")
	}
	if FilePerm(0) != 0o600 || DirPerm(0) != 0o700 {
		t.Errorf("FilePerm(0) %o, DirPerm(0) %o; want 0600, 0700", FilePerm(0), DirPerm(0))
	}
	src, dest := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "cam/a.ts"), []byte("a"), old)
	rep, err := Copy(t.Context(), Job{Source: modeless{Local(src)}, Dest: dest})
	if err != nil || len(rep.Copied) != 1 {
		t.Fatalf("copy: %v; %s", err, rep.Summary())
	}
	checkMode(t, filepath.Join(dest, "cam"), 0o700)
	checkMode(t, filepath.Join(dest, "cam/a.ts"), 0o600)
}

// modeless is a Source that lists no modes and no folders.
type modeless struct{ Source }

func (m modeless) List(ctx context.Context, since, until time.Time) ([]FileInfo, error) {
	files, err := m.Source.List(ctx, since, until)
	for i := range files {
		files[i].Mode = 0
	}
	return files, err
}

func chmodT(t *testing.T, name string, m fs.FileMode) {
	t.Helper()
	if err := os.Chmod(name, m); err != nil {
		t.Fatal(err)
	}
}

func checkMode(t *testing.T, name string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	got := st.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if got != want {
		t.Errorf("%s: mode %v (%o), want %v (%o)", name, got, got, want, want)
	}
}
