package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/events"
	"understudy/guards"
	"understudy/runtime/config"
	"understudy/runtime/consensus"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
	"understudy/runtime/inbound"
	"understudy/runtime/store"
)

// On a site whose coordinator is elected (coordinator: [a, b, w]) every
// candidate runs an election: a raft group (runtime/consensus) whose
// replicated state is the coordinator's state store, and whose leader
// coordinates. The leader builds a coordinator (new drivers, a new Lua
// state) on the replicated store each time it is elected and stops it the
// moment it is not the leader any more.
//
// Raft alone does not keep two leaders from acting at once: followers elect
// a new leader a heartbeat timeout after they last heard the old one, the
// old one steps down only when its own check fires, and a leader paused by
// the kernel or a VM wakes with its device writes still queued. So:
//
//   - The leader holds an application lease: it may write to a device or
//     send a command only while less than the lease (consensus.Timing.Lease) minus its margin has passed since
//     the start of its last successful VerifyLeader (a quorum confirmed it
//     leads: none of them votes for another candidate for a heartbeat
//     timeout after that). Every device write, every retry and every command
//     asks first (coordinator.Options.MayAct); losing the lead revokes it
//     at once.
//   - A new leader waits the lease plus the margin before its first action, then
//     Barrier: every entry the old leader committed is applied here.
//   - Every command carries the coordinator's epoch, a replicated counter
//     the new leader's first write increments: members refuse an older one.
//
// A witness votes and may win (it can hold entries a lagging candidate
// lacks); it then hands the leadership on at once and never acts.

// lease is the leader's right to act. Safe for concurrent use.
type lease struct {
	mu    sync.Mutex
	until time.Time // monotonic; zero: none
	why   string    // why there is none
}

func (l *lease) grant(until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.until, l.why = until, ""
}

func (l *lease) revoke(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.until, l.why = time.Time{}, why
}

// check is nil while this instance may act as the coordinator.
func (l *lease) check() error {
	if guards.Off(guards.Lease) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.until.IsZero():
		return fmt.Errorf("not the elected coordinator: %s", l.why)
	case !time.Now().Before(l.until):
		return errors.New("the coordinator's lease lapsed: a quorum of candidates has not confirmed its lead in time")
	}
	return nil
}

// ErrLeaseLapsed: a publish held because the lease has lapsed.
var ErrLeaseLapsed = errors.New("held: this instance may not act as the coordinator now")

// leasedPublisher publishes for the coordinator only while it may act. A
// retained state held meanwhile sets held: the election has the
// coordinator publish its retained states again once the lease is back
// (what is not retained, a record on the events topic, is not sent late).
//
// Every retained state it publishes carries the term it was elected in
// ("term", unless the state names one itself): the brokers keep what each
// leader published last, and a reader tells the newest leader's word by it.
type leasedPublisher struct {
	inner coordinator.Publisher
	lease *lease
	held  *atomic.Bool
	term  uint64
}

func (p leasedPublisher) Publish(topic string, qos byte, retained bool, payload []byte) error {
	if err := p.lease.check(); err != nil {
		if retained && p.held != nil {
			p.held.Store(true)
		}
		return fmt.Errorf("%w: %v", ErrLeaseLapsed, err)
	}
	if retained && p.term > 0 {
		payload = withTerm(payload, p.term)
	}
	return p.inner.Publish(topic, qos, retained, payload)
}

// withTerm adds "term" to a JSON object that has none; anything else goes
// as it is.
func withTerm(payload []byte, term uint64) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(payload, &fields) != nil || fields == nil {
		return payload
	}
	if _, ok := fields["term"]; ok {
		return payload
	}
	fields["term"] = json.RawMessage(strconv.FormatUint(term, 10))
	out, err := json.Marshal(fields)
	if err != nil {
		return payload
	}
	return out
}

// election is this candidate's part in electing the coordinator.
type election struct {
	inst    *Instance
	self    string
	server  string // this candidate's raft server id (see membership.go)
	witness bool
	timing  consensus.Timing
	store   *store.Store // the replicated coordinator state
	trans   *consensus.Transport
	node    *consensus.Node
	log     *slog.Logger
	lease   lease
	// in carries what members report to the coordinator to the one that
	// runs now, and keeps their latest states for the next one.
	in *coordinatorInputs
	// words are the other candidates' words of themselves (bus.RaftMember).
	words raftMembers
	// formed is set once this candidate is in a group (a configuration).
	formed atomic.Bool
	// held is set when a retained state of the coordinator was not
	// published because the lease had lapsed.
	held  atomic.Bool
	woken chan struct{}

	// owned by run's goroutine
	lastWordCheck time.Time
	lastWarning   string
	leaderTerm    uint64    // the term this candidate last became leader in
	leaderSince   time.Time // when (monotonic)
	handOns       int       // this witness's attempts to hand the lead on
	failedTerm    uint64    // a term in which the coordinator did not start
	deferred      bool      // handed a new group's first lead to the first candidate
	// handingOn is set while a transfer asked by an operator is under way.
	handingOn atomic.Bool
	// noLeaderSince (UnixNano) is when this candidate last found no
	// leader it knows of, 0 while there is one.
	noLeaderSince atomic.Int64

	mu           sync.Mutex // guards what status reads
	coord        *coordinator.Coordinator
	coordTerm    uint64
	coordSince   time.Time
	elections    uint64 // terms this candidate coordinated
	lastStepDown string
	waiting      string // why this candidate is in no group yet
	announced    string // the servers its last word named
}

// ElectionStatus is what /status says of the election.
type ElectionStatus struct {
	Candidates  []string      `json:"candidates"`
	Witnesses   []string      `json:"witnesses,omitempty"`
	Self        string        `json:"self"`
	Server      string        `json:"server"`            // this candidate's raft server id
	Servers     []string      `json:"servers,omitempty"` // the group's, as this candidate knows them
	Waiting     string        `json:"waiting,omitempty"` // why this candidate is in no group yet
	Warning     string        `json:"warning,omitempty"` // how the group and site.yaml disagree, candidates waiting to be admitted
	Role        string        `json:"role"`              // leader, follower, candidate, witness leading, ...
	Leader      string        `json:"leader,omitempty"`
	Term        uint64        `json:"term"`
	Coordinates bool          `json:"coordinates"` // this instance runs the policy now
	Since       time.Time     `json:"since,omitzero"`
	Elections   uint64        `json:"elections"` // terms this instance coordinated since it started
	LastStop    string        `json:"last_stop,omitempty"`
	LastContact time.Duration `json:"last_contact_ns"` // since this candidate last heard the leader (0: it leads)
	Raft        string        `json:"raft"`            // this candidate's raft address
	Refused     uint64        `json:"refused"`         // raft connections refused (no site key)
	Problem     string        `json:"problem,omitempty"`
}

// raftDir is where this candidate keeps its raft log and snapshots.
func raftDir(stateDir, site, self string) string {
	return filepath.Join(stateDir, site+"-"+self+".raft")
}

// startElection opens the replicated coordinator state and joins the raft
// group. What it opens is added to inst.closers.
func (inst *Instance) startElection(stateDir string, commitHook func() error) (*election, error) {
	site := inst.site
	self := inst.opts.Self
	if inst.ring.Empty() {
		return nil, fmt.Errorf("coordinator election: the candidates authenticate each other with the site key, and %s has none (auth off?): make one with `understudy keys new` and copy it to every candidate", self)
	}
	e := &election{inst: inst, self: self, witness: inst.member.Witness, timing: consensus.TimingFor(site.Heartbeat.Interval.D()),
		log: inst.log.With("component", "election"), in: newCoordinatorInputs(), woken: make(chan struct{}, 1)}
	e.lease.revoke("not elected yet")
	dir := raftDir(stateDir, site.Name, self)
	statePath := filepath.Join(stateDir, site.Name+"-"+self+"-coordinator.db")
	server, fresh, moved, err := serverIdentity(dir, statePath, self)
	if len(moved) > 0 {
		e.log.Warn("this candidate's raft log is gone: what was left of its raft state is moved aside, and it starts as a new raft server", "moved_to", moved)
	}
	if err != nil {
		return nil, err
	}
	e.server = server
	// Kept without fsync and rebuilt from raft's snapshot and log at each
	// start (consensus.Config.Volatile): a commit costs one fsync of the
	// raft log on a majority, which a witness on an SD card feels most.
	st, err := store.Open(statePath, store.Options{NoSync: true, BeforeCommit: commitHook})
	if err != nil {
		return nil, err
	}
	inst.closers.add(func() { st.Close() })
	e.store = st
	tr, err := consensus.NewTransport(consensus.TransportOptions{Bind: inst.member.Raft, Ring: inst.ring, Logger: e.log, ID: server})
	if err != nil {
		return nil, fmt.Errorf("coordinator election: raft transport on %s: %w", inst.member.Raft, err)
	}
	inst.closers.add(func() { tr.Close() })
	e.trans = tr
	node, err := consensus.Start(consensus.Config{ID: server, Dir: dir, Transport: tr, Store: st, Volatile: true, Timing: e.timing,
		LogOutput: newSlogWriter(e.log), Committed: func(d time.Duration) { inst.metrics.commit.Observe(d.Seconds()) },
		LogWritten: func(d time.Duration) { inst.metrics.logWrite.Observe(d.Seconds()) }})
	if err != nil {
		return nil, fmt.Errorf("coordinator election: %w", err)
	}
	inst.closers.add(func() { node.Close() })
	e.node = node
	if fresh {
		e.log.Info("this candidate's raft state is new: it is a new server in the coordinator election", "server", server)
	}
	e.log.Info("candidate in the coordinator election", "candidates", site.Candidates, "witness", e.witness, "raft", tr.Addr(), "server", server)
	return e, nil
}

// run follows the election until ctx ends: it confirms the lead, keeps the
// lease, starts the coordinator when this candidate may act and stops it
// when it may not.
func (e *election) run(ctx context.Context) {
	tick := time.NewTicker(e.timing.Lease() / 5)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.stepDown("this instance stops")
			return
		case <-e.node.LeaderChanges():
		case <-e.woken:
		case <-tick.C:
		}
		e.step(ctx)
	}
}

func (e *election) step(ctx context.Context) {
	if !e.joinOrForm() {
		e.noLeaderSince.CompareAndSwap(0, time.Now().UnixNano())
		return
	}
	e.reannounce(time.Now())
	if e.node.Leader() == "" {
		e.noLeaderSince.CompareAndSwap(0, time.Now().UnixNano())
	} else {
		e.noLeaderSince.Store(0)
	}
	term := e.node.Term()
	if !e.node.IsLeader() {
		e.leaderTerm = 0
		if e.coordinating() {
			why := "another candidate leads"
			switch {
			case e.handingOn.Swap(false):
				why = "the lead was handed on, as asked"
			case e.node.Leader() == "":
				why = "this candidate lost contact with a quorum of candidates"
			}
			e.stepDown(why)
		}
		e.lease.revoke("another candidate leads or none does")
		return
	}
	if e.leaderTerm != term {
		if e.coordinating() {
			e.stepDown("a new term began") // never two terms' coordinators in a row without the wait
		}
		e.leaderTerm, e.leaderSince = term, time.Now()
		e.handingOn.Store(false) // a hand-on asked in an earlier term is over
		e.log.Info("this candidate leads the election", "term", term)
	}
	t0 := time.Now()
	if err := e.node.VerifyLeader(); err != nil {
		e.lease.revoke("a quorum did not confirm the lead")
		if e.coordinating() {
			why := "a quorum of candidates did not confirm its lead"
			if e.handingOn.Swap(false) {
				why = "the lead was handed on, as asked"
			}
			e.stepDown(why)
		}
		return
	}
	e.lease.grant(t0.Add(e.timing.Lease() - e.timing.LeaseMargin()))
	if e.held.Swap(false) {
		e.republish()
	}
	switch {
	case e.witness:
		e.handOn(ctx, term)
		return
	case e.coordinating() || e.failedTerm == term:
		return
	case time.Since(e.leaderSince) < e.timing.Lease()+e.timing.LeaseMargin():
		return // the old leader's lease may not have run out yet
	}
	if err := e.node.Barrier(5 * time.Second); err != nil {
		e.log.Warn("the new leader could not apply what the old one committed yet", "error", err)
		return
	}
	migrated, err := e.migrated()
	if err != nil {
		e.log.Error("the coordinator's state cannot be read", "error", err)
		return
	}
	if !migrated && !e.deferred && e.self != e.inst.site.Candidates[0] && !hasCoordinatorState(e.inst.store) {
		// The first leader of a new group: the first candidate is most
		// likely the coordinator of before, with its state. Once.
		e.deferred = true
		first := e.inst.site.Candidates[0]
		if err := e.node.TransferLeadership(first); err == nil {
			e.log.Info("first election of the group: the lead goes to the first candidate, which may hold the state of the coordinator before", "to", first)
			return
		}
	}
	if !migrated {
		if err := e.migrate(); err != nil {
			e.log.Error("the state of the coordinator before was not taken over", "error", err)
			return
		}
	}
	e.startCoordinator(ctx, term)
}

// bucketElection keeps, in the replicated state, the election's own
// records.
const bucketElection = "election"

// migration records how the group's state began.
type migration struct {
	From  string    `json:"from"`  // the first leader
	Found bool      `json:"found"` // it held the state of a coordinator named in site.yaml before
	At    time.Time `json:"at"`
}

func (e *election) migrated() (bool, error) {
	var m migration
	return e.store.Get(bucketElection, "migrated", &m)
}

// migrate makes the state this candidate kept as the site's one named
// coordinator (its own state file, before the site elected its
// coordinator) the group's first state, in one replicated transaction:
// epoch, actions with their answers, coverage, timers, inbox, alarms go on
// where they were. A first leader without it begins empty: members' reports
// rebuild who covers whom, and the epoch moves past the newest members have
// seen, as after a lost state file.
func (e *election) migrate() error {
	found := false
	err := e.store.Update(func(tx *store.Tx) error {
		var err error
		if found, err = coordinator.CopyState(e.inst.store, tx); err != nil {
			return err
		}
		return tx.Put(bucketElection, "migrated", migration{From: e.self, Found: found, At: time.Now().UTC()})
	})
	if err != nil || !found {
		return err
	}
	e.log.Info("the state of the site's coordinator before the election is the group's first state", "from", e.inst.store.Path())
	// Taken over: gone from this instance's own file, so that no later
	// group can take it over again long after it is stale.
	if err := coordinator.ClearState(e.inst.store); err != nil {
		e.log.Warn("the coordinator's state before the election stays in this instance's state file (taken over all the same)", "error", err)
	}
	return nil
}

// hasCoordinatorState reports whether an instance's state file holds a
// coordinator's state (it coordinated before the site elected).
func hasCoordinatorState(st *store.Store) bool {
	var epoch uint64
	st.View(func(tx *store.Tx) error {
		epoch = tx.Counter("meta", "epoch")
		return nil
	})
	return epoch > 0
}

// handOn hands a witness's lead to a candidate that can act: the first,
// in the order of preference, that this instance's table has alive — the
// next one at the next attempt if that does not take it (one that was lost
// may still be the most up to date in raft's eyes).
func (e *election) handOn(ctx context.Context, term uint64) {
	alive := e.capableAlive(ctx)
	if len(alive) == 0 {
		e.log.Warn("the witness leads and no candidate that can act is alive: nobody coordinates until one is", "term", term)
		return
	}
	to := alive[e.handOns%len(alive)]
	start := time.Now()
	err := e.node.TransferLeadership(to)
	if errors.Is(err, consensus.ErrTransferInProgress) {
		// The hand-over before this one is not over in raft yet, though
		// its wait ended: the same candidate is asked next time, not
		// skipped (skipping it, the witness kept asking a candidate that
		// could not take the lead, and never the one that could).
		return
	}
	e.handOns++
	e.log.Info("the witness leads: handing the lead to a candidate that can act", "term", term, "to", to, "took", time.Since(start), "error", err)
}

func (e *election) coordinating() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.coord != nil
}

// startCoordinator builds this term's coordinator and hands it to the loop.
func (e *election) startCoordinator(ctx context.Context, term uint64) {
	inst := e.inst
	fail := func(err error) {
		e.failedTerm = term
		e.log.Error("elected, but the coordinator does not start here: handing the lead on", "term", term, "error", err)
		if terr := e.node.TransferLeadership(""); terr != nil {
			e.log.Error("the lead was not handed on", "error", terr)
		}
	}
	drvs, err := inst.site.BuildDrivers(inst.opts.Registry)
	if err != nil {
		fail(err)
		return
	}
	c, err := coordinator.New(coordinator.Options{Drivers: drvs, Registry: inst.opts.Registry,
		Publisher: leasedPublisher{inner: publisher{inst}, lease: &e.lease, held: &e.held, term: term}, Store: e.store, MayAct: e.lease.check, Term: term})
	if err != nil {
		fail(err)
		return
	}
	var startErr error
	if err := inst.engine.Do(ctx, func() {
		// It records coordinator_elected itself, first (coordinator.Start).
		startErr = inst.engine.SetCoordinator(c)
	}); err != nil {
		return // stopping
	}
	if startErr != nil {
		fail(startErr)
		return
	}
	e.mu.Lock()
	e.coord, e.coordTerm, e.coordSince = c, term, time.Now()
	e.elections++
	e.mu.Unlock()
	inst.coord.Store(c)
	e.in.attach(c)
	e.log.Info("elected: coordinating", "term", term)
}

// republish has the coordinator that runs here publish its retained
// states again (member states, drills, copies, alarms, its word of
// itself): some were held while the lease had lapsed (a busy machine can
// miss a confirmation), and nobody would publish them again.
func (e *election) republish() {
	e.mu.Lock()
	c := e.coord
	e.mu.Unlock()
	if c == nil {
		return
	}
	e.inst.engine.Post(func() {
		e.mu.Lock()
		current := e.coord == c
		e.mu.Unlock()
		if current {
			c.RepublishRetained()
		}
	})
}

// stepDown stops this candidate's coordinator at once: the lease first (so
// no device write or command leaves from here on), then the loop's
// coordinator (its driver workers are cancelled).
func (e *election) stepDown(why string) {
	e.lease.revoke(why)
	e.mu.Lock()
	c, term := e.coord, e.coordTerm
	e.coord = nil
	if c != nil {
		e.lastStepDown = why
	}
	e.mu.Unlock()
	if c == nil {
		return
	}
	e.in.attach(nil)
	e.inst.coord.Store(nil)
	e.log.Warn("no longer the coordinator", "term", term, "reason", why)
	e.inst.engine.Post(func() {
		e.inst.engine.SetCoordinator(nil)
		e.log.Info("the coordinator stopped here: its drivers are closed", "term", term)
		e.inst.engine.Record(engine.Record{Type: events.CoordinatorLost, Member: e.self, Fields: map[string]any{"term": term, "reason": why}})
	})
}

// problem says, in words, that the site has had no coordinator for a
// while as this candidate sees it ("" otherwise): an election takes a few
// heartbeat timeouts; longer means no quorum of candidates reach each
// other, and nothing fails over meanwhile.
func (e *election) problem(now time.Time) string {
	since := e.noLeaderSince.Load()
	if since == 0 || now.Sub(time.Unix(0, since)) < 10*e.timing.Heartbeat {
		return ""
	}
	e.mu.Lock()
	waiting := e.waiting
	e.mu.Unlock()
	if waiting != "" {
		return "this candidate has taken no part in the coordinator election for " + roundDuration(now.Sub(time.Unix(0, since))) + ": " + waiting
	}
	if removed := e.removed(); removed != "" {
		return fmt.Sprintf("no coordinator elected here for %s: %s", roundDuration(now.Sub(time.Unix(0, since))), removed)
	}
	return fmt.Sprintf("no coordinator elected for %s: fewer than a majority of the candidates (%s) reach this one over raft; nothing fails over until they do (check that they run, their raft: addresses and the site key)",
		roundDuration(now.Sub(time.Unix(0, since))), strings.Join(e.inst.site.Candidates, ", "))
}

// leader is the id of the candidate that leads now ("" while none does).
func (e *election) leader() string { return e.node.Leader() }

// actingLeader is the leader that coordinates: "" while none leads, or the
// witness does (for a moment: it hands the lead on and never acts).
func (e *election) actingLeader() string {
	l := e.leader()
	if m, ok := e.inst.site.Member(l); ok && m.Witness {
		return ""
	}
	return l
}

// transfer hands the lead to id ("": the first candidate in the order of
// preference that is alive and can coordinate).
func (e *election) transfer(ctx context.Context, id string) error {
	site := e.inst.site
	if !e.node.IsLeader() {
		return fmt.Errorf("%s does not lead (the leader is %q): ask the leader", e.self, e.node.Leader())
	}
	switch m, _ := site.Member(id); {
	case id == "":
		alive := e.capableAlive(ctx)
		if len(alive) == 0 {
			return fmt.Errorf("no other candidate that can coordinate is alive (candidates: %s)", strings.Join(site.Candidates, ", "))
		}
		id = alive[0]
	case !slices.Contains(site.Candidates, id):
		return fmt.Errorf("%s is not a candidate (candidates: %s)", id, strings.Join(site.Candidates, ", "))
	case m.Witness:
		return fmt.Errorf("%s is the witness: it does not coordinate (it would hand the lead on at once)", id)
	case id == e.self:
		return fmt.Errorf("%s leads already", id)
	case !slices.Contains(e.capableAlive(ctx), id):
		return fmt.Errorf("%s is not alive as this instance sees it: it could not take the lead (is it running, and does its raft address %s reach it?)", id, raftAddr(site, id))
	}
	e.handingOn.Store(true)
	// A candidate back from a restart may still be catching up with the
	// log: raft gives a transfer one election timeout; a few are allowed.
	var err error
	for try := range transferTries {
		if try > 0 {
			time.Sleep(e.timing.Heartbeat) // raft clears the last try once its replication gives up
		}
		err = e.node.TransferLeadership(id)
		retry := err != nil && (strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "in progress"))
		if !retry || !e.node.IsLeader() {
			break
		}
	}
	if err != nil {
		e.handingOn.Store(false)
		if strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "in progress") {
			return fmt.Errorf("%s did not take the lead within %d election timeouts: is it running, and does its raft address (%s) reach it?", id, transferTries, raftAddr(site, id))
		}
	}
	return err
}

// transferTries is how many election timeouts a leader transfer may take.
const transferTries = 6

// raftAddr is a candidate's raft address.
func raftAddr(site *config.Site, id string) string {
	if m, ok := site.Member(id); ok {
		return m.Raft
	}
	return ""
}

// capableAlive are the candidates other than this one that can coordinate
// (not the witness) and that this instance's table has alive, in the order
// of preference.
func (e *election) capableAlive(ctx context.Context) []string {
	var alive []string
	e.inst.engine.Do(ctx, func() {
		for _, id := range e.inst.site.Candidates {
			if m, _ := e.inst.site.Member(id); m.Witness || id == e.self {
				continue
			}
			if e.inst.engine.StateOf(id) == string(members.Alive) {
				alive = append(alive, id)
			}
		}
	})
	return alive
}

func (e *election) status() *ElectionStatus {
	site := e.inst.site
	st := &ElectionStatus{Candidates: site.Candidates, Self: e.self, Server: e.server, Leader: e.node.Leader(), Term: e.node.Term(), Raft: e.trans.Addr(), Refused: e.trans.Refused(), LastContact: e.node.LastContact()}
	ss, _ := e.node.Servers()
	for _, s := range ss {
		st.Servers = append(st.Servers, s.ID)
	}
	for _, id := range site.Candidates {
		if m, _ := site.Member(id); m.Witness {
			st.Witnesses = append(st.Witnesses, id)
		}
	}
	e.mu.Lock()
	st.Coordinates, st.Elections, st.LastStop, st.Waiting = e.coord != nil, e.elections, e.lastStepDown, e.waiting
	if e.coord != nil {
		st.Since = e.coordSince
	}
	e.mu.Unlock()
	switch {
	case e.node.IsLeader() && e.witness:
		st.Role = "witness, leading until it hands the lead on"
	case e.node.IsLeader() && st.Coordinates:
		st.Role = "leader"
	case e.node.IsLeader():
		st.Role = "leader, waiting out the old leader's lease"
	case e.witness:
		st.Role = "witness"
	default:
		st.Role = "follower"
	}
	switch {
	case st.Waiting != "":
		st.Role, st.Problem = "not in a group yet", st.Waiting
	case st.Leader == "":
		st.Problem = "no candidate leads: fewer than a quorum of candidates reach each other"
	default:
		st.Warning = e.membershipWarning(ss)
	}
	return st
}

// slogWriter takes raft's own log lines into the instance's log, at their
// level, without raft's time stamp; a line of the same kind (a peer that
// cannot be reached is retried every few milliseconds) at most once per
// raftLogEvery, with the count of those left out.
type slogWriter struct {
	log *slog.Logger
	mu  *sync.Mutex
	// last: when each kind of line was logged last, and how many were
	// left out since.
	last map[string]*raftLine
}

type raftLine struct {
	at      time.Time
	skipped int
}

const raftLogEvery = 30 * time.Second

func newSlogWriter(log *slog.Logger) slogWriter {
	return slogWriter{log: log, mu: &sync.Mutex{}, last: map[string]*raftLine{}}
}

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if i := strings.Index(line, "[ERROR]"); i >= 0 {
		level, line = slog.LevelError, strings.TrimSpace(line[i+len("[ERROR]"):])
	} else if i := strings.Index(line, "[WARN]"); i >= 0 {
		line = strings.TrimSpace(line[i+len("[WARN]"):])
	}
	line = strings.TrimPrefix(line, "raft: ")
	kind, _, _ := strings.Cut(line, ":")
	now := time.Now()
	w.mu.Lock()
	l := w.last[kind]
	if l != nil && now.Sub(l.at) < raftLogEvery {
		l.skipped++
		w.mu.Unlock()
		return len(p), nil
	}
	skipped := 0
	if l != nil {
		skipped = l.skipped
	}
	if len(w.last) < 256 {
		w.last[kind] = &raftLine{at: now}
	}
	w.mu.Unlock()
	args := []any{"from", "raft"}
	if skipped > 0 {
		args = append(args, "like_it_since_last", skipped)
	}
	w.log.Log(context.Background(), level, line, args...)
	return len(p), nil
}

// coordinatorInputs is the inbound.Coordinator of a candidate: what members
// report to the coordinator goes to this candidate's coordinator while it
// has one, and is dropped while it has none (the leader takes it). The
// latest state each member reported (health, configuration, coverage: the
// retained ones, which the broker hands over only when one subscribes) is
// kept, and handed to the next coordinator as it starts.
type coordinatorInputs struct {
	mu       sync.Mutex
	c        *coordinator.Coordinator
	health   map[string]bus.Health
	configs  map[string]bus.ConfigReport
	covering map[string]bus.Covering
}

var _ inbound.Coordinator = (*coordinatorInputs)(nil)

func newCoordinatorInputs() *coordinatorInputs {
	return &coordinatorInputs{health: map[string]bus.Health{}, configs: map[string]bus.ConfigReport{}, covering: map[string]bus.Covering{}}
}

// attach hands the inputs to c from now on (nil: to none), c first hearing
// every member's latest state.
func (in *coordinatorInputs) attach(c *coordinator.Coordinator) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.c = c
	if c == nil {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(in.health)) {
		c.Health(in.health[id])
	}
	for _, id := range slices.Sorted(maps.Keys(in.configs)) {
		c.ConfigReport(in.configs[id])
	}
	for _, id := range slices.Sorted(maps.Keys(in.covering)) {
		c.Covering(in.covering[id])
	}
}

func (in *coordinatorInputs) Ack(a bus.Ack) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.c != nil {
		in.c.Ack(a)
	}
}

func (in *coordinatorInputs) CopyProgress(p bus.CopyProgress) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.c != nil {
		in.c.CopyProgress(p)
	}
}

func (in *coordinatorInputs) Health(h bus.Health) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.health[h.Member] = h
	if in.c != nil {
		in.c.Health(h)
	}
}

func (in *coordinatorInputs) ConfigReport(r bus.ConfigReport) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.configs[r.Member] = r
	if in.c != nil {
		in.c.ConfigReport(r)
	}
}

func (in *coordinatorInputs) Covering(r bus.Covering) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.covering[r.Member] = r
	if in.c != nil {
		in.c.Covering(r)
	}
}
