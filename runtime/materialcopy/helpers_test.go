package materialcopy

import (
	"context"
	"encoding/binary"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testToken = "s3cret-token"

// old is an mtime well outside any Settle.
var old = time.Now().Add(-time.Hour).Truncate(time.Second)

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}

func writeFile(t *testing.T, name string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func fileHash(t *testing.T, name string) string {
	t.Helper()
	h, err := hashFile(context.Background(), name, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func exists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}

func tempOf(dest, rel string) string {
	dir, base := filepath.Split(filepath.Join(dest, filepath.FromSlash(rel)))
	return filepath.Join(dir, "."+base+TempSuffix)
}

// leftoverTemps lists the temporary files under dir.
func leftoverTemps(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, TempSuffix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// serve starts a material server for root "rec" at dir on 127.0.0.1,
// wrapped by wrap when not nil, and returns its URL.
func serve(t *testing.T, dir string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = NewServer(map[string]string{"rec": dir}, testToken)
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

func remoteFor(ts *httptest.Server) Source {
	return Remote(ts.URL+"?root=rec", testToken, ts.Client())
}

// sourceKinds makes a Source for a folder: path to path, and over HTTP.
var sourceKinds = []struct {
	name string
	make func(t *testing.T, dir string) Source
}{
	{"local", func(t *testing.T, dir string) Source { return Local(dir) }},
	{"remote", func(t *testing.T, dir string) Source { return remoteFor(serve(t, dir, nil)) }},
}

func copied(rep Report, path string) (File, bool) {
	for _, f := range rep.Copied {
		if f.Path == path {
			return f, true
		}
	}
	return File{}, false
}

func findSkip(list []Skip, path string) (Skip, bool) {
	for _, s := range list {
		if s.Path == path {
			return s, true
		}
	}
	return Skip{}, false
}
