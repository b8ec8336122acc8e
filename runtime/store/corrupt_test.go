package store

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// healthyFile writes a state file with some values and returns its path.
func healthyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := s.Put("items", strings.Repeat("k", i%40)+string(rune('a'+i%26)), item{strings.Repeat("v", i*10), i}); err != nil {
			t.Fatal(err)
		}
	}
	if s.Recovered() != nil {
		t.Fatalf("a new file was recovered: %+v", s.Recovered())
	}
	s.Close()
	return path
}

// TestCorruptStateFilesAreMovedAsideNotCrashedOn damages a state file the
// ways a disk, a power cut or a person do; each time Open must neither panic
// nor die of SIGBUS, but move the file aside and start empty, saying why.
func TestCorruptStateFilesAreMovedAsideNotCrashedOn(t *testing.T) {
	damage := map[string]func(t *testing.T, path string){
		"empty": func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/3); err != nil {
				t.Fatal(err)
			}
		},
		"truncated inside the first page": func(t *testing.T, path string) {
			if err := os.Truncate(path, 40); err != nil {
				t.Fatal(err)
			}
		},
		"its last pages in use cut off": func(t *testing.T, path string) {
			m := metaOf(t, path)
			if err := os.Truncate(path, int64(m.pgid-2)*int64(m.pageSize)); err != nil {
				t.Fatal(err)
			}
		},
		"its data pages scrambled": func(t *testing.T, path string) {
			m := metaOf(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 6))
			for pg := uint64(2); pg < m.pgid; pg++ {
				if pg == m.freelist || pg == m.root {
					continue
				}
				for i := pg * uint64(m.pageSize); i < (pg+1)*uint64(m.pageSize); i++ {
					b[i] = byte(r.Uint32())
				}
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"random bytes everywhere": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			b := make([]byte, fi.Size())
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"random bytes after the meta pages": func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(3, 4))
			for i := 2 * os.Getpagesize(); i < len(b); i++ {
				b[i] = byte(r.Uint32())
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			path := healthyFile(t)
			f(t, path)
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			rec := s.Recovered()
			if rec == nil {
				t.Fatal("a damaged state file was opened as if it were sound")
			}
			if _, err := os.Stat(rec.MovedTo); err != nil || !strings.HasPrefix(rec.MovedTo, path+".corrupt-") {
				t.Fatalf("moved to %q: %v", rec.MovedTo, err)
			}
			msg := rec.Message(path)
			if !strings.Contains(msg, "was corrupt") || !strings.Contains(msg, rec.MovedTo) || rec.Reason == "" {
				t.Fatalf("message %q", msg)
			}
			t.Log(msg)
			// The fresh store works and is sound when opened again.
			if err := s.Put("items", "a", item{"alpha", 1}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s2, err := Open(path, Options{})
			if err != nil || s2.Recovered() != nil {
				t.Fatalf("reopening the fresh file: %v, recovered %+v", err, s2.Recovered())
			}
			s = s2
		})
	}
}

func TestASoundStateFileIsNotMovedAside(t *testing.T) {
	path := healthyFile(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Recovered() != nil {
		t.Fatalf("recovered a sound file: %+v", s.Recovered())
	}
	var got item
	if found, err := s.Get("items", "a", &got); err != nil || !found {
		t.Fatalf("value lost: %v %v", found, err)
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 0 {
		t.Fatalf("moved aside: %v", matches)
	}
}

func TestAStateFileInUseIsAnErrorNotCorrupt(t *testing.T) {
	path := healthyFile(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v", err)
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 0 {
		t.Fatalf("moved aside: %v", matches)
	}
}

// metaOf reads the newest meta page of a sound state file.
func metaOf(t *testing.T, path string) boltMeta {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m0, err0 := readMeta(b)
	m1, err1 := readMeta(b[m0.pageSize:])
	if err0 != nil || err1 != nil {
		t.Fatalf("meta pages: %v, %v", err0, err1)
	}
	if m1.txid > m0.txid {
		return m1
	}
	return m0
}
