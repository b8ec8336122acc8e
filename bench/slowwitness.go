//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"understudy/bench/report"
	"understudy/runtime/consensus"
	"understudy/runtime/store"
	"understudy/sitekey"
)

// slowIOPS is the slow storage the witness is given: every write to its
// device waits its turn at this many a second (blkio throttling), as on a
// small board's SD card where each fsync of a few pages takes tens of
// milliseconds.
const slowIOPS = 50

// measureSlowWitness measures a replicated write's commit (raft's log
// appended and fsynced on a majority, applied to the leader's state file
// with its own fsync) on three candidates in this process — real raft, its
// TLS transport on loopback, bbolt with fsync — with the witness's folders
// on a loop device whose writes are throttled to slowIOPS. The figure is
// the case where the witness decides: one of the two machines down, so
// that every commit needs the witness's fsync. Beside it, in the notes: the
// same with all three up, and with the witness on the same storage as the
// others.
func measureSlowWitness(e *env, r *report.Result) {
	slow, err := newSlowDisk(e, slowIOPS)
	if err != nil {
		fail(r, fmt.Errorf("slow storage (needs root, a loop device, mkfs.ext4 and cgroup v1 blkio): %w", err))
		return
	}
	defer slow.close()
	n := e.pick(50, 300)
	run := func(witnessDir string, downOne bool) (*report.Stats, error) {
		g, err := startBenchGroup(e, witnessDir)
		if err != nil {
			return nil, err
		}
		defer g.close()
		if downOne {
			g.stop("backup")
		}
		if err := g.settle(); err != nil {
			return nil, err
		}
		var took []float64
		for i := range n {
			t0 := time.Now()
			if err := g.write(i); err != nil {
				return nil, fmt.Errorf("write %d: %w", i, err)
			}
			took = append(took, ms(time.Since(t0)))
		}
		return report.Summarize(took), nil
	}
	fig, err := run(slow.dir, true)
	if err != nil {
		fail(r, err)
		return
	}
	r.Stats = fig
	for _, c := range []struct {
		what    string
		dir     string
		downOne bool
	}{
		{"all three up, the witness on the slow storage", slow.dir, false},
		{"one machine down, the witness on the same storage as the others", "", true},
		{"all three up, the witness on the same storage", "", false},
	} {
		st, err := run(c.dir, c.downOne)
		if err != nil {
			r.Notes = append(r.Notes, c.what+": not measured: "+err.Error())
			continue
		}
		r.Notes = append(r.Notes, fmt.Sprintf("%s: p50 %s, p99 %s.", c.what, report.Format(st.P50, "ms"), report.Format(st.P99, "ms")))
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d writes each. The slow storage: an ext4 file system on a loop device whose writes from this process are throttled to %d a second (cgroup v1 blkio), about %s per fsync of the witness's raft log.",
		n, slowIOPS, report.Format(1000/float64(slowIOPS), "ms")))
}

// benchGroup is three candidates (main, backup and the witness w) in this
// process, main leading.
type benchGroup struct {
	nodes  map[string]*consensus.Node
	stores map[string]*store.Store
}

func startBenchGroup(e *env, witnessDir string) (*benchGroup, error) {
	root, err := os.MkdirTemp(e.tmp, "group-")
	if err != nil {
		return nil, err
	}
	key, err := sitekey.NewKey("k1")
	if err != nil {
		return nil, err
	}
	ring, err := sitekey.NewRing(key)
	if err != nil {
		return nil, err
	}
	g := &benchGroup{nodes: map[string]*consensus.Node{}, stores: map[string]*store.Store{}}
	ids := []string{"main", "backup", "w"}
	trans := map[string]*consensus.Transport{}
	var peers []consensus.Peer
	for _, id := range ids {
		t, err := consensus.NewTransport(consensus.TransportOptions{Bind: "127.0.0.1:0", Ring: ring, ID: id})
		if err != nil {
			g.close()
			return nil, err
		}
		trans[id] = t
		peers = append(peers, consensus.Peer{ID: id, Addr: t.Addr()})
	}
	timing := consensus.TimingFor(100 * time.Millisecond)
	for _, id := range ids {
		dir := filepath.Join(root, id)
		if id == "w" && witnessDir != "" {
			if dir, err = os.MkdirTemp(witnessDir, "w-"); err != nil {
				g.close()
				return nil, err
			}
		}
		st, err := store.Open(filepath.Join(dir, "coordinator.db"), store.Options{NoSync: true})
		if err != nil {
			g.close()
			return nil, err
		}
		g.stores[id] = st
		n, err := consensus.Start(consensus.Config{ID: id, Dir: filepath.Join(dir, "raft"), Peers: peers, Transport: trans[id], Store: st, Volatile: true, Timing: timing})
		if err != nil {
			g.close()
			return nil, err
		}
		g.nodes[id] = n
	}
	deadline := time.Now().Add(30 * time.Second)
	for g.nodes["main"].Leader() != "main" {
		l := g.nodes["main"].Leader()
		if time.Now().After(deadline) {
			g.close()
			return nil, fmt.Errorf("main did not lead within 30s (the leader: %q)", l)
		}
		if l != "" && l != "main" {
			if err := g.nodes[l].TransferLeadership("main"); err != nil {
				e.logf("transfer to main: %v", err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return g, nil
}

// settle waits until main leads with a quorum that confirms it.
func (g *benchGroup) settle() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := g.nodes["main"]
		if n.IsLeader() && n.VerifyLeader() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("main does not lead with a quorum (the leader: %q)", n.Leader())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// write is one replicated transaction on the leader.
func (g *benchGroup) write(i int) error {
	return g.stores["main"].Update(func(tx *store.Tx) error {
		return tx.Put("bench", strconv.Itoa(i%64), map[string]any{"n": i, "at": time.Now()})
	})
}

func (g *benchGroup) stop(id string) {
	if n := g.nodes[id]; n != nil {
		n.Close()
		delete(g.nodes, id)
	}
	if st := g.stores[id]; st != nil {
		st.Close()
		delete(g.stores, id)
	}
}

func (g *benchGroup) close() {
	for id := range g.nodes {
		g.stop(id)
	}
	for id := range g.stores {
		g.stop(id)
	}
}

// slowDisk is an ext4 file system on a loop device whose writes from this
// process are throttled.
type slowDisk struct {
	img, loop, dir, cgroup string
}

func newSlowDisk(e *env, iops int) (*slowDisk, error) {
	d := &slowDisk{img: filepath.Join(e.tmp, "slow.img"), dir: filepath.Join(e.tmp, "slow")}
	if err := os.WriteFile(d.img, nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(d.img, 512<<20); err != nil {
		return nil, err
	}
	out, err := exec.Command("losetup", "-f", "--show", d.img).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("losetup: %v %s", err, out)
	}
	d.loop = strings.TrimSpace(string(out))
	if out, err := exec.Command("mkfs.ext4", "-q", d.loop).CombinedOutput(); err != nil {
		d.close()
		return nil, fmt.Errorf("mkfs.ext4: %v %s", err, out)
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		d.close()
		return nil, err
	}
	if out, err := exec.Command("mount", d.loop, d.dir).CombinedOutput(); err != nil {
		d.close()
		return nil, fmt.Errorf("mount: %v %s", err, out)
	}
	dev, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.loop), "dev"))
	if err != nil {
		d.close()
		return nil, err
	}
	d.cgroup = filepath.Join("/sys/fs/cgroup/blkio", fmt.Sprintf("understudy-bench-%d", os.Getpid()))
	if err := os.Mkdir(d.cgroup, 0o755); err != nil {
		d.close()
		return nil, err
	}
	rule := fmt.Sprintf("%s %d", strings.TrimSpace(string(dev)), iops)
	if err := os.WriteFile(filepath.Join(d.cgroup, "blkio.throttle.write_iops_device"), []byte(rule), 0o644); err != nil {
		d.close()
		return nil, err
	}
	// This process goes in: only its writes to the loop device wait.
	if err := os.WriteFile(filepath.Join(d.cgroup, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *slowDisk) close() {
	if d.cgroup != "" {
		// Back to the root group, then the group is removed.
		os.WriteFile("/sys/fs/cgroup/blkio/cgroup.procs", []byte(strconv.Itoa(os.Getpid())), 0o644)
		if err := os.Remove(d.cgroup); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(os.Stderr, "slow storage: cgroup not removed:", err)
		}
	}
	if d.dir != "" {
		exec.Command("umount", d.dir).Run()
	}
	if d.loop != "" {
		exec.Command("losetup", "-d", d.loop).Run()
	}
	os.Remove(d.img)
}
