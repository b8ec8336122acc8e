package consensus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"understudy/runtime/store"
)

// fast are timeouts for candidates on an in-memory transport.
var fast = Timing{Heartbeat: 50 * time.Millisecond, Election: 50 * time.Millisecond, LeaderLease: 50 * time.Millisecond, Commit: 5 * time.Millisecond}

// candidate is one test candidate: its store, node and transport, and the
// folders to start it again from.
type candidate struct {
	id        string
	dir       string
	statePath string
	st        *store.Store
	node      *Node
	trans     raft.Transport
	// joins: started with no first configuration, it waits to be added.
	joins bool
	// volatile: its store is rebuilt from raft at each start
	// (Config.Volatile).
	volatile bool
}

// group is a test group of candidates.
type group struct {
	t      *testing.T
	peers  []Peer
	cs     map[string]*candidate
	timing Timing
	// transport makes a candidate's transport at each start (its node
	// closes it).
	transport func(c *candidate) raft.Transport
}

// newGroup starts a group on raft's in-memory transport.
func newGroup(t *testing.T, ids ...string) *group {
	t.Helper()
	var peers []Peer
	for _, id := range ids {
		peers = append(peers, Peer{ID: id, Addr: id})
	}
	g := startGroup(t, peers, fast, func(c *candidate) raft.Transport {
		_, trans := raft.NewInmemTransport(raft.ServerAddress(c.id))
		return trans
	})
	g.connectAll()
	return g
}

// startGroup starts a candidate for each peer, on the transports that
// transport makes, and stops them at the end of the test.
func startGroup(t *testing.T, peers []Peer, timing Timing, transport func(c *candidate) raft.Transport) *group {
	t.Helper()
	g := &group{t: t, peers: peers, cs: map[string]*candidate{}, timing: timing, transport: transport}
	root := t.TempDir() // removed after the candidates stop (cleanups run last first)
	t.Cleanup(func() {
		for _, c := range g.cs {
			g.stop(c)
		}
	})
	for _, p := range peers {
		c := &candidate{id: p.ID, dir: filepath.Join(root, p.ID, "raft"), statePath: filepath.Join(root, p.ID, "state.db")}
		g.cs[p.ID] = c
		g.start(c)
	}
	return g
}

// start opens c's store and starts its node (again, after stop).
func (g *group) start(c *candidate) {
	g.t.Helper()
	st, err := store.Open(c.statePath, store.Options{NoSync: true})
	if err != nil {
		g.t.Fatal(err)
	}
	trans := g.transport(c)
	peers := g.peers
	if c.joins {
		peers = nil
	}
	n, err := Start(Config{ID: c.id, Dir: c.dir, Peers: peers, Transport: trans, Store: st, Volatile: c.volatile, Timing: g.timing, ApplyTimeout: 2 * time.Second, SnapshotThreshold: 16, TrailingLogs: 4, SnapshotInterval: 20 * time.Millisecond})
	if err != nil {
		st.Close()
		if tc, ok := trans.(raft.WithClose); ok {
			tc.Close()
		}
		g.t.Fatal(err)
	}
	c.st, c.node, c.trans = st, n, trans
}

// stop shuts c's node and store (a candidate stopped; its folders stay).
func (g *group) stop(c *candidate) {
	if c.node == nil {
		return
	}
	c.node.Close()
	c.st.Close()
	c.node, c.st = nil, nil
}

// connectAll connects the candidates on the in-memory transport.
func (g *group) connectAll() {
	for _, a := range g.cs {
		for _, b := range g.cs {
			if a != b && inmem(a) != nil && inmem(b) != nil {
				inmem(a).Connect(raft.ServerAddress(b.id), inmem(b))
			}
		}
	}
}

// partition cuts c off from every other candidate, both ways (on the
// in-memory transport).
func (g *group) partition(c *candidate) {
	inmem(c).DisconnectAll()
	for _, o := range g.cs {
		if o != c && inmem(o) != nil {
			inmem(o).Disconnect(raft.ServerAddress(c.id))
		}
	}
}

// inmem is c's in-memory transport, nil if it has another.
func inmem(c *candidate) *raft.InmemTransport {
	t, _ := c.trans.(*raft.InmemTransport)
	return t
}

// waitFor waits until cond holds (deadline 10 s: elections on the
// in-memory transport take tens of milliseconds, on loopback TLS less
// than a second).
func (g *group) waitFor(what string, cond func() bool) {
	g.t.Helper()
	waitFor(g.t, what, cond)
}

// waitFor waits until cond holds, 10 s at most.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leader waits for one running candidate, among those given (all when
// none), to lead.
func (g *group) leader(among ...string) *candidate {
	g.t.Helper()
	if len(among) == 0 {
		for id, c := range g.cs {
			if c.node != nil {
				among = append(among, id)
			}
		}
	}
	var l *candidate
	g.waitFor("a leader among "+fmt.Sprint(among), func() bool {
		for _, id := range among {
			if c := g.cs[id]; c.node != nil && c.node.IsLeader() {
				l = c
				return true
			}
		}
		return false
	})
	return l
}

func put(t *testing.T, st *store.Store, key, value string) error {
	t.Helper()
	return st.Update(func(tx *store.Tx) error { return tx.Put("items", key, value) })
}

func get(st *store.Store, key string) string {
	var v string
	st.Get("items", key, &v)
	return v
}

// Three candidates: what the leader writes is on every candidate's store;
// a follower cannot write (its store says so and keeps nothing).
func TestTheLeadersTransactionsAreOnEveryCandidate(t *testing.T) {
	g := newGroup(t, "a", "b", "c")
	l := g.leader()
	if err := put(t, l.st, "x", "1"); err != nil {
		t.Fatal(err)
	}
	if got := get(l.st, "x"); got != "1" {
		t.Fatalf("the leader's own store has x=%q after Update returned", got)
	}
	for _, c := range g.cs {
		g.waitFor(c.id+" applying x", func() bool { return get(c.st, "x") == "1" })
	}
	for _, c := range g.cs {
		if c == l {
			continue
		}
		err := put(t, c.st, "y", "2")
		if !errors.Is(err, raft.ErrNotLeader) {
			t.Errorf("%s, a follower, wrote: %v", c.id, err)
		}
		if get(c.st, "y") != "" {
			t.Errorf("%s kept a write it could not replicate", c.id)
		}
	}
}

// The leader stops: another is elected with everything it committed, and
// writes on.
func TestANewLeaderHasEveryCommittedTransaction(t *testing.T) {
	g := newGroup(t, "a", "b", "c")
	l := g.leader()
	for i := range 40 { // past the snapshot threshold
		if err := put(t, l.st, fmt.Sprint("k", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	g.stop(l)
	var rest []string
	for id := range g.cs {
		if id != l.id {
			rest = append(rest, id)
		}
	}
	nl := g.leader(rest...)
	if err := nl.node.Barrier(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if got := get(nl.st, fmt.Sprint("k", i)); got != fmt.Sprint(i) {
			t.Fatalf("new leader %s: k%d=%q", nl.id, i, got)
		}
	}
	if err := put(t, nl.st, "after", "yes"); err != nil {
		t.Fatal(err)
	}
	// The old leader, started again on its folders, catches up and does
	// not go back on what its store held.
	g.start(l)
	g.connectAll()
	g.waitFor(l.id+" catching up", func() bool { return get(l.st, "after") == "yes" })
	if got := get(l.st, "k39"); got != "39" {
		t.Errorf("restarted %s lost k39 (%q)", l.id, got)
	}
}

// A leader cut off from the others cannot commit: its write fails and its
// store keeps nothing of it; the majority elects a leader that writes on,
// and once healed the old leader has the majority's writes and never its
// own failed one.
func TestALeaderCutOffCannotCommit(t *testing.T) {
	g := newGroup(t, "a", "b", "c")
	old := g.leader()
	g.partition(old)
	err := put(t, old.st, "lonely", "1")
	if err == nil {
		t.Fatal("a leader without a quorum committed a write")
	}
	if get(old.st, "lonely") != "" {
		t.Fatal("the cut-off leader's store kept a write that was not committed")
	}
	var rest []string
	for id := range g.cs {
		if id != old.id {
			rest = append(rest, id)
		}
	}
	nl := g.leader(rest...)
	if err := put(t, nl.st, "majority", "1"); err != nil {
		t.Fatal(err)
	}
	g.connectAll()
	g.waitFor(old.id+" following again", func() bool { return get(old.st, "majority") == "1" && !old.node.IsLeader() })
	if get(old.st, "lonely") != "" {
		t.Error("the write that failed on the cut-off leader appeared later")
	}
	if old.node.Term() < nl.node.Term() {
		t.Errorf("the old leader is still in term %d, the group in %d", old.node.Term(), nl.node.Term())
	}
}

// Every candidate stopped and started again: the state is intact, and
// entries raft replays over a store that already applied them are not
// applied twice (a counter shows it).
func TestAllCandidatesRestarted(t *testing.T) {
	g := newGroup(t, "a", "b", "c")
	l := g.leader()
	for range 25 {
		if err := l.st.Update(func(tx *store.Tx) error { _, err := tx.Increment("counters", "n"); return err }); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range g.cs {
		g.waitFor(c.id+" applying the increments", func() bool {
			var n uint64
			c.st.View(func(tx *store.Tx) error { n = tx.Counter("counters", "n"); return nil })
			return n == 25
		})
	}
	// Each has a snapshot older than its store by then.
	for _, c := range g.cs {
		g.waitFor(c.id+" taking a snapshot", func() bool {
			m, _ := filepath.Glob(filepath.Join(c.dir, "snapshots", "*", "meta.json"))
			return len(m) > 0
		})
	}
	for _, c := range g.cs {
		g.stop(c)
	}
	// Started again and not yet in contact: each store is as it was, not
	// put back to its snapshot.
	for _, c := range g.cs {
		g.start(c)
		var n uint64
		c.st.View(func(tx *store.Tx) error { n = tx.Counter("counters", "n"); return nil })
		if n != 25 {
			t.Errorf("%s: counter %d at start, want 25 (its store, not an older snapshot)", c.id, n)
		}
	}
	g.connectAll()
	l = g.leader()
	if err := l.node.Barrier(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.cs {
		var n uint64
		c.st.View(func(tx *store.Tx) error { n = tx.Counter("counters", "n"); return nil })
		if n != 25 {
			t.Errorf("%s: counter %d after the restart, want 25", c.id, n)
		}
	}
}

// A candidate whose state file is gone (a disk replaced, a corrupt file
// moved aside) gets the state back from its snapshot and the group's log.
func TestACandidateThatLostItsStateFileGetsItBack(t *testing.T) {
	g := newGroup(t, "a", "b", "c")
	l := g.leader()
	for i := range 30 {
		if err := put(t, l.st, fmt.Sprint("k", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	var f *candidate
	for _, c := range g.cs {
		if c != l {
			f = c
		}
	}
	g.waitFor(f.id+" applying k29 and taking a snapshot", func() bool {
		m, _ := filepath.Glob(filepath.Join(f.dir, "snapshots", "*", "meta.json"))
		return get(f.st, "k29") == "29" && len(m) > 0
	})
	g.stop(f)
	if err := os.Remove(f.statePath); err != nil {
		t.Fatal(err)
	}
	g.start(f)
	g.connectAll()
	g.waitFor(f.id+" having every key again", func() bool {
		for i := range 30 {
			if get(f.st, fmt.Sprint("k", i)) != fmt.Sprint(i) {
				return false
			}
		}
		return true
	})
}

// A candidate whose store is volatile (written without fsync) finds it
// emptied at start, whatever it held — here a key it never applied, as a
// torn write after a power loss may leave — and rebuilt from its raft
// snapshot and log: the same as the leader's.
func TestAVolatileStoreIsRebuiltFromRaftAtStart(t *testing.T) {
	g := newGroup(t, "a", "b", "c")
	l := g.leader()
	var f *candidate
	for _, c := range g.cs {
		if c != l {
			f = c
		}
	}
	for i := range 30 {
		if err := put(t, l.st, fmt.Sprint("k", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	g.waitFor(f.id+" applying k29 and taking a snapshot", func() bool {
		m, _ := filepath.Glob(filepath.Join(f.dir, "snapshots", "*", "meta.json"))
		return get(f.st, "k29") == "29" && len(m) > 0
	})
	g.stop(f)
	st, err := store.Open(f.statePath, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put("items", "torn", "never applied"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	f.volatile = true
	g.start(f)
	if got := get(f.st, "torn"); got != "" {
		t.Fatalf("the volatile store kept %q from before the start", got)
	}
	g.connectAll()
	g.waitFor(f.id+" having every key again", func() bool {
		for i := range 30 {
			if get(f.st, fmt.Sprint("k", i)) != fmt.Sprint(i) {
				return false
			}
		}
		return get(f.st, "torn") == ""
	})
	// And it goes on taking new writes.
	if err := put(t, l.st, "k30", "30"); err != nil {
		t.Fatal(err)
	}
	g.waitFor(f.id+" applying k30", func() bool { return get(f.st, "k30") == "30" })
}
