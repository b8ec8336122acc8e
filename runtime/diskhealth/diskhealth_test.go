package diskhealth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wait is how long a test waits for something that should happen in
// milliseconds; it only runs out when the code is broken.
const wait = 5 * time.Second

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func check(t *testing.T, path string, minFree uint64) Disk {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	return CheckDisk(ctx, path, minFree, epoch)
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}

func TestCheckDiskHealthy(t *testing.T) {
	dir := t.TempDir()
	d := check(t, dir, 0)
	if !d.OK || d.Error != "" {
		t.Fatalf("healthy directory: %+v", d)
	}
	if d.Path != dir || !d.Checked.Equal(epoch) {
		t.Errorf("path/checked = %q/%v, want %q/%v", d.Path, d.Checked, dir, epoch)
	}
	if d.FreeBytes == 0 {
		t.Error("FreeBytes = 0 for a healthy disk")
	}
	assertEmpty(t, dir)

	// A minimum the disk meets still passes.
	if d := check(t, dir, 1); !d.OK {
		t.Errorf("MinFree 1: %+v", d)
	}
	assertEmpty(t, dir)
}

func TestCheckDiskMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone")
	d := check(t, path, 0)
	if d.OK || !strings.Contains(d.Error, path+" does not exist") || !strings.Contains(d.Error, "no such file") {
		t.Fatalf("missing directory: %+v", d)
	}
}

func TestCheckDiskNotADirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := check(t, path, 0)
	if d.OK || !strings.Contains(d.Error, "not a directory") {
		t.Fatalf("regular file: %+v", d)
	}
	// A path through a file fails too, in the OS's words.
	d = check(t, filepath.Join(path, "sub"), 0)
	if d.OK || !strings.Contains(d.Error, "not a directory") {
		t.Fatalf("path through a file: %+v", d)
	}
}

func TestCheckDiskEmptyPath(t *testing.T) {
	if d := check(t, "", 0); d.OK || !strings.Contains(d.Error, "no path") {
		t.Fatalf("empty path: %+v", d)
	}
}

func TestCheckDiskFull(t *testing.T) {
	dir := t.TempDir()
	d := check(t, dir, 1<<62)
	if d.OK || !strings.Contains(d.Error, "is full") || !strings.Contains(d.Error, "4.6 EB") {
		t.Fatalf("MinFree beyond any disk: %+v", d)
	}
	if d.FreeBytes == 0 {
		t.Error("FreeBytes should still be reported for a full disk")
	}
	// The message must not change as the free space does, or every check
	// would be a change.
	if d2 := check(t, dir, 1<<62); d2.Error != d.Error {
		t.Errorf("message changed between checks: %q, then %q", d.Error, d2.Error)
	}
	assertEmpty(t, dir)
}

func TestCheckDiskCancelledContext(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	d := CheckDisk(ctx, dir, 0, epoch)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("took %v with a cancelled context", elapsed)
	}
	if d.OK || !strings.Contains(d.Error, "cancelled") {
		t.Fatalf("cancelled context: %+v", d)
	}
	assertEmpty(t, dir)

	ctx, cancel = context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if d := CheckDisk(ctx, dir, 0, epoch); d.OK || !strings.Contains(d.Error, "no time was left") {
		t.Fatalf("expired context: %+v", d)
	}
}

// hungChecker's probes block until release is closed, like a dead NFS mount.
func hungChecker() (c *checker, calls *atomic.Int32, release func()) {
	c = newChecker()
	calls = new(atomic.Int32)
	gate := make(chan struct{})
	c.probe = func(string) probeResult {
		calls.Add(1)
		<-gate
		return probeResult{free: 1 << 30, freeKnown: true}
	}
	var once sync.Once
	return c, calls, func() { once.Do(func() { close(gate) }) }
}

func TestHungDiskDoesNotBlockPastTimeout(t *testing.T) {
	c, calls, release := hungChecker()
	defer release()

	const timeout = 20 * time.Millisecond
	start := time.Now()
	r := c.checkAll(t.Context(), []string{"/mnt/nfs"}, 0, timeout, epoch)
	if elapsed := time.Since(start); elapsed > wait {
		t.Fatalf("checkAll took %v with a %v timeout", elapsed, timeout)
	}
	want := "/mnt/nfs did not answer within 20ms"
	if d := r.Disks[0]; d.OK || d.Error != want {
		t.Fatalf("hung disk: %+v, want error %q", d, want)
	}

	// Later checks wait for the hanging probe rather than pile up new ones.
	r2 := c.checkAll(t.Context(), []string{"/mnt/nfs", "/mnt/nfs"}, 0, timeout, epoch)
	if !r2.Equal(Report{Disks: []Disk{{Path: "/mnt/nfs", Error: want}, {Path: "/mnt/nfs", Error: want}}}) {
		t.Fatalf("second check: %+v", r2)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d probes started for one hung disk, want 1", n)
	}

	// Once the disk answers, the next check reports it.
	release()
	if d := c.check(t.Context(), "/mnt/nfs", 0, epoch, wait); !d.OK || d.FreeBytes != 1<<30 {
		t.Fatalf("after the disk answered: %+v", d)
	}
}

func TestCheckDiskTimeoutMessageFromContext(t *testing.T) {
	c, _, release := hungChecker()
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	d := c.check(ctx, "/mnt/nfs", 0, epoch, 0)
	// The time the context still allowed when the check began: 30ms, less
	// what a busy machine took to get there.
	var ms int
	if _, err := fmt.Sscanf(d.Error, "/mnt/nfs did not answer within %dms", &ms); d.OK || err != nil || ms > 30 || ms < 1 {
		t.Fatalf("hung disk: %+v", d)
	}

	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(10*time.Millisecond, cancel)
	if d := c.check(ctx, "/mnt/nfs", 0, epoch, 0); d.OK || !strings.Contains(d.Error, "cancelled before the disk answered") {
		t.Fatalf("cancelled while hung: %+v", d)
	}
}

func TestCheckAllKeepsPathOrder(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	missing := filepath.Join(a, "missing")
	r := CheckAll(t.Context(), []string{b, missing, a}, 0, 0, epoch)
	if len(r.Disks) != 3 {
		t.Fatalf("%d disks, want 3", len(r.Disks))
	}
	for i, want := range []struct {
		path string
		ok   bool
	}{{b, true}, {missing, false}, {a, true}} {
		if d := r.Disks[i]; d.Path != want.path || d.OK != want.ok {
			t.Errorf("disk %d = %+v, want path %s ok %v", i, d, want.path, want.ok)
		}
	}
	if r.AllFailed() {
		t.Error("AllFailed with two healthy disks")
	}
	assertEmpty(t, b)
}

func TestReportAllFailed(t *testing.T) {
	ok := Disk{Path: "/a", OK: true}
	bad := Disk{Path: "/b", Error: "/b does not exist"}
	for _, tc := range []struct {
		name  string
		disks []Disk
		want  bool
	}{
		{"no disks", nil, false},
		{"all healthy", []Disk{ok, ok}, false},
		{"one of two failed", []Disk{ok, bad}, false},
		{"both failed", []Disk{bad, bad}, true},
		{"the only disk failed", []Disk{bad}, true},
	} {
		if got := (Report{Disks: tc.disks}).AllFailed(); got != tc.want {
			t.Errorf("%s: AllFailed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReportEqual(t *testing.T) {
	base := Report{Disks: []Disk{{Path: "/a", OK: true, FreeBytes: 1, Checked: epoch}, {Path: "/b", Error: "x"}}}
	same := Report{Disks: []Disk{{Path: "/a", OK: true, FreeBytes: 2, Checked: epoch.Add(time.Hour)}, {Path: "/b", Error: "x"}}}
	if !base.Equal(same) {
		t.Error("reports differing only in FreeBytes and Checked are not Equal")
	}
	for name, o := range map[string]Report{
		"ok":     {Disks: []Disk{{Path: "/a"}, {Path: "/b", Error: "x"}}},
		"error":  {Disks: []Disk{{Path: "/a", OK: true}, {Path: "/b", Error: "y"}}},
		"path":   {Disks: []Disk{{Path: "/c", OK: true}, {Path: "/b", Error: "x"}}},
		"length": {Disks: []Disk{{Path: "/a", OK: true}}},
	} {
		if base.Equal(o) || o.Equal(base) {
			t.Errorf("reports differing in %s are Equal", name)
		}
	}
	if !(Report{}).Equal(Report{Disks: []Disk{}}) {
		t.Error("empty reports are not Equal")
	}
}

func TestDiskJSON(t *testing.T) {
	b, err := json.Marshal(Report{Disks: []Disk{{Path: "/a", OK: true, FreeBytes: 5, Checked: epoch}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"disks":[{"path":"/a","ok":true,"free_bytes":5,"checked":"2026-01-01T00:00:00Z"}]}`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant   %s", b, want)
	}
}

// startRun runs Run in the background on ctx and, when the test ends, stops
// it with cancel and waits for it to return.
func startRun(t *testing.T, ctx context.Context, cancel context.CancelFunc, opts Options) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, opts)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("Run did not return after its context ended")
		}
	})
}

// next returns the next report from ch for which ok holds, skipping others.
func next(t *testing.T, ch <-chan Report, what string, ok func(Report) bool) Report {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case r := <-ch:
			if ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no report with %s within %v", what, wait)
		}
	}
}

func TestRunReportsRemovalAndRestore(t *testing.T) {
	root := t.TempDir()
	disk, other := filepath.Join(root, "disk1"), filepath.Join(root, "disk2")
	for _, d := range []string{disk, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	reports := make(chan Report)
	ctx, cancel := context.WithCancel(t.Context())
	startRun(t, ctx, cancel, Options{
		Paths:    []string{disk, other},
		Interval: 10 * time.Millisecond,
		OnChange: func(r Report) {
			select {
			case reports <- r:
			case <-ctx.Done():
			}
		},
		Now: func() time.Time { return epoch },
	})

	first := next(t, reports, "the first report", func(Report) bool { return true })
	if len(first.Disks) != 2 || !first.Disks[0].OK || !first.Disks[1].OK {
		t.Fatalf("first report: %+v", first)
	}
	if !first.Disks[0].Checked.Equal(epoch) {
		t.Errorf("Checked = %v, want the time from Options.Now", first.Disks[0].Checked)
	}

	// A probe may be writing into disk as it is removed; try again until gone.
	removeDeadline := time.Now().Add(wait)
	for {
		err := os.RemoveAll(disk)
		if err == nil {
			break
		}
		if time.Now().After(removeDeadline) {
			t.Fatal(err)
		}
	}
	failed := next(t, reports, disk+" missing", func(r Report) bool {
		return strings.Contains(r.Disks[0].Error, "does not exist")
	})
	if failed.Disks[0].OK || !failed.Disks[1].OK || failed.AllFailed() {
		t.Fatalf("after removing %s: %+v", disk, failed)
	}

	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	next(t, reports, "both disks healthy again", func(r Report) bool {
		return r.Disks[0].OK && r.Disks[1].OK
	})
}

func TestRunCallsOnChangeOnlyOnChange(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "missing")
	var changes atomic.Int32
	rounds := make(chan Report, 10)
	ctx, cancel := context.WithCancel(t.Context())
	startRun(t, ctx, cancel, Options{
		Paths:    []string{root, missing}, // one healthy, one failed: both must stay quiet
		Interval: time.Millisecond,
		OnChange: func(Report) { changes.Add(1) },
		checked: func(r Report) {
			select {
			case rounds <- r:
			default: // the test has seen enough rounds
			}
		},
	})
	for i := range 6 {
		r := next(t, rounds, "a round of checks", func(Report) bool { return true })
		if n := changes.Load(); n != 1 {
			t.Fatalf("after %d rounds of unchanged disks OnChange was called %d times, want 1 (report %+v)", i+1, n, r)
		}
	}
}

func TestRunWithoutPathsReturnsAtOnce(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(t.Context(), Options{OnChange: func(Report) { t.Error("OnChange called without disks") }})
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run without paths did not return")
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	rounds := make(chan Report, 1)
	go func() {
		defer close(done)
		Run(ctx, Options{Paths: []string{dir}, Interval: time.Hour, checked: func(r Report) { rounds <- r }})
	}()
	next(t, rounds, "the first round", func(Report) bool { return true })
	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run did not return after its context ended")
	}
	assertEmpty(t, dir)
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 bytes", 999: "999 bytes", 1000: "1 kB", 1500: "1.5 kB",
		500e9: "500 GB", 2e12: "2 TB", 1 << 62: "4.6 EB", 1<<64 - 1: "18.4 EB",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
