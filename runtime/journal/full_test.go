package journal

import (
	"bufio"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// fullFile is the journal's file on a disk that is full while full is set:
// a write puts the first half of what it is given and fails with ENOSPC.
type fullFile struct {
	*os.File
	full bool
}

func (f *fullFile) Write(b []byte) (int, error) {
	if !f.full {
		return f.File.Write(b)
	}
	n, _ := f.File.Write(b[:len(b)/2])
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

// A full disk costs the lines written while it is full, reported once, and
// no more: no partial line is left, and once the disk has room the next
// line is written (the buffer's error does not stick).
func TestFullDiskLosesOnlyItsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.journal")
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ff := &fullFile{File: j.f.(*os.File)}
	j.f, j.w = ff, bufio.NewWriter(ff)
	if err := j.Write(entry{N: 1}); err != nil {
		t.Fatal(err)
	}
	ff.full = true
	if err := j.Write(entry{N: 2, Text: "lost"}); err == nil {
		t.Fatal("a write on a full disk did not fail")
	}
	if err := j.Write(entry{N: 3, Text: "lost"}); err != nil {
		t.Fatalf("a second failure reported again: %v", err)
	}
	ff.full = false
	if err := j.Write(entry{N: 4}); err != nil {
		t.Fatalf("the disk has room again: %v", err)
	}
	var got []int
	skipped, err := Read(path, func(e entry) error { got = append(got, e.N); return nil })
	if err != nil || skipped != 0 || len(got) != 2 || got[0] != 1 || got[1] != 4 {
		t.Fatalf("read %v (skipped %d, %v), want [1 4] and nothing skipped", got, skipped, err)
	}
}
