package instance

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/consensus"
)

func TestTheLeaseHoldsUntilItsTimeAndNotAfterARevoke(t *testing.T) {
	var l lease
	if err := l.check(); err == nil {
		t.Fatal("a lease never granted holds")
	}
	l.grant(time.Now().Add(time.Hour))
	if err := l.check(); err != nil {
		t.Fatalf("a granted lease: %v", err)
	}
	l.revoke("another candidate leads")
	if err := l.check(); err == nil || !strings.Contains(err.Error(), "another candidate leads") {
		t.Fatalf("a revoked lease: %v", err)
	}
	l.grant(time.Now().Add(-time.Millisecond))
	if err := l.check(); err == nil || !strings.Contains(err.Error(), "lapsed") {
		t.Fatalf("a lease past its time: %v", err)
	}
}

// The lease is shorter than the time before another candidate can be
// elected (raft's heartbeat timeout), and a new leader waits longer than
// it before it acts.
func TestTheLeaseEndsBeforeAnotherLeaderActs(t *testing.T) {
	for _, interval := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second, 5 * time.Second} {
		tm := consensus.TimingFor(interval)
		held := tm.Lease() - tm.LeaseMargin()
		if held <= 0 || held >= tm.Heartbeat || tm.Lease()+tm.LeaseMargin() <= held {
			t.Errorf("interval %v: lease held %v, heartbeat timeout %v, new leader waits %v", interval, held, tm.Heartbeat, tm.Lease()+tm.LeaseMargin())
		}
		if tm.LeaderLease >= tm.Heartbeat {
			t.Errorf("interval %v: raft's leader lease %v is not below its heartbeat timeout %v", interval, tm.LeaderLease, tm.Heartbeat)
		}
	}
}

// New candidates form a group once every one of them has said it has no
// raft state, with the same candidate list; each makes the same first
// configuration. A candidate that finds a group there waits: for its
// leader, or to be admitted.
func TestNewCandidatesFormTheGroupOnlyAllTogether(t *testing.T) {
	cands := []string{"a", "b", "w"}
	word := func(m, server string, state bool, servers ...string) bus.RaftMember {
		return bus.RaftMember{Member: m, Server: server, Addr: m + ":7000", Candidates: "h1", State: state, Servers: servers}
	}
	self := word("a", "a@1", false)
	all := map[string]bus.RaftMember{"b": word("b", "b@1", false), "w": word("w", "w@1", false)}

	peers, wait := formGroup(cands, self, all)
	want := []consensus.Peer{{ID: "a@1", Addr: "a:7000"}, {ID: "b@1", Addr: "b:7000"}, {ID: "w@1", Addr: "w:7000"}}
	if wait != "" || !slices.Equal(peers, want) {
		t.Errorf("every candidate new: %v, %q; want %v", peers, wait, want)
	}
	// Each one makes the same configuration, whichever it is.
	if peers2, _ := formGroup(cands, all["b"], map[string]bus.RaftMember{"a": self, "w": all["w"]}); !slices.Equal(peers2, want) {
		t.Errorf("b makes %v, a makes %v", peers2, peers)
	}

	for _, c := range []struct {
		name string
		seen map[string]bus.RaftMember
		says string
	}{
		{"w not heard", map[string]bus.RaftMember{"b": all["b"]}, "no word yet on the bus from w"},
		{"b with another list", map[string]bus.RaftMember{"b": {Member: "b", Server: "b@1", Addr: "b:7000", Candidates: "h2"}, "w": all["w"]}, "the site.yaml of b names other coordinator candidates"},
		{"a group without a", map[string]bus.RaftMember{"b": word("b", "b@1", true, "a@0", "b@1", "w@1"), "w": all["w"]}, "understudy candidates admit a"},
		{"a group with a", map[string]bus.RaftMember{"b": word("b", "b@1", true, "a@1", "b@1", "w@1"), "w": all["w"]}, "waits for its leader to reach it"},
	} {
		peers, wait := formGroup(cands, self, c.seen)
		if peers != nil || !strings.Contains(wait, c.says) {
			t.Errorf("%s: %v, %q; want to wait saying %q", c.name, peers, wait, c.says)
		}
	}
}

// A raft folder without a log is made anew under a new server id, with
// what was left of it (and the replicated state file) moved aside; one
// with a log keeps its id, and one made before server ids is the member.
func TestACandidateWhoseRaftLogIsGoneIsANewServer(t *testing.T) {
	root := t.TempDir()
	dir, state := filepath.Join(root, "s-a.raft"), filepath.Join(root, "s-a-coordinator.db")
	id1, fresh, err := serverIdentityOf(dir, state, "a")
	if err != nil || !fresh || !strings.HasPrefix(id1, "a@") {
		t.Fatalf("first start: %q, fresh %v, %v", id1, fresh, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raft.db"), []byte("log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if id, fresh, err := serverIdentityOf(dir, state, "a"); err != nil || fresh || id != id1 {
		t.Fatalf("a restart: %q, fresh %v, %v; want %q", id, fresh, err, id1)
	}
	if err := os.Remove(filepath.Join(dir, "raft.db")); err != nil {
		t.Fatal(err)
	}
	id2, fresh, err := serverIdentityOf(dir, state, "a")
	if err != nil || !fresh || id2 == id1 || consensus.MemberOf(id2) != "a" {
		t.Fatalf("the log lost: %q, fresh %v, %v; want a new id for a, not %q", id2, fresh, err, id1)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replicated state file was not moved aside: %v", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(root, "*.lost-*")); len(aside) != 2 {
		t.Errorf("moved aside: %v, want the raft folder and the state file", aside)
	}
	if err := os.Remove(filepath.Join(dir, serverIDFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raft.db"), []byte("log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if id, _, err := serverIdentityOf(dir, state, "a"); err != nil || id != "a" {
		t.Errorf("a log from before server ids: %q, %v; want the member id", id, err)
	}
}

func TestTheGroupAndSiteYAMLDisagreeingIsSaid(t *testing.T) {
	site := &config.Site{Candidates: []string{"a", "b", "w"}}
	if p := membershipProblem(site, []consensus.Peer{{ID: "a@1"}, {ID: "b"}, {ID: "w@3"}}); p != "" {
		t.Errorf("agreeing: %q", p)
	}
	p := membershipProblem(site, []consensus.Peer{{ID: "a@1"}, {ID: "c@1"}, {ID: "w@3"}})
	if !strings.Contains(p, "understudy candidates admit b") || !strings.Contains(p, "understudy candidates remove c") {
		t.Errorf("b missing and c extra: %q", p)
	}
}

func TestRaftLinesOfOneKindAreLoggedOnceAWhile(t *testing.T) {
	var out bytes.Buffer
	w := newSlogWriter(slog.New(slog.NewTextHandler(&out, nil)))
	for range 50 {
		w.Write([]byte(`2026-12-07T17:40:43.905Z [ERROR] raft: failed to heartbeat to: peer=127.0.0.1:1 backoff time=10ms error="refused"` + "\n"))
	}
	w.Write([]byte(`2026-12-07T17:40:43.905Z [WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr=x` + "\n"))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], `msg="failed to heartbeat to: peer`) || strings.Contains(lines[0], "2026-12-07T17:40:43.905Z") {
		t.Errorf("first line: %s", lines[0])
	}
	if !strings.Contains(lines[1], "level=WARN") || !strings.Contains(lines[1], "heartbeat timeout reached") {
		t.Errorf("second line: %s", lines[1])
	}
}

func TestTheNewestTermsCoordinatorIsKept(t *testing.T) {
	inst := &Instance{site: &config.Site{Candidates: []string{"c1", "c2"}}}
	inst.takeCoordinatorInfo(bus.CoordinatorInfo{Member: "intruder", Term: 99})
	if ci := inst.coordinatorInfo.Load(); ci != nil {
		t.Fatalf("a member that is no candidate was taken as the coordinator: %+v", ci)
	}
	at := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	inst.takeCoordinatorInfo(bus.CoordinatorInfo{Member: "c2", Term: 5, Since: at})
	inst.takeCoordinatorInfo(bus.CoordinatorInfo{Member: "c1", Term: 3, Since: at.Add(time.Hour)}) // a retained one of before
	if ci := inst.coordinatorInfo.Load(); ci.Member != "c2" {
		t.Fatalf("an older term replaced the newer: %+v", ci)
	}
	inst.takeCoordinatorInfo(bus.CoordinatorInfo{Member: "c1", Term: 6, Since: at.Add(time.Minute)})
	if ci := inst.coordinatorInfo.Load(); ci.Member != "c1" || ci.Term != 6 {
		t.Fatalf("a newer term was not taken: %+v", ci)
	}
}

// A candidate that has known no leader for longer than an election takes
// says so (on /healthz and in the status line): nothing fails over.
func TestNoLeaderForLongIsAProblem(t *testing.T) {
	e := &election{inst: &Instance{site: &config.Site{Candidates: []string{"a", "b", "w"}}}, timing: consensus.TimingFor(100 * time.Millisecond)}
	now := time.Now()
	if p := e.problem(now); p != "" {
		t.Fatalf("with a leader: %q", p)
	}
	e.noLeaderSince.Store(now.Add(-time.Second).UnixNano()) // an election's time
	if p := e.problem(now); p != "" {
		t.Fatalf("a second without a leader: %q", p)
	}
	e.noLeaderSince.Store(now.Add(-time.Minute).UnixNano())
	if p := e.problem(now); !strings.Contains(p, "no coordinator elected for 1m0s") || !strings.Contains(p, "a, b, w") {
		t.Fatalf("a minute without a leader: %q", p)
	}
}

func serverIdentityOf(dir, state, self string) (string, bool, error) {
	id, fresh, _, err := serverIdentity(dir, state, self)
	return id, fresh, err
}

// recordingPublisher keeps the topics it was given.
type recordingPublisher struct{ topics, payloads []string }

func (p *recordingPublisher) Publish(topic string, _ byte, _ bool, payload []byte) error {
	p.topics = append(p.topics, topic)
	p.payloads = append(p.payloads, string(payload))
	return nil
}

// A retained state the coordinator could not publish while its lease had
// lapsed (a busy machine can miss a confirmation) is remembered, for the
// election to have it published again once the lease is back; an event
// (not retained) is not.
func TestARetainedStateHeldByTheLeaseIsRemembered(t *testing.T) {
	var l lease
	var held atomic.Bool
	inner := &recordingPublisher{}
	p := leasedPublisher{inner: inner, lease: &l, held: &held}
	l.revoke("not elected yet")
	if err := p.Publish("understudy/s/events", 1, false, nil); !errors.Is(err, ErrLeaseLapsed) || held.Load() {
		t.Fatalf("an event while the lease lapsed: %v, held %v", err, held.Load())
	}
	if err := p.Publish("understudy/s/coordinator", 1, true, nil); !errors.Is(err, ErrLeaseLapsed) || !held.Load() {
		t.Fatalf("a retained state while the lease lapsed: %v, held %v", err, held.Load())
	}
	l.grant(time.Now().Add(time.Minute))
	if err := p.Publish("understudy/s/coordinator", 1, true, nil); err != nil || len(inner.topics) != 1 {
		t.Fatalf("with the lease: %v, published %v", err, inner.topics)
	}
}

// Every retained state an elected coordinator publishes carries its term;
// one that names a term keeps its own, and what is no JSON object goes as
// it is.
func TestRetainedStatesCarryTheTerm(t *testing.T) {
	var l lease
	l.grant(time.Now().Add(time.Minute))
	inner := &recordingPublisher{}
	p := leasedPublisher{inner: inner, lease: &l, term: 7}
	for _, c := range []struct{ payload, want string }{
		{`{"member":"main","state":"lost"}`, `{"member":"main","state":"lost","term":7}`},
		{`{"member":"c1","term":9}`, `{"member":"c1","term":9}`},
		{`[1,2]`, `[1,2]`},
	} {
		if err := p.Publish("understudy/s/member/main/state", 1, true, []byte(c.payload)); err != nil {
			t.Fatal(err)
		}
		got := inner.payloads[len(inner.payloads)-1]
		if got != c.want {
			t.Errorf("%s: published %s, want %s", c.payload, got, c.want)
		}
	}
	if err := p.Publish("understudy/s/events", 1, false, []byte(`{"type":"x"}`)); err != nil || inner.payloads[len(inner.payloads)-1] != `{"type":"x"}` {
		t.Errorf("a record (not retained) was stamped: %v %s", err, inner.payloads[len(inner.payloads)-1])
	}
}
