package materialcopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// counting is a Source that counts the calls made to it, per method and
// path ("hash a.mkv"), and how many are running (an Open until its reader
// is closed).
type counting struct {
	Source
	mu     sync.Mutex
	calls  map[string]int
	active atomic.Int64
}

func newCounting(s Source) *counting { return &counting{Source: s, calls: map[string]int{}} }

func (c *counting) count(method, path string) func() {
	c.mu.Lock()
	c.calls[method+" "+path]++
	c.mu.Unlock()
	c.active.Add(1)
	return func() { c.active.Add(-1) }
}

func (c *counting) n(method, path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method+" "+path]
}

func (c *counting) Stat(ctx context.Context, path string) (FileInfo, error) {
	defer c.count("stat", path)()
	return c.Source.Stat(ctx, path)
}

func (c *counting) Hash(ctx context.Context, path string, length int64) (string, error) {
	defer c.count("hash", path)()
	return c.Source.Hash(ctx, path, length)
}

func (c *counting) Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	done := c.count("open", path)
	rc, err := c.Source.Open(ctx, path, offset)
	if err != nil {
		done()
		return nil, err
	}
	return &closeFunc{ReadCloser: rc, done: done}, nil
}

type closeFunc struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (c *closeFunc) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.done)
	return err
}

func TestQuickCheck(t *testing.T) {
	data := randomBytes(rand.New(rand.NewPCG(11, 11)), 50<<10)
	other := bytes.Clone(data)
	other[len(other)/2] ^= 0xff
	later := old.Add(10 * time.Minute)
	cases := []struct {
		name     string
		dest     []byte // on the destination, with mtime destMod
		destMod  time.Time
		checksum bool
		conflict bool // else skipped as already there
		hashes   int  // hash requests to the source
	}{
		{"same size and mtime", data, old, false, false, 0},
		{"same size and mtime, checksum", data, old, true, false, 1},
		// The quick check trusts size and mtime: a file that differs
		// with both the same is taken as there (and never overwritten).
		{"same size and mtime, different content", other, old, false, false, 0},
		{"same size and mtime, different content, checksum", other, old, true, true, 1},
		{"same size, other mtime", data, later, false, false, 1},
		{"same size, other mtime, different content", other, later, false, true, 1},
		{"same size, other mtime, different content, checksum", other, later, true, true, 1},
	}
	for _, kind := range sourceKinds {
		for _, c := range cases {
			t.Run(kind.name+"/"+c.name, func(t *testing.T) {
				src, dest := t.TempDir(), t.TempDir()
				writeFile(t, filepath.Join(src, "day/f.mkv"), data, old)
				writeFile(t, filepath.Join(dest, "day/f.mkv"), c.dest, c.destMod)
				writeFile(t, tempOf(dest, "day/f.mkv"), data[:100], old) // a leftover, removed when the file is there
				s := newCounting(kind.make(t, src))
				rep, err := Copy(t.Context(), Job{Source: s, Dest: dest, Checksum: c.checksum})
				if err != nil {
					t.Fatal(err)
				}
				if c.conflict {
					if _, ok := findSkip(rep.Conflicts, "day/f.mkv"); !ok || len(rep.Skipped) != 0 {
						t.Errorf("not a conflict: %+v", rep)
					}
				} else if sk, ok := findSkip(rep.Skipped, "day/f.mkv"); !ok || sk.Reason != ReasonAlreadyThere || len(rep.Conflicts) != 0 {
					t.Errorf("not skipped as already there: %+v", rep)
				}
				if len(rep.Copied) != 0 || rep.Bytes != 0 {
					t.Errorf("copied: %+v", rep)
				}
				if got := s.n("hash", "day/f.mkv"); got != c.hashes {
					t.Errorf("%d hash requests, want %d", got, c.hashes)
				}
				if n := s.n("open", "day/f.mkv") + s.n("stat", "day/f.mkv"); n != 0 {
					t.Errorf("%d stat or open requests for a file not copied", n)
				}
				if got, _ := os.ReadFile(filepath.Join(dest, "day/f.mkv")); !bytes.Equal(got, c.dest) {
					t.Error("the destination's file was changed")
				}
				if exists(tempOf(dest, "day/f.mkv")) == !c.conflict {
					t.Errorf("leftover temporary file: exists %v", !c.conflict)
				}
			})
		}
	}
}

// TestQuickCheckReadsNothing: with the quick check, a destination with
// every file already there costs neither side a read. The destination's
// files are made unreadable (when that stops this process: not as root)
// and the source is counted.
func TestQuickCheckReadsNothing(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewPCG(12, 12))
	for i := range 30 {
		rel := fmt.Sprintf("cam%d/seg%02d.mkv", i%3, i)
		data := randomBytes(rng, 1+rng.IntN(20<<10))
		writeFile(t, filepath.Join(src, rel), data, old)
		writeFile(t, filepath.Join(dest, rel), data, old)
		if err := os.Chmod(filepath.Join(dest, rel), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			s := newCounting(kind.make(t, src))
			rep, err := Copy(t.Context(), Job{Source: s, Dest: dest})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Skipped) != 30 || len(rep.Copied)+len(rep.Conflicts)+len(rep.Failed) != 0 {
				t.Errorf("report: %s", rep.Summary())
			}
			if len(s.calls) != 0 {
				t.Errorf("the source was asked for %v", s.calls)
			}
		})
	}
}

// corruptFirst flips the first byte of the content that /file answers for
// path (whatever range was asked for), as a faulty link would.
type corruptFirst struct {
	next http.Handler
	path string
}

type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (w *flipWriter) Write(p []byte) (int, error) {
	if !w.done && len(p) > 0 {
		w.done = true
		p = bytes.Clone(p)
		p[0] ^= 0x40
	}
	return w.ResponseWriter.Write(p)
}

func (c *corruptFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/file" && r.URL.Query().Get("path") == c.path {
		w = &flipWriter{ResponseWriter: w}
	}
	c.next.ServeHTTP(w, r)
}

// corruptLocal is a Source whose Open flips the first byte of path's content.
type corruptLocal struct {
	Source
	path string
}

func (c *corruptLocal) Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	rc, err := c.Source.Open(ctx, path, offset)
	if err != nil || path != c.path {
		return rc, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		b[0] ^= 0x40
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// TestVerifyCatchesCorruptTransfer: a byte changed on the way is caught by
// the hash of what was written, for a file copied whole, resumed from a
// temporary file or completing a partial one; the temporary file is
// removed, the file fails alone, and the next copy gets it right.
func TestVerifyCatchesCorruptTransfer(t *testing.T) {
	data := randomBytes(rand.New(rand.NewPCG(13, 13)), 300<<10)
	const bad = "bad.mkv"
	kinds := []struct {
		name  string
		make  func(t *testing.T, dir string) Source
		clean func(t *testing.T, dir string) Source
	}{
		{"local",
			func(t *testing.T, dir string) Source { return &corruptLocal{Source: Local(dir), path: bad} },
			func(t *testing.T, dir string) Source { return Local(dir) }},
		{"remote",
			func(t *testing.T, dir string) Source {
				return remoteFor(serve(t, dir, func(h http.Handler) http.Handler { return &corruptFirst{next: h, path: bad} }))
			},
			func(t *testing.T, dir string) Source { return remoteFor(serve(t, dir, nil)) }},
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, dest string)
	}{
		{"missing", func(t *testing.T, dest string) {}},
		{"resumed", func(t *testing.T, dest string) { writeFile(t, tempOf(dest, bad), data[:100<<10], time.Now()) }},
		{"partial", func(t *testing.T, dest string) { writeFile(t, filepath.Join(dest, bad), data[:100<<10], old) }},
	}
	for _, kind := range kinds {
		for _, c := range cases {
			t.Run(kind.name+"/"+c.name, func(t *testing.T) {
				src, dest := t.TempDir(), t.TempDir()
				writeFile(t, filepath.Join(src, bad), data, old)
				writeFile(t, filepath.Join(src, "good.mkv"), data[:1000], old)
				c.setup(t, dest)
				before, _ := os.ReadFile(filepath.Join(dest, bad))

				rep, err := Copy(t.Context(), Job{Source: kind.make(t, src), Dest: dest})
				if err != nil {
					t.Fatalf("a corrupt file stopped the copy: %v", err)
				}
				f, ok := findSkip(rep.Failed, bad)
				if !ok || !strings.Contains(f.Reason, "verification failed") {
					t.Fatalf("corrupt transfer not caught: %+v", rep)
				}
				if _, ok := copied(rep, "good.mkv"); !ok {
					t.Errorf("the other file was not copied: %+v", rep)
				}
				if exists(tempOf(dest, bad)) {
					t.Error("the corrupt temporary file was kept")
				}
				if got, _ := os.ReadFile(filepath.Join(dest, bad)); !bytes.Equal(got, before) {
					t.Error("the destination's file was changed")
				}

				rep, err = Copy(t.Context(), Job{Source: kind.clean(t, src), Dest: dest})
				if err != nil || len(rep.Copied) != 1 {
					t.Fatalf("second copy: %v, %s", err, rep.Summary())
				}
				if got, _ := os.ReadFile(filepath.Join(dest, bad)); !bytes.Equal(got, data) {
					t.Error("second copy differs from the source")
				}
			})
		}
	}
}

// TestVerifyCoversKeptBeginning: the beginning kept from an earlier run is
// part of what is verified: a temporary file whose beginning changes after
// it was compared fails verification.
func TestVerifyCoversKeptBeginning(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	data := randomBytes(rand.New(rand.NewPCG(14, 14)), 200<<10)
	writeFile(t, filepath.Join(src, "x.mkv"), data, old)
	writeFile(t, tempOf(dest, "x.mkv"), data[:50<<10], time.Now())
	s := &afterStat{Source: Local(src), fn: func() {
		// Between the comparison and the copy, the kept part changes.
		f, err := os.OpenFile(tempOf(dest, "x.mkv"), os.O_WRONLY, 0)
		if err == nil {
			f.WriteAt([]byte{data[10] ^ 1}, 10)
			f.Close()
		}
	}}
	rep, err := Copy(t.Context(), Job{Source: s, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := findSkip(rep.Failed, "x.mkv"); !ok || !strings.Contains(f.Reason, "verification failed") {
		t.Fatalf("changed beginning not caught: %+v", rep)
	}
	if exists(filepath.Join(dest, "x.mkv")) || exists(tempOf(dest, "x.mkv")) {
		t.Error("target or temporary file left")
	}
}

// afterStat calls fn after the first Stat.
type afterStat struct {
	Source
	once sync.Once
	fn   func()
}

func (a *afterStat) Stat(ctx context.Context, path string) (FileInfo, error) {
	fi, err := a.Source.Stat(ctx, path)
	a.once.Do(a.fn)
	return fi, err
}

// TestNoHashAskedTwice: a copy asks the source for a file's hash once per
// length: a missing file costs one hash, two stats and one open; a complete
// temporary file left by an interrupted run is verified with the hash its
// comparison asked for.
func TestNoHashAskedTwice(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewPCG(15, 15))
	full, part := randomBytes(rng, 80<<10), randomBytes(rng, 80<<10)
	writeFile(t, filepath.Join(src, "missing.mkv"), randomBytes(rng, 80<<10), old)
	writeFile(t, filepath.Join(src, "complete-temp.mkv"), full, old)
	writeFile(t, tempOf(dest, "complete-temp.mkv"), full, time.Now())
	writeFile(t, filepath.Join(src, "partial.mkv"), part, old)
	writeFile(t, filepath.Join(dest, "partial.mkv"), part[:30<<10], old)
	writeFile(t, tempOf(dest, "partial.mkv"), part[:30<<10], time.Now()) // as long as the partial file

	s := newCounting(remoteFor(serve(t, src, nil)))
	rep, err := Copy(t.Context(), Job{Source: s, Dest: dest})
	if err != nil || len(rep.Copied) != 3 {
		t.Fatalf("%v: %s", err, rep.Summary())
	}
	for _, c := range []struct {
		path               string
		hash, stat, opened int
	}{
		{"missing.mkv", 1, 2, 1},
		{"complete-temp.mkv", 1, 2, 0}, // nothing left to transfer
		{"partial.mkv", 2, 2, 1},       // its beginning, then all of it
	} {
		if h, st, o := s.n("hash", c.path), s.n("stat", c.path), s.n("open", c.path); h != c.hash || st != c.stat || o != c.opened {
			t.Errorf("%s: %d hash, %d stat, %d open requests; want %d, %d, %d", c.path, h, st, o, c.hash, c.stat, c.opened)
		}
	}
	for _, rel := range []string{"complete-temp.mkv", "partial.mkv"} {
		if got, want := fileHash(t, filepath.Join(dest, rel)), fileHash(t, filepath.Join(src, rel)); got != want {
			t.Errorf("%s differs from the source", rel)
		}
	}
}

// TestParallelSameAsSerial: copying an archive several files at once gives
// the same files and the same report as one at a time, and calls Progress
// one call at a time with counts that only grow.
func TestParallelSameAsSerial(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			var reps []Report
			var dests []*archiveCase
			for _, par := range []int{1, 8} {
				a := newArchive(t)
				var (
					inCall   atomic.Int32
					overlaps atomic.Int32
					mu       sync.Mutex
					calls    []Progress
				)
				rep, err := Copy(t.Context(), Job{Source: kind.make(t, a.src), Dest: a.dest, Parallel: par,
					Progress: func(p Progress) {
						if inCall.Add(1) > 1 {
							overlaps.Add(1)
						}
						time.Sleep(time.Millisecond) // widen the window for an overlap
						mu.Lock()
						calls = append(calls, p)
						mu.Unlock()
						inCall.Add(-1)
					}})
				if err != nil {
					t.Fatalf("parallel %d: %v", par, err)
				}
				if overlaps.Load() != 0 {
					t.Errorf("parallel %d: Progress calls overlapped", par)
				}
				for i := 1; i < len(calls); i++ {
					if calls[i].BytesDone < calls[i-1].BytesDone || calls[i].FilesDone < calls[i-1].FilesDone {
						t.Errorf("parallel %d: progress went back: %+v then %+v", par, calls[i-1], calls[i])
					}
				}
				if last := calls[len(calls)-1]; !last.Final || last.FilesDone != last.FilesTotal || last.BytesDone != last.BytesTotal || last.BytesDone != rep.Bytes {
					t.Errorf("parallel %d: final progress %+v, report %d bytes", par, last, rep.Bytes)
				}
				rep.Took = 0
				reps = append(reps, rep)
				dests = append(dests, a)
			}
			if !reflect.DeepEqual(reps[0], reps[1]) {
				t.Errorf("reports differ:\n1: %+v\n8: %+v", reps[0], reps[1])
			}
			for rel := range dests[0].files {
				a, errA := os.ReadFile(filepath.Join(dests[0].dest, rel))
				b, errB := os.ReadFile(filepath.Join(dests[1].dest, rel))
				if !bytes.Equal(a, b) || (errA == nil) != (errB == nil) {
					t.Errorf("%s differs between the two copies", rel)
				}
			}
			if left := leftoverTemps(t, dests[1].dest); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// manyFiles writes n files of size bytes under src and returns their paths.
func manyFiles(t *testing.T, src string, n, size int) []string {
	rng := rand.New(rand.NewPCG(16, 16))
	var out []string
	for i := range n {
		rel := fmt.Sprintf("cam%d/seg%02d.mkv", i%2, i)
		writeFile(t, filepath.Join(src, rel), randomBytes(rng, size), old)
		out = append(out, rel)
	}
	return out
}

// TestParallelStopsOnError: a full disk met by one worker stops the others
// promptly; Copy returns that error, reports that file alone as failed, and
// nothing touches the source or the destination once it has returned. The
// next copy resumes what was in flight.
func TestParallelStopsOnError(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			src, dest := t.TempDir(), t.TempDir()
			const size = 1 << 20
			files := manyFiles(t, src, 24, size)
			full := files[5]
			var returned, lateWrites atomic.Bool
			s := newCounting(kind.make(t, src))
			job := Job{Source: s, Dest: dest, Parallel: 4}
			job.write = func(f *os.File, p []byte) (int, error) {
				if returned.Load() {
					lateWrites.Store(true)
				}
				if strings.Contains(f.Name(), filepath.Base(full)) {
					return 0, syscall.ENOSPC
				}
				time.Sleep(5 * time.Millisecond) // a slow disk: the others are still busy
				return f.Write(p)
			}
			start := time.Now()
			rep, err := Copy(t.Context(), job)
			took := time.Since(start)
			returned.Store(true)
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), full) {
				t.Fatalf("err = %v, want the full disk on %s", err, full)
			}
			if len(rep.Failed) != 1 || rep.Failed[0].Path != full {
				t.Errorf("failed: %+v, want %s alone", rep.Failed, full)
			}
			if len(rep.Copied) >= len(files)-1 {
				t.Errorf("the other workers went on: %d copied", len(rep.Copied))
			}
			if n := s.active.Load(); n != 0 {
				t.Errorf("%d source calls still running after Copy returned", n)
			}
			if took > 5*time.Second {
				t.Errorf("took %v to stop", took)
			}
			time.Sleep(50 * time.Millisecond)
			if lateWrites.Load() {
				t.Error("a write after Copy returned")
			}

			job.write = nil
			rep, err = Copy(t.Context(), job)
			if err != nil {
				t.Fatal(err)
			}
			for _, rel := range files {
				if fileHash(t, filepath.Join(dest, rel)) != fileHash(t, filepath.Join(src, rel)) {
					t.Errorf("%s differs after the second copy", rel)
				}
			}
			if left := leftoverTemps(t, dest); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// TestParallelCancel: cancelling stops every worker; each file in flight
// is reported failed as interrupted and resumed by the next copy.
func TestParallelCancel(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			src, dest := t.TempDir(), t.TempDir()
			files := manyFiles(t, src, 16, 1<<20)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var written atomic.Int64
			var returned, lateWrites atomic.Bool
			s := newCounting(kind.make(t, src))
			job := Job{Source: s, Dest: dest, Parallel: 4}
			job.write = func(f *os.File, p []byte) (int, error) {
				if returned.Load() {
					lateWrites.Store(true)
				}
				if written.Add(int64(len(p))) > 3<<20 {
					cancel()
				}
				time.Sleep(2 * time.Millisecond)
				return f.Write(p)
			}
			rep, err := Copy(ctx, job)
			returned.Store(true)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want cancelled", err)
			}
			if len(rep.Failed) == 0 {
				t.Error("no file reported interrupted")
			}
			for _, f := range rep.Failed {
				if !strings.Contains(f.Reason, "interrupted") && !strings.Contains(f.Reason, "canceled") {
					t.Errorf("%s failed: %s", f.Path, f.Reason)
				}
			}
			if len(rep.Copied) >= len(files) {
				t.Errorf("everything copied despite the cancellation")
			}
			if n := s.active.Load(); n != 0 {
				t.Errorf("%d source calls still running after Copy returned", n)
			}
			time.Sleep(50 * time.Millisecond)
			if lateWrites.Load() {
				t.Error("a write after Copy returned")
			}

			job.write = nil
			rep2, err := Copy(t.Context(), job)
			if err != nil {
				t.Fatal(err)
			}
			if rep2.ResumedBytes == 0 {
				t.Errorf("nothing resumed: %s", rep2.Summary())
			}
			if len(rep.Copied)+len(rep2.Copied) != len(files) {
				t.Errorf("copied %d then %d of %d", len(rep.Copied), len(rep2.Copied), len(files))
			}
			for _, rel := range files {
				if fileHash(t, filepath.Join(dest, rel)) != fileHash(t, filepath.Join(src, rel)) {
					t.Errorf("%s differs after the second copy", rel)
				}
			}
		})
	}
}

// TestParallelBandwidthLimit: the limit is for the whole copy, not per
// worker.
func TestParallelBandwidthLimit(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	const n, files, limit = 96 << 10, 4, 320 << 10 // 1.2 s at the limit
	manyFiles(t, src, files, n)
	start := time.Now()
	rep, err := Copy(t.Context(), Job{Source: Local(src), Dest: dest, BandwidthLimit: limit, Parallel: files})
	took := time.Since(start)
	if err != nil || len(rep.Copied) != files {
		t.Fatalf("%v: %+v", err, rep)
	}
	if lower := time.Duration(0.5 * float64(n*files) / float64(limit) * float64(time.Second)); took < lower {
		t.Fatalf("copied %d bytes at %d B/s in %v, want at least %v", n*files, limit, took, lower)
	}
}

// TestLocalOpenConfinement: opening tries os.Root alone first and falls
// back to resolving symlinks when that fails; the answers are those of the
// resolving way alone: what resolves inside the root opens, what resolves
// outside it or is not a regular file is refused.
func TestLocalOpenConfinement(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	writeFile(t, filepath.Join(root, "a/x.bin"), []byte("inside"), old)
	writeFile(t, filepath.Join(outside, "secret.txt"), []byte("secret"), old)
	for link, target := range map[string]string{
		"rel":         "a/x.bin",                      // os.Root follows it
		"abs":         filepath.Join(root, "a/x.bin"), // os.Root refuses absolute links: resolved instead
		"dirlink":     "a",                            // a folder inside
		"outandback":  "../root/a/x.bin",              // leaves the root and comes back
		"self":        ".",                            // the root itself
		"out":         filepath.Join(outside, "secret.txt"),
		"outdir":      "../outside",
		"a/updirlink": "..",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		path string
		ok   bool
		err  error // when refused
	}{
		{"a/x.bin", true, nil},
		{"rel", true, nil},
		{"abs", true, nil},
		{"dirlink/x.bin", true, nil},
		{"outandback", true, nil},
		{"a/updirlink/a/x.bin", true, nil},
		{"self", false, ErrOutsideRoot},
		{"out", false, ErrOutsideRoot},
		{"outdir/secret.txt", false, ErrOutsideRoot},
		{"a", false, fs.ErrNotExist},
		{"a/none.bin", false, fs.ErrNotExist},
	}
	l := &local{root: root}
	for _, c := range cases {
		f, _, err := l.open(c.path)
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v", c.path, err)
				continue
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if string(b) != "inside" {
				t.Errorf("%s: read %q", c.path, b)
			}
			continue
		}
		if err == nil {
			f.Close()
			t.Errorf("%s: opened, want refused", c.path)
		} else if !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.path, err, c.err)
		}
	}
}
