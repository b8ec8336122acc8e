// Package takeover is the coordinator's bookkeeping of who covers whom: which
// standby has taken over a lost member's duties (coverage), which members wait
// for a standby because the site-wide failover limit is reached or no standby
// is free (the queue, by priority then time), which takeovers wait for an
// operator in manual mode (proposals, optionally confirmed by themselves after
// a set time), grace periods of license-bound duties, and the failback
// sequence that gives duties back without a gap and without leaving material
// behind: the returned member resumes and reports ready, the standby lets go,
// the material it recorded meanwhile is copied back (files it was still
// writing included, once they settle), and only then does the coverage end.
// A failback pauses while the member is suspect and fails only when it is
// lost (failback.go).
//
// The policy decides when (us.takeover, us.failback); this package decides
// whether that may happen now and carries it out through actions sent to the
// instances that must act. Every change is written to the state store in the
// same transaction as the action it needs, before the action is sent, so a
// restarted coordinator picks up where it stopped.
//
// A Manager is owned by one goroutine (the engine's loop); timers come back
// through Options.Post.
package takeover

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/store"
)

// Member is what the manager needs to know about a member.
type Member struct {
	ID           string
	State        string // alive, suspect, lost, closed, broken, unknown
	Priority     int
	Standby      bool
	Pool         string
	Capacity     int
	Usage        []string
	DiskLayout   string
	Capabilities []string
	Requires     []string
	Settings     config.FailoverSettings
}

// Available reports whether the member can act now.
func (m Member) Available() bool { return m.State == "alive" }

// Site is the manager's view of the site.
type Site interface {
	Member(id string) (Member, bool)
	Members() []Member
	// Match lists what a standby of the pool must share with the member it
	// covers (config.MatchDiskLayout, config.MatchUsage).
	Match(pool string) []string
	// Bundle is the duty bundle a standby receives to take over member.
	Bundle(member string) map[string]any
	// CopyActions are the actions of a material copy: the last one copies,
	// those before it prepare it (authorise the restored member to read the
	// standby's material).
	CopyActions(CopyRequest) ([]Action, error)
}

// CopyRequest asks for material recorded meanwhile to be copied back to
// Member: the files modified between Since and Until in From's material
// folders, or in Paths.
type CopyRequest struct {
	Member string
	From   string   // the member whose material is copied (over its material server)
	Paths  []string // instead: folders, as Member's machine sees them (mounted), to copy from
	Since  time.Time
	Until  time.Time
	Cause  string
}

// Action is a command to the instance of a member: run the hook named Verb.
type Action struct {
	Target string         // the member whose instance acts
	Verb   string         // takeover, release, resume, copy, or a hook name
	Args   map[string]any // the hook's template data
	Cause  string
}

// Actions records and delivers actions. Record writes the action in tx (the
// transaction that also records why it is needed) and returns its id;
// Deliver sends it after the transaction committed. The action's result comes
// back through Manager.Result.
type Actions interface {
	Record(tx *store.Tx, a Action) (string, error)
	Deliver(id string)
	// RecordLater is Record when the state file takes no writes (the state
	// folder full): the action (none when a is nil) is kept, delivered as
	// usual, and written with later as soon as the file takes writes. It
	// returns the action's id.
	RecordLater(a *Action, later func(*store.Tx) error) string
}

// Event is something the manager reports (to the record stream and the
// policy). Its Name is one of the events registry (understudy/events), or
// one of the alarms below.
type Event struct {
	Name   string
	Member string
	Fields map[string]any
}

// Alarms the manager reports through Emit as an Event of this name. They are
// not events (neither recorded nor handed to the policy as such): the
// coordinator raises the alarm of this kind, which is the event alarm.
const (
	AlarmFailbackStalled = "failback_stalled" // a failback keeps pausing while the member dips into suspect
	AlarmCopyIncomplete  = "copy_incomplete"  // a failback's material copy cannot finish; the standby keeps recording
)

// Options configure a Manager.
type Options struct {
	Store   *store.Store
	Clock   clock.Clock
	Post    func(func())
	Site    Site
	Actions Actions
	Emit    func(Event)
	Logger  *slog.Logger
	// Limit is how many failovers may run at once (0: no limit).
	Limit int
	// Mode is the initial mode when the store has none (config.ModeAuto or ModeManual).
	Mode string
	// ConfirmAfter, in manual mode, confirms a proposal by itself after this long (0: never).
	ConfirmAfter time.Duration
	// CopySettle is how long a file must be unchanged to be copied back
	// (site copy.settle): a failback's copy goes over the standby's folders
	// again after it while files were still being written (default 30s).
	CopySettle time.Duration
}

// Phases of a coverage, in their order.
const (
	PhaseStarting  = "starting"  // the standby was told to take over
	PhaseCovering  = "covering"  // the standby has the duties
	PhaseResuming  = "resuming"  // failback: the member was told to take its duties again
	PhaseReleasing = "releasing" // failback: the member has them; the standby was told to let go
	PhaseCopying   = "copying"   // failback: the standby let go; what it recorded meanwhile is copied back
)

// Coverage is one standby covering one member.
type Coverage struct {
	Member       string    `json:"member"`
	Standby      string    `json:"standby"`
	Since        time.Time `json:"since"`
	Phase        string    `json:"phase"`
	Reason       string    `json:"reason,omitempty"`
	Pending      string    `json:"pending,omitempty"` // the action the current phase waits for
	GraceUntil   time.Time `json:"grace_until,omitzero"`
	GraceExpired bool      `json:"grace_expired,omitempty"`
	ReadyAt      time.Time `json:"ready_at,omitzero"` // failback: when the member reported ready
	failbackState
}

// Queued is a member waiting for a standby.
type Queued struct {
	Member   string    `json:"member"`
	Standby  string    `json:"standby,omitempty"` // the standby asked for, if any
	Pool     string    `json:"pool,omitempty"`
	Priority int       `json:"priority"`
	Since    time.Time `json:"since"`
	Reason   string    `json:"reason,omitempty"`
}

// Proposal is a takeover waiting for an operator (manual mode).
type Proposal struct {
	ID      string    `json:"id"`
	Member  string    `json:"member"`
	Standby string    `json:"standby,omitempty"`
	Pool    string    `json:"pool,omitempty"`
	Created time.Time `json:"created"`
	ActAt   time.Time `json:"act_at,omitzero"` // confirmed by itself then (zero: wait for the operator)
	Reason  string    `json:"reason,omitempty"`
	// Picked says Standby was not asked for but picked from the pool when
	// the proposal was made; a confirm picks again if it is no longer free.
	Picked bool `json:"picked,omitempty"`
}

// Outcome says what a request did.
type Outcome struct {
	Status   string // started, queued, proposed, covered, failing_back
	Member   string
	Standby  string
	Proposal string
}

// Outcome statuses.
const (
	Started     = "started"
	QueuedUp    = "queued"
	Proposed    = "proposed"
	Covered     = "covered"
	FailingBack = "failing_back"
)

// Request is a takeover request.
type Request struct {
	Member    string
	Standby   string // "": pick from Pool (or the member's pool)
	Pool      string
	Reason    string
	Confirmed bool // an operator confirmed it: no proposal in manual mode
}

// Store buckets.
const (
	bucketCoverage  = "coverage"
	bucketQueue     = "queue"
	bucketProposals = "proposals"
	bucketMeta      = "takeover"
)

// Buckets are the state store buckets the bookkeeping keeps.
func Buckets() []string { return []string{bucketCoverage, bucketQueue, bucketProposals, bucketMeta} }

// Manager is the bookkeeping.
type Manager struct {
	opts      Options
	log       *slog.Logger
	coverage  map[string]*Coverage
	queue     map[string]*Queued
	proposals map[string]*Proposal
	mode      string
	timers    map[string]clock.Timer // grace and confirm deadlines by key
}

// New builds a manager and restores its state from the store.
func New(opts Options) (*Manager, error) {
	if opts.Store == nil || opts.Clock == nil || opts.Post == nil || opts.Site == nil || opts.Actions == nil {
		return nil, errors.New("takeover: Store, Clock, Post, Site and Actions are required")
	}
	if opts.Emit == nil {
		opts.Emit = func(Event) {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		opts: opts, log: opts.Logger, mode: opts.Mode,
		coverage: map[string]*Coverage{}, queue: map[string]*Queued{}, proposals: map[string]*Proposal{},
		timers: map[string]clock.Timer{},
	}
	if m.mode == "" {
		m.mode = config.ModeAuto
	}
	if err := m.restore(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) restore() error {
	cov, err := store.Load[*Coverage](m.opts.Store, bucketCoverage)
	if err != nil {
		return err
	}
	q, err := store.Load[*Queued](m.opts.Store, bucketQueue)
	if err != nil {
		return err
	}
	props, err := store.Load[*Proposal](m.opts.Store, bucketProposals)
	if err != nil {
		return err
	}
	var mode string
	if found, err := m.opts.Store.Get(bucketMeta, "mode", &mode); err != nil {
		return err
	} else if found && (mode == config.ModeAuto || mode == config.ModeManual) {
		m.mode = mode
	}
	m.coverage, m.queue, m.proposals = cov, q, props
	m.dropStandbys()
	for _, c := range m.coverage {
		m.armGrace(c)
		m.armFailback(c)
	}
	for _, p := range m.proposals {
		m.armProposal(p)
	}
	if len(cov)+len(q)+len(props) > 0 {
		m.log.Info("takeover state restored", "coverage", len(cov), "queue", len(q), "proposals", len(props), "mode", m.mode)
	}
	return nil
}

// dropStandbys removes the queue entries and proposals of members that are
// standbys (kept by an older version, which queued them for ever): a standby
// is never covered.
func (m *Manager) dropStandbys() {
	for id := range m.queue {
		if t, ok := m.opts.Site.Member(id); ok && t.Standby {
			if err := m.opts.Store.Delete(bucketQueue, id); err != nil {
				m.log.Error("queue not updated", "member", id, "error", err)
				continue
			}
			delete(m.queue, id)
			m.log.Warn("queued takeover of a standby dropped: a standby is never covered", "member", id)
		}
	}
	for id, p := range m.proposals {
		if t, ok := m.opts.Site.Member(p.Member); ok && t.Standby {
			if err := m.opts.Store.Delete(bucketProposals, id); err != nil {
				m.log.Error("proposals not updated", "proposal", id, "error", err)
				continue
			}
			delete(m.proposals, id)
			m.log.Warn("proposed takeover of a standby dropped: a standby is never covered", "member", p.Member, "proposal", id)
		}
	}
}

// Stop cancels the manager's timers.
func (m *Manager) Stop() {
	for k, t := range m.timers {
		t.Stop()
		delete(m.timers, k)
	}
}

// Mode returns auto or manual.
func (m *Manager) Mode() string { return m.mode }

// SetMode switches between auto and manual. Switching to auto confirms the
// waiting proposals.
func (m *Manager) SetMode(mode, by string) error {
	if mode != config.ModeAuto && mode != config.ModeManual {
		return fmt.Errorf("mode %q: auto or manual", mode)
	}
	if mode == m.mode {
		return nil
	}
	if err := m.opts.Store.Put(bucketMeta, "mode", mode); err != nil {
		return err
	}
	prev := m.mode
	m.mode = mode
	m.opts.Emit(Event{Name: events.ModeChanged, Fields: map[string]any{"mode": mode, "previous": prev, "by": by}})
	if mode == config.ModeAuto {
		for _, p := range m.sortedProposals() {
			if err := m.Confirm(p.ID, "mode auto"); err != nil {
				m.log.Warn("proposal not carried out", "proposal", p.ID, "error", err)
			}
		}
	}
	return nil
}

// Covered returns the coverage of member, if a standby covers it.
func (m *Manager) Covered(member string) (Coverage, bool) {
	c, ok := m.coverage[member]
	if !ok {
		return Coverage{}, false
	}
	return *c, true
}

// Coverage lists every coverage, by member.
func (m *Manager) Coverage() []Coverage {
	out := make([]Coverage, 0, len(m.coverage))
	for _, id := range slices.Sorted(maps.Keys(m.coverage)) {
		out = append(out, *m.coverage[id])
	}
	return out
}

// Covering lists the members standby covers.
func (m *Manager) Covering(standby string) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(m.coverage)) {
		if m.coverage[id].Standby == standby {
			out = append(out, id)
		}
	}
	return out
}

// Queue lists the waiting members in the order they will start.
func (m *Manager) Queue() []Queued {
	out := make([]Queued, 0, len(m.queue))
	for _, q := range m.queue {
		out = append(out, *q)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority > out[j].Priority
		}
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].Member < out[j].Member
	})
	return out
}

// Proposals lists the proposals waiting for an operator, oldest first.
func (m *Manager) Proposals() []Proposal {
	out := []Proposal{}
	for _, p := range m.sortedProposals() {
		out = append(out, *p)
	}
	return out
}

func (m *Manager) sortedProposals() []*Proposal {
	out := slices.Collect(maps.Values(m.proposals))
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Pick returns the best available standby of pool for member: alive, with
// room, matching what the pool requires; highest priority first, then by id.
// An empty pool means the member's own pool.
func (m *Manager) Pick(pool, member string, exclude ...string) (string, bool) {
	target, ok := m.opts.Site.Member(member)
	if !ok {
		return "", false
	}
	if pool == "" {
		pool = target.Pool
	}
	var best *Member
	for _, s := range m.opts.Site.Members() {
		if s.ID == member || slices.Contains(exclude, s.ID) || !m.canCover(s, target, pool) {
			continue
		}
		if best == nil || s.Priority > best.Priority || (s.Priority == best.Priority && s.ID < best.ID) {
			best = &s
		}
	}
	if best == nil {
		return "", false
	}
	return best.ID, true
}

// Fits reports why standby cannot cover member now ("" when it can).
func (m *Manager) Fits(standby, member string) string {
	s, ok := m.opts.Site.Member(standby)
	if !ok {
		return "no such member"
	}
	t, ok := m.opts.Site.Member(member)
	if !ok {
		return "no such member " + member
	}
	return m.misfit(s, t, "")
}

func (m *Manager) canCover(s, target Member, pool string) bool {
	return m.misfit(s, target, pool) == ""
}

// misfit says why s cannot cover target ("" when it can). pool, when set,
// must be the standby's pool.
func (m *Manager) misfit(s, target Member, pool string) string {
	switch {
	case !s.Standby:
		return s.ID + " is not a standby"
	case pool != "" && s.Pool != pool:
		return fmt.Sprintf("%s is not in pool %s", s.ID, pool)
	case !s.Available():
		return fmt.Sprintf("%s is %s", s.ID, s.State)
	case len(m.Covering(s.ID)) >= max(s.Capacity, 1):
		return fmt.Sprintf("%s already covers %d (capacity %d)", s.ID, len(m.Covering(s.ID)), max(s.Capacity, 1))
	}
	if _, covered := m.coverage[s.ID]; covered {
		return s.ID + " is itself covered"
	}
	return config.Misfit(s.traits(), target.traits(), m.opts.Site.Match(s.Pool))
}

// traits are what decides whether a standby may ever cover m.
func (m Member) traits() config.Traits {
	return config.Traits{ID: m.ID, DiskLayout: m.DiskLayout, Usage: m.Usage, Capabilities: m.Capabilities, Requires: m.Requires}
}

// Takeover asks for req.Standby (or one picked from the pool) to take over
// req.Member. In manual mode an unconfirmed request becomes a proposal; at the
// failover limit, or with no standby free, the member is queued.
func (m *Manager) Takeover(req Request) (Outcome, error) {
	target, ok := m.opts.Site.Member(req.Member)
	if !ok {
		return Outcome{}, fmt.Errorf("no member %q", req.Member)
	}
	if c, ok := m.coverage[req.Member]; ok {
		return Outcome{Status: Covered, Member: req.Member, Standby: c.Standby}, nil
	}
	if target.Standby {
		return Outcome{}, standbyNeverCovered(req.Member)
	}
	if req.Standby != "" {
		s, ok := m.opts.Site.Member(req.Standby)
		if !ok {
			return Outcome{}, fmt.Errorf("no member %q", req.Standby)
		}
		if !s.Standby {
			return Outcome{}, fmt.Errorf("%s is not a standby", req.Standby)
		}
		if req.Standby == req.Member {
			return Outcome{}, fmt.Errorf("%s cannot cover itself", req.Member)
		}
	}
	if q, queued := m.queue[req.Member]; queued && !req.Confirmed {
		return Outcome{Status: QueuedUp, Member: req.Member, Standby: q.Standby}, nil
	}
	if m.mode == config.ModeManual && !req.Confirmed {
		return m.propose(req)
	}
	standby := req.Standby
	if standby != "" {
		s, _ := m.opts.Site.Member(standby)
		if why := m.misfit(s, target, ""); why != "" {
			m.log.Info("standby not free; queued", "member", req.Member, "standby", standby, "why", why)
			return m.enqueue(req, target)
		}
	} else if picked, ok := m.Pick(req.Pool, req.Member); ok {
		standby = picked
	}
	if standby == "" || m.full() {
		return m.enqueue(req, target)
	}
	return m.start(req.Member, standby, req.Reason)
}

func (m *Manager) full() bool { return m.opts.Limit > 0 && len(m.coverage) >= m.opts.Limit }

func standbyNeverCovered(id string) error {
	return fmt.Errorf("%s is a standby: a standby covers others and is never covered itself", id)
}

// Enqueue puts member in the queue for a standby of pool.
func (m *Manager) Enqueue(req Request) (Outcome, error) {
	target, ok := m.opts.Site.Member(req.Member)
	if !ok {
		return Outcome{}, fmt.Errorf("no member %q", req.Member)
	}
	if c, ok := m.coverage[req.Member]; ok {
		return Outcome{Status: Covered, Member: req.Member, Standby: c.Standby}, nil
	}
	if target.Standby {
		return Outcome{}, standbyNeverCovered(req.Member)
	}
	return m.enqueue(req, target)
}

func (m *Manager) enqueue(req Request, target Member) (Outcome, error) {
	if q, ok := m.queue[req.Member]; ok {
		return Outcome{Status: QueuedUp, Member: req.Member, Standby: q.Standby}, nil
	}
	q := &Queued{Member: req.Member, Standby: req.Standby, Pool: req.Pool, Priority: target.Priority, Since: m.opts.Clock.Now(), Reason: req.Reason}
	if err := m.opts.Store.Put(bucketQueue, q.Member, q); err != nil {
		return Outcome{}, err
	}
	m.queue[q.Member] = q
	why := "no standby is free"
	if m.full() {
		why = fmt.Sprintf("the failover limit (%d) is reached", m.opts.Limit)
	}
	m.opts.Emit(Event{Name: events.TakeoverQueued, Member: q.Member, Fields: map[string]any{"position": m.position(q.Member), "why": why, "standby": q.Standby, "pool": q.Pool}})
	return Outcome{Status: QueuedUp, Member: q.Member, Standby: q.Standby}, nil
}

func (m *Manager) position(member string) int {
	for i, q := range m.Queue() {
		if q.Member == member {
			return i + 1
		}
	}
	return 0
}

// Dequeue removes member from the queue (it came back before a standby was free).
func (m *Manager) Dequeue(member, why string) bool {
	if _, ok := m.queue[member]; !ok {
		return false
	}
	if err := m.opts.Store.Delete(bucketQueue, member); err != nil {
		m.log.Error("queue not updated", "member", member, "error", err)
		return false
	}
	delete(m.queue, member)
	m.opts.Emit(Event{Name: events.TakeoverDequeued, Member: member, Fields: map[string]any{"why": why}})
	return true
}

func (m *Manager) propose(req Request) (Outcome, error) {
	for _, p := range m.proposals {
		if p.Member == req.Member {
			return Outcome{Status: Proposed, Member: p.Member, Standby: p.Standby, Proposal: p.ID}, nil
		}
	}
	var p *Proposal
	err := m.opts.Store.Update(func(tx *store.Tx) error {
		n, err := tx.Increment(bucketMeta, "proposal_seq")
		if err != nil {
			return err
		}
		p = &Proposal{ID: "p" + strconv.FormatUint(n, 10), Member: req.Member, Standby: req.Standby, Pool: req.Pool, Created: m.opts.Clock.Now(), Reason: req.Reason}
		if p.Standby == "" {
			// Show who would take over if it were confirmed now.
			p.Standby, p.Picked = m.Pick(req.Pool, req.Member)
		}
		if m.opts.ConfirmAfter > 0 {
			p.ActAt = p.Created.Add(m.opts.ConfirmAfter)
		}
		return tx.Put(bucketProposals, p.ID, p)
	})
	if err != nil {
		return Outcome{}, err
	}
	m.proposals[p.ID] = p
	m.armProposal(p)
	fields := map[string]any{"proposal": p.ID, "standby": p.Standby, "reason": p.Reason}
	if p.Picked {
		fields["picked"] = true
	}
	if !p.ActAt.IsZero() {
		fields["act_in_s"] = p.ActAt.Sub(p.Created).Seconds()
	}
	m.opts.Emit(Event{Name: events.TakeoverProposed, Member: p.Member, Fields: fields})
	return Outcome{Status: Proposed, Member: p.Member, Standby: p.Standby, Proposal: p.ID}, nil
}

func (m *Manager) armProposal(p *Proposal) {
	if p.ActAt.IsZero() {
		return
	}
	id := p.ID
	m.arm("proposal:"+id, p.Created, p.ActAt, func() {
		if _, ok := m.proposals[id]; ok {
			if err := m.Confirm(id, "no answer within confirm_after"); err != nil {
				m.log.Warn("proposal not carried out", "proposal", id, "error", err)
			}
		}
	})
}

// arm runs f on the owning goroutine at due (at once if due has passed).
// due was counted from from (zero: unknown): deadlines are kept in the
// store as wall-clock times, and when the clock reads earlier than from (a
// coordinator started again on a host whose clock was stepped back since)
// f waits at most due - from, not the step on top of it.
func (m *Manager) arm(key string, from, due time.Time, f func()) {
	if t, ok := m.timers[key]; ok {
		t.Stop()
	}
	now := m.opts.Clock.Now()
	wait := due.Sub(now)
	if !from.IsZero() && now.Before(from) {
		wait = min(wait, due.Sub(from))
	}
	var t clock.Timer
	t = m.opts.Clock.AfterFunc(wait, func() {
		m.opts.Post(func() {
			if m.timers[key] != t {
				return // disarmed or armed again before this ran: not ours any more
			}
			delete(m.timers, key)
			f()
		})
	})
	m.timers[key] = t
}

func (m *Manager) disarm(key string) {
	if t, ok := m.timers[key]; ok {
		t.Stop()
		delete(m.timers, key)
	}
}

// Confirm carries out a proposal.
func (m *Manager) Confirm(id, by string) error {
	p, ok := m.proposals[id]
	if !ok {
		return fmt.Errorf("no proposal %q (proposals: %v)", id, slices.Sorted(maps.Keys(m.proposals)))
	}
	if err := m.opts.Store.Delete(bucketProposals, id); err != nil {
		return err
	}
	delete(m.proposals, id)
	m.disarm("proposal:" + id)
	m.opts.Emit(Event{Name: events.ProposalConfirmed, Member: p.Member, Fields: map[string]any{"proposal": id, "by": by}})
	req := Request{Member: p.Member, Standby: p.Standby, Pool: p.Pool, Reason: p.Reason, Confirmed: true}
	if p.Picked && m.Fits(p.Standby, p.Member) != "" {
		req.Standby = "" // the one picked then is no longer free: pick again
	}
	_, err := m.Takeover(req)
	return err
}

// Reject drops a proposal.
func (m *Manager) Reject(id, by string) error {
	p, ok := m.proposals[id]
	if !ok {
		return fmt.Errorf("no proposal %q", id)
	}
	if err := m.opts.Store.Delete(bucketProposals, id); err != nil {
		return err
	}
	delete(m.proposals, id)
	m.disarm("proposal:" + id)
	m.opts.Emit(Event{Name: events.ProposalRejected, Member: p.Member, Fields: map[string]any{"proposal": id, "by": by}})
	return nil
}

// Withdraw drops member's proposals and its place in the queue (it came back).
func (m *Manager) Withdraw(member, why string) {
	for _, p := range m.sortedProposals() {
		if p.Member == member {
			if err := m.opts.Store.Delete(bucketProposals, p.ID); err == nil {
				delete(m.proposals, p.ID)
				m.disarm("proposal:" + p.ID)
				m.opts.Emit(Event{Name: events.ProposalWithdrawn, Member: member, Fields: map[string]any{"proposal": p.ID, "why": why}})
			}
		}
	}
	m.Dequeue(member, why)
}

// start records the coverage and the takeover action together, then sends it.
func (m *Manager) start(member, standby, reason string) (Outcome, error) {
	target, _ := m.opts.Site.Member(member)
	c := &Coverage{Member: member, Standby: standby, Since: m.opts.Clock.Now(), Phase: PhaseStarting, Reason: reason}
	if target.Settings.Grace > 0 {
		c.GraceUntil = c.Since.Add(target.Settings.Grace)
	}
	args := m.opts.Site.Bundle(member)
	args["member"] = member
	args["standby"] = standby
	args["reason"] = reason
	id, err := m.commit(c, Action{Target: standby, Verb: config.HookTakeover, Args: args, Cause: "takeover of " + member})
	if err != nil {
		return Outcome{}, err
	}
	m.armGrace(c)
	fields := map[string]any{"standby": standby, "reason": reason, "action": id}
	if !c.GraceUntil.IsZero() {
		fields["grace_until"] = c.GraceUntil
	}
	m.opts.Emit(Event{Name: events.TakeoverStarted, Member: member, Fields: fields})
	m.opts.Actions.Deliver(id)
	return Outcome{Status: Started, Member: member, Standby: standby}, nil
}

// commit writes c, drops member from the queue, and records a (the action c
// now waits for) in one transaction. It returns the action's id.
func (m *Manager) commit(c *Coverage, a Action) (string, error) {
	return m.write(c, &a)
}

// write writes c and drops its member from the queue, with a (when not nil:
// the action c now waits for) in the same transaction, and keeps c. It
// returns the action's id.
func (m *Manager) write(c *Coverage, a *Action) (string, error) {
	var id string
	err := m.opts.Store.Update(func(tx *store.Tx) error {
		if a != nil {
			var err error
			if id, err = m.opts.Actions.Record(tx, *a); err != nil {
				return err
			}
			c.Pending = id
		}
		if err := tx.Delete(bucketQueue, c.Member); err != nil {
			return err
		}
		return tx.Put(bucketCoverage, c.Member, c)
	})
	if err != nil {
		if m.opts.Store.Failing() == nil {
			return "", fmt.Errorf("takeover state not written, nothing sent: %w", err)
		}
		// The state file takes no writes: a takeover does not wait for the
		// disk. What it would have written is written once it can be.
		id = m.opts.Actions.RecordLater(a, m.coverageLater(c.Member))
		if a != nil {
			c.Pending = id
		}
		m.log.Error("takeover state not written; going on, and writing it as soon as the state file takes writes (until then a restart would forget it)", "member", c.Member, "error", err)
	}
	m.coverage[c.Member] = c
	delete(m.queue, c.Member)
	return id, nil
}

// coverageLater writes member's coverage as it is when the write is made
// at last (none: it ended meanwhile), for RecordLater (on the loop).
func (m *Manager) coverageLater(member string) func(*store.Tx) error {
	return func(tx *store.Tx) error {
		c, ok := m.coverage[member]
		if !ok {
			return tx.Delete(bucketCoverage, member)
		}
		if err := tx.Delete(bucketQueue, member); err != nil {
			return err
		}
		return tx.Put(bucketCoverage, member, c)
	}
}

// Rebuild records that standby covers member, as the standby itself reports
// it (its agent's record: a takeover of member done, no release since), when
// this bookkeeping has no coverage of member: the coordinator's state was
// lost (a corrupt or empty state file moved aside) or never had it. The
// coverage is taken up the way a restart restores one from the store: in
// phase covering, since when the standby says (now, if that is later than
// now or unknown), its grace period counted from then; member leaves the
// queue and its proposals are withdrawn. The event coverage_rebuilt goes
// out; the policy fails it back as usual when it returns. A member covered
// already is left as it is (Outcome Covered, with its standby).
func (m *Manager) Rebuild(member, standby string, since time.Time, why string) (Outcome, error) {
	target, ok := m.opts.Site.Member(member)
	if !ok {
		return Outcome{}, fmt.Errorf("no member %q", member)
	}
	if c, ok := m.coverage[member]; ok {
		return Outcome{Status: Covered, Member: member, Standby: c.Standby}, nil
	}
	if target.Standby {
		return Outcome{}, standbyNeverCovered(member)
	}
	s, ok := m.opts.Site.Member(standby)
	switch {
	case !ok:
		return Outcome{}, fmt.Errorf("no member %q", standby)
	case !s.Standby:
		return Outcome{}, fmt.Errorf("%s is not a standby", standby)
	case standby == member:
		return Outcome{}, fmt.Errorf("%s cannot cover itself", member)
	}
	if _, covered := m.coverage[standby]; covered {
		return Outcome{}, fmt.Errorf("%s is itself covered", standby)
	}
	now := m.opts.Clock.Now()
	if since.IsZero() || since.After(now) {
		since = now
	}
	m.Withdraw(member, "covered by "+standby+" (rebuilt from its report)")
	c := &Coverage{Member: member, Standby: standby, Since: since, Phase: PhaseCovering, Reason: why}
	if target.Settings.Grace > 0 {
		c.GraceUntil = since.Add(target.Settings.Grace)
	}
	if _, err := m.write(c, nil); err != nil {
		return Outcome{}, err
	}
	m.armGrace(c)
	m.log.Warn("coverage rebuilt from the standby's report", "member", member, "standby", standby, "since", since, "reason", why)
	fields := map[string]any{"standby": standby, "since": since, "reason": why}
	if !c.GraceUntil.IsZero() {
		fields["grace_until"] = c.GraceUntil
	}
	m.opts.Emit(Event{Name: events.CoverageRebuilt, Member: member, Fields: fields})
	return Outcome{Status: Covered, Member: member, Standby: standby}, nil
}

func (m *Manager) save(c *Coverage) {
	if err := m.opts.Store.Put(bucketCoverage, c.Member, c); err != nil {
		m.log.Error("coverage not written", "member", c.Member, "error", err)
	}
}

func (m *Manager) armGrace(c *Coverage) {
	if c.GraceUntil.IsZero() || c.GraceExpired {
		return
	}
	member := c.Member
	m.arm("grace:"+member, c.Since, c.GraceUntil, func() {
		c, ok := m.coverage[member]
		if !ok || c.GraceExpired {
			return
		}
		c.GraceExpired = true
		m.save(c)
		m.opts.Emit(Event{Name: events.GraceExpired, Member: member, Fields: map[string]any{"standby": c.Standby, "since": c.Since}})
	})
}

// GraceRemaining is how long member's grace period has left (ok false: none).
func (m *Manager) GraceRemaining(member string) (time.Duration, bool) {
	c, ok := m.coverage[member]
	if !ok || c.GraceUntil.IsZero() {
		return 0, false
	}
	return max(c.GraceUntil.Sub(m.opts.Clock.Now()), 0), true
}

// Drain starts queued takeovers while the limit allows and standbys are free.
func (m *Manager) Drain() {
	for _, q := range m.Queue() {
		if m.full() {
			return
		}
		target, ok := m.opts.Site.Member(q.Member)
		if !ok {
			m.Dequeue(q.Member, "no longer a member")
			continue
		}
		standby := ""
		if q.Standby != "" {
			if s, ok := m.opts.Site.Member(q.Standby); ok && m.misfit(s, target, "") == "" {
				standby = q.Standby
			}
		}
		if standby == "" {
			standby, _ = m.Pick(q.Pool, q.Member)
		}
		if standby == "" {
			continue
		}
		if _, err := m.start(q.Member, standby, q.Reason); err != nil {
			m.log.Error("queued takeover not started", "member", q.Member, "error", err)
		}
	}
}

// Snapshot is the manager's state for status pages and the bus.
type Snapshot struct {
	Mode      string     `json:"mode"`
	Limit     int        `json:"limit"`
	Coverage  []Coverage `json:"coverage"`
	Queue     []Queued   `json:"queue"`
	Proposals []Proposal `json:"proposals"`
}

// Snapshot returns the state.
func (m *Manager) Snapshot() Snapshot {
	return Snapshot{Mode: m.mode, Limit: m.opts.Limit, Coverage: m.Coverage(), Queue: m.Queue(), Proposals: m.Proposals()}
}
