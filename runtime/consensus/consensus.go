// Package consensus keeps the coordinator's state on every coordinator
// candidate: a raft group (github.com/hashicorp/raft) whose log carries the
// state store's transactions (store.Write, through store.Replicator) and
// whose leader is the one candidate that may act. The store is raft's state
// machine: a transaction is durable on a quorum and applied on this
// candidate before Update returns, and a new leader finds every
// transaction the old one committed.
//
// NewTransport is the group's network transport: raft's NetworkTransport
// over mutual TLS whose certificates derive from the site key
// (sitekey.Ring), so that nothing without the site key joins or talks to
// the group; the connections it refuses are logged and counted.
//
// It is the seam the elected coordinator is built on (runtime/instance's
// election).
package consensus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"understudy/runtime/store"
)

// Peer is one server of the group: a candidate in one incarnation of its
// raft state.
type Peer struct {
	ID   string // its raft server id
	Addr string // its raft transport address, host:port
}

// ServerID is the raft server id of member's candidate in incarnation inc:
// a candidate whose raft state is made anew (first, or after it was lost)
// is a new server. An empty inc is the member id itself, the id of groups
// made before incarnations.
func ServerID(member, inc string) string {
	if inc == "" {
		return member
	}
	return member + "@" + inc
}

// MemberOf is the member whose candidate server id is.
func MemberOf(server string) string {
	m, _, _ := strings.Cut(server, "@")
	return m
}

// Timing are raft's timeouts (zero: Defaults).
type Timing struct {
	Heartbeat   time.Duration // a follower without contact this long starts an election
	Election    time.Duration // a candidate without a result this long starts again
	LeaderLease time.Duration // a leader without contact with a quorum this long steps down
	Commit      time.Duration // at most this long before a commit reaches the followers
}

// TimingFor is raft's timing for a site's heartbeat interval: a follower
// that has not heard the leader for three intervals (at least 200 ms, at
// most 2 s) starts an election, as a member is judged by its heartbeats;
// the leader steps down after half that without a quorum.
func TimingFor(interval time.Duration) Timing {
	hb := min(max(3*interval, 200*time.Millisecond), 2*time.Second)
	return Timing{Heartbeat: hb, Election: hb, LeaderLease: hb / 2, Commit: 20 * time.Millisecond}
}

// Lease is how long a confirmation of the lead lasts: raft's heartbeat
// timeout, below which no follower that confirmed it votes for another
// candidate.
func (t Timing) Lease() time.Duration { return t.Heartbeat }

// LeaseMargin is what the lease gives up for clocks that run at different
// rates on different machines (10 %) and for scheduling (20 ms).
func (t Timing) LeaseMargin() time.Duration { return t.Heartbeat/10 + 20*time.Millisecond }

// NewLeaderActs is how long after the leader is lost a new one acts, as the
// simulator models it: a heartbeat timeout for the followers to notice, one
// election timeout, and the new leader's wait for the old lease (Lease plus
// LeaseMargin). Measured between processes it is that, give or take the
// election's randomness (about 1 s at a 100 ms heartbeat).
func (t Timing) NewLeaderActs() time.Duration {
	return t.Heartbeat + t.Election + t.Lease() + t.LeaseMargin()
}

// Defaults are the timeouts for candidates on one LAN.
var Defaults = Timing{Heartbeat: 500 * time.Millisecond, Election: 500 * time.Millisecond, LeaderLease: 250 * time.Millisecond, Commit: 20 * time.Millisecond}

// Config is one candidate's part of the group.
type Config struct {
	ID string
	// Dir holds raft's log and stable store (raft.db) and its snapshots.
	Dir string
	// Peers, when set, are every server, this one included: the group's
	// first configuration, made when Dir has no raft state. Without them a
	// candidate with no state waits to be bootstrapped (Bootstrap) or added
	// by the leader (AddVoter).
	Peers     []Peer
	Transport raft.Transport
	// Store is the state machine. Start makes its Updates replicated.
	Store *store.Store
	// Volatile: Store is written without fsync (store.Options.NoSync), so
	// after a power loss it may hold less than it applied, or be torn.
	// Start empties it, and raft restores it from its last snapshot and
	// applies the log after it: raft's log and snapshots are what is
	// durable. A commit then costs one fsynced append to the log on a
	// majority, not another fsync of the state on every candidate.
	Volatile bool
	Timing   Timing
	// ApplyTimeout bounds a replicated Update (default 5 s).
	ApplyTimeout time.Duration
	// SnapshotThreshold is how many log entries make a snapshot (default
	// 8192), checked every SnapshotInterval (default 2 minutes);
	// TrailingLogs how many stay after it (default 1024).
	SnapshotThreshold, TrailingLogs uint64
	SnapshotInterval                time.Duration
	// LogOutput receives raft's own log lines, warnings and up (default:
	// none).
	LogOutput io.Writer
	// Committed, when set, sees how long each replicated transaction took
	// to commit and apply here (Replicate's time).
	Committed func(time.Duration)
	// LogWritten, when set, sees how long each append to this candidate's
	// raft log took, its fsync included: the storage's part of a commit.
	LogWritten func(time.Duration)
}

// ErrTransferInProgress: a hand-over of the lead is under way already
// (TransferLeadership); it ends (taken, or timed out) before another.
var ErrTransferInProgress = raft.ErrLeadershipTransferInProgress

// Node is this candidate in the group.
type Node struct {
	cfg  Config
	raft *raft.Raft
	logs *raftboltdb.BoltStore
	fsm  *fsm
}

// Interface guard: a Node replicates a store's transactions.
var _ store.Replicator = (*Node)(nil)

// appliedBucket keeps, in the store itself, the index of the last log
// entry applied to it, in the same transaction as the entry's writes: an
// entry raft replays after a restart is applied once (the store is durable
// on its own and may be ahead of raft's last snapshot).
const (
	appliedBucket = "consensus"
	appliedKey    = "applied"
)

// Start opens (or makes) this candidate's raft state in cfg.Dir, joins the
// group and makes cfg.Store's Updates go through it. On an error nothing
// is left open.
func Start(cfg Config) (_ *Node, err error) {
	if cfg.ID == "" || cfg.Store == nil || cfg.Transport == nil {
		return nil, errors.New("consensus: ID, Store and Transport are needed")
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = Defaults
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 5 * time.Second
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = io.Discard
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus folder: %w", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: cfg.LogOutput, Level: hclog.Warn})
	// The free list is not written at every commit (bbolt rebuilds it when
	// it opens the file): an append to the log writes its pages only.
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if err != nil {
		return nil, fmt.Errorf("consensus log %s: %w", cfg.Dir, err)
	}
	defer func() {
		if err != nil {
			logs.Close()
		}
	}()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, logger)
	if err != nil {
		return nil, fmt.Errorf("consensus snapshots %s: %w", cfg.Dir, err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.Timing.Heartbeat, cfg.Timing.Election
	rc.LeaderLeaseTimeout, rc.CommitTimeout = cfg.Timing.LeaderLease, cfg.Timing.Commit
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	rc.Logger = logger
	switch list, err := snaps.List(); {
	case cfg.Volatile:
		// Rebuilt from raft's snapshot and log at every start.
		if err := cfg.Store.Empty(); err != nil {
			return nil, fmt.Errorf("consensus: %w", err)
		}
		rc.NoSnapshotRestoreOnStart = false
	case err == nil && len(list) > 0:
		// The store keeps itself: a snapshot is restored at start only
		// when the store is behind it (a state file lost or moved aside).
		rc.NoSnapshotRestoreOnStart = applied(cfg.Store) >= list[0].Index
	default:
		rc.NoSnapshotRestoreOnStart = true
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("consensus: %w", err)
	}

	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return nil, fmt.Errorf("consensus state %s: %w", cfg.Dir, err)
	}
	if !has && len(cfg.Peers) > 0 {
		if err := raft.BootstrapCluster(rc, logs, logs, snaps, cfg.Transport, configuration(cfg.Transport, cfg.Peers)); err != nil {
			return nil, fmt.Errorf("consensus: first configuration: %w", err)
		}
	}
	f := &fsm{st: cfg.Store, done: make(chan struct{})}
	var logStore raft.LogStore = logs
	if cfg.LogWritten != nil {
		logStore = timedLogs{LogStore: logs, written: cfg.LogWritten}
	}
	r, err := raft.NewRaft(rc, f, logStore, logs, snaps, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("consensus: %w", err)
	}
	n := &Node{cfg: cfg, raft: r, logs: logs, fsm: f}
	cfg.Store.Replicate(n)
	return n, nil
}

// serverAddresser is a transport whose raft addresses name the server they
// are for (Transport; raft's in-memory transport is not one).
type serverAddresser interface {
	serverAddress(addr, id string) raft.ServerAddress
}

// serverAddress is the raft address of server id at addr on tr.
func serverAddress(tr raft.Transport, addr, id string) raft.ServerAddress {
	if a, ok := tr.(serverAddresser); ok {
		return a.serverAddress(addr, id)
	}
	return raft.ServerAddress(addr)
}

// configuration is the raft configuration of peers, all voters, on tr.
func configuration(tr raft.Transport, peers []Peer) raft.Configuration {
	var c raft.Configuration
	for _, p := range peers {
		c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: serverAddress(tr, p.Addr, p.ID), Suffrage: raft.Voter})
	}
	return c
}

// HasState reports whether Dir held raft state when Start opened it.
func HasState(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, "raft.db"))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("consensus state %s: %w", dir, err)
}

// Bootstrap makes the group's first configuration, peers, on a candidate
// that has no raft state. Every server of a new group may bootstrap, with
// the same peers; one that has state refuses (raft.ErrCantBootstrap).
func (n *Node) Bootstrap(peers []Peer) error {
	if err := n.raft.BootstrapCluster(configuration(n.cfg.Transport, peers)).Error(); err != nil {
		return fmt.Errorf("consensus: first configuration: %w", err)
	}
	return nil
}

// Servers is the group's latest configuration as this candidate knows it
// (none: not bootstrapped nor added yet).
func (n *Node) Servers() ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("consensus: configuration: %w", err)
	}
	var ps []Peer
	for _, s := range f.Configuration().Servers {
		addr, _ := splitAddress(string(s.Address))
		ps = append(ps, Peer{ID: string(s.ID), Addr: addr})
	}
	return ps, nil
}

// AddVoter adds p to the group (on the leader): raft commits the new
// configuration once a quorum of it, p included, has it.
func (n *Node) AddVoter(p Peer, timeout time.Duration) error {
	if err := n.raft.AddVoter(raft.ServerID(p.ID), serverAddress(n.cfg.Transport, p.Addr, p.ID), 0, timeout).Error(); err != nil {
		return fmt.Errorf("consensus: add %s: %w", p.ID, err)
	}
	return nil
}

// RemoveServer takes server id out of the group (on the leader).
func (n *Node) RemoveServer(id string, timeout time.Duration) error {
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
		return fmt.Errorf("consensus: remove %s: %w", id, err)
	}
	return nil
}

// timedLogs times each append to the raft log (raft writes entries with
// StoreLogs, one bbolt transaction and fsync per batch).
type timedLogs struct {
	raft.LogStore
	written func(time.Duration)
}

func (l timedLogs) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

func (l timedLogs) StoreLogs(logs []*raft.Log) error {
	start := time.Now()
	err := l.LogStore.StoreLogs(logs)
	l.written(time.Since(start))
	return err
}

// entry is one log entry: a store transaction.
type entry struct {
	Writes []store.Write `json:"writes"`
}

// Replicate commits writes through the group: it returns once a quorum has
// them and this candidate's store has applied them, or an error (not the
// leader: raft.ErrNotLeader; leadership lost, no quorum in time), and then
// they may or may not be committed later — never applied here without
// going through the log.
func (n *Node) Replicate(writes []store.Write) error {
	data, err := json.Marshal(entry{Writes: writes})
	if err != nil {
		return fmt.Errorf("consensus: %w", err)
	}
	start := time.Now()
	fut := n.raft.Apply(data, n.cfg.ApplyTimeout)
	if err := fut.Error(); err != nil {
		return fmt.Errorf("consensus: %w", err)
	}
	if n.cfg.Committed != nil {
		n.cfg.Committed(time.Since(start))
	}
	if err, ok := fut.Response().(error); ok && err != nil {
		return fmt.Errorf("consensus: applied with an error: %w", err)
	}
	return nil
}

// IsLeader reports whether this candidate leads the group now (as far as
// it knows: VerifyLeader asks a quorum).
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's member id, "" while there is none known.
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return MemberOf(string(id))
}

// Term is the current raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// LeaderChanges reports this candidate becoming (true) and ceasing to be
// (false) the leader.
func (n *Node) LeaderChanges() <-chan bool { return n.raft.LeaderCh() }

// LastContact is how long ago this candidate last heard the leader (0 on
// the leader itself, and before any contact).
func (n *Node) LastContact() time.Duration {
	if n.IsLeader() {
		return 0
	}
	last := n.raft.LastContact()
	if last.IsZero() {
		return 0
	}
	return time.Since(last)
}

// VerifyLeader confirms with a quorum that this candidate still leads.
func (n *Node) VerifyLeader() error { return n.raft.VerifyLeader().Error() }

// Barrier waits until every entry committed before it is applied here: a
// new leader calls it before its first action.
func (n *Node) Barrier(timeout time.Duration) error { return n.raft.Barrier(timeout).Error() }

// TransferLeadership hands the leadership to member id's server ("": the
// most up to date one).
func (n *Node) TransferLeadership(id string) error {
	if id == "" {
		return n.raft.LeadershipTransfer().Error()
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("consensus: configuration: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if MemberOf(string(s.ID)) == id {
			return n.raft.LeadershipTransferToServer(s.ID, s.Address).Error()
		}
	}
	return fmt.Errorf("consensus: %s is not in the group", id)
}

// Close leaves the group (this candidate stops; the others go on) and
// makes the store's Updates local again.
func (n *Node) Close() error {
	n.cfg.Store.Replicate(nil)
	close(n.fsm.done)
	err := n.raft.Shutdown().Error()
	return errors.Join(err, n.logs.Close())
}

// fsm applies the log to the store.
type fsm struct {
	st   *store.Store
	done chan struct{}
	mu   sync.Mutex // Apply and Restore
}

// retryApply is how often an entry the store could not take (its disk
// full) is tried again: entries are applied in order or not at all.
const retryApply = time.Second

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.Index <= applied(f.st) {
		return nil // applied before a restart
	}
	var e entry
	if err := json.Unmarshal(l.Data, &e); err != nil {
		return fmt.Errorf("log entry %d: %w", l.Index, err)
	}
	writes := append(e.Writes, store.Write{Op: store.OpPut, Bucket: appliedBucket, Key: appliedKey, Value: binary.BigEndian.AppendUint64(nil, l.Index)})
	for {
		err := f.st.ApplyWrites(writes)
		if err == nil {
			return nil
		}
		select {
		case <-f.done:
			return err
		case <-time.After(retryApply):
		}
	}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	fr, err := f.st.Freeze()
	if err != nil {
		return nil, err
	}
	return snapshot{fr}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Restore(rc)
}

// snapshot is the store frozen at Snapshot, written at Persist.
type snapshot struct{ fr *store.Frozen }

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.fr.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("consensus snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() { s.fr.Close() }

// applied is the index of the last log entry the store has applied.
func applied(st *store.Store) uint64 {
	var n uint64
	st.View(func(tx *store.Tx) error {
		n = tx.Counter(appliedBucket, appliedKey)
		return nil
	})
	return n
}
