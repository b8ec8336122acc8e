package materialcopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zeebo/xxh3"
)

// DefaultSettle is Job.Settle when it is zero.
const DefaultSettle = 30 * time.Second

// DefaultParallel is Job.Parallel when it is zero or less.
const DefaultParallel = 4

// Reasons and notes in a Report.
const (
	ReasonAlreadyThere = "already there"
	ReasonStillWriting = "still being written"
	ReasonConflict     = "different on the destination; left alone"

	NoteCopied           = "copied"
	NoteResumed          = "resumed"           // an earlier run's temporary file was continued
	NotePartialCompleted = "partial completed" // a shorter file on the destination was completed
)

// Job says what Copy copies.
type Job struct {
	// Source is where the material is (the standby that recorded meanwhile).
	Source Source
	// Dest is the restored member's material folder on this machine. It must
	// exist: a missing folder usually means a disk that is not mounted, and
	// the copy must not fill the system disk instead.
	Dest string
	// Since and Until bound the modification times of the files to copy
	// (the period the member was covered); zero leaves that side open.
	Since, Until time.Time
	// Settle: a source file modified less than Settle before Now, or whose
	// size or mtime changes between the listing and the copy, is still being
	// written and is skipped. Zero means DefaultSettle; negative turns the
	// age check off (changes are still detected).
	Settle time.Duration
	// BandwidthLimit caps the transfer in bytes per second; 0 means none.
	// It is one limit for the whole copy, however many files are in flight.
	BandwidthLimit int64
	// Checksum compares a file that is already on the destination with the
	// same size by content (xxh3 of both sides) even when its modification
	// time is the source's too, like rsync --checksum. By default such a
	// file is already there and is skipped without reading either side
	// (rsync's quick check): Copy gives every file it places the source's
	// mtime, so what an earlier copy put there matches. A file whose size
	// matches but whose mtime does not is always compared by content.
	Checksum bool
	// Parallel is how many files are compared and copied at once: with
	// several in flight, one file's fsync and the source's round trips
	// overlap another's transfer. Zero or less means DefaultParallel; 1
	// copies one file at a time.
	Parallel int
	// Progress, when set, is called at most every 250 ms while copying and
	// once at the end (with Final set). Calls never overlap, even with
	// several files in flight.
	Progress func(Progress)
	// Now is the clock for Settle; nil means time.Now. Rates, ETA and Took
	// always use the real clock.
	Now func() time.Time

	// write writes to a destination file; nil means f.Write. Tests set it
	// to inject write errors (a full disk).
	write func(f *os.File, p []byte) (int, error)
}

// Progress is the state of a running Copy. Totals count the files to copy
// and the bytes to transfer for them (what is already on the destination is
// not counted), as decided after comparing both sides. Current is the file
// started last; others may be in flight too.
type Progress struct {
	FilesDone  int           `json:"files_done"`
	FilesTotal int           `json:"files_total"`
	BytesDone  int64         `json:"bytes_done"`
	BytesTotal int64         `json:"bytes_total"`
	Rate       float64       `json:"rate"` // bytes per second since the transfer started
	ETA        time.Duration `json:"eta"`  // 0 when unknown or done
	Current    string        `json:"current,omitempty"`
	Final      bool          `json:"final,omitempty"`
}

// File is a file Copy put in place.
type File struct {
	Path string `json:"path"`
	// Bytes were transferred from the source in this run.
	Bytes int64 `json:"bytes"`
	// ResumedBytes were already on the destination (an earlier run's
	// temporary file, or the partial file completed) and not transferred.
	ResumedBytes int64  `json:"resumed_bytes"`
	Note         string `json:"note"` // NoteCopied, NoteResumed or NotePartialCompleted
}

// Skip is a file Copy did not copy, and why.
type Skip struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Report says what a Copy did. It is filled in as far as the copy got when
// Copy returns an error.
type Report struct {
	Copied    []File `json:"copied"`
	Skipped   []Skip `json:"skipped"`   // ReasonAlreadyThere, ReasonStillWriting…
	Conflicts []Skip `json:"conflicts"` // different on the destination, left alone
	Failed    []Skip `json:"failed"`
	// Bytes is everything transferred from the source in this run,
	// including the bytes of files left unfinished in temporary files.
	Bytes int64 `json:"bytes"`
	// ResumedBytes is the sum of the copied files' ResumedBytes.
	ResumedBytes int64         `json:"resumed_bytes"`
	Took         time.Duration `json:"took"`
}

// Summary is a one-line account of the report for logs.
func (r Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "material copy: %d copied (%s transferred", len(r.Copied), human(r.Bytes))
	if r.ResumedBytes > 0 {
		fmt.Fprintf(&b, ", %s resumed", human(r.ResumedBytes))
	}
	fmt.Fprintf(&b, "), %d skipped", len(r.Skipped))
	writing := 0
	for _, s := range r.Skipped {
		if strings.HasPrefix(s.Reason, ReasonStillWriting) {
			writing++
		}
	}
	if writing > 0 {
		fmt.Fprintf(&b, " (%d still being written)", writing)
	}
	fmt.Fprintf(&b, ", %d conflicts, %d failed in %s", len(r.Conflicts), len(r.Failed), r.Took.Round(time.Millisecond))
	return b.String()
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// stopError is an error that ends the whole Copy (a write error on the
// destination, an interrupted transfer), as opposed to one that only fails
// one file.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

func writeFailure(rel string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return &stopError{fmt.Errorf("materialcopy: %s: destination disk full: %w", rel, err)}
	}
	return &stopError{fmt.Errorf("materialcopy: %s: writing the destination: %w", rel, err)}
}

// perFile tells an error that concerns one file only (it vanished or
// changed at the source, the server refused it) from one that must stop the
// copy (destination write errors, a dropped connection, cancellation).
func perFile(err error) bool {
	var stop *stopError
	if errors.As(err, &stop) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode != 401 && he.StatusCode != 403 || errors.Is(err, ErrOutsideRoot)
	}
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrChanged) ||
		errors.Is(err, ErrOutsideRoot) || errors.Is(err, fs.ErrPermission)
}

// plan is what Copy will do for one file.
type plan struct {
	fi     FileInfo
	rel    string // cleaned
	target string
	tmp    string
	// offset: bytes of the temporary file kept (resumed).
	offset int64
	// complete: the target is a partial file being completed; targetSize
	// and targetMod are what it was when compared, checked again before the
	// rename.
	complete   bool
	targetSize int64
	targetMod  time.Time
	// seed: start the temporary file from a copy of the target's content.
	seed bool
	// srcLen and srcSum are the last hash of the source's beginning that
	// the comparison asked for (srcSum empty: none), so that the same hash
	// is not asked for again.
	srcLen int64
	srcSum string
}

type copier struct {
	job    Job
	lim    *limiter
	chunk  int
	settle time.Duration

	// mu guards rep and prog, which the workers share, and serialises the
	// Progress callback.
	mu   sync.Mutex
	rep  *Report
	prog progress

	// dirMu makes one worker at a time create folders: a worker that finds
	// a folder already there must not go on before the one creating it has
	// fsynced its parent, or a file could be reported copied in a folder
	// whose entry is not yet on disk.
	dirMu sync.Mutex
	// dirModes are the permission bits of the source's folders, by path
	// relative to the root with slashes (nil: the source does not say).
	dirModes map[string]fs.FileMode
}

// Copy copies from job.Source to job.Dest what the destination lacks or has
// incomplete, for the files modified within [job.Since, job.Until]; see the
// package documentation for the rules. It never overwrites a file that
// differs on the destination.
//
// Copy stops and returns an error on a write error on the destination (the
// error says "destination disk full" for ENOSPC), when the context is
// cancelled or the connection to the source drops; the temporary files of
// the files being copied stay, and the next Copy resumes them. Files that
// vanished or changed at the source only fail themselves (Report.Failed)
// and the copy goes on. Up to job.Parallel files are in flight at once; all
// of them have stopped when Copy returns.
func Copy(ctx context.Context, job Job) (rep Report, err error) {
	start := time.Now()
	defer func() {
		rep.sortByPath()
		rep.Took = time.Since(start)
	}()
	if job.Source == nil {
		return rep, errors.New("materialcopy: no source")
	}
	st, err := os.Stat(job.Dest)
	if err != nil {
		return rep, fmt.Errorf("materialcopy: destination %s: %w (is the disk mounted?)", job.Dest, err)
	}
	if !st.IsDir() {
		return rep, fmt.Errorf("materialcopy: destination %s is not a folder", job.Dest)
	}
	c := &copier{job: job, rep: &rep, settle: job.Settle, lim: newLimiter(job.BandwidthLimit)}
	if c.settle == 0 {
		c.settle = DefaultSettle
	}
	if c.job.Now == nil {
		c.job.Now = time.Now
	}
	if c.job.write == nil {
		c.job.write = (*os.File).Write
	}
	if c.job.Parallel <= 0 {
		c.job.Parallel = DefaultParallel
	}
	c.chunk = bufSize
	if c.lim != nil {
		c.chunk = int(min(int64(bufSize), max(1024, job.BandwidthLimit/10)))
	}
	c.prog.fn = job.Progress

	var files []FileInfo
	if dl, ok := job.Source.(dirLister); ok {
		var dirs []DirInfo
		files, dirs, err = dl.listAll(ctx, job.Since, job.Until)
		c.dirModes = make(map[string]fs.FileMode, len(dirs))
		for _, d := range dirs {
			c.dirModes[d.Path] = d.Mode
		}
	} else {
		files, err = job.Source.List(ctx, job.Since, job.Until)
	}
	if err != nil {
		return rep, fmt.Errorf("materialcopy: listing the source: %w", err)
	}

	// Compare both sides first, so that the totals are known. The clock is
	// the caller's and may not be safe for concurrent use: ages are checked
	// here, before the workers start.
	var todo []FileInfo
	for _, fi := range files {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if age := c.job.Now().Sub(fi.ModTime); c.settle > 0 && age < c.settle {
			c.skip(fi.Path, fmt.Sprintf("%s (modified %s ago, settles after %s)", ReasonStillWriting, age.Round(time.Second), c.settle))
			continue
		}
		todo = append(todo, fi)
	}
	compared := make([]*plan, len(todo))
	err = forEach(ctx, len(todo), c.job.Parallel, func(ctx context.Context, i int) error {
		p, err := c.classify(ctx, todo[i])
		if err != nil {
			if !perFile(err) {
				return err
			}
			c.fail(todo[i].Path, err)
		}
		compared[i] = p
		return nil
	})
	if err != nil {
		return rep, err
	}
	var plans []*plan
	for _, p := range compared {
		if p != nil {
			plans = append(plans, p)
			c.prog.p.FilesTotal++
			c.prog.p.BytesTotal += max(0, p.fi.Size-max(p.offset, p.targetSize))
		}
	}

	c.prog.start = time.Now()
	c.prog.tick(false)
	err = forEach(ctx, len(plans), c.job.Parallel, func(wctx context.Context, i int) error {
		p := plans[i]
		c.mu.Lock()
		c.prog.p.Current = p.rel
		c.mu.Unlock()
		err := c.execute(wctx, p)
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil && errors.Is(err, context.Canceled) {
				// Interrupted because another file stopped the copy (that
				// one is reported): like the files not started yet, it
				// is left for the next copy, which resumes its temporary
				// file.
				return err
			}
			c.fail(p.fi.Path, err)
			if !perFile(err) {
				return err
			}
		}
		c.mu.Lock()
		c.prog.p.FilesDone++
		c.prog.tick(false)
		c.mu.Unlock()
		return nil
	})
	// Every worker has returned: no more calls can follow the final one.
	c.prog.p.Current = ""
	c.prog.final()
	return rep, err
}

// forEach calls fn for 0 ≤ i < n on up to workers goroutines, each taking
// the next index when it is done with one. The first error fn returns
// cancels the context the others get and is returned; the errors that
// follow are its consequence and are dropped. Without an error it returns
// ctx's error if indexes were left undone because ctx ended. It returns only
// once every goroutine it started has returned.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next, done atomic.Int64
		stop       sync.Once
		first      error
		wg         sync.WaitGroup
	)
	for range min(max(workers, 1), n) {
		wg.Go(func() {
			for wctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := fn(wctx, int(i)); err != nil {
					stop.Do(func() {
						first = err
						cancel()
					})
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if done.Load() < int64(n) {
		return ctx.Err()
	}
	return nil
}

// sortByPath puts the report's lists in path order, which is the source's
// listing order: files are compared and copied several at once, so they
// are added in the order they end.
func (r *Report) sortByPath() {
	bySkip := func(a, b Skip) int { return strings.Compare(a.Path, b.Path) }
	slices.SortStableFunc(r.Copied, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	slices.SortStableFunc(r.Skipped, bySkip)
	slices.SortStableFunc(r.Conflicts, bySkip)
	slices.SortStableFunc(r.Failed, bySkip)
}

func (c *copier) skip(path, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Skipped = append(c.rep.Skipped, Skip{path, reason})
}

func (c *copier) conflict(path, detail string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Conflicts = append(c.rep.Conflicts, Skip{path, ReasonConflict + " (" + detail + ")"})
}

func (c *copier) fail(path string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Failed = append(c.rep.Failed, Skip{path, err.Error()})
}

func (c *copier) copied(f File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Copied = append(c.rep.Copied, f)
	c.rep.ResumedBytes += f.ResumedBytes
}

// transferred counts n bytes received from the source.
func (c *copier) transferred(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Bytes += int64(n)
	c.prog.p.BytesDone += int64(n)
	c.prog.tick(false)
}

// classify compares one source file with the destination. It returns nil
// when there is nothing to copy (the outcome is already in the report).
func (c *copier) classify(ctx context.Context, fi FileInfo) (*plan, error) {
	rel, err := cleanRel(fi.Path)
	if err != nil {
		return nil, fmt.Errorf("source listed a refused path: %w", err)
	}
	target := filepath.Join(c.job.Dest, filepath.FromSlash(rel))
	dir, base := filepath.Split(target)
	if isTempName(base) {
		return nil, fmt.Errorf("%s: %w: the name of a temporary file", rel, ErrOutsideRoot)
	}
	p := &plan{fi: fi, rel: rel, target: target, tmp: filepath.Join(dir, "."+base+TempSuffix)}

	st, err := os.Lstat(target)
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		c.conflict(fi.Path, "a parent folder is a file on the destination")
		return nil, nil
	case errors.Is(err, fs.ErrNotExist):
		off, err := c.usableTemp(ctx, p, 0)
		if err != nil {
			return nil, err
		}
		p.offset = max(off, 0)
		return p, nil
	case err != nil:
		return nil, &stopError{fmt.Errorf("materialcopy: %s: reading the destination: %w", rel, err)}
	case !st.Mode().IsRegular():
		c.conflict(fi.Path, "not a regular file on the destination")
		return nil, nil
	}

	ds := st.Size()
	switch {
	case ds > fi.Size:
		c.conflict(fi.Path, fmt.Sprintf("%d bytes there, %d at the source", ds, fi.Size))
		return nil, nil
	case ds == fi.Size:
		// The quick check: Copy gives what it places the source's mtime,
		// so a file with the same size and mtime was put there by an
		// earlier copy (or is the same recording); reading both sides to
		// confirm it is what Checksum asks for.
		if c.job.Checksum || !st.ModTime().Equal(fi.ModTime) {
			same, err := c.samePrefix(ctx, p, target, ds)
			if err != nil {
				return nil, err
			}
			if !same {
				c.conflict(fi.Path, "same size, different content")
				return nil, nil
			}
		}
		c.skip(fi.Path, ReasonAlreadyThere)
		os.Remove(p.tmp) // a leftover of ours, if any, is of no use now
		return nil, nil
	}
	same, err := c.samePrefix(ctx, p, target, ds)
	if err != nil {
		return nil, err
	}
	if !same {
		c.conflict(fi.Path, fmt.Sprintf("%d bytes there, %d at the source, and not its beginning", ds, fi.Size))
		return nil, nil
	}
	p.complete, p.targetSize, p.targetMod = true, ds, st.ModTime()
	off, err := c.usableTemp(ctx, p, ds)
	if err != nil {
		return nil, err
	}
	if off >= ds {
		p.offset = off
	} else {
		p.seed = true
	}
	return p, nil
}

// samePrefix compares the first n bytes of the local file name with those
// of the source's file.
func (c *copier) samePrefix(ctx context.Context, p *plan, name string, n int64) (bool, error) {
	if n == 0 {
		return true, nil
	}
	var theirs, mine string
	var theirErr, err error
	if p.srcSum != "" && p.srcLen == n {
		// Asked already (the partial target and the temporary file
		// completing it have the same length).
		theirs = p.srcSum
		mine, err = hashFile(ctx, name, n)
	} else {
		theirs, mine, theirErr, err = c.hashBoth(ctx, p.rel, n, name, n)
	}
	if err != nil {
		if errors.Is(err, ErrChanged) || errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, &stopError{fmt.Errorf("materialcopy: %s: reading the destination: %w", p.rel, err)}
	}
	if theirErr != nil {
		return false, theirErr
	}
	p.srcLen, p.srcSum = n, theirs
	return mine == theirs, nil
}

// hashBoth hashes the source's file rel (its first length bytes, or all of
// it when length < 0) and the local file name (likewise with localLength)
// at the same time: the source's side is read by its server or another
// disk, so waiting for one and then the other would take their sum instead
// of the longer of the two. Both are always finished when it returns; the
// caller checks the errors in the order it needs.
func (c *copier) hashBoth(ctx context.Context, rel string, length int64, name string, localLength int64) (theirs, mine string, theirErr, mineErr error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		theirs, theirErr = c.job.Source.Hash(ctx, rel, length)
	}()
	mine, mineErr = hashFile(ctx, name, localLength)
	<-done
	return theirs, mine, theirErr, mineErr
}

// usableTemp returns the size of an earlier run's temporary file for p when
// it is at least atLeast bytes, no longer than the source's file and its
// content is the source's beginning; otherwise -1.
func (c *copier) usableTemp(ctx context.Context, p *plan, atLeast int64) (int64, error) {
	st, err := os.Lstat(p.tmp)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, &stopError{fmt.Errorf("materialcopy: %s: reading the destination: %w", p.rel, err)}
	}
	if !st.Mode().IsRegular() {
		return -1, &stopError{fmt.Errorf("materialcopy: %s: %s is not a regular file; remove it", p.rel, p.tmp)}
	}
	n := st.Size()
	if n < atLeast || n > p.fi.Size {
		return -1, nil
	}
	same, err := c.samePrefix(ctx, p, p.tmp, n)
	if err != nil || !same {
		return -1, err
	}
	return n, nil
}

// stillAsListed checks the source file against its listing.
func stillAsListed(now, listed FileInfo) bool {
	return now.Size == listed.Size && now.ModTime.Equal(listed.ModTime)
}

// sourceHash is the source's hash of a whole file, asked for while the file
// is transferred: on a remote source the request waits for the server to
// read the file, which would otherwise add to every file's time.
type sourceHash struct {
	cancel context.CancelFunc
	done   chan struct{}
	sum    string
	err    error
}

func (c *copier) startSourceHash(ctx context.Context, p *plan) *sourceHash {
	ctx, cancel := context.WithCancel(ctx)
	h := &sourceHash{cancel: cancel, done: make(chan struct{})}
	if p.srcSum != "" && p.srcLen == p.fi.Size {
		// The comparison asked for it already (a complete temporary file).
		// The source's size and mtime are checked again after the copy.
		h.sum = p.srcSum
		close(h.done)
		return h
	}
	go func() {
		defer close(h.done)
		h.sum, h.err = c.job.Source.Hash(ctx, p.rel, p.fi.Size)
	}()
	return h
}

// wait returns the source's hash once it is there.
func (h *sourceHash) wait() (string, error) {
	<-h.done
	return h.sum, h.err
}

// abandon cancels the request if it still runs and waits for it to end, so
// that it does not outlive the file's copy.
func (h *sourceHash) abandon() {
	h.cancel()
	<-h.done
}

// execute copies one planned file: into the temporary file, hashing what is
// written, fsync, verify against the source's hash, rename into place,
// fsync the folder.
func (c *copier) execute(ctx context.Context, p *plan) error {
	src := c.job.Source
	now, err := src.Stat(ctx, p.rel)
	if err != nil {
		return err
	}
	if !stillAsListed(now, p.fi) {
		c.skip(p.fi.Path, ReasonStillWriting+" (changed since the listing)")
		return nil
	}
	want := c.startSourceHash(ctx, p)
	defer want.abandon()

	dir := filepath.Dir(p.target)
	if err := c.mkdir(dir); err != nil {
		return writeFailure(p.rel, err)
	}
	// Only this process's user may read a file while it is written; it gets
	// its permissions (never more than the source's) just before it is put
	// in place.
	f, err := os.OpenFile(p.tmp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return writeFailure(p.rel, err)
	}
	defer f.Close() // after the explicit Close below, a no-op
	if err := chmod(f.Chmod, 0o600); err != nil {
		return writeFailure(p.rel, err)
	}

	pooled := hashBufs.Get().(*[bufSize]byte)
	defer hashBufs.Put(pooled)
	buf := pooled[:]

	// h hashes the temporary file's content as it is written, the kept
	// beginning included: what is verified is what went to the disk, without
	// reading it all back (right after writing it would come from the page
	// cache anyway, and prove no more).
	h := xxh3.New()
	resumed, note := p.offset, NoteCopied
	if p.offset > 0 {
		note = NoteResumed
	}
	if p.seed {
		if err := c.seed(ctx, f, p, h, buf); err != nil {
			return err
		}
		resumed = p.targetSize
	} else {
		if err := f.Truncate(p.offset); err != nil {
			return writeFailure(p.rel, err)
		}
		// Compared with the source's beginning before, but read again
		// now: the hash must cover the file as it is.
		if err := hashInto(ctx, h, f, p.offset, buf); err != nil {
			return &stopError{fmt.Errorf("materialcopy: %s: reading %s: %w", p.rel, p.tmp, err)}
		}
	}
	if p.complete {
		note = NotePartialCompleted
	}
	if _, err := f.Seek(resumed, io.SeekStart); err != nil {
		return writeFailure(p.rel, err)
	}
	n, err := c.transfer(ctx, f, p, resumed, h, buf)
	if errors.Is(err, errShort) {
		c.skip(p.fi.Path, ReasonStillWriting+" (shorter than listed)")
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Chtimes(p.tmp, p.fi.ModTime, p.fi.ModTime); err != nil {
		return writeFailure(p.rel, err)
	}
	if err := chmod(f.Chmod, FilePerm(p.fi.Mode)); err != nil {
		return writeFailure(p.rel, err)
	}
	if err := f.Sync(); err != nil {
		return writeFailure(p.rel, err)
	}
	if err := f.Close(); err != nil {
		return writeFailure(p.rel, err)
	}

	// Verify the whole file as written against the source.
	theirs, err := want.wait()
	if err != nil {
		return err
	}
	if got := hexSum(h.Sum64()); got != theirs {
		os.Remove(p.tmp)
		return fmt.Errorf("%s: %w: verification failed (xxh3 %s written, %s at the source); the temporary file was removed",
			p.rel, ErrChanged, got, theirs)
	}
	if now, err = src.Stat(ctx, p.rel); err != nil {
		return err
	}
	if !stillAsListed(now, p.fi) {
		c.skip(p.fi.Path, ReasonStillWriting+" (changed during the copy)")
		return nil
	}

	// Put it in place, never over something we did not compare.
	if p.complete {
		st, err := os.Lstat(p.target)
		if err != nil || !st.Mode().IsRegular() || st.Size() != p.targetSize || !st.ModTime().Equal(p.targetMod) {
			os.Remove(p.tmp)
			c.conflict(p.fi.Path, "changed on the destination during the copy")
			return nil
		}
		err = os.Rename(p.tmp, p.target)
		if err != nil {
			return writeFailure(p.rel, err)
		}
	} else if err := renameNoReplace(p.tmp, p.target); errors.Is(err, fs.ErrExist) {
		os.Remove(p.tmp)
		c.conflict(p.fi.Path, "appeared on the destination during the copy")
		return nil
	} else if err != nil {
		return writeFailure(p.rel, err)
	}
	if err := syncDir(dir); err != nil {
		return writeFailure(p.rel, err)
	}
	c.copied(File{Path: p.fi.Path, Bytes: n, ResumedBytes: resumed, Note: note})
	return nil
}

var errShort = errors.New("source shorter than listed")

// transfer copies the source's file from offset to its listed size into f,
// and into h, using buf.
func (c *copier) transfer(ctx context.Context, f *os.File, p *plan, offset int64, h *xxh3.Hasher, buf []byte) (int64, error) {
	remaining := p.fi.Size - offset
	if remaining <= 0 {
		return 0, nil
	}
	rc, err := c.job.Source.Open(ctx, p.rel, offset)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	var n int64
	interrupted := func(err error) error {
		return &stopError{fmt.Errorf("materialcopy: %s: interrupted after %d of %d bytes (the next copy resumes): %w",
			p.rel, offset+n, p.fi.Size, err)}
	}
	for n < remaining {
		if err := ctx.Err(); err != nil {
			return n, interrupted(err)
		}
		b := buf[:min(int64(c.chunk), remaining-n)]
		// Fill the chunk: a network body comes in pieces of a few dozen
		// KiB, and each write, hash update and progress count has a cost.
		m, rerr := 0, error(nil)
		for m < len(b) && rerr == nil {
			var k int
			k, rerr = rc.Read(b[m:])
			m += k
		}
		if m > 0 {
			if err := c.lim.wait(ctx, m); err != nil {
				return n, interrupted(err)
			}
			if err := c.writeAll(f, b[:m]); err != nil {
				return n, writeFailure(p.rel, err)
			}
			startWriteback(f, offset+n, int64(m))
			h.Write(b[:m])
			n += int64(m)
			c.transferred(m)
		}
		if rerr == io.EOF {
			if n < remaining {
				return n, errShort
			}
			break
		}
		if rerr != nil {
			return n, interrupted(rerr)
		}
	}
	return n, nil
}

// seed starts the temporary file with the content of the partial target,
// hashing it into h.
func (c *copier) seed(ctx context.Context, f *os.File, p *plan, h *xxh3.Hasher, buf []byte) error {
	if err := f.Truncate(0); err != nil {
		return writeFailure(p.rel, err)
	}
	t, err := os.Open(p.target)
	if err != nil {
		return &stopError{fmt.Errorf("materialcopy: %s: reading the destination: %w", p.rel, err)}
	}
	defer t.Close()
	var n int64
	for n < p.targetSize {
		if err := ctx.Err(); err != nil {
			return &stopError{err}
		}
		b := buf[:min(int64(len(buf)), p.targetSize-n)]
		m, rerr := t.Read(b)
		if m > 0 {
			if err := c.writeAll(f, b[:m]); err != nil {
				return writeFailure(p.rel, err)
			}
			h.Write(b[:m])
			n += int64(m)
		}
		if rerr == io.EOF && n < p.targetSize {
			return fmt.Errorf("%s: %w: the destination's partial file shrank", p.rel, ErrChanged)
		}
		if rerr != nil && rerr != io.EOF {
			return &stopError{fmt.Errorf("materialcopy: %s: reading the destination: %w", p.rel, rerr)}
		}
	}
	return nil
}

func (c *copier) writeAll(f *os.File, b []byte) error {
	for len(b) > 0 {
		n, err := c.job.write(f, b)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// mkdir is mkdirSynced under dirMu.
func (c *copier) mkdir(dir string) error {
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	return mkdirSynced(c.job.Dest, dir, c.dirModes)
}

// mkdirSynced creates dir and the folders leading to it from root (which
// exists) as needed, each with DirPerm of the source's folder of the same
// path in modes, and fsyncs the folder each new one is made in.
func mkdirSynced(root, dir string, modes map[string]fs.FileMode) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." {
		return err
	}
	cur, relCur := root, ""
	for _, el := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, el)
		relCur = path.Join(relCur, el)
		perm := DirPerm(modes[relCur])
		if err := os.Mkdir(next, perm); err == nil {
			// Mkdir's mode is narrowed by the umask only; set it exactly
			// (never more than the source's).
			if err := chmod(func(m fs.FileMode) error { return os.Chmod(next, m) }, perm); err != nil {
				return err
			}
			if err := syncDir(cur); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
		cur = next
	}
	return nil
}

// FilePerm is the permission bits Copy gives a file whose source has the
// permission bits src: never more than the source's, never writable by
// group or others, no setuid, setgid or sticky bit; this process's user
// can always read it (to compare it on the next copy). A source that does
// not say (0) gives 0600.
func FilePerm(src fs.FileMode) fs.FileMode {
	if src.Perm() == 0 {
		return 0o600
	}
	return src.Perm()&0o755 | 0o400
}

// DirPerm is the permission bits Copy gives a folder it creates for the
// source's folder with permission bits src: never more than the source's
// for group and others (never writable by them), no setuid, setgid or
// sticky bit; this process's user can always use it. A source that does not
// say (0) gives 0700.
func DirPerm(src fs.FileMode) fs.FileMode {
	return src.Perm()&0o755 | 0o700
}

// chmod sets perm with set, except on Windows, where a mode is only a
// read-only flag (that would keep the next copy from completing the file).
func chmod(set func(fs.FileMode) error, perm fs.FileMode) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	return set(perm)
}

// renameCheck renames unless newpath exists, checked right before.
func renameCheck(oldpath, newpath string) error {
	if _, err := os.Lstat(newpath); err == nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(oldpath, newpath)
}

// progress throttles the Progress callback. The copier's mu guards it.
type progress struct {
	fn          func(Progress)
	p           Progress
	start, last time.Time
}

const progressEvery = 250 * time.Millisecond

func (pr *progress) tick(final bool) {
	if pr.fn == nil {
		return
	}
	now := time.Now()
	if !final && !pr.last.IsZero() && now.Sub(pr.last) < progressEvery {
		return
	}
	pr.last = now
	pr.p.Final = final
	pr.p.Rate, pr.p.ETA = 0, 0
	if el := now.Sub(pr.start).Seconds(); el > 0 && pr.p.BytesDone > 0 {
		pr.p.Rate = float64(pr.p.BytesDone) / el
		if left := pr.p.BytesTotal - pr.p.BytesDone; left > 0 && !final {
			pr.p.ETA = time.Duration(float64(left) / pr.p.Rate * float64(time.Second))
		}
	}
	pr.fn(pr.p)
}

func (pr *progress) final() { pr.tick(true) }

// limiter is a token bucket shared by the workers: bytes may be spent at
// rate per second, with a burst of a tenth of a second; spending beyond
// that waits. A worker reserves its bytes under mu and waits outside it, so
// the waits of several workers add up and the rate holds for all of them.
type limiter struct {
	mu    sync.Mutex
	rate  float64
	avail float64
	last  time.Time
}

func newLimiter(bytesPerSecond int64) *limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &limiter{rate: float64(bytesPerSecond), last: time.Now()}
}

func (l *limiter) wait(ctx context.Context, n int) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	l.avail = min(l.avail+now.Sub(l.last).Seconds()*l.rate, l.rate/10)
	l.last = now
	l.avail -= float64(n)
	debt := -l.avail
	l.mu.Unlock()
	if debt <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(debt / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
