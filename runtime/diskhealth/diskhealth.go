// Package diskhealth watches the material disks of a recorder: the
// directories, listed in site.yaml, that recordings and other material are
// written to.
//
// A recorder whose material disks have all failed is broken even though its
// process still runs and answers on the bus, and its duties must move to a
// failover server. Each instance checks its own disks with Run and reports
// every change; the runtime publishes the reports and the coordinator raises
// member_broken when all of a member's material disks have failed.
//
// A check does real work on the disk — it creates, writes, fsyncs, reads back
// and removes a small probe file — because a mount that has gone read-only
// still answers stat, and one whose NFS server has vanished may answer from
// its cache. The filesystem work runs on a goroutine of its own, so a hung
// mount costs the caller no more than the check's timeout.
package diskhealth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 5 * time.Second
)

// Disk is the health of one material disk at one check.
type Disk struct {
	Path string `json:"path"`
	OK   bool   `json:"ok"`
	// Error says why the disk failed, in plain words with the operating
	// system's error. It does not change from one check to the next while the
	// disk keeps failing the same way, so reports can be compared with Equal.
	Error string `json:"error,omitempty"`
	// FreeBytes is the space available to this process, when it could be read
	// (also for some failed disks), else 0.
	FreeBytes uint64    `json:"free_bytes"`
	Checked   time.Time `json:"checked"`
}

// Report is the health of all material disks of an instance, in the order of
// their configuration.
type Report struct {
	Disks []Disk `json:"disks"`
}

// AllFailed reports whether there is at least one disk and every disk failed.
func (r Report) AllFailed() bool {
	if len(r.Disks) == 0 {
		return false
	}
	for _, d := range r.Disks {
		if d.OK {
			return false
		}
	}
	return true
}

// Equal reports whether two reports have the same paths, in the same order,
// with the same OK and Error. FreeBytes and Checked are ignored.
func (r Report) Equal(o Report) bool {
	return slices.EqualFunc(r.Disks, o.Disks, func(a, b Disk) bool {
		return a.Path == b.Path && a.OK == b.OK && a.Error == b.Error
	})
}

// CheckDisk checks one material disk: path must exist and be a directory, a
// probe file (".understudy-probe-<pid>-<random>") must be created in it,
// written, fsynced, read back identical and removed, and the filesystem must
// report its free space. With minFree > 0, a disk with less free space than
// minFree is failed as full.
//
// CheckDisk returns when ctx ends even if the disk has not answered (a hung
// NFS mount); the disk is then failed. An already ended ctx fails the disk
// without touching it.
func CheckDisk(ctx context.Context, path string, minFree uint64, now time.Time) Disk {
	return newChecker().check(ctx, path, minFree, now, 0)
}

// CheckAll checks every path once, concurrently, each within timeout
// (DefaultTimeout when timeout <= 0), and returns the report in the order of
// paths. It returns within timeout, or sooner when ctx ends.
func CheckAll(ctx context.Context, paths []string, minFree uint64, timeout time.Duration, now time.Time) Report {
	return newChecker().checkAll(ctx, paths, minFree, orDefault(timeout, DefaultTimeout), now)
}

// Options configure Run.
type Options struct {
	// Paths are the material disks, as configured in site.yaml.
	Paths []string
	// MinFree is the least free space, in bytes, a disk must have not to be
	// failed as full; 0 means no check.
	MinFree uint64
	// Interval is the time between checks; DefaultInterval when <= 0.
	Interval time.Duration
	// Timeout bounds each check of a disk; DefaultTimeout when <= 0.
	Timeout time.Duration
	// OnChange is called (from the checker goroutine) with the first report and
	// then every time a report differs from the previous one (Equal). It must
	// not block for long.
	OnChange func(Report)
	// Now tells the time written to Disk.Checked; time.Now when nil.
	Now func() time.Time

	// checked, when set, is called after every round of checks (after
	// OnChange, if that was called). Tests count rounds with it.
	checked func(Report)
}

// Run checks the disks every Interval until ctx ends. The first check is made
// at once. With no Paths it returns at once.
//
// A disk that does not answer is not probed again while its earlier probe is
// still hanging: later checks wait for that probe instead, so a hung mount
// holds one goroutine, not one per check. When ctx ends, Run waits up to
// Timeout for probes still running so that no probe file is left behind
// when the process exits, then returns.
func Run(ctx context.Context, opts Options) {
	if len(opts.Paths) == 0 {
		return
	}
	paths := slices.Clone(opts.Paths)
	interval := orDefault(opts.Interval, DefaultInterval)
	timeout := orDefault(opts.Timeout, DefaultTimeout)
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	c := newChecker()
	defer c.drain(timeout)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()

	var prev Report
	first := true
	for {
		r := c.checkAll(ctx, paths, opts.MinFree, timeout, now())
		if ctx.Err() != nil {
			return // a report cut short by shutdown says nothing about the disks
		}
		if first || !r.Equal(prev) {
			first = false
			prev = r
			if opts.OnChange != nil {
				opts.OnChange(r)
			}
		}
		if opts.checked != nil {
			opts.checked(r)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// probeResult is what the filesystem work on one disk found.
type probeResult struct {
	problem   string // why the disk failed; "" when it passed
	free      uint64
	freeKnown bool
}

// flight is one probe of one disk, possibly waited for by several checks.
type flight struct {
	done chan struct{} // closed once res is set
	res  probeResult
}

// checker runs probes, at most one at a time per path.
type checker struct {
	probe func(path string) probeResult // the filesystem work; a seam for tests

	mu       sync.Mutex
	inflight map[string]*flight
	running  sync.WaitGroup
}

func newChecker() *checker {
	return &checker{probe: probe, inflight: map[string]*flight{}}
}

// start returns the running probe of path, starting one if there is none.
func (c *checker) start(path string) *flight {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.inflight[path]; ok {
		return f
	}
	f := &flight{done: make(chan struct{})}
	c.inflight[path] = f
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		f.res = c.probe(path)
		c.mu.Lock()
		delete(c.inflight, path)
		c.mu.Unlock()
		close(f.done)
	}()
	return f
}

// drain waits up to max for the probes still running.
func (c *checker) drain(max time.Duration) {
	done := make(chan struct{})
	go func() {
		c.running.Wait()
		close(done)
	}()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func (c *checker) checkAll(ctx context.Context, paths []string, minFree uint64, timeout time.Duration, now time.Time) Report {
	r := Report{Disks: make([]Disk, len(paths))}
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			r.Disks[i] = c.check(cctx, p, minFree, now, timeout)
		})
	}
	wg.Wait()
	return r
}

// check checks one disk within ctx. within is the time ctx allowed, for the
// message when the disk does not answer; 0 means work it out from ctx.
func (c *checker) check(ctx context.Context, path string, minFree uint64, now time.Time, within time.Duration) Disk {
	d := Disk{Path: path, Checked: now}
	if path == "" {
		d.Error = "no path is configured for this disk"
		return d
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			d.Error = fmt.Sprintf("no time was left to check %s", path)
		} else {
			d.Error = fmt.Sprintf("the check of %s was cancelled before it started", path)
		}
		return d
	}
	if within <= 0 {
		if deadline, ok := ctx.Deadline(); ok {
			within = time.Until(deadline).Round(time.Millisecond)
		}
	}

	f := c.start(path)
	select {
	case <-f.done:
	case <-ctx.Done():
		select {
		case <-f.done: // answered just in time
		default:
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				d.Error = fmt.Sprintf("the check of %s was cancelled before the disk answered", path)
			} else if within > 0 {
				d.Error = fmt.Sprintf("%s did not answer within %v", path, within)
			} else {
				d.Error = fmt.Sprintf("%s did not answer in time", path)
			}
			return d
		}
	}

	res := f.res
	if res.freeKnown {
		d.FreeBytes = res.free
	}
	switch {
	case res.problem != "":
		d.Error = res.problem
	case minFree > 0 && res.freeKnown && res.free < minFree:
		// The amount free is in FreeBytes, not here: it changes with every
		// recording written, and Error must not.
		d.Error = fmt.Sprintf("%s is full: less free space than the minimum of %s", path, formatBytes(minFree))
	default:
		d.OK = true
	}
	return d
}

// formatBytes writes n in decimal units, as disks are labelled: "500 GB".
func formatBytes(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(uint64(v)) {
		return fmt.Sprintf("%.0f %cB", v, "kMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %cB", v, "kMGTPE"[exp])
}
