package instance

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/consensus"
)

// A candidate's place in the raft group is a server id, new each time its
// raft state is made anew: the first time, and after the state was lost
// (a disk replaced, the folder moved aside). A candidate that lost its state
// has also lost the vote it gave in the current term; under its old id it
// could vote twice in a term and elect two leaders. Under a new id it is a
// new server: the others' requests for the old one are refused (see
// consensus.Address), and the group takes it in only when an operator asks
// (`understudy candidates admit`), which replaces the old server with it.
//
// New candidates form the group among themselves: each says on the bus who
// it is (bus.RaftMember, retained) and, once every candidate of the list
// has said it has no state, every one of them bootstraps the same first
// configuration. A candidate that finds a group already there waits to be
// reached by its leader (it is in the configuration already) or admitted.

// serverIDFile keeps, beside the raft state, the raft server id this
// candidate has in it.
const serverIDFile = "server-id"

// serverIdentity is this candidate's raft server id in dir and whether
// its state is new. A folder with no raft log is made anew, under a new
// id: what was there (snapshots of a log that is gone), and the replicated
// coordinator state file beside it, are moved aside, for the group to
// send them again. A log made before server ids has the member id.
func serverIdentity(dir, statePath, self string) (id string, fresh bool, moved []string, err error) {
	has, err := consensus.HasState(dir)
	if err != nil {
		return "", false, nil, err
	}
	if has {
		b, err := os.ReadFile(filepath.Join(dir, serverIDFile))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return self, false, nil, nil
		case err != nil:
			return "", false, nil, fmt.Errorf("coordinator election: %w", err)
		}
		return strings.TrimSpace(string(b)), false, nil, nil
	}
	stamp := time.Now().UTC().Format("20060102T150405")
	for _, p := range []string{dir, statePath} {
		if _, err := os.Stat(p); err == nil {
			if err := os.Rename(p, p+".lost-"+stamp); err != nil {
				return "", false, moved, fmt.Errorf("coordinator election: moving aside what is left of a raft state: %w", err)
			}
			moved = append(moved, p+".lost-"+stamp)
		}
	}
	b := make([]byte, 4)
	rand.Read(b)
	id = consensus.ServerID(self, hex.EncodeToString(b))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, moved, fmt.Errorf("coordinator election: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, serverIDFile), []byte(id+"\n"), 0o600); err != nil {
		return "", false, moved, fmt.Errorf("coordinator election: %w", err)
	}
	return id, true, moved, nil
}

// raftMembers are the candidates' words of themselves, by member. Safe
// for concurrent use.
type raftMembers struct {
	mu sync.Mutex
	m  map[string]bus.RaftMember
}

func (r *raftMembers) put(m bus.RaftMember) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]bus.RaftMember{}
	}
	r.m[m.Member] = m
}

func (r *raftMembers) get(member string) (bus.RaftMember, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.m[member]
	return m, ok
}

func (r *raftMembers) all() map[string]bus.RaftMember {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bus.RaftMember, len(r.m))
	for k, v := range r.m {
		out[k] = v
	}
	return out
}

// formGroup decides, for a candidate with no raft configuration yet
// (self), from every candidate's word: the first configuration to make
// (when every candidate of the list has said it has no state, with the
// same list), or why it waits.
func formGroup(candidates []string, self bus.RaftMember, seen map[string]bus.RaftMember) (peers []consensus.Peer, wait string) {
	var missing, other []string
	for _, id := range candidates {
		r, ok := seen[id]
		if id == self.Member {
			r, ok = self, true
		}
		switch {
		case !ok:
			missing = append(missing, id)
		case r.Candidates != self.Candidates:
			other = append(other, id)
		case r.State:
			if slices.Contains(r.Servers, self.Server) {
				return nil, fmt.Sprintf("this candidate is in the coordinator group as %s and waits for its leader to reach it", self.Server)
			}
			return nil, fmt.Sprintf("the coordinator group exists (%s has its state) and this candidate, with no raft state of its own, is not in it: it joins as the new server %s when an operator runs `understudy candidates admit %s` (which replaces the server it was before, if any)", id, self.Server, self.Member)
		default:
			peers = append(peers, consensus.Peer{ID: r.Server, Addr: r.Addr})
		}
	}
	switch {
	case len(other) > 0:
		return nil, fmt.Sprintf("the site.yaml of %s names other coordinator candidates than this one's (%s): the group forms when every candidate has the same list", strings.Join(other, ", "), strings.Join(candidates, ", "))
	case len(missing) > 0:
		return nil, fmt.Sprintf("forming the coordinator group: no word yet on the bus from %s (every candidate must run once, with the bus up, for the group to form)", strings.Join(missing, ", "))
	}
	return peers, ""
}

// word is what this candidate says of itself now.
func (e *election) word() bus.RaftMember {
	w := bus.RaftMember{Member: e.self, Server: e.server, Addr: e.trans.Addr(), Candidates: e.inst.site.CandidatesHash()}
	if ss, err := e.node.Servers(); err == nil && len(ss) > 0 {
		w.State = true
		for _, s := range ss {
			w.Servers = append(w.Servers, s.ID)
		}
	}
	return w
}

// announce publishes this candidate's word of itself (retained), on every
// bus connection and when its part in the group changes.
func (e *election) announce() {
	c := e.inst.bus.Load()
	if c == nil {
		return
	}
	w := e.word()
	payload, err := json.Marshal(w)
	if err != nil {
		return
	}
	if err := c.Publish((bus.Topics{Site: e.inst.site.Name}).Raft(e.self), 1, true, payload); err != nil {
		e.log.Debug("the word of this candidate waits for the bus", "error", err)
		return
	}
	e.mu.Lock()
	e.announced = strings.Join(w.Servers, ",")
	e.mu.Unlock()
}

// takeWord keeps a candidate's word of itself; a member that is no
// candidate has none to give.
func (e *election) takeWord(r bus.RaftMember) {
	if !e.inst.site.IsCandidate(r.Member) {
		if e.inst.drops != nil {
			e.inst.drops.Drop(r.Member, (bus.Topics{Site: e.inst.site.Name}).Raft(r.Member), -1, fmt.Errorf("%w: %q speaks in the coordinator election and is no candidate", bus.ErrUnknownMember, r.Member))
		}
		return
	}
	if r.Member == e.self {
		return
	}
	e.words.put(r)
	e.wake()
}

// joinOrForm runs while this candidate has no raft configuration: it
// makes the group's first one when every candidate is new, and says why
// it waits otherwise. It reports whether this candidate is in a group.
func (e *election) joinOrForm() bool {
	if e.formed.Load() {
		return true
	}
	if ss, err := e.node.Servers(); err == nil && len(ss) > 0 {
		e.formed.Store(true)
		e.setWaiting("")
		e.announce()
		return true
	}
	peers, wait := formGroup(e.inst.site.Candidates, e.word(), e.words.all())
	if wait != "" {
		e.setWaiting(wait)
		return false
	}
	if err := e.node.Bootstrap(peers); err != nil {
		e.setWaiting("forming the coordinator group: " + err.Error())
		return false
	}
	var ids []string
	for _, p := range peers {
		ids = append(ids, p.ID)
	}
	e.log.Info("the coordinator group is formed", "servers", ids)
	e.formed.Store(true)
	e.setWaiting("")
	e.announce()
	return true
}

func (e *election) setWaiting(why string) {
	e.mu.Lock()
	changed := e.waiting != why
	e.waiting = why
	e.mu.Unlock()
	if changed && why != "" {
		e.log.Warn("this candidate does not take part in the coordinator election yet", "why", why)
	}
}

// wake makes run look again soon (a word arrived).
func (e *election) wake() {
	select {
	case e.woken <- struct{}{}:
	default:
	}
}

// reannounce says this candidate's word again when the group's servers
// it knows changed (a server admitted or removed), at most every few
// seconds.
func (e *election) reannounce(now time.Time) {
	if now.Sub(e.lastWordCheck) < announceEvery {
		return
	}
	e.lastWordCheck = now
	ss, err := e.node.Servers()
	if err != nil {
		return
	}
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	e.mu.Lock()
	same := e.announced == strings.Join(ids, ",")
	e.mu.Unlock()
	if !same {
		e.announce()
	}
	if w := e.membershipWarning(ss); w != e.lastWarning {
		e.lastWarning = w
		if w != "" {
			e.log.Warn("the coordinator group is not what site.yaml says", "warning", w)
		}
	}
}

// membershipWarning says how the group's servers (ss) differ from the
// candidates site.yaml names, and which candidates run as servers the
// group does not have ("" when all agree). The site still coordinates: it
// is a warning (status, the log), not a fault of this instance.
func (e *election) membershipWarning(ss []consensus.Peer) string {
	var parts []string
	if p := membershipProblem(e.inst.site, ss); p != "" {
		parts = append(parts, p)
	}
	in := map[string]bool{}
	for _, s := range ss {
		in[s.ID] = true
	}
	words := e.words.all()
	for _, id := range slices.Sorted(maps.Keys(words)) {
		w := words[id]
		if !w.State && !in[w.Server] && w.Candidates == e.inst.site.CandidatesHash() {
			parts = append(parts, fmt.Sprintf("%s runs as the new raft server %s and waits to be admitted: `understudy candidates admit %s`", id, w.Server, id))
		}
	}
	if len(parts) > 0 && len(ss) == 2 {
		parts = append(parts, "a group of two needs both servers for every decision: admit a third")
	}
	return strings.Join(parts, "; ")
}

// removed says why this candidate is no server of the group ("" when it
// is one, or nothing says otherwise): its own configuration lacks it, or
// another candidate in the group says the group's servers and it is not
// among them (the removal may not have reached it: a removed server hears
// nothing more from the leader).
func (e *election) removed() string {
	admit := fmt.Sprintf("it takes no part in the election until an operator admits it again (`understudy candidates admit %s`)", e.self)
	if e.node == nil {
		return "" // not started
	}
	if ss, err := e.node.Servers(); err == nil && len(ss) > 0 && !slices.ContainsFunc(ss, func(p consensus.Peer) bool { return p.ID == e.server }) {
		return fmt.Sprintf("this candidate (raft server %s) was removed from the coordinator group: %s", e.server, admit)
	}
	words := e.words.all()
	for _, id := range slices.Sorted(maps.Keys(words)) {
		w := words[id]
		if w.State && len(w.Servers) > 0 && slices.Contains(w.Servers, w.Server) && !slices.Contains(w.Servers, e.server) {
			return fmt.Sprintf("%s says the coordinator group's servers are %s, without this candidate (raft server %s): it was removed; %s", id, strings.Join(w.Servers, ", "), e.server, admit)
		}
	}
	return ""
}

// announceEvery is how often a candidate checks whether the group's
// servers changed.
const announceEvery = 2 * time.Second

// verbs of the group's membership, carried out by the leader.
const (
	verbCandidateAdmit  = "candidate_admit"
	verbCandidateRemove = "candidate_remove"
)

// membershipTimeout bounds a change of the group's servers.
const membershipTimeout = 10 * time.Second

// admit takes member's candidate into the group as the server it says it
// is now, in place of the server it was before.
func (e *election) admit(member string) (string, error) {
	site := e.inst.site
	switch {
	case !e.node.IsLeader():
		return "", fmt.Errorf("%s does not lead (the leader is %q): ask the leader", e.self, e.node.Leader())
	case !site.IsCandidate(member):
		return "", fmt.Errorf("%s is not a candidate in this site.yaml (candidates: %s): add it to coordinator: on every machine first", member, strings.Join(site.Candidates, ", "))
	}
	w, ok := e.words.get(member)
	if member == e.self {
		w, ok = e.word(), true
	}
	if !ok {
		return "", fmt.Errorf("no word of %s's candidate on the bus: is it running, with this site's key?", member)
	}
	if w.Candidates != site.CandidatesHash() {
		return "", fmt.Errorf("%s's site.yaml names other coordinator candidates than the leader's: give it the same site.yaml first", member)
	}
	ss, err := e.node.Servers()
	if err != nil {
		return "", err
	}
	var old []string
	for _, s := range ss {
		switch {
		case s.ID == w.Server:
			return "", fmt.Errorf("%s is in the group already, as %s", member, w.Server)
		case consensus.MemberOf(s.ID) == member:
			old = append(old, s.ID)
		}
	}
	for _, id := range old {
		if err := e.change(func() error { return e.node.RemoveServer(id, membershipTimeout) }); err != nil {
			return "", err
		}
		e.log.Warn("a server of the coordinator group was removed: its candidate runs again as a new server", "removed", id, "member", member)
	}
	if err := e.change(func() error { return e.node.AddVoter(consensus.Peer{ID: w.Server, Addr: w.Addr}, membershipTimeout) }); err != nil {
		return "", err
	}
	e.log.Info("a candidate was admitted to the coordinator group", "member", member, "server", w.Server, "replaces", old)
	e.announce()
	return fmt.Sprintf("%s admitted as %s", member, w.Server) + replacing(old), nil
}

// change makes a change of the group's servers, waiting out a leader
// transfer raft still has under way (one that failed is given up after an
// election timeout).
func (e *election) change(f func() error) error {
	deadline := time.Now().Add(membershipTimeout)
	for {
		err := f()
		if err == nil || !strings.Contains(err.Error(), "in progress") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(e.timing.Heartbeat / 2)
	}
}

func replacing(old []string) string {
	if len(old) == 0 {
		return ""
	}
	return ", in place of " + strings.Join(old, ", ")
}

// remove takes every server of member out of the group.
func (e *election) remove(member string) (string, error) {
	switch {
	case !e.node.IsLeader():
		return "", fmt.Errorf("%s does not lead (the leader is %q): ask the leader", e.self, e.node.Leader())
	case member == e.self:
		return "", fmt.Errorf("%s leads: hand the lead on first (`understudy leader transfer`)", member)
	}
	ss, err := e.node.Servers()
	if err != nil {
		return "", err
	}
	var gone []string
	for _, s := range ss {
		if consensus.MemberOf(s.ID) == member {
			if err := e.change(func() error { return e.node.RemoveServer(s.ID, membershipTimeout) }); err != nil {
				return "", err
			}
			gone = append(gone, s.ID)
		}
	}
	if len(gone) == 0 {
		return "", fmt.Errorf("%s has no server in the coordinator group", member)
	}
	e.log.Warn("a candidate was removed from the coordinator group", "member", member, "servers", gone)
	e.announce()
	return fmt.Sprintf("%s removed from the coordinator group (%s)", member, strings.Join(gone, ", ")), nil
}

// membershipProblem says how the group's servers differ from the
// candidates site.yaml names ("" when they agree).
func membershipProblem(site *config.Site, servers []consensus.Peer) string {
	in := map[string]bool{}
	for _, s := range servers {
		in[consensus.MemberOf(s.ID)] = true
	}
	var notIn, notNamed []string
	for _, id := range site.Candidates {
		if !in[id] {
			notIn = append(notIn, id)
		}
		delete(in, id)
	}
	for id := range in {
		notNamed = append(notNamed, id)
	}
	slices.Sort(notNamed)
	var parts []string
	if len(notIn) > 0 {
		parts = append(parts, fmt.Sprintf("%s, named in site.yaml, is not in the coordinator group: `understudy candidates admit %s` once it runs", strings.Join(notIn, ", "), notIn[0]))
	}
	if len(notNamed) > 0 {
		parts = append(parts, fmt.Sprintf("%s is in the coordinator group and not named in site.yaml: `understudy candidates remove %s`", strings.Join(notNamed, ", "), notNamed[0]))
	}
	return strings.Join(parts, "; ")
}
