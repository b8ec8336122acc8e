//go:build linux

package faults

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"understudy/fixtures/testhost"
)

// A state folder mounted for state_full is filled to the last byte (a
// write there fails with ENOSPC), has room again once the filler is
// removed, and when unmounted leaves what it held, the filler left out, in
// the folder underneath.
func TestStateFolderFull(t *testing.T) {
	testhost.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &runner{plan: &Plan{Hosts: []HostPlan{{Member: "m", StateDir: dir}}}}
	if err := r.mountStateDirs(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.unmountStateDirs(); err != nil {
			t.Error(err)
		}
	})
	kept := filepath.Join(dir, "m.db")
	if err := os.WriteFile(kept, []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fillStateDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "more"), make([]byte, 64<<10), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write in the full folder: %v, want ENOSPC", err)
	}
	if err := emptyStateDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "more"), make([]byte, 64<<10), 0o600); err != nil {
		t.Fatalf("a write once the filler is gone: %v", err)
	}
	if err := fillStateDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := r.unmountStateDirs(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(kept); err != nil || string(data) != "state" {
		t.Fatalf("after unmounting: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFiller)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the filler kept: %v", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type == 0x01021994 { // TMPFS_MAGIC
		t.Fatalf("still a tmpfs after unmounting (%v)", err)
	}
}
