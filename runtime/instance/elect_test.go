package instance

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/config"
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
		tm := electionTiming(interval)
		held := leaseFor(tm) - leaseMargin(tm)
		if held <= 0 || held >= tm.Heartbeat || leaseFor(tm)+leaseMargin(tm) <= held {
			t.Errorf("interval %v: lease held %v, heartbeat timeout %v, new leader waits %v", interval, held, tm.Heartbeat, leaseFor(tm)+leaseMargin(tm))
		}
		if tm.LeaderLease >= tm.Heartbeat {
			t.Errorf("interval %v: raft's leader lease %v is not below its heartbeat timeout %v", interval, tm.LeaderLease, tm.Heartbeat)
		}
	}
}

func TestARaftStateOfAnotherCandidateListIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := checkCandidates(dir, "aaaa", "a, b, w"); err != nil {
		t.Fatalf("a new raft state: %v", err)
	}
	if err := writeCandidates(dir, "aaaa"); err != nil {
		t.Fatal(err)
	}
	if err := checkCandidates(dir, "aaaa", "a, b, w"); err != nil {
		t.Fatalf("the same list: %v", err)
	}
	err := checkCandidates(dir, "bbbb", "a, c, w")
	if err == nil || !strings.Contains(err.Error(), "a, c, w") || !strings.Contains(err.Error(), "aaaa") {
		t.Fatalf("another list: %v", err)
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
	e := &election{inst: &Instance{site: &config.Site{Candidates: []string{"a", "b", "w"}}}, timing: electionTiming(100 * time.Millisecond)}
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
