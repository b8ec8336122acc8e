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

// A full disk costs no line: what could not be written waits, in order,
// and is written once the disk has room (at the next line, or at Retry);
// the failure is reported once, and no partial line is left.
func TestFullDiskKeepsItsLinesUntilThereIsRoom(t *testing.T) {
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
	if err := j.Write(entry{N: 2, Text: "waits"}); err == nil {
		t.Fatal("a write on a full disk did not fail")
	}
	if err := j.Write(entry{N: 3, Text: "waits"}); err != nil {
		t.Fatalf("a second failure reported again: %v", err)
	}
	if n, lost := j.Waiting(); n != 2 || lost != 0 {
		t.Fatalf("waiting %d, lost %d; want 2 and 0", n, lost)
	}
	read := func() []int {
		var got []int
		skipped, err := Read(path, func(e entry) error { got = append(got, e.N); return nil })
		if err != nil || skipped != 0 {
			t.Fatalf("read %v (skipped %d, %v): a partial line", got, skipped, err)
		}
		return got
	}
	if got := read(); len(got) != 1 {
		t.Fatalf("read %v while the disk is full, want [1]", got)
	}
	ff.full = false
	if err := j.Retry(); err != nil {
		t.Fatalf("the disk has room again: %v", err)
	}
	if err := j.Write(entry{N: 4}); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 4 || got[0] != 1 || got[1] != 2 || got[2] != 3 || got[3] != 4 {
		t.Fatalf("read %v, want [1 2 3 4]", got)
	}
}

// At most MaxBytes of lines wait: beyond that the oldest are dropped and
// counted, and the newest are written once there is room.
func TestWaitingLinesAreBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.journal")
	j, err := Open(path, Options{MaxBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ff := &fullFile{File: j.f.(*os.File), full: true}
	j.f, j.w = ff, bufio.NewWriter(ff)
	for n := 1; n <= 10; n++ {
		j.Write(entry{N: n, Text: "0123456789"}) // about 30 bytes a line
	}
	n, lost := j.Waiting()
	if lost == 0 || n+lost != 10 || n > 4 {
		t.Fatalf("waiting %d, lost %d; want at most 100 bytes waiting, the rest counted lost", n, lost)
	}
	ff.full = false
	if err := j.Retry(); err != nil {
		t.Fatal(err)
	}
	var got []int
	if _, err := Read(path, func(e entry) error { got = append(got, e.N); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n || got[len(got)-1] != 10 {
		t.Fatalf("read %v, want the newest %d lines", got, n)
	}
}
