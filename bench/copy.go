//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeebo/xxh3"

	"understudy/bench/proc"
	"understudy/bench/report"
	"understudy/runtime/materialcopy"
)

// copyHow is the method in words, shown in the table.
const copyHow = "A generated recorder archive (20 cameras × one day of hourly folders of `segment-NNNN.mp4`, 5,000 files of " +
	"incompressible pseudo-random bytes, 2 GiB in all; quick run: 500 files, 200 MiB) and a restored member's folder holding " +
	"the same archive with 20 % of the files missing, 3 % partial (a prefix of the source's file) and the rest identical " +
	"(same content, size and mtime). understudy's copy is the production path: `materialcopy.Copy` from a `Remote` source, " +
	"reading a material server (`Grants` behind `/material/`, bearer token) served by this process on 127.0.0.1, into the " +
	"destination folder — files with the same size and mtime on both sides taken as there (rsync's quick check), the partial " +
	"files completed, up to 4 files at once, each written to a temporary name, hashed (xxh3) as written and checked against " +
	"the source's hash, fsynced, renamed into place. References on the same data from the same starting state: " +
	"`rsync -a` from an rsync daemon on 127.0.0.1 (`rsync://`, the network counterpart of the material server, and the one the " +
	"figure is the ratio to), `rsync -a --fsync` from it, and local `rsync -a` and `rsync -a --ignore-existing` folder to " +
	"folder. Each repetition runs every tool once, in turn; before every run the destination is put back to its starting " +
	"state and `sync(2)` flushes the disk (neither timed), and after our copy every file is checked by size and xxh3. " +
	"A warm page cache (the archive is written just before and fits in memory), the run's temporary folder on the machine's disk, no root-only tricks; 3 repetitions (quick: 1). " +
	"The figure is our wall time divided by the daemon's `rsync -a` wall time of the same repetition."

// The archive's shape.
const (
	copyCameras    = 20
	copyDay        = "2026-12-05"
	copyMissingPct = 20
	copyPartialPct = 3
	copyBlock      = 8 << 20 // the pseudo-random bytes files are cut from
)

type copyKind int

const (
	copyIdentical copyKind = iota
	copyMissing
	copyPartial
)

// copyFile is one file of the archive.
type copyFile struct {
	rel          string // with slashes
	size         int64
	off          int // where its content starts in the block
	mtime        time.Time
	hash         uint64 // xxh3-64 of its content
	kind         copyKind
	partial      int64 // bytes on the destination when partial
	partialMtime time.Time
}

// copyArchive is the generated source and destination.
type copyArchive struct {
	src, dst string
	files    []copyFile
	block    []byte

	total                          int64 // bytes of the source
	missingBytes, partialBytes     int64 // of the missing files, of the partial files' prefixes
	partialTail                    int64 // what completing the partial files transfers
	nIdentical, nMissing, nPartial int
}

// copyTool is one way of copying the archive back.
type copyTool struct {
	name  string
	run   func(ctx context.Context) error
	check func(a *copyArchive) error // after the run, not timed
	walls []float64
}

func measureCopy(e *env, r *report.Result) {
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		fail(r, errors.New("rsync not installed: make bench installs it (.ci/deps bench)"))
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.pickD(45*time.Second, 3*time.Minute))
	defer cancel()
	dir, err := e.dir("copy")
	if err != nil {
		fail(r, err)
		return
	}
	defer os.RemoveAll(dir) // gigabytes: free them now rather than at the end of the run

	nFiles, total := e.pick(500, 5000), int64(e.pick(200<<20, 2<<30))
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		fail(r, fmt.Errorf("free space in %s: %w", dir, err))
		return
	}
	// The source, the destination and what a copy writes.
	if free, need := int64(st.Bavail)*int64(st.Bsize), 2*total+total/2; free < need {
		fail(r, fmt.Errorf("%s has %s free, the material copy figure needs %s (set TMPDIR elsewhere)", dir, gib(free), gib(need)))
		return
	}
	t0 := time.Now()
	a, err := generateArchive(ctx, dir, nFiles, total)
	if err != nil {
		fail(r, fmt.Errorf("generate the archive: %w", err))
		return
	}
	e.logf("material copy: archive of %d files (%s) generated in %v", len(a.files), gib(a.total), time.Since(t0).Round(time.Millisecond))

	// The material server, as a failover server runs it.
	url, token, stopServer, err := startMaterialServer(a.src)
	if err != nil {
		fail(r, err)
		return
	}
	defer stopServer()

	// The rsync daemon, its network counterpart.
	daemon, module, err := startRsyncDaemon(ctx, dir, rsync, a.src)
	if err != nil {
		fail(r, err)
		return
	}
	defer daemon.Kill()
	fsyncOK := rsyncHas(rsync, "--fsync")
	version, _ := exec.Command(rsync, "--version").Output()
	rsyncVersion, _, _ := strings.Cut(string(version), "\n")

	var ours materialcopy.Report
	oursTool := &copyTool{name: "understudy", run: func(ctx context.Context) error {
		client := materialcopy.Client()
		defer client.CloseIdleConnections()
		rep, err := materialcopy.Copy(ctx, materialcopy.Job{
			Source: materialcopy.Remote(url, token, client),
			Dest:   a.dst,
			Settle: -1, // the archive is old material, none of it still being written
		})
		ours = rep
		return err
	}, check: func(a *copyArchive) error {
		if err := a.checkReport(ours); err != nil {
			return err
		}
		return a.verifyAll()
	}}
	rsyncTool := func(name string, complete bool, args ...string) *copyTool {
		return &copyTool{name: name, run: func(ctx context.Context) error {
			cmd := exec.CommandContext(ctx, rsync, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			// rsync forks its receiver: end them together.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			cmd.WaitDelay = 2 * time.Second
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, proc.Tail(out.String(), 10))
			}
			return nil
		}, check: func(a *copyArchive) error { return a.verifyCopied(complete) }}
	}
	srcArg, dstArg := a.src+"/", a.dst+"/"
	ignoreLocal := rsyncTool("rsync -a --ignore-existing (local)", false, "-a", "--ignore-existing", srcArg, dstArg)
	aLocal := rsyncTool("rsync -a (local)", true, "-a", srcArg, dstArg)
	aDaemon := rsyncTool("rsync -a (daemon)", true, "-a", module, dstArg)
	tools := []*copyTool{oursTool, aDaemon, aLocal, ignoreLocal}
	var fsyncDaemon *copyTool
	if fsyncOK {
		fsyncDaemon = rsyncTool("rsync -a --fsync (daemon)", true, "-a", "--fsync", module, dstArg)
		tools = append(tools, fsyncDaemon)
	}

	reps := e.pick(1, 3)
	for i := range reps {
		for _, t := range tools {
			if err := ctx.Err(); err != nil {
				fail(r, fmt.Errorf("material copy: repetition %d: %w", i+1, context.Cause(ctx)))
				return
			}
			if err := a.reset(); err != nil {
				fail(r, fmt.Errorf("put the destination back before %s: %w", t.name, err))
				return
			}
			start := time.Now()
			err := t.run(ctx)
			wall := time.Since(start)
			if err != nil {
				fail(r, fmt.Errorf("%s, repetition %d: %w", t.name, i+1, err))
				return
			}
			if err := t.check(a); err != nil {
				fail(r, fmt.Errorf("%s, repetition %d: %w", t.name, i+1, err))
				return
			}
			t.walls = append(t.walls, wall.Seconds())
			e.logf("material copy: %s took %v", t.name, wall.Round(time.Millisecond))
		}
	}

	ratios := make([]float64, reps)
	for i := range reps {
		ratios[i] = oursTool.walls[i] / aDaemon.walls[i]
	}
	r.Stats = report.Summarize(ratios)
	ref := report.Summarize(aDaemon.walls)
	r.Reference = &report.Reference{What: "`rsync -a` from an rsync daemon", Unit: "s", Stats: ref, Value: ref.P50, Stat: "p50"}
	our := report.Summarize(oursTool.walls)
	r.Ratio = our.P50 / ref.P50
	r.RatioIs = "our p50 wall time / the daemon's `rsync -a` p50 wall time (the samples are the same ratio per repetition)"

	transferred := a.missingBytes + a.partialTail
	r.Notes = append(r.Notes,
		fmt.Sprintf("The archive: %d files, %s, in %d camera folders; on the destination %d missing (%s), %d partial (%s there, %s to complete) and %d identical (%s).",
			len(a.files), gib(a.total), copyCameras, a.nMissing, gib(a.missingBytes), a.nPartial, gib(a.partialBytes), gib(a.partialTail),
			a.nIdentical, gib(a.total-a.missingBytes-a.partialBytes-a.partialTail)),
		fmt.Sprintf("Wall times over %s: %s; %s.", plural(reps, "repetition"), wallText(oursTool), strings.Join(mapTools(tools[1:], wallText), "; ")),
		fmt.Sprintf("understudy put %s in place at %s/s (%s/s of archive compared); its report said %d copied (%d of them partial files completed), %d already there, no conflicts, none failed, %s transferred — as expected — and every file was then checked by size and xxh3 on the destination.",
			gib(transferred), gib(int64(float64(transferred)/our.P50)), gib(int64(float64(a.total)/our.P50)),
			len(ours.Copied), a.nPartial, len(ours.Skipped), gib(ours.Bytes)),
		"The ratio is to `rsync -a` from an rsync daemon because that is the like-for-like counterpart: both read the source "+
			"through a server over TCP on loopback and both complete the partial files (rsync by its delta transfer). Local "+
			"rsync is a folder-to-folder copy with no network and no server, which a restored member does not have.",
		fmt.Sprintf("`rsync -a --ignore-existing` is not a correct restore: after it the %d partial files were still partial (it checks nothing about files already there); it is shown as the cheapest thing one could do.", a.nPartial),
		"Both skip the identical files by size and mtime without reading them. For what they write: materialcopy fsyncs "+
			"every file and its folder before the rename, so its wall time includes getting the data to the disk; `rsync -a` "+
			"checks a whole-file checksum of the data as it writes but does not fsync, so that part of its cost (the "+
			"writeback) falls outside its wall time (the untimed `sync` before the next run flushes it). The per-file fsync "+
			"is what separates the two: `rsync -a --fsync` (below) does the same.",
	)
	if fsyncDaemon != nil {
		fsw := report.Summarize(fsyncDaemon.walls)
		r.Notes = append(r.Notes, fmt.Sprintf("Against `rsync -a --fsync` from the daemon (every written file fsynced, as ours does) the ratio of p50 wall times is %s.",
			report.FormatRatio(our.P50/fsw.P50)))
	} else {
		r.Notes = append(r.Notes, "This rsync has no --fsync (it came with 3.2.4): no reference with fsync.")
	}
	r.Notes = append(r.Notes, fmt.Sprintf("The folders were on %s; %s.", fsName(int64(st.Type)), strings.Join(strings.Fields(rsyncVersion), " ")))
	if e.quick {
		r.Notes = append(r.Notes, "Quick run: 500 files, 200 MiB, one repetition.")
	}
}

// fsName names a file system by its statfs magic number.
func fsName(magic int64) string {
	switch magic {
	case 0xEF53:
		return "ext4 (or ext2/3)"
	case 0x58465342:
		return "XFS"
	case 0x9123683E:
		return "Btrfs"
	case 0x01021994:
		return "tmpfs (fsync costs nothing there: the figure flatters understudy)"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC1:
		return "ZFS"
	}
	return fmt.Sprintf("a file system with statfs magic %#x", magic)
}

// wallText is a tool's wall times in words.
func wallText(t *copyTool) string {
	s := report.Summarize(t.walls)
	if s.N == 1 {
		return fmt.Sprintf("%s %s", t.name, report.Format(s.P50, "s"))
	}
	return fmt.Sprintf("%s p50 %s (min %s, max %s)", t.name, report.Format(s.P50, "s"), report.Format(s.Min, "s"), report.Format(s.Max, "s"))
}

func mapTools(ts []*copyTool, f func(*copyTool) string) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = f(t)
	}
	return out
}

// gib writes a byte count in MiB or GiB.
func gib(n int64) string {
	if n >= 1<<30 {
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 2, 64) + " GiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// startMaterialServer serves src as root "rec" to a grant's token, as an
// instance's material server does, on 127.0.0.1, and returns the source URL.
func startMaterialServer(src string) (url, token string, stop func(), err error) {
	b := make([]byte, 16)
	rand.Read(b)
	token = hex.EncodeToString(b)
	grants := materialcopy.NewGrants(materialcopy.GrantsOptions{Folders: map[string]string{"rec": src}})
	if err := grants.Add(materialcopy.Grant{Token: token, For: "recorder"}); err != nil {
		return "", "", nil, fmt.Errorf("material grant: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/material/", http.StripPrefix("/material", grants))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, fmt.Errorf("material server: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	return "http://" + ln.Addr().String() + "/material?root=rec", token, func() { srv.Close(); <-done }, nil
}

// startRsyncDaemon starts an rsync daemon on a free loopback port with a
// read-only module for src and returns once the port accepts, with the
// module's URL.
func startRsyncDaemon(ctx context.Context, dir, rsync, src string) (*proc.Process, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, "rsyncd.conf")
	var ids string
	if os.Getuid() == 0 { // as root it would become nobody, who may not read the temporary folder
		ids = fmt.Sprintf("    uid = %d\n    gid = %d\n", os.Getuid(), os.Getgid())
	}
	text := fmt.Sprintf("use chroot = no\nreverse lookup = no\nlog file = %s\n[material]\n    path = %s\n    read only = yes\n%s",
		filepath.Join(dir, "rsyncd.log"), src, ids)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, "", fmt.Errorf("write rsyncd.conf: %w", err)
	}
	p, err := proc.Start(exec.Command(rsync, "--daemon", "--no-detach", "--config="+conf, "--port="+strconv.Itoa(port), "--address=127.0.0.1"))
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, "rsync://" + addr + "/material/", nil
		}
		select {
		case <-p.Exited():
			log, _ := os.ReadFile(filepath.Join(dir, "rsyncd.log"))
			return nil, "", fmt.Errorf("rsync daemon exited: %v\n%s%s", p.Wait(), p.Output(), log)
		case <-ctx.Done():
			p.Kill()
			return nil, "", fmt.Errorf("rsync daemon: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, "", fmt.Errorf("rsync daemon does not accept on %s: %w", addr, err)
		}
	}
}

// rsyncHas reports whether rsync --help mentions option.
func rsyncHas(rsync, option string) bool {
	out, _ := exec.Command(rsync, "--help").CombinedOutput()
	return bytes.Contains(out, []byte(option+" "))
}

// generateArchive writes the source archive under dir/source and the
// restored member's folder under dir/dest, and flushes both to disk.
func generateArchive(ctx context.Context, dir string, nFiles int, total int64) (*copyArchive, error) {
	a := &copyArchive{src: filepath.Join(dir, "source"), dst: filepath.Join(dir, "dest"), block: make([]byte, copyBlock)}
	seed := [32]byte{}
	copy(seed[:], "understudy material copy bench")
	mrand.NewChaCha8(seed).Read(a.block)
	rng := mrand.New(mrand.NewPCG(7, 2026))

	perCam := max(1, nFiles/copyCameras)
	n := perCam * copyCameras
	weights := make([]float64, n)
	var sum float64
	for i := range weights {
		weights[i] = 0.5 + rng.Float64() // sizes from a half to one and a half of the mean
		sum += weights[i]
	}
	day, err := time.Parse(time.DateOnly, copyDay)
	if err != nil {
		return nil, err
	}
	segment := 24 * time.Hour / time.Duration(perCam)
	stride := copyBlock / n
	a.files = make([]copyFile, n)
	for i := range a.files {
		cam, j := i/perCam, i%perCam
		start := time.Duration(j) * segment
		f := &a.files[i]
		f.rel = fmt.Sprintf("cam%02d/%s/%02d/segment-%04d.mp4", cam+1, copyDay, int(start/time.Hour), j)
		f.size = max(1, int64(float64(total)*weights[i]/sum))
		f.off = i*stride + rng.IntN(max(1, stride))
		f.mtime = day.Add(start + segment).Truncate(time.Second)
		a.total += f.size
	}
	perm := rng.Perm(n)
	nMissing, nPartial := n*copyMissingPct/100, n*copyPartialPct/100
	for k, i := range perm {
		f := &a.files[i]
		switch {
		case k < nMissing:
			f.kind = copyMissing
			a.nMissing++
			a.missingBytes += f.size
		case k < nMissing+nPartial && f.size > 1:
			f.kind = copyPartial
			f.partial = max(1, int64(float64(f.size)*(0.1+0.8*rng.Float64())))
			// It stopped growing when the recorder failed, before the
			// source's file was finished.
			f.partialMtime = f.mtime.Add(-time.Duration(float64(segment) * float64(f.size-f.partial) / float64(f.size))).Truncate(time.Second)
			a.nPartial++
			a.partialBytes += f.partial
			a.partialTail += f.size - f.partial
		default:
			a.nIdentical++
		}
	}

	// Two writers: the disk and the page cache take it faster than one.
	err = inTwo(n, func() func(i int) error {
		return func(i int) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return a.writeFile(&a.files[i])
		}
	})
	if err != nil {
		return nil, err
	}
	syscall.Sync()
	return a, nil
}

// content calls fn with the file's content, in pieces, up to limit bytes.
func (a *copyArchive) content(f *copyFile, limit int64, fn func([]byte) error) error {
	off := f.off
	for left := limit; left > 0; {
		b := a.block[off:]
		if int64(len(b)) > left {
			b = b[:left]
		}
		if len(b) > 1<<20 {
			b = b[:1<<20]
		}
		if err := fn(b); err != nil {
			return err
		}
		left -= int64(len(b))
		off = (off + len(b)) % len(a.block)
	}
	return nil
}

// writeFile writes one source file and its counterpart on the destination.
func (a *copyArchive) writeFile(f *copyFile) error {
	create := func(root string) (*os.File, error) {
		name := filepath.Join(root, filepath.FromSlash(f.rel))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return nil, err
		}
		return os.Create(name)
	}
	src, err := create(a.src)
	if err != nil {
		return err
	}
	defer src.Close()
	var dst *os.File
	if f.kind != copyMissing {
		if dst, err = create(a.dst); err != nil {
			return err
		}
		defer dst.Close()
	}
	h := xxh3.New()
	var written int64
	err = a.content(f, f.size, func(b []byte) error {
		h.Write(b)
		if _, err := src.Write(b); err != nil {
			return err
		}
		if dst != nil {
			if n := min(int64(len(b)), a.destSize(f)-written); n > 0 {
				if _, err := dst.Write(b[:n]); err != nil {
					return err
				}
			}
		}
		written += int64(len(b))
		return nil
	})
	if err != nil {
		return err
	}
	f.hash = h.Sum64()
	if err := src.Close(); err != nil {
		return err
	}
	if err := os.Chtimes(src.Name(), f.mtime, f.mtime); err != nil {
		return err
	}
	if dst != nil {
		if err := dst.Close(); err != nil {
			return err
		}
		return os.Chtimes(dst.Name(), a.destMtime(f), a.destMtime(f))
	}
	return nil
}

// destSize is the file's size on the destination at the start.
func (a *copyArchive) destSize(f *copyFile) int64 {
	switch f.kind {
	case copyMissing:
		return -1
	case copyPartial:
		return f.partial
	}
	return f.size
}

func (a *copyArchive) destMtime(f *copyFile) time.Time {
	if f.kind == copyPartial {
		return f.partialMtime
	}
	return f.mtime
}

func (a *copyArchive) dest(f *copyFile) string {
	return filepath.Join(a.dst, filepath.FromSlash(f.rel))
}

// reset puts the destination back to its starting state — the missing
// files removed, the partial ones cut back to their prefix (which is what
// they held), the identical ones untouched by every tool — checks it, and
// flushes everything to disk so that no run pays for the one before.
func (a *copyArchive) reset() error {
	want := make(map[string]int64, len(a.files))
	for i := range a.files {
		f := &a.files[i]
		name := a.dest(f)
		switch f.kind {
		case copyMissing:
			if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		case copyPartial:
			if err := os.Truncate(name, f.partial); err != nil {
				return err
			}
			if err := os.Chtimes(name, f.partialMtime, f.partialMtime); err != nil {
				return err
			}
		}
		want[f.rel] = a.destSize(f)
	}
	found := 0
	err := filepath.WalkDir(a.dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a.dst, p)
		size, ok := want[filepath.ToSlash(rel)]
		if !ok {
			return fmt.Errorf("%s: left on the destination by the run before", rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() != size {
			return fmt.Errorf("%s: %d bytes on the destination, want %d", rel, info.Size(), size)
		}
		found++
		return nil
	})
	if err != nil {
		return err
	}
	if found != len(want) {
		return fmt.Errorf("%d files on the destination, want %d", found, len(want))
	}
	syscall.Sync()
	return nil
}

// checkReport checks materialcopy's account of the copy against the plan.
func (a *copyArchive) checkReport(rep materialcopy.Report) error {
	notes := map[string]int{}
	for _, f := range rep.Copied {
		notes[f.Note]++
	}
	already := 0
	for _, s := range rep.Skipped {
		if s.Reason == materialcopy.ReasonAlreadyThere {
			already++
		}
	}
	var problems []string
	if len(rep.Copied) != a.nMissing+a.nPartial || notes[materialcopy.NoteCopied] != a.nMissing || notes[materialcopy.NotePartialCompleted] != a.nPartial {
		problems = append(problems, fmt.Sprintf("%d copied (%v), want %d new and %d partial completed", len(rep.Copied), notes, a.nMissing, a.nPartial))
	}
	if len(rep.Skipped) != a.nIdentical || already != a.nIdentical {
		problems = append(problems, fmt.Sprintf("%d skipped (%d already there), want %d already there", len(rep.Skipped), already, a.nIdentical))
	}
	if len(rep.Conflicts) > 0 {
		problems = append(problems, fmt.Sprintf("%d conflicts, the first %s: %s", len(rep.Conflicts), rep.Conflicts[0].Path, rep.Conflicts[0].Reason))
	}
	if len(rep.Failed) > 0 {
		problems = append(problems, fmt.Sprintf("%d failed, the first %s: %s", len(rep.Failed), rep.Failed[0].Path, rep.Failed[0].Reason))
	}
	if want := a.missingBytes + a.partialTail; rep.Bytes != want || rep.ResumedBytes != a.partialBytes {
		problems = append(problems, fmt.Sprintf("%d bytes transferred and %d resumed, want %d and %d", rep.Bytes, rep.ResumedBytes, want, a.partialBytes))
	}
	if len(problems) > 0 {
		return fmt.Errorf("the copy's report is not what was expected: %s", strings.Join(problems, "; "))
	}
	return nil
}

// verifyAll checks every file on the destination by size, mtime and xxh3,
// on two goroutines.
func (a *copyArchive) verifyAll() error {
	return a.verify(func(*copyFile) bool { return true }, true)
}

// verifyCopied checks the files a copy had to put in place; with complete
// false (--ignore-existing) the partial files must still be partial.
func (a *copyArchive) verifyCopied(complete bool) error {
	if !complete {
		for i := range a.files {
			if f := &a.files[i]; f.kind == copyPartial {
				if st, err := os.Stat(a.dest(f)); err != nil || st.Size() != f.partial {
					return fmt.Errorf("%s: the partial file changed (%v); --ignore-existing should leave it alone", f.rel, err)
				}
			}
		}
	}
	return a.verify(func(f *copyFile) bool { return f.kind == copyMissing || (complete && f.kind == copyPartial) }, true)
}

func (a *copyArchive) verify(which func(*copyFile) bool, mtimes bool) error {
	return inTwo(len(a.files), func() func(i int) error {
		buf := make([]byte, 1<<20)
		h := xxh3.New()
		return func(i int) error {
			f := &a.files[i]
			if !which(f) {
				return nil
			}
			return a.verifyFile(f, h, buf, mtimes)
		}
	})
}

// inTwo runs the work for 0 ≤ i < n on two goroutines (every other i each),
// each with its own state from newWorker; a worker stops at its first error,
// and the errors are returned together.
func inTwo(n int, newWorker func() func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w := range 2 {
		wg.Go(func() {
			work := newWorker()
			for i := w; i < n; i += 2 {
				if err := work(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (a *copyArchive) verifyFile(f *copyFile, h *xxh3.Hasher, buf []byte, mtime bool) error {
	file, err := os.Open(a.dest(f))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if st.Size() != f.size {
		return fmt.Errorf("verify: %s: %d bytes on the destination, %d at the source", f.rel, st.Size(), f.size)
	}
	if mtime && !st.ModTime().Equal(f.mtime) {
		return fmt.Errorf("verify: %s: modified %v on the destination, %v at the source", f.rel, st.ModTime(), f.mtime)
	}
	h.Reset()
	if _, err := io.CopyBuffer(h, file, buf); err != nil {
		return fmt.Errorf("verify: %s: %w", f.rel, err)
	}
	if got := h.Sum64(); got != f.hash {
		return fmt.Errorf("verify: %s: xxh3 %016x on the destination, %016x at the source", f.rel, got, f.hash)
	}
	return nil
}
