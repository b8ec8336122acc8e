package materialcopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// archiveCase is a source archive of 60 files in nested folders and a
// destination that has some of them: 20% missing, some partial, one newer
// and different, one bigger, one earlier temporary file to resume, one
// garbage temporary file to restart.
type archiveCase struct {
	src, dest string
	files     map[string][]byte
	missing   []string
	partial   map[string]int64 // path → bytes on the destination
	conflicts []string
	resumable map[string]int64 // path → bytes in the temporary file
	garbage   string
}

func newArchive(t *testing.T) *archiveCase {
	rng := rand.New(rand.NewPCG(4, 4))
	a := &archiveCase{
		src: t.TempDir(), dest: t.TempDir(),
		files: map[string][]byte{}, partial: map[string]int64{}, resumable: map[string]int64{},
	}
	for i := range 60 {
		rel := fmt.Sprintf("cam%02d/2026-01-%02d/%02d/seg%03d.mkv", i%4, 1+i%3, i%5, i)
		var size int
		switch {
		case i%10 == 0:
			size = 0
		case i%15 == 1:
			size = 400<<10 + rng.IntN(1000)
		default:
			size = 1 + rng.IntN(120<<10)
		}
		data := randomBytes(rng, size)
		a.files[rel] = data
		writeFile(t, filepath.Join(a.src, rel), data, old)
		dst := filepath.Join(a.dest, rel)
		switch {
		case i%5 == 0:
			a.missing = append(a.missing, rel)
		case i == 3: // newer and different, same size
			other := randomBytes(rng, size)
			writeFile(t, dst, other, old.Add(30*time.Minute))
			a.conflicts = append(a.conflicts, rel)
		case i == 9: // bigger on the destination
			writeFile(t, dst, append(bytes.Clone(data), 1, 2, 3), old)
			a.conflicts = append(a.conflicts, rel)
		case i == 13: // an earlier run's temporary file, two thirds done
			n := int64(size * 2 / 3)
			writeFile(t, tempOf(a.dest, rel), data[:n], time.Now())
			a.resumable[rel] = n
		case i == 17: // a temporary file that is not the source's beginning
			writeFile(t, tempOf(a.dest, rel), randomBytes(rng, size/2), time.Now())
			a.garbage = rel
		case i%7 == 1: // partial on the destination
			n := int64(size / 2)
			writeFile(t, dst, data[:n], old)
			a.partial[rel] = n
		default:
			writeFile(t, dst, data, old)
		}
	}
	return a
}

func TestCopyArchive(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			a := newArchive(t)
			conflictHash := map[string]string{}
			for _, rel := range a.conflicts {
				conflictHash[rel] = fileHash(t, filepath.Join(a.dest, rel))
			}
			rep, err := Copy(t.Context(), Job{Source: kind.make(t, a.src), Dest: a.dest})
			if err != nil {
				t.Fatalf("Copy: %v\n%+v", err, rep)
			}
			t.Log(rep.Summary())

			if len(rep.Failed) != 0 {
				t.Errorf("failed: %+v", rep.Failed)
			}
			if len(rep.Conflicts) != len(a.conflicts) {
				t.Errorf("conflicts = %+v, want %v", rep.Conflicts, a.conflicts)
			}
			for _, rel := range a.conflicts {
				s, ok := findSkip(rep.Conflicts, rel)
				if !ok || !strings.Contains(s.Reason, ReasonConflict) {
					t.Errorf("%s: not reported as conflict (%+v)", rel, s)
				}
				if got := fileHash(t, filepath.Join(a.dest, rel)); got != conflictHash[rel] {
					t.Errorf("%s: conflicting file was touched", rel)
				}
			}
			for rel, data := range a.files {
				if _, ok := findSkip(rep.Conflicts, rel); ok {
					continue
				}
				got, err := os.ReadFile(filepath.Join(a.dest, rel))
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s: not equal on the destination (err %v)", rel, err)
				}
				st, _ := os.Stat(filepath.Join(a.dest, rel))
				if st != nil && !st.ModTime().Equal(old) {
					t.Errorf("%s: mtime %v, want the source's %v", rel, st.ModTime(), old)
				}
			}
			for _, rel := range a.missing {
				if f, ok := copied(rep, rel); !ok || f.Note != NoteCopied || f.ResumedBytes != 0 || f.Bytes != int64(len(a.files[rel])) {
					t.Errorf("%s: missing file: %+v, %v", rel, f, ok)
				}
			}
			for rel, n := range a.partial {
				f, ok := copied(rep, rel)
				if !ok || f.Note != NotePartialCompleted || f.ResumedBytes != n || f.Bytes != int64(len(a.files[rel]))-n {
					t.Errorf("%s: partial: %+v, %v; want %d resumed", rel, f, ok, n)
				}
			}
			for rel, n := range a.resumable {
				f, ok := copied(rep, rel)
				if !ok || f.Note != NoteResumed || f.ResumedBytes != n || f.Bytes != int64(len(a.files[rel]))-n {
					t.Errorf("%s: temporary file not resumed: %+v, %v; want %d resumed", rel, f, ok, n)
				}
			}
			if f, ok := copied(rep, a.garbage); !ok || f.ResumedBytes != 0 || f.Bytes != int64(len(a.files[a.garbage])) {
				t.Errorf("%s: garbage temporary file: %+v, %v; want a copy from zero", a.garbage, f, ok)
			}
			wantCopied := len(a.missing) + len(a.partial) + len(a.resumable) + 1
			if len(rep.Copied) != wantCopied {
				t.Errorf("copied %d files, want %d", len(rep.Copied), wantCopied)
			}
			if len(rep.Copied)+len(rep.Skipped)+len(rep.Conflicts) != len(a.files) {
				t.Errorf("report does not account for every file: %s", rep.Summary())
			}
			for _, s := range rep.Skipped {
				if s.Reason != ReasonAlreadyThere {
					t.Errorf("skipped %s: %s", s.Path, s.Reason)
				}
			}
			if rep.ResumedBytes == 0 || rep.Bytes == 0 {
				t.Errorf("report bytes %d, resumed %d", rep.Bytes, rep.ResumedBytes)
			}
			if left := leftoverTemps(t, a.dest); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}

			// Again: nothing left to do.
			rep, err = Copy(t.Context(), Job{Source: kind.make(t, a.src), Dest: a.dest})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Copied) != 0 || rep.Bytes != 0 || len(rep.Conflicts) != len(a.conflicts) ||
				len(rep.Skipped) != len(a.files)-len(a.conflicts) {
				t.Errorf("second copy: %s", rep.Summary())
			}
		})
	}
}

func TestCopyWindow(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	base := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("h%d.ts", i)), []byte{byte(i)}, base.Add(time.Duration(i)*time.Hour))
	}
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			dest := filepath.Join(dest, kind.name)
			os.Mkdir(dest, 0o755)
			rep, err := Copy(t.Context(), Job{Source: kind.make(t, src), Dest: dest,
				Since: base.Add(time.Hour), Until: base.Add(3 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range rep.Copied {
				got = append(got, f.Path)
			}
			if strings.Join(got, ",") != "h1.ts,h2.ts,h3.ts" {
				t.Errorf("copied %v, want h1..h3", got)
			}
		})
	}
}

func TestDestinationMustExist(t *testing.T) {
	_, err := Copy(t.Context(), Job{Source: Local(t.TempDir()), Dest: filepath.Join(t.TempDir(), "not-mounted")})
	if err == nil || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("err = %v, want a missing destination refused", err)
	}
}

// cutter cuts the connection of /file answers after limit bytes while
// limit > 0.
type cutter struct {
	next  http.Handler
	limit atomic.Int64
}

type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= w.left {
		w.left -= int64(len(p))
		return w.ResponseWriter.Write(p)
	}
	w.ResponseWriter.Write(p[:w.left])
	w.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // the server closes the connection
}

func (c *cutter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := c.limit.Load(); n > 0 && r.URL.Path == "/file" {
		w = &cutWriter{ResponseWriter: w, left: n}
	}
	c.next.ServeHTTP(w, r)
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	big := randomBytes(rng, 3<<20)
	writeFile(t, filepath.Join(src, "day/big.mkv"), big, old)
	writeFile(t, filepath.Join(src, "a-small.mkv"), randomBytes(rng, 1000), old)

	var cut *cutter
	ts := serve(t, src, func(h http.Handler) http.Handler {
		cut = &cutter{next: h}
		cut.limit.Store(1 << 20)
		return cut
	})
	job := Job{Source: remoteFor(ts), Dest: dest}
	rep, err := Copy(t.Context(), job)
	if err == nil {
		t.Fatalf("copy through a cut connection succeeded: %s", rep.Summary())
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "day/big.mkv") || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("error %q does not name the file and the interruption", err)
	}
	if exists(filepath.Join(dest, "day/big.mkv")) {
		t.Fatal("target exists after an interrupted copy")
	}
	st, serr := os.Stat(tempOf(dest, "day/big.mkv"))
	if serr != nil || st.Size() == 0 || st.Size() >= int64(len(big)) {
		t.Fatalf("temporary file after the cut: %v, %v", st, serr)
	}
	kept := st.Size()
	if _, ok := findSkip(rep.Failed, "day/big.mkv"); !ok {
		t.Errorf("failed file not in the report: %+v", rep)
	}

	cut.limit.Store(0)
	rep, err = Copy(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := copied(rep, "day/big.mkv")
	if !ok || f.ResumedBytes != kept || f.Bytes >= int64(len(big)) || f.Bytes+f.ResumedBytes != int64(len(big)) {
		t.Fatalf("resumed copy: %+v (kept %d of %d)", f, kept, len(big))
	}
	if got := fileHash(t, filepath.Join(dest, "day/big.mkv")); got != fileHash(t, filepath.Join(src, "day/big.mkv")) {
		t.Fatal("resumed file differs from the source")
	}
	if left := leftoverTemps(t, dest); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestResumeAfterCancel(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	big := randomBytes(rand.New(rand.NewPCG(5, 6)), 2<<20)
	writeFile(t, filepath.Join(src, "big.mkv"), big, old)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var written int64
	job := Job{Source: Local(src), Dest: dest}
	job.write = func(f *os.File, p []byte) (int, error) {
		written += int64(len(p))
		if written >= 700<<10 {
			cancel()
		}
		return f.Write(p)
	}
	rep, err := Copy(ctx, job)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want cancelled", err)
	}
	st, serr := os.Stat(tempOf(dest, "big.mkv"))
	if serr != nil || st.Size() != written {
		t.Fatalf("temporary file %v, %v; want %d bytes", st, serr, written)
	}
	if rep.Bytes != written {
		t.Errorf("report bytes %d, written %d", rep.Bytes, written)
	}

	job.write = nil
	rep, err = Copy(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := copied(rep, "big.mkv")
	if !ok || f.ResumedBytes != written || f.Bytes != int64(len(big))-written {
		t.Fatalf("resumed copy: %+v, want %d resumed", f, written)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "big.mkv")); !bytes.Equal(got, big) {
		t.Fatal("resumed file differs")
	}
}

func TestStillBeingWritten(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			src, dest := t.TempDir(), t.TempDir()
			now := time.Now()
			writeFile(t, filepath.Join(src, "live.ts"), []byte("recording…"), now.Add(-5*time.Second))
			writeFile(t, filepath.Join(src, "done.ts"), []byte("finished"), old)

			clock := now
			job := Job{Source: kind.make(t, src), Dest: dest, Now: func() time.Time { return clock }}
			rep, err := Copy(t.Context(), job)
			if err != nil {
				t.Fatal(err)
			}
			s, ok := findSkip(rep.Skipped, "live.ts")
			if !ok || !strings.HasPrefix(s.Reason, ReasonStillWriting) {
				t.Fatalf("live.ts not skipped as still being written: %+v", rep)
			}
			if exists(filepath.Join(dest, "live.ts")) {
				t.Fatal("live.ts copied")
			}
			if _, ok := copied(rep, "done.ts"); !ok {
				t.Fatal("done.ts not copied")
			}

			clock = now.Add(DefaultSettle)
			rep, err = Copy(t.Context(), job)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := copied(rep, "live.ts"); !ok {
				t.Fatalf("live.ts not copied once settled: %+v", rep)
			}
		})
	}
}

// growing appends to a file of its source right after listing it, like a
// recorder that is still writing.
type growing struct {
	Source
	file string
	once sync.Once
}

func (g *growing) List(ctx context.Context, since, until time.Time) ([]FileInfo, error) {
	l, err := g.Source.List(ctx, since, until)
	g.once.Do(func() {
		f, ferr := os.OpenFile(g.file, os.O_APPEND|os.O_WRONLY, 0)
		if ferr == nil {
			f.Write([]byte("more"))
			f.Close()
		}
	})
	return l, err
}

func TestSizeChangesAfterListing(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	name := filepath.Join(src, "grows.ts")
	writeFile(t, name, []byte("start"), old)
	job := Job{Source: &growing{Source: Local(src), file: name}, Dest: dest, Settle: -1}
	rep, err := Copy(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := findSkip(rep.Skipped, "grows.ts"); !ok || !strings.HasPrefix(s.Reason, ReasonStillWriting) {
		t.Fatalf("growing file not skipped: %+v", rep)
	}
	if exists(filepath.Join(dest, "grows.ts")) {
		t.Fatal("growing file copied")
	}
	rep, err = Copy(t.Context(), job) // it no longer grows
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "grows.ts")); string(got) != "startmore" {
		t.Fatalf("copied %q: %s", got, rep.Summary())
	}
}

func TestDiskFull(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind.name, func(t *testing.T) {
			src, dest := t.TempDir(), t.TempDir()
			rng := rand.New(rand.NewPCG(7, 8))
			files := map[string][]byte{
				"a.mkv":     randomBytes(rng, 100<<10),
				"b/big.mkv": randomBytes(rng, 600<<10),
				"c.mkv":     randomBytes(rng, 100<<10),
			}
			for rel, data := range files {
				writeFile(t, filepath.Join(src, rel), data, old)
			}
			const room = 100<<10 + 300<<10 // a.mkv fits, b/big.mkv does not
			var written int64
			// One file at a time: the room is used up in the listing's
			// order. TestParallelStopsOnError is the same with several.
			job := Job{Source: kind.make(t, src), Dest: dest, Parallel: 1}
			job.write = func(f *os.File, p []byte) (int, error) {
				if written+int64(len(p)) > room {
					n, _ := f.Write(p[:room-written])
					written += int64(n)
					return n, syscall.ENOSPC
				}
				written += int64(len(p))
				return f.Write(p)
			}
			rep, err := Copy(t.Context(), job)
			if err == nil {
				t.Fatal("copy onto a full disk succeeded")
			}
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "b/big.mkv") || !strings.Contains(err.Error(), "disk full") {
				t.Fatalf("error %q: want the file named and \"disk full\"", err)
			}
			if _, ok := copied(rep, "a.mkv"); !ok || len(rep.Copied) != 1 {
				t.Errorf("report before the full disk: %+v", rep)
			}
			if _, ok := findSkip(rep.Failed, "b/big.mkv"); !ok {
				t.Errorf("full-disk file not in Failed: %+v", rep.Failed)
			}
			if exists(filepath.Join(dest, "b/big.mkv")) || exists(filepath.Join(dest, "c.mkv")) {
				t.Fatal("target created on a full disk")
			}
			if st, err := os.Stat(tempOf(dest, "b/big.mkv")); err != nil || st.Size() != 300<<10 {
				t.Fatalf("temporary file: %v, %v", st, err)
			}

			job.write = nil // space freed
			rep, err = Copy(t.Context(), job)
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := copied(rep, "b/big.mkv"); !ok || f.ResumedBytes != 300<<10 || f.Bytes != 300<<10 {
				t.Errorf("resume after the full disk: %+v", f)
			}
			for rel, data := range files {
				if got, _ := os.ReadFile(filepath.Join(dest, rel)); !bytes.Equal(got, data) {
					t.Errorf("%s differs", rel)
				}
			}
		})
	}
}

func TestBandwidthLimit(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	const n, limit = 96 << 10, 320 << 10 // 300 ms at the limit
	writeFile(t, filepath.Join(src, "f.bin"), randomBytes(rand.New(rand.NewPCG(9, 9)), n), old)
	start := time.Now()
	rep, err := Copy(t.Context(), Job{Source: Local(src), Dest: dest, BandwidthLimit: limit})
	took := time.Since(start)
	if err != nil || len(rep.Copied) != 1 {
		t.Fatalf("%v: %+v", err, rep)
	}
	if lower := time.Duration(0.5 * float64(n) / float64(limit) * float64(time.Second)); took < lower {
		t.Fatalf("copied %d bytes at %d B/s in %v, want at least %v", n, limit, took, lower)
	}
}

func TestProgress(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range 4 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("p%d.bin", i)), randomBytes(rng, 32<<10), old)
	}
	writeFile(t, filepath.Join(dest, "p0.bin"), nil, old) // a partial: empty
	var calls []Progress
	var at []time.Time
	rep, err := Copy(t.Context(), Job{Source: Local(src), Dest: dest, BandwidthLimit: 200 << 10,
		Progress: func(p Progress) { calls = append(calls, p); at = append(at, time.Now()) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < 2 {
		t.Fatalf("progress called %d times", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].BytesDone < calls[i-1].BytesDone || calls[i].FilesDone < calls[i-1].FilesDone {
			t.Errorf("progress went back: %+v then %+v", calls[i-1], calls[i])
		}
		if !calls[i].Final && at[i].Sub(at[i-1]) < 200*time.Millisecond {
			t.Errorf("progress called after %v", at[i].Sub(at[i-1]))
		}
		if calls[i-1].Final {
			t.Errorf("a call after the final one")
		}
	}
	last := calls[len(calls)-1]
	if !last.Final || last.BytesDone != last.BytesTotal || last.BytesTotal != 4*32<<10 ||
		last.FilesDone != last.FilesTotal || last.FilesTotal != 4 || last.Rate <= 0 {
		t.Errorf("final progress %+v", last)
	}
	if rep.Bytes != last.BytesDone {
		t.Errorf("report %d bytes, progress %d", rep.Bytes, last.BytesDone)
	}
}

func TestCompletedPartialChangedMeanwhile(t *testing.T) {
	// The partial file on the destination is written to while Copy works on
	// it: it must be left alone, not replaced.
	src, dest := t.TempDir(), t.TempDir()
	data := randomBytes(rand.New(rand.NewPCG(2, 2)), 64<<10)
	writeFile(t, filepath.Join(src, "x.mkv"), data, old)
	writeFile(t, filepath.Join(dest, "x.mkv"), data[:1000], old)
	job := Job{Source: Local(src), Dest: dest}
	job.write = func(f *os.File, p []byte) (int, error) {
		writeFile(t, filepath.Join(dest, "x.mkv"), data[:2000], time.Now())
		return f.Write(p)
	}
	rep, err := Copy(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := findSkip(rep.Conflicts, "x.mkv"); !ok {
		t.Fatalf("not a conflict: %+v", rep)
	}
	if st, _ := os.Stat(filepath.Join(dest, "x.mkv")); st.Size() != 2000 {
		t.Fatalf("destination replaced: %d bytes", st.Size())
	}
}

func TestSummary(t *testing.T) {
	r := Report{Copied: []File{{Path: "a", Bytes: 3 << 20, ResumedBytes: 1 << 20}}, Bytes: 3 << 20, ResumedBytes: 1 << 20,
		Skipped: []Skip{{"b", ReasonAlreadyThere}, {"c", ReasonStillWriting}}, Conflicts: []Skip{{"d", ReasonConflict}}, Took: 1500 * time.Millisecond}
	want := "material copy: 1 copied (3.0 MiB transferred, 1.0 MiB resumed), 2 skipped (1 still being written), 1 conflicts, 0 failed in 1.5s"
	if got := r.Summary(); got != want {
		t.Errorf("Summary() = %q\nwant        %q", got, want)
	}
}
