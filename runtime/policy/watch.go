package policy

import (
	"context"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// maxWatchedFiles bounds the work of one poll.
const maxWatchedFiles = 1000

// Watch calls onChange whenever the .lua files under dir change, checking
// every interval until ctx ends. It compares contents, not times, so editors
// that save by writing a new file and renaming it are seen too.
func Watch(ctx context.Context, dir string, interval time.Duration, onChange func()) {
	last := Fingerprint(dir)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if now := Fingerprint(dir); now != last {
				last = now
				onChange()
			}
		}
	}
}

// Fingerprint hashes the names and contents of the .lua files under dir.
func Fingerprint(dir string) uint64 {
	h := fnv.New64a()
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || n >= maxWatchedFiles {
			return nil
		}
		if d.IsDir() && path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".lua") {
			return nil
		}
		n++
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		h.Write([]byte(path))
		h.Write([]byte{0})
		h.Write(data)
		return nil
	})
	return h.Sum64()
}
