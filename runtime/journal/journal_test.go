package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	N    int    `json:"n"`
	Text string `json:"text"`
}

func TestRotationKeepsTheNewestAndReadsInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.journal")
	j, err := Open(path, Options{MaxBytes: 200, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := j.Write(entry{N: i, Text: strings.Repeat("x", 20)}); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	files := Files(path)
	if len(files) != 3 || files[2] != path {
		t.Fatalf("files %v: want NAME.2, NAME.1, NAME", files)
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Size() > 200 {
			t.Errorf("%s is %d bytes, over the bound", f, st.Size())
		}
	}
	var got []int
	skipped, err := Read(path, func(e entry) error { got = append(got, e.N); return nil })
	if err != nil || skipped != 0 {
		t.Fatalf("Read: %v, skipped %d", err, skipped)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("entries out of order or missing in the middle: %v", got)
		}
	}
	if got[len(got)-1] != 39 || got[0] == 0 {
		t.Fatalf("read %v: want the newest entries up to 39, the oldest rotated away", got)
	}

	// Reopened, it appends; a torn last line is skipped, not fatal.
	j, err = Open(path, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	j.Write(entry{N: 40})
	j.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"n": 41, "te`)
	f.Close()
	got = nil
	skipped, err = Read(path, func(e entry) error { got = append(got, e.N); return nil })
	if err != nil || skipped != 1 || got[len(got)-1] != 40 {
		t.Fatalf("after reopening: %v, skipped %d, err %v", got, skipped, err)
	}
}

func TestReadMissingJournal(t *testing.T) {
	if _, err := Read(filepath.Join(t.TempDir(), "none"), func(entry) error { return nil }); err == nil {
		t.Fatal("reading a journal that does not exist succeeded")
	}
}
